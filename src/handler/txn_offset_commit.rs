//! TxnOffsetCommit (v0-5, KIP-98/KIP-447): a transactional producer's consumer offsets. The
//! group's coordinator shard writes them as one transactional batch and keeps them pending
//! until the producer's end-transaction marker (see `group::txn`). Partitions of unknown
//! topics (or beyond a topic's partition count) are answered here with
//! UNKNOWN_TOPIC_OR_PARTITION, as Kafka's handler does; the rest go to the coordinator shard,
//! which answers once the batch is durable.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::RequestContext;
use crate::group::dispatch::forward;
use crate::group::{GroupRequest, GroupResponse};

pub async fn handle(
    ctx: &RequestContext,
    mut req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    if req.group_id.0.is_empty() {
        return crate::group::txn::error_response(&req, ResponseError::InvalidGroupId);
    }
    // A transactional commit names its producer; -1 is no producer at all.
    if req.producer_id.0 < 0 {
        tracing::debug!(group = %req.group_id.0.as_str(), "TxnOffsetCommit without a producer id");
        return crate::group::txn::error_response(&req, ResponseError::InvalidProducerIdMapping);
    }
    if req.producer_epoch < 0 {
        return crate::group::txn::error_response(&req, ResponseError::InvalidProducerEpoch);
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
        let fallback = crate::group::txn::error_response(&req, ResponseError::UnknownServerError);
        let resp = match forward(ctx, GroupRequest::TxnOffsetCommit(ctx.api_version, req)).await {
            GroupResponse::TxnOffsetCommit(r) => r,
            _ => fallback,
        };
        for t in resp.topics {
            for p in t.partitions {
                accepted.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    TxnOffsetCommitResponse::default().with_topics(
        original
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                TxnOffsetCommitResponseTopic::default()
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
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
