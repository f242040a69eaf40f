//! InitProducerId for idempotent producers (no transactional id).
//!
//! Producer ids come in blocks from the controller (persisted in the metadata
//! image), so an id is never handed out twice, across restarts too. Sequence
//! checking happens in the partition log (storage's producer state).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::errors::code;
use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        // Transactions (the transaction coordinator) are a later issue.
        return InitProducerIdResponse::default()
            .with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
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
