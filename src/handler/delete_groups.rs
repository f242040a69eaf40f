//! DeleteGroups (v0-2): only empty groups; their offsets go with them.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let calls = req.groups_names.iter().map(|g| async move {
        let error = DeletableGroupResult::default().with_group_id(g.clone());
        if g.0.is_empty() {
            return error.with_error_code(ResponseError::InvalidGroupId.code());
        }
        match forward(
            ctx,
            GroupRequest::DeleteGroup(ctx.api_version, g.0.to_string()),
        )
        .await
        {
            GroupResponse::DeleteGroup(d) => d,
            _ => error.with_error_code(ResponseError::UnknownServerError.code()),
        }
    });
    DeleteGroupsResponse::default().with_results(futures::future::join_all(calls).await)
}
