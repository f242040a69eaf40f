//! OffsetDelete (v0): drops committed offsets of partitions the group no longer consumes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if req.group_id.0.is_empty() {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code());
    }
    match forward(ctx, GroupRequest::OffsetDelete(ctx.api_version, req)).await {
        GroupResponse::OffsetDelete(r) => r,
        _ => OffsetDeleteResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code()),
    }
}
