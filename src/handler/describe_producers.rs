//! DescribeProducers (API 61, v0): the active producers of each partition, from the
//! partition leader's producer state (id, epoch, last sequence, last timestamp, coordinator
//! epoch of the last marker, first offset of the ongoing transaction).

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::errors::code;
use super::route::scatter;
use super::RequestContext;
use crate::model::TopicPartition;
use crate::runtime::messages::{ProducerSummary, ProducersResult, ShardRequest, ShardResponse};
use crate::runtime::Shard;

pub async fn handle(
    ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = ctx.shard.metadata();
    let node = ctx.shard.node_id();
    let mut items = Vec::new();
    let mut decided: HashMap<TopicPartition, i16> = HashMap::new();
    for t in &req.topics {
        for p in &t.partition_indexes {
            let tp = TopicPartition::new(t.name.0.to_string(), *p);
            if !image.has_partition(&tp) {
                decided.insert(tp, code::UNKNOWN_TOPIC_OR_PARTITION);
            } else if !image.leads(node, &tp) {
                decided.insert(tp, code::NOT_LEADER_OR_FOLLOWER);
            } else {
                items.push(tp);
            }
        }
    }
    let results = scatter(
        &ctx.shard,
        items,
        |tp| tp,
        ShardRequest::DescribeProducers,
        |r| match r {
            ShardResponse::DescribeProducers(v) => Some(v),
            _ => None,
        },
    )
    .await;
    let mut found: HashMap<TopicPartition, ProducersResult> =
        results.into_iter().map(|r| (r.tp.clone(), r)).collect();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(t.name.0.to_string(), *p);
                    let mut pr = PartitionResponse::default().with_partition_index(*p);
                    match (decided.get(&tp), found.remove(&tp)) {
                        (Some(e), _) => pr = pr.with_error_code(*e),
                        (None, Some(r)) => {
                            pr = pr.with_error_code(r.error_code).with_active_producers(
                                r.producers.iter().map(producer_state).collect(),
                            )
                        }
                        (None, None) => pr = pr.with_error_code(code::NOT_LEADER_OR_FOLLOWER),
                    }
                    pr
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn producer_state(p: &ProducerSummary) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(p.producer_epoch)
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_timestamp)
        .with_coordinator_epoch(p.coordinator_epoch)
        .with_current_txn_start_offset(p.current_txn_start_offset)
}

/// The producers of each partition, on the shard that owns them.
pub fn local(shard: &Rc<Shard>, items: Vec<TopicPartition>) -> Vec<ProducersResult> {
    items
        .into_iter()
        .map(|tp| {
            let Some(log) = shard.logs.get(&tp) else {
                return ProducersResult {
                    tp,
                    error_code: code::UNKNOWN_TOPIC_OR_PARTITION,
                    producers: Vec::new(),
                };
            };
            let producers = log
                .producers()
                .into_iter()
                .map(|(id, e)| ProducerSummary {
                    producer_id: id.0,
                    producer_epoch: i32::from(e.epoch),
                    last_sequence: e.last_sequence(),
                    last_timestamp: e.last_timestamp,
                    coordinator_epoch: e.coordinator_epoch,
                    current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
                })
                .collect();
            ProducersResult {
                tp,
                error_code: code::NONE,
                producers,
            }
        })
        .collect()
}
