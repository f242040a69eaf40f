//! OffsetForLeaderEpoch (KIP-101/320), answered by the partition's leader
//! (NOT_LEADER_OR_FOLLOWER elsewhere) from the leader epoch cache on the owning shard
//! (`local::epoch_end_offsets`): the current epoch ends at the log end offset, an older one at
//! the start of the next epoch the log holds, an unknown newer one is UNDEFINED (-1, -1).

use std::collections::{HashMap, VecDeque};

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::errors::code;
use super::route::scatter;
use super::RequestContext;
use crate::model::TopicPartition;
use crate::runtime::messages::{EpochEndItem, EpochEndResult, ShardRequest, ShardResponse};

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
                items.push(EpochEndItem {
                    tp,
                    current_leader_epoch: p.current_leader_epoch,
                    leader_epoch: p.leader_epoch,
                });
            }
        }
    }
    // By partition, in request order (a partition may be asked for more than one epoch).
    let mut ends: HashMap<TopicPartition, VecDeque<EpochEndResult>> = HashMap::new();
    let results = scatter(
        &ctx.shard,
        items,
        |i| &i.tp,
        ShardRequest::EpochEndOffsets,
        |r| match r {
            ShardResponse::EpochEndOffsets(v) => Some(v),
            _ => None,
        },
    )
    .await;
    for r in results {
        ends.entry(r.tp.clone()).or_default().push_back(r);
    }
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
                    let Some(found) = ends.get_mut(&tp).and_then(VecDeque::pop_front) else {
                        return base.with_error_code(code::NOT_LEADER_OR_FOLLOWER);
                    };
                    base.with_error_code(found.error_code)
                        .with_leader_epoch(found.leader_epoch)
                        .with_end_offset(found.end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
