//! DescribeGroups (v0-6): each group is described by its coordinator shard.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let calls = req.groups.iter().map(|g| async move {
        let error = DescribedGroup::default().with_group_id(g.clone());
        if g.0.is_empty() {
            return error.with_error_code(ResponseError::InvalidGroupId.code());
        }
        match forward(
            ctx,
            GroupRequest::DescribeGroup(ctx.api_version, g.0.to_string()),
        )
        .await
        {
            GroupResponse::DescribeGroup(d) => d,
            _ => error.with_error_code(ResponseError::UnknownServerError.code()),
        }
    });
    DescribeGroupsResponse::default().with_groups(futures::future::join_all(calls).await)
}
