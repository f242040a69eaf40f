//! FindCoordinator (v0-6, batched keys from v4): a group's coordinator is the broker leading
//! its `__consumer_offsets` partition (COORDINATOR_NOT_AVAILABLE while it has none); a
//! transactional id's is the broker leading its `__transaction_state` partition (the topic is
//! created on the first such request, which is answered COORDINATOR_NOT_AVAILABLE meanwhile).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::group::dispatch::offsets_partition;

/// Kafka's key types: 0 = group, 1 = transaction, 2 = share.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let image = ctx.shard.metadata();
    let answer = |key: &StrBytes| -> Coordinator {
        let coordinator = if req.key_type == KEY_TYPE_GROUP {
            offsets_partition(&image, key.as_str())
                .and_then(|tp| image.partition(&tp))
                .filter(|p| image.leader_available(p))
                .and_then(|p| image.broker(p.leader))
        } else if req.key_type == KEY_TYPE_TRANSACTION && !key.is_empty() {
            let tp = crate::txn::state_partition(&image, key.as_str());
            if tp.is_none() {
                ctx.shard.txns.ensure_topic(&ctx.shard);
            }
            tp.and_then(|tp| image.partition(&tp))
                .filter(|p| image.leader_available(p))
                .and_then(|p| image.broker(p.leader))
        } else {
            None
        };
        let error = if req.key_type != KEY_TYPE_GROUP && req.key_type != KEY_TYPE_TRANSACTION {
            Err(ResponseError::InvalidRequest)
        } else if req.key_type == KEY_TYPE_GROUP && key.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else if key.is_empty() {
            Err(ResponseError::InvalidRequest)
        } else {
            coordinator.ok_or(ResponseError::CoordinatorNotAvailable)
        };
        match error {
            Err(e) => Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::new())
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
            Ok(broker) => Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(broker.node_id))
                .with_host(StrBytes::from_string(broker.host.clone()))
                .with_port(i32::from(broker.port)),
        }
    };
    if ctx.api_version >= 4 {
        return FindCoordinatorResponse::default()
            .with_coordinators(req.coordinator_keys.iter().map(answer).collect());
    }
    let c = answer(&req.key);
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if ctx.api_version >= 1 {
        resp.error_message = c.error_message;
    }
    resp
}
