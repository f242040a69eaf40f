//! SyncGroup (v0-5): forwarded to the group's coordinator shard; followers park until
//! the leader's assignment arrives.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::RequestContext;
use crate::group::classic::sync_error;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: SyncGroupRequest) -> SyncGroupResponse {
    let v = ctx.api_version;
    if req.group_id.0.is_empty() {
        return sync_error(v, ResponseError::InvalidGroupId);
    }
    match forward(ctx, GroupRequest::Sync(v, req)).await {
        GroupResponse::Sync(r) => r,
        _ => sync_error(v, ResponseError::UnknownServerError),
    }
}
