//! OffsetFetch (v1-9; a batch of groups from v8, KIP-709). Every group is answered by
//! its coordinator shard; before v8 the single group's answer is reshaped.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.api_version;
    let groups: Vec<OffsetFetchRequestGroup> = if v >= 8 {
        req.groups.clone()
    } else {
        vec![OffsetFetchRequestGroup::default()
            .with_group_id(req.group_id.clone())
            .with_member_epoch(-1)
            .with_topics(req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| {
                        OffsetFetchRequestTopics::default()
                            .with_name(t.name.clone())
                            .with_partition_indexes(t.partition_indexes.clone())
                    })
                    .collect()
            }))]
    };
    let require_stable = req.require_stable;
    let calls = groups.into_iter().map(|g| async move {
        let error = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
        if g.group_id.0.is_empty() {
            return error.with_error_code(ResponseError::InvalidGroupId.code());
        }
        match forward(ctx, GroupRequest::OffsetFetch(v, g, require_stable)).await {
            GroupResponse::OffsetFetch(r) => r,
            _ => error.with_error_code(ResponseError::UnknownServerError.code()),
        }
    });
    let mut answers = futures::future::join_all(calls).await;
    if v >= 8 {
        return OffsetFetchResponse::default().with_groups(answers);
    }
    let Some(g) = answers.pop() else {
        return OffsetFetchResponse::default();
    };
    let topics = g
        .topics
        .into_iter()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_committed_offset(p.committed_offset)
                                .with_committed_leader_epoch(if v >= 5 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                })
                                .with_metadata(p.metadata)
                                .with_error_code(p.error_code)
                        })
                        .collect(),
                )
        })
        .collect();
    let mut resp = OffsetFetchResponse::default().with_topics(topics);
    if v >= 2 {
        resp.error_code = g.error_code;
    }
    resp
}
