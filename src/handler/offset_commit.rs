//! OffsetCommit (v2-9). Partitions of unknown topics (or beyond a topic's partition
//! count) are answered here with UNKNOWN_TOPIC_OR_PARTITION; the rest go to the group's
//! coordinator shard, which answers once the commit is durable.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(ctx: &RequestContext, mut req: OffsetCommitRequest) -> OffsetCommitResponse {
    let all = |req: &OffsetCommitRequest, e: ResponseError| {
        OffsetCommitResponse::default().with_topics(
            req.topics
                .iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(e.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    };
    if req.group_id.0.is_empty() {
        return all(&req, ResponseError::InvalidGroupId);
    }
    let image = ctx.shard.metadata();
    // (topic, partition) → error decided here; the order of the request is kept.
    let mut rejected: HashMap<(String, i32), i16> = HashMap::new();
    let original = req.topics.clone();
    for t in req.topics.iter_mut() {
        let count = image
            .topic(t.name.0.as_str())
            .map(|ti| ti.partition_count())
            .unwrap_or(0);
        t.partitions.retain(|p| {
            let ok = p.partition_index >= 0 && p.partition_index < count;
            if !ok {
                rejected.insert(
                    (t.name.0.to_string(), p.partition_index),
                    ResponseError::UnknownTopicOrPartition.code(),
                );
            }
            ok
        });
    }
    req.topics.retain(|t| !t.partitions.is_empty());
    let mut accepted: HashMap<(String, i32), i16> = HashMap::new();
    if !req.topics.is_empty() {
        let fallback = all(&req, ResponseError::UnknownServerError);
        let resp = match forward(ctx, GroupRequest::OffsetCommit(ctx.api_version, req)).await {
            GroupResponse::OffsetCommit(r) => r,
            _ => fallback,
        };
        for t in resp.topics {
            for p in t.partitions {
                accepted.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        original
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let key = (name.clone(), p.partition_index);
                                let code = rejected
                                    .get(&key)
                                    .or_else(|| accepted.get(&key))
                                    .copied()
                                    .unwrap_or(ResponseError::UnknownServerError.code());
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
