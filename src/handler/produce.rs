//! Produce (v3+): validate each partition's batch in place on the shard that
//! read it, then append on the owning shards in parallel and join.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};

use super::errors::{self, code};
use super::route::scatter_in_turn;
use super::{str_bytes, RequestContext};
use crate::config::topic;
use crate::model::TopicPartition;
use crate::protocol::records::{self, ValidBatch};
use crate::runtime::messages::{
    ProduceBatch, ProduceItem, ProduceResult, ShardRequest, ShardResponse,
};
use crate::storage::batch::set_max_timestamp;
use crate::storage::record_walk::RecordsSummary;

/// KIP-937 bounds on CreateTime timestamps, checked on every record's timestamp (the walk's
/// smallest and largest, which Kafka checks one by one). Returns the first timestamp out of range.
fn timestamp_out_of_range(
    records: &RecordsSummary,
    before_max: Option<i64>,
    after_max: Option<i64>,
) -> Option<i64> {
    let (low, high) = records.timestamp_bounds?;
    let now = super::local::now_ms();
    if before_max.is_some_and(|b| now.saturating_sub(low) > b) {
        return Some(low);
    }
    if after_max.is_some_and(|a| high.saturating_sub(now) > a) {
        return Some(high);
    }
    None
}

/// Kafka stores the records' largest timestamp as a CreateTime batch's MaxTimestamp
/// (`LogValidator` calls `setMaxTimestamp`), whatever the producer wrote there. Batches whose
/// header already agrees (every client we test) stay zero-copy; the others are copied once
/// here with the header field and the CRC rewritten.
fn with_records_max_timestamp(data: Bytes, batch: &ValidBatch) -> Bytes {
    if batch.header.max_timestamp == batch.records.max_timestamp {
        return data;
    }
    tracing::debug!(
        header = batch.header.max_timestamp,
        records = batch.records.max_timestamp,
        "MaxTimestamp rewritten from the records"
    );
    let mut copy = BytesMut::from(&data[..]);
    set_max_timestamp(&mut copy, batch.records.max_timestamp);
    copy.freeze()
}

/// KIP-890 part 1: before a transaction's first batch is appended to a partition, the leader
/// asks the coordinator whether the partition is in the producer's ongoing transaction
/// (`txn::verify`). Which partitions need it the owners say from their producer state: those
/// where this producer has no ongoing transaction at this epoch. Produce v12+ (transactions v2)
/// adds the partition to the transaction instead of only checking. Returns the partitions that
/// failed, with their error.
///
/// Known gap: Kafka's verification guard is not built; a marker that ends the transaction
/// between this check and the append still lets the batch open a new one.
async fn verify_transactional(
    ctx: &RequestContext,
    transactional_id: &str,
    candidates: Vec<(TopicPartition, i64, i16)>,
) -> HashMap<TopicPartition, i16> {
    let mut by_owner: HashMap<crate::model::ShardId, Vec<(TopicPartition, i64, i16)>> =
        HashMap::new();
    for c in candidates {
        by_owner
            .entry(ctx.shard.shard_for(&c.0))
            .or_default()
            .push(c);
    }
    let mut unverified: HashMap<(i64, i16), Vec<TopicPartition>> = HashMap::new();
    for (owner, list) in by_owner {
        let ongoing = if owner == ctx.shard.id {
            super::local::ongoing_transactions(&ctx.shard, &list)
        } else {
            match ctx
                .shard
                .call(owner, ShardRequest::OngoingTxns(list.clone()))
                .await
            {
                ShardResponse::OngoingTxns(v) => v,
                _ => vec![false; list.len()],
            }
        };
        for ((tp, pid, epoch), ongoing) in list.into_iter().zip(ongoing) {
            if !ongoing {
                unverified.entry((pid, epoch)).or_default().push(tp);
            }
        }
    }
    let mut failed = HashMap::new();
    for ((pid, epoch), tps) in unverified {
        let add = ctx.api_version >= 12;
        let codes =
            crate::txn::verify::verify(&ctx.shard, transactional_id, pid, epoch, tps, add).await;
        for (tp, code) in codes {
            if code != code::NONE {
                tracing::debug!(partition = %tp, producer_id = pid, code, "transactional produce not verified");
                failed.insert(tp, code);
            }
        }
    }
    failed
}

