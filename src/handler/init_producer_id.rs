//! InitProducerId: for idempotent producers (no transactional id) here; for a transactional id,
//! at its transaction coordinator (`txn::coordinator`), which bumps the epoch and fences the
//! previous instance.
//!
//! Producer ids come in blocks from the controller (persisted in the metadata
//! image), so an id is never handed out twice, across restarts too. Sequence
//! checking happens in the partition log (storage's producer state).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::errors::code;
use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if let Some(id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        let r = crate::txn::TxnRequest::InitProducerId {
            transactional_id: id.0.to_string(),
            timeout_ms: req.transaction_timeout_ms,
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
        };
        return match crate::txn::forward(&ctx.shard, r).await {
            crate::txn::TxnResponse::Producer {
                error_code,
                producer_id,
                producer_epoch,
            } => InitProducerIdResponse::default()
                .with_error_code(super::errors::producer_fenced_for(
                    error_code,
                    ctx.api_version,
                    4,
                ))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch),
            _ => unavailable(),
        };
    }
    // KIP-360: an idempotent producer re-initialising with its id and epoch gets a
    // bumped epoch for the same id, so its sequences restart cleanly.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        if req.producer_epoch == i16::MAX {
            return match ctx.shard.next_producer_id().await {
                Some(id) => InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0),
                None => unavailable(),
            };
        }
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx.shard.next_producer_id().await {
        Some(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        None => unavailable(),
    }
}

fn unavailable() -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code::COORDINATOR_NOT_AVAILABLE)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
