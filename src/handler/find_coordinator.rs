//! FindCoordinator (v0-6, batched keys from v4): on one node every group's and every
//! transactional id's coordinator is this broker, once `__consumer_offsets` exists.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::group::OFFSETS_TOPIC;

/// Kafka's key types: 0 = group, 1 = transaction, 2 = share.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let image = ctx.shard.metadata();
    let broker = &image.broker;
    let ready = image.topic(OFFSETS_TOPIC).is_some();
    let answer = |key: &StrBytes| -> Coordinator {
        let error = if req.key_type != KEY_TYPE_GROUP && req.key_type != KEY_TYPE_TRANSACTION {
            Some(ResponseError::InvalidRequest)
        } else if req.key_type == KEY_TYPE_GROUP && key.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else if !ready {
            Some(ResponseError::CoordinatorNotAvailable)
        } else {
            None
        };
        match error {
            Some(e) => Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::new())
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
            None => Coordinator::default()
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
