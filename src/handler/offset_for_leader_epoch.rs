//! OffsetForLeaderEpoch (KIP-101/320), answered by the partition's leader
//! (NOT_LEADER_OR_FOLLOWER elsewhere). The end offset of the current epoch is the
//! partition's end (its high watermark); an older epoch ends where the current one
//! began, taken as 0: there is no leader epoch cache yet, and a single node keeps
//! its leader epoch (see `cluster::controller`'s broker registration).

use std::collections::HashMap;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::errors::{self, code};
use super::route::scatter;
use super::RequestContext;
use crate::model::TopicPartition;
use crate::runtime::messages::{ListOffsetsItem, ShardRequest, ShardResponse};

pub async fn handle(
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = ctx.shard.metadata();
    let node = ctx.shard.node_id();
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.topic.0.to_string(), p.partition);
            if image.leads(node, &tp) {
                items.push(ListOffsetsItem {
                    tp,
                    timestamp: -1,
                    current_leader_epoch: -1,
                });
            }
        }
    }
    let ends: HashMap<TopicPartition, (i16, i64)> = scatter(
        &ctx.shard,
        items,
        |i| &i.tp,
        ShardRequest::ListOffsets,
        |r| match r {
            ShardResponse::ListOffsets(v) => Some(v),
            _ => None,
        },
    )
    .await
    .into_iter()
    .map(|r| (r.tp.clone(), (r.error_code, r.offset)))
    .collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = image.topic(t.topic.0.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    let tp = TopicPartition::new(t.topic.0.to_string(), p.partition);
                    let Some(pi) = topic.and_then(|ti| ti.partition_image(p.partition)) else {
                        return base.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    if pi.leader != node {
                        return base.with_error_code(code::NOT_LEADER_OR_FOLLOWER);
                    }
                    let Some(&(err, end)) = ends.get(&tp) else {
                        return base.with_error_code(code::NOT_LEADER_OR_FOLLOWER);
                    };
                    if err != code::NONE {
                        return base.with_error_code(err);
                    }
                    let epoch = pi.leader_epoch;
                    if let Some(e) = errors::leader_epoch(p.current_leader_epoch, epoch) {
                        return base.with_error_code(e);
                    }
                    match p.leader_epoch.cmp(&epoch) {
                        std::cmp::Ordering::Equal => {
                            base.with_leader_epoch(epoch).with_end_offset(end)
                        }
                        std::cmp::Ordering::Less => {
                            base.with_leader_epoch(epoch).with_end_offset(0)
                        }
                        std::cmp::Ordering::Greater => {
                            base.with_leader_epoch(-1).with_end_offset(-1)
                        }
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
