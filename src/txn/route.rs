//! From the shard that read a transactional request to the shard that coordinates its id.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use super::request::{TxnRequest, TxnResponse};
use super::state_partition;
use crate::runtime::messages::{ShardRequest, ShardResponse};
use crate::runtime::Shard;

/// Sends `req` to the coordinator shard of its transactional id and waits for the answer.
/// COORDINATOR_NOT_AVAILABLE while `__transaction_state` does not exist yet (its creation is
/// started here), NOT_COORDINATOR where this node does not lead the id's partition.
pub async fn forward(shard: &Rc<Shard>, req: TxnRequest) -> TxnResponse {
    let Some(id) = req.transactional_id() else {
        return TxnResponse::error(&req, ResponseError::InvalidRequest.code());
    };
    if id.is_empty() {
        return TxnResponse::error(&req, ResponseError::InvalidRequest.code());
    }
    let Some(tp) = state_partition(&shard.metadata(), id) else {
        shard.txns.ensure_topic(shard);
        return TxnResponse::error(&req, ResponseError::CoordinatorNotAvailable.code());
    };
    if !shard.leads(&tp) {
        return TxnResponse::error(&req, ResponseError::NotCoordinator.code());
    }
    let owner = shard.shard_for(&tp);
    let fallback = TxnResponse::error(&req, ResponseError::CoordinatorNotAvailable.code());
    match shard.call(owner, ShardRequest::Txn(Box::new(req))).await {
        ShardResponse::Txn(r) => *r,
        _ => fallback,
    }
}
