//! ConsumerGroupDescribe (v0-1, KIP-848): each group is described by its coordinator shard.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let calls = req.group_ids.iter().map(|g| async move {
        let error = DescribedGroup::default().with_group_id(g.clone());
        if g.0.is_empty() {
            return error.with_error_code(ResponseError::InvalidGroupId.code());
        }
        match forward(
            ctx,
            GroupRequest::ConsumerGroupDescribe(ctx.api_version, g.0.to_string()),
        )
        .await
        {
            GroupResponse::ConsumerGroupDescribe(d) => d,
            _ => error.with_error_code(ResponseError::UnknownServerError.code()),
        }
    });
    ConsumerGroupDescribeResponse::default().with_groups(futures::future::join_all(calls).await)
}
