//! EndTxn (v0-5): commit or abort. Answered once PrepareCommit/PrepareAbort is durable in
//! `__transaction_state`; the markers follow (see `txn::coordinator`). v5 is transactions v2
//! (KIP-890 part 2): the epoch is bumped at every end and the answer carries the producer id
//! and epoch to continue with.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::RequestContext;
use crate::txn::{TxnRequest, TxnResponse};

pub async fn handle(ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    let r = TxnRequest::EndTxn {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        commit: req.committed,
        transaction_version: if ctx.api_version >= 5 { 2 } else { 1 },
    };
    let (code, id, epoch) = match crate::txn::forward(&ctx.shard, r).await {
        TxnResponse::Producer {
            error_code,
            producer_id,
            producer_epoch,
        } => (error_code, producer_id, producer_epoch),
        _ => (
            kafka_protocol::error::ResponseError::UnknownServerError.code(),
            -1,
            -1,
        ),
    };
    EndTxnResponse::default()
        .with_error_code(super::errors::producer_fenced_for(code, ctx.api_version, 2))
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}
