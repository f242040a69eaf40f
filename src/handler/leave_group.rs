//! LeaveGroup (v0-5; a batch of members from v3, KIP-345).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    if req.group_id.0.is_empty() {
        return LeaveGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    match forward(ctx, GroupRequest::Leave(ctx.api_version, req)).await {
        GroupResponse::Leave(r) => r,
        _ => {
            LeaveGroupResponse::default().with_error_code(ResponseError::UnknownServerError.code())
        }
    }
}
