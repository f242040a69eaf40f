//! ListOffsets: earliest, latest, by timestamp, max timestamp; answered by the leader only
//! (NOT_LEADER_OR_FOLLOWER elsewhere).

use std::collections::HashMap;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::errors::code;
use super::route::scatter;
use super::RequestContext;
use crate::model::TopicPartition;
use crate::runtime::messages::{ListOffsetsItem, ListOffsetsResult, ShardRequest, ShardResponse};

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let image = ctx.shard.metadata();
    let node = ctx.shard.node_id();
    let mut items = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            if !image.has_partition(&tp) {
                unknown.push(tp);
            } else if image.leads(node, &tp) {
                items.push(ListOffsetsItem {
                    tp,
                    timestamp: p.timestamp,
                    current_leader_epoch: p.current_leader_epoch,
                    read_committed: req.isolation_level == 1,
                });
            }
            // Otherwise another broker leads it: NOT_LEADER_OR_FOLLOWER below.
        }
    }
    let results = scatter(
        &ctx.shard,
        items,
        |i| &i.tp,
        ShardRequest::ListOffsets,
        |r| match r {
            ShardResponse::ListOffsets(v) => Some(v),
            _ => None,
        },
    )
    .await;
    let by_tp: HashMap<TopicPartition, ListOffsetsResult> =
        results.into_iter().map(|r| (r.tp.clone(), r)).collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match by_tp.get(&tp) {
                        Some(r) => base
                            .with_error_code(r.error_code)
                            .with_timestamp(r.timestamp)
                            .with_offset(r.offset)
                            .with_leader_epoch(if ctx.api_version >= 4 {
                                r.leader_epoch
                            } else {
                                -1
                            }),
                        None if unknown.contains(&tp) => {
                            base.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                        }
                        None => base.with_error_code(code::NOT_LEADER_OR_FOLLOWER),
                    }
                    .with_timestamp(by_tp.get(&tp).map(|r| r.timestamp).unwrap_or(-1))
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
