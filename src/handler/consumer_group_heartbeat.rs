//! ConsumerGroupHeartbeat (v0-1, KIP-848): the whole new-protocol membership in one API.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::group::dispatch::{client_info, forward};
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if req.group_id.0.is_empty() {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_static_str("GroupId can't be empty.")));
    }
    match forward(
        ctx,
        GroupRequest::ConsumerGroupHeartbeat(ctx.api_version, client_info(ctx), req),
    )
    .await
    {
        GroupResponse::ConsumerGroupHeartbeat(r) => r,
        _ => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code()),
    }
}
