//! The group APIs' entry from the connection layer, and forwarding to the shard that
//! owns a group. Runs on the shard that received the request.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::ops::error_response;
use super::request::{ClientInfo, GroupRequest, GroupResponse};
use super::{offsets_partition_for, OFFSETS_TOPIC};
use crate::handler::{
    consumer_group_describe, consumer_group_heartbeat, delete_groups, describe_groups,
    find_coordinator, heartbeat, join_group, leave_group, list_groups, offset_commit,
    offset_delete, offset_fetch, sync_group, RequestContext,
};
use crate::model::{ShardId, TopicPartition};
use crate::runtime::messages::{ShardRequest, ShardResponse};

/// Serves the group coordinator APIs; `None` for any other API.
pub async fn dispatch(ctx: &RequestContext, req: RequestKind) -> Option<ResponseKind> {
    Some(match req {
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, r))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, r).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_group_heartbeat::handle(ctx, r).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(ctx, r).await)
        }
        _ => return None,
    })
}

/// The `__consumer_offsets` partition that holds `group_id`, once that topic exists.
pub fn offsets_partition(
    image: &crate::cluster::MetadataImage,
    group_id: &str,
) -> Option<TopicPartition> {
    let partitions = image.topic(OFFSETS_TOPIC)?.partition_count();
    let p = offsets_partition_for(group_id, partitions);
    Some(TopicPartition::new(OFFSETS_TOPIC, p))
}

/// The shard that owns `group_id` (the owner of its `__consumer_offsets` partition).
pub fn coordinator_shard(ctx: &RequestContext, group_id: &str) -> Option<ShardId> {
    let tp = offsets_partition(&ctx.shard.metadata(), group_id)?;
    Some(ctx.shard.shard_for(&tp))
}

/// Sends `req` to the group's coordinator shard and waits for its answer.
pub async fn forward(ctx: &RequestContext, req: GroupRequest) -> GroupResponse {
    let Some(group_id) = req.group_id() else {
        return error_response(&req, ResponseError::InvalidRequest);
    };
    let Some(tp) = offsets_partition(&ctx.shard.metadata(), group_id) else {
        return error_response(&req, ResponseError::CoordinatorNotAvailable);
    };
    // The coordinator is the leader of the group's partition (Kafka's rule).
    if !ctx.shard.leads(&tp) {
        return error_response(&req, ResponseError::NotCoordinator);
    }
    let owner = ctx.shard.shard_for(&tp);
    let fallback = error_response(&req, ResponseError::CoordinatorNotAvailable);
    match ctx
        .shard
        .call(owner, ShardRequest::Group(Box::new(req)))
        .await
    {
        ShardResponse::Group(r) => r,
        _ => fallback,
    }
}

/// Who sent the request.
pub fn client_info(ctx: &RequestContext) -> ClientInfo {
    ClientInfo {
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", ctx.client_host),
    }
}
