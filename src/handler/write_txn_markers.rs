//! WriteTxnMarkers (API 27, v1): the transaction coordinator asks each partition leader to
//! append an end-transaction marker (commit or abort) for a producer. Each marker goes through
//! the partition's normal append path with acks=all semantics: the answer comes once the
//! marker is below the high watermark (replicated to the ISR), bounded by
//! `limits::TXN_MARKER_TIMEOUT_MS` (REQUEST_TIMED_OUT past it). Pipelined like Produce: the
//! markers take their append places in the connection's order.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::errors::{self, code};
use super::local::{isr_and_min_insync, leader_epoch, log_storage_error, now_ms};
use super::route::scatter_in_turn;
use super::RequestContext;
use crate::model::{LeaderEpoch, ProducerId, TopicPartition};
use crate::runtime::messages::{MarkerItem, MarkerResult, ShardRequest, ShardResponse};
use crate::runtime::Shard;
use crate::storage::{Acks, AppendOptions, TxnMarker};

/// Kafka's `__consumer_offsets`: a marker there also completes transactional offset commits.
const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

pub async fn handle(ctx: &RequestContext, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let image = ctx.shard.metadata();
    let node = ctx.shard.node_id();
    let mut items = Vec::new();
    // (producer id, partition) -> error decided here, without the owner.
    let mut decided: HashMap<(i64, TopicPartition), i16> = HashMap::new();
    for m in &req.markers {
        for t in &m.topics {
            for p in &t.partition_indexes {
                let tp = TopicPartition::new(t.name.0.to_string(), *p);
                let error = if !image.has_partition(&tp) {
                    Some(code::UNKNOWN_TOPIC_OR_PARTITION)
                } else if !image.leads(node, &tp) {
                    Some(code::NOT_LEADER_OR_FOLLOWER)
                } else {
                    None
                };
                match error {
                    Some(e) => {
                        decided.insert((m.producer_id.0, tp), e);
                    }
                    None => items.push(MarkerItem {
                        tp,
                        producer_id: m.producer_id.0,
                        producer_epoch: m.producer_epoch,
                        commit: m.transaction_result,
                        coordinator_epoch: m.coordinator_epoch,
                        timeout_ms: crate::limits::TXN_MARKER_TIMEOUT_MS,
                    }),
                }
            }
        }
    }
    let results = scatter_in_turn(
        &ctx.shard,
        ctx.take_turn(),
        items,
        |i| &i.tp,
        ShardRequest::WriteTxnMarkers,
        |r| match r {
            ShardResponse::WriteTxnMarkers(v) => Some(v),
            _ => None,
        },
    )
    .await;
    for r in results {
        decided.insert((r.producer_id, r.tp), r.error_code);
    }
    let markers = req
        .markers
        .iter()
        .map(|m| {
            let topics = m
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partition_indexes
                        .iter()
                        .map(|p| {
                            let tp = TopicPartition::new(t.name.0.to_string(), *p);
                            let error = decided
                                .get(&(m.producer_id.0, tp))
                                .copied()
                                // The owner did not answer (shutting down): retriable.
                                .unwrap_or(code::NOT_LEADER_OR_FOLLOWER);
                            WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(*p)
                                .with_error_code(error)
                        })
                        .collect();
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// Appends the markers on this (the owning) shard. Each partition's append place is taken
/// now, before this returns (see `runtime::dispatch_local`); the future does the rest.
pub fn append_local(
    shard: &Rc<Shard>,
    items: Vec<MarkerItem>,
) -> impl std::future::Future<Output = Vec<MarkerResult>> {
    let appends: Vec<_> = items
        .into_iter()
        .map(|item| {
            let log = shard.logs.get(&item.tp);
            let place = log.as_ref().map(|log| log.reserve_append());
            let shard = shard.clone();
            async move {
                let mut result = MarkerResult {
                    tp: item.tp.clone(),
                    producer_id: item.producer_id,
                    error_code: code::NONE,
                };
                let (Some(log), Some(place)) = (log, place) else {
                    result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    return result;
                };
                if !shard.leads(&item.tp) {
                    result.error_code = code::NOT_LEADER_OR_FOLLOWER;
                    return result;
                }
                let replicated = log.is_replicated();
                if replicated {
                    if let Some((isr, min)) = isr_and_min_insync(&shard, &item.tp) {
                        if isr < min {
                            drop(place);
                            result.error_code = code::NOT_ENOUGH_REPLICAS;
                            return result;
                        }
                    }
                }
                if item.tp.topic == CONSUMER_OFFSETS_TOPIC {
                    // The group coordinator appends the marker itself, in order with its own
                    // writes and snapshots of the partition (Kafka's completeTransaction), and
                    // applies it to the pending transactional offsets.
                    drop(place);
                    if let Err(e) = shard
                        .groups
                        .complete_transaction(
                            item.tp.partition,
                            item.producer_id,
                            item.producer_epoch,
                            item.coordinator_epoch,
                            item.commit,
                        )
                        .await
                    {
                        tracing::warn!(partition = %item.tp, error = %e, "transaction marker on an offsets partition failed");
                        result.error_code = code::NOT_LEADER_OR_FOLLOWER;
                    }
                    return result;
                }
                let opts = AppendOptions {
                    acks: Acks::All,
                    leader_epoch: LeaderEpoch(leader_epoch(&shard, &item.tp)),
                    now_ms: now_ms(),
                };
                let marker = TxnMarker {
                    commit: item.commit,
                    coordinator_epoch: item.coordinator_epoch,
                };
                let limit = replicated.then(|| Duration::from_millis(item.timeout_ms.max(1)));
                let appended = log
                    .append_marker(
                        place,
                        ProducerId(item.producer_id),
                        item.producer_epoch,
                        marker,
                        opts,
                        limit,
                    )
                    .await;
                match appended {
                    Ok(_) => {}
                    Err(e) => {
                        log_storage_error(&item.tp, &e, "transaction marker append");
                        result.error_code = errors::storage(&e);
                    }
                }
                result
            }
        })
        .collect();
    futures::future::join_all(appends)
}