/// KIP-467 on a compacted topic: a record without a key is refused, and with it the whole batch
/// (Kafka's `LogValidator.validateKey` and `processRecordErrors`). Returns the partition's error
/// message and the per-record errors, or `None` if every record has a key.
fn keyless_record_errors(
    tp: &TopicPartition,
    data: &Bytes,
    batch: &ValidBatch,
) -> Option<(String, Vec<(i32, String)>)> {
    if batch.records.keyless == 0 {
        return None;
    }
    let why = format!("Compacted topic cannot accept message without key in topic partition {tp}.");
    let indexes = records::keyless_records(
        data,
        &batch.header,
        crate::limits::PRODUCE_RECORD_ERRORS_MAX,
    );
    let errors: Vec<(i32, String)> = indexes.into_iter().map(|i| (i, why.clone())).collect();
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')"))
        .collect();
    let message = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        batch.records.keyless,
        shown.join(", ")
    );
    Some((message, errors))
}

/// Returns `None` for acks=0 (Kafka writes no response).
pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Option<ProduceResponse> {
    let v = ctx.api_version;
    let image = ctx.shard.metadata();
    let node = ctx.shard.node_id();
    let acks = req.acks;
    let timeout_ms = req.timeout_ms;
    let mut answers: HashMap<TopicPartition, ProduceResult> = HashMap::new();
    // KIP-467 per-record errors of refused batches (v8+).
    let mut record_errors: HashMap<TopicPartition, Vec<(i32, String)>> = HashMap::new();
    let mut order: Vec<(String, uuid::Uuid, Vec<i32>)> = Vec::new();
    let mut items = Vec::new();
    let mut txn_candidates: Vec<(TopicPartition, i64, i16)> = Vec::new();
    for t in req.topic_data {
        let found = if v >= 13 {
            image.topic_by_id(&t.topic_id)
        } else {
            image.topic(t.name.0.as_str())
        };
        let name = found
            .map(|t| t.name.clone())
            .unwrap_or_else(|| t.name.0.to_string());
        // Only the settings Produce needs (not every topic key) on this per-request path.
        let setting =
            |key: &str| found.and_then(|ti| topic::value(&ctx.shard.config, &ti.configs, key));
        let max_bytes = setting("max.message.bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| ctx.shard.config.message_max_bytes());
        let create_time = setting("message.timestamp.type").as_deref() != Some("LogAppendTime");
        let before_max =
            setting("message.timestamp.before.max.ms").and_then(|v| v.parse::<i64>().ok());
        let after_max =
            setting("message.timestamp.after.max.ms").and_then(|v| v.parse::<i64>().ok());
        let compacted =
            setting("cleanup.policy").is_some_and(|v| topic::CleanupPolicy::parse(&v).compact);
        let mut indexes = Vec::new();
        for p in t.partition_data {
            let tp = TopicPartition::new(name.clone(), p.index);
            indexes.push(p.index);
            let fail = |code: i16, msg: Option<String>| ProduceResult {
                tp: tp.clone(),
                error_code: code,
                error_message: msg,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
            };
            let error = if !matches!(acks, -1..=1) {
                Some((code::INVALID_REQUIRED_ACKS, None))
            } else {
                match found {
                    None if v >= 13 => Some((code::UNKNOWN_TOPIC_ID, None)),
                    None => Some((code::UNKNOWN_TOPIC_OR_PARTITION, None)),
                    Some(ti) if ti.partition(p.index).is_none() => {
                        Some((code::UNKNOWN_TOPIC_OR_PARTITION, None))
                    }
                    Some(_) if !image.leads(node, &tp) => {
                        Some((code::NOT_LEADER_OR_FOLLOWER, None))
                    }
                    Some(_) => None,
                }
            };
            if let Some((c, m)) = error {
                answers.insert(tp.clone(), fail(c, m));
                continue;
            }
            let data = p.records.unwrap_or_default();
            match records::validate_produce(&data, max_bytes) {
                Ok(valid) if valid.header.is_transactional() && req.transactional_id.is_none() => {
                    // Kafka's KafkaApis: transactional records need the request's
                    // transactional id (and its authorization).
                    answers.insert(
                        tp.clone(),
                        fail(
                            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                            Some(
                                "transactional batches need the request's transactional_id".into(),
                            ),
                        ),
                    );
                }
                Ok(valid) => {
                    if req.transactional_id.is_some() && valid.header.is_transactional() {
                        txn_candidates.push((
                            tp.clone(),
                            valid.header.producer_id,
                            valid.header.producer_epoch,
                        ));
                    }
                    let out_of_range = create_time
                        .then(|| timestamp_out_of_range(&valid.records, before_max, after_max))
                        .flatten();
                    if let Some(ts) = out_of_range {
                        let msg = format!(
                            "Timestamp {ts} of a record is out of range (message.timestamp.before.max.ms / after.max.ms)"
                        );
                        answers.insert(tp.clone(), fail(code::INVALID_TIMESTAMP, Some(msg)));
                    } else if let Some((msg, errors)) = compacted
                        .then(|| keyless_record_errors(&tp, &data, &valid))
                        .flatten()
                    {
                        tracing::debug!(partition = %tp, keyless = valid.records.keyless, client = ?ctx.client_id, "produce rejected: keyless records on a compacted topic");
                        answers.insert(tp.clone(), fail(code::INVALID_RECORD, Some(msg)));
                        record_errors.insert(tp.clone(), errors);
                    } else {
                        let records = if create_time {
                            with_records_max_timestamp(data, &valid)
                        } else {
                            data
                        };
                        items.push(ProduceItem { tp, records });
                    }
                }
                Err(e) => {
                    tracing::debug!(partition = %tp, error = %e, client = ?ctx.client_id, "produce rejected");
                    answers.insert(tp.clone(), fail(errors::records(&e), Some(e.to_string())));
                }
            }
        }
        order.push((name, t.topic_id, indexes));
    }
    // Only a request with transactional batches reads the setting (a lookup by name), so the
    // plain produce path does no transaction work at all.
    let verify = |ctx: &RequestContext| {
        ctx.shard
            .config
            .flag("transaction.partition.verification.enable")
    };
    if let Some(id) = req
        .transactional_id
        .as_ref()
        .filter(|_| !txn_candidates.is_empty() && verify(ctx))
    {
        let failed = verify_transactional(ctx, id.as_str(), txn_candidates).await;
        if !failed.is_empty() {
            items.retain(|i| !failed.contains_key(&i.tp));
            for (tp, c) in failed {
                answers.insert(
                    tp.clone(),
                    ProduceResult {
                        tp,
                        error_code: c,
                        error_message: Some(
                            "the partition is not in the producer's ongoing transaction".into(),
                        ),
                        base_offset: -1,
                        log_append_time_ms: -1,
                        log_start_offset: -1,
                    },
                );
            }
        }
    }
    let results = scatter_in_turn(
        &ctx.shard,
        ctx.take_turn(),
        items,
        |i| &i.tp,
        |items| {
            ShardRequest::Produce(ProduceBatch {
                acks,
                timeout_ms,
                items,
            })
        },
        |r| match r {
            ShardResponse::Produce(v) => Some(v),
            _ => None,
        },
    )
    .await;
    for r in results {
        answers.insert(r.tp.clone(), r);
    }
    if acks == 0 {
        return None;
    }
    let mut leaders = Vec::new();
    let responses = order
        .into_iter()
        .map(|(name, id, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|index| {
                    let tp = TopicPartition::new(name.clone(), index);
                    let mut pr = PartitionProduceResponse::default().with_index(index);
                    match answers.get(&tp) {
                        Some(a) => {
                            pr = pr
                                .with_error_code(a.error_code)
                                .with_base_offset(a.base_offset)
                                .with_log_append_time_ms(a.log_append_time_ms);
                            if v >= 5 {
                                pr = pr.with_log_start_offset(a.log_start_offset);
                            }
                            if v >= 8 {
                                pr = pr.with_error_message(a.error_message.clone().map(str_bytes));
                                let errors = record_errors.remove(&tp).unwrap_or_default();
                                pr.record_errors = errors
                                    .into_iter()
                                    .map(|(index, message)| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(index)
                                            .with_batch_index_error_message(Some(str_bytes(
                                                message,
                                            )))
                                    })
                                    .collect();
                            }
                            // KIP-951: where the partition's leader is now.
                            let hint = errors::current_leader(&image, &tp, a.error_code);
                            if let Some((leader, epoch)) = hint.filter(|_| v >= 10) {
                                pr.current_leader = LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(leader))
                                    .with_leader_epoch(epoch);
                                leaders.push(leader);
                            }
                        }
                        None => {
                            pr = pr
                                .with_error_code(code::REQUEST_TIMED_OUT)
                                .with_base_offset(-1)
                        }
                    }
                    pr
                })
                .collect();
            let mut t = TopicProduceResponse::default().with_partition_responses(partitions);
            if v >= 13 {
                t = t.with_topic_id(id);
            } else {
                t = t.with_name(TopicName(str_bytes(name)));
            }
            t
        })
        .collect();
    leaders.sort_unstable();
    leaders.dedup();
    let node_endpoints = leaders
        .iter()
        .filter_map(|id| image.broker(*id))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    Some(
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(node_endpoints),
    )
}
