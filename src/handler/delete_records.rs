//! DeleteRecords: advance the log start offset (whole segments below it are deleted), on the
//! partition's leader only (NOT_LEADER_OR_FOLLOWER elsewhere).

use std::collections::HashMap;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::errors::code;
use super::route::scatter;
use super::RequestContext;
use crate::model::TopicPartition;
use crate::runtime::messages::{ShardRequest, ShardResponse};

pub async fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = ctx.shard.metadata();
    let node = ctx.shard.node_id();
    let mut items = Vec::new();
    let mut not_led = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            if image.leads(node, &tp) {
                items.push((tp, p.offset));
            } else if image.has_partition(&tp) {
                not_led.push(tp);
            }
        }
    }
    let results = scatter(
        &ctx.shard,
        items,
        |i| &i.0,
        ShardRequest::DeleteRecords,
        |r| match r {
            ShardResponse::DeleteRecords(v) => Some(v),
            _ => None,
        },
    )
    .await;
    let by_tp: HashMap<TopicPartition, (i16, i64)> =
        results.into_iter().map(|(tp, c, o)| (tp, (c, o))).collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let missing = if not_led.contains(&tp) {
                        code::NOT_LEADER_OR_FOLLOWER
                    } else {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    };
                    let (c, low) = by_tp.get(&tp).copied().unwrap_or((missing, -1));
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c)
                        .with_low_watermark(low)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
