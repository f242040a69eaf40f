//! Heartbeat (v0-4) of a classic group member.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    if req.group_id.0.is_empty() {
        return HeartbeatResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    match forward(ctx, GroupRequest::Heartbeat(ctx.api_version, req)).await {
        GroupResponse::Heartbeat(r) => r,
        _ => HeartbeatResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
    }
}
