//! JoinGroup (v0-9): forwarded to the group's coordinator shard, where it may park
//! until the join phase completes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::RequestContext;
use crate::group::classic::join_error;
use crate::group::dispatch::{client_info, forward};
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.api_version;
    if req.group_id.0.is_empty() {
        return join_error(v, req.member_id.as_str(), ResponseError::InvalidGroupId);
    }
    let member = req.member_id.as_str().to_owned();
    match forward(ctx, GroupRequest::Join(v, client_info(ctx), req)).await {
        GroupResponse::Join(r) => r,
        _ => join_error(v, &member, ResponseError::UnknownServerError),
    }
}
