//! AddOffsetsToTxn (v0-4): adds the group's `__consumer_offsets` partition to the transaction,
//! so its TxnOffsetCommit offsets get the transaction's marker.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::RequestContext;
use crate::txn::{TxnRequest, TxnResponse};

pub async fn handle(ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let r = TxnRequest::AddOffsets {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        group_id: req.group_id.0.to_string(),
    };
    let code = match crate::txn::forward(&ctx.shard, r).await {
        TxnResponse::Code(c) => c,
        _ => kafka_protocol::error::ResponseError::UnknownServerError.code(),
    };
    AddOffsetsToTxnResponse::default().with_error_code(super::errors::producer_fenced_for(
        code,
        ctx.api_version,
        2,
    ))
}
