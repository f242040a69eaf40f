//! EndTxn (v0-5): commit or abort. Answered once PrepareCommit/PrepareAbort is durable in
//! `__transaction_state`; the markers follow (see `txn::coordinator`).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::RequestContext;
use crate::txn::{TxnRequest, TxnResponse};

pub async fn handle(ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    let r = TxnRequest::EndTxn {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        commit: req.committed,
    };
    let code = match crate::txn::forward(&ctx.shard, r).await {
        TxnResponse::Code(c) => c,
        _ => kafka_protocol::error::ResponseError::UnknownServerError.code(),
    };
    // v5 answers with the producer id and epoch to use next (transactions v2); with v1
    // transactions they are unchanged.
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(if code == 0 { req.producer_id.0 } else { -1 }))
        .with_producer_epoch(if code == 0 { req.producer_epoch } else { -1 })
}
