//! Partition work executed on the shard that owns the partitions. Every
//! function here runs on the owner; callers reach it through `Shard::call`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::errors::{self, code};
use crate::model::{LeaderEpoch, Offset, TopicPartition};
use crate::runtime::messages::{
    EpochEndItem, EpochEndResult, FetchItem, FetchRecords, FetchResult, ListOffsetsItem,
    ListOffsetsResult, ProduceBatch, ProduceResult, ReplicaFetch,
};
use crate::runtime::Shard;
use crate::storage::{slice, Acks, AppendOptions, StorageError};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn leader_epoch(shard: &Shard, tp: &TopicPartition) -> i32 {
    shard
        .metadata()
        .partition(tp)
        .map(|p| p.leader_epoch)
        .unwrap_or(0)
}

/// Checks a client's `current_leader_epoch` against ours (KIP-320); -1 means "not given".
fn epoch_error(shard: &Shard, tp: &TopicPartition, client_epoch: i32) -> Option<i16> {
    errors::leader_epoch(client_epoch, leader_epoch(shard, tp))
}

/// The partition's log here, if it is open and the client's leader epoch is current; else the
/// error code to answer with.
fn current_log(
    shard: &Shard,
    tp: &TopicPartition,
    client_epoch: i32,
) -> Result<Rc<crate::storage::PartitionLog>, i16> {
    let log = shard.logs.get(tp).ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)?;
    match epoch_error(shard, tp, client_epoch) {
        Some(e) => Err(e),
        None => Ok(log),
    }
}

/// Appends a produce request's batches on this (the owning) shard. Each partition's place
/// in its append queue is taken now, before this returns, so that requests are stored in the
/// order they were handed to this shard (see `runtime::dispatch_local`); the returned future
/// does the rest.
pub fn produce(
    shard: &Rc<Shard>,
    batch: ProduceBatch,
) -> impl std::future::Future<Output = Vec<ProduceResult>> {
    let raw_acks = batch.acks;
    let timeout_ms = batch.timeout_ms;
    let acks_of = move || match raw_acks {
        0 => Acks::None,
        1 => Acks::Leader,
        _ => Acks::All,
    };
    let appends: Vec<_> = batch
        .items
        .into_iter()
        .map(|item| {
            let log = shard.logs.get(&item.tp);
            let place = log.as_ref().map(|log| log.reserve_append());
            let shard = shard.clone();
            async move {
                let mut result = ProduceResult {
                    tp: item.tp.clone(),
                    error_code: code::NONE,
                    error_message: None,
                    base_offset: -1,
                    log_append_time_ms: -1,
                    log_start_offset: -1,
                };
                let (Some(log), Some(place)) = (log, place) else {
                    result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    return result;
                };
                if shard.logs.is_read_only() {
                    result.error_code = code::KAFKA_STORAGE_ERROR;
                    result.error_message = Some(
                        "broker is read-only: the data volume is below its free-space floor".into(),
                    );
                    return result;
                }
                let size = item.records.len() as u64;
                let opts = AppendOptions {
                    acks: acks_of(),
                    leader_epoch: LeaderEpoch(leader_epoch(&shard, &item.tp)),
                    now_ms: now_ms(),
                };
                // acks=all on a replicated partition: refused while the ISR is smaller than
                // min.insync.replicas, and bounded by the request's timeout.
                let replicated = opts.acks == Acks::All && log.is_replicated();
                if replicated {
                    if let Some((isr, min)) = isr_and_min_insync(&shard, &item.tp) {
                        if isr < min {
                            drop(place);
                            result.error_code = code::NOT_ENOUGH_REPLICAS;
                            result.error_message = Some(format!(
                                "the ISR has {isr} replica(s); min.insync.replicas is {min}"
                            ));
                            return result;
                        }
                    }
                }
                let appended = if replicated {
                    let limit = Duration::from_millis(timeout_ms.max(1) as u64);
                    log.append_reserved_within(place, item.records, opts, limit)
                        .await
                } else {
                    log.append_reserved(place, item.records, opts).await
                };
                let appended = match appended {
                    // Replicated to the ISR, which shrank below min.insync.replicas meanwhile.
                    Ok(_)
                        if replicated
                            && isr_and_min_insync(&shard, &item.tp).is_some_and(|(i, m)| i < m) =>
                    {
                        result.error_code = code::NOT_ENOUGH_REPLICAS_AFTER_APPEND;
                        result.error_message =
                            Some("the ISR shrank below min.insync.replicas".into());
                        return result;
                    }
                    other => other,
                };
                match appended {
                    Ok(r) => {
                        result.base_offset = r.base_offset.get();
                        result.log_append_time_ms = r.log_append_time_ms;
                        result.log_start_offset = r.log_start_offset.get();
                        shard
                            .stats
                            .produced_bytes
                            .set(shard.stats.produced_bytes.get() + size);
                        let records = (r.last_offset.get() - r.base_offset.get() + 1).max(0);
                        crate::metrics::with(|m| m.records_in(records as u64));
                    }
                    Err(e) => {
                        log_storage_error(&item.tp, &e, "append");
                        result.error_code = errors::storage(&e);
                        result.error_message = Some(e.to_string());
                        result.log_start_offset = log.log_start_offset().get();
                    }
                }
                result
            }
        })
        .collect();
    futures::future::join_all(appends)
}

/// The partition's ISR size and its topic's `min.insync.replicas`, from the image.
pub(crate) fn isr_and_min_insync(shard: &Shard, tp: &TopicPartition) -> Option<(usize, usize)> {
    let image = shard.metadata();
    let t = image.topic(&tp.topic)?;
    let p = t.partition_image(tp.partition)?;
    let min = crate::config::topic::value(&shard.config, &t.configs, "min.insync.replicas")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1);
    Some((p.isr.len(), min))
}

pub(crate) fn log_storage_error(tp: &TopicPartition, e: &StorageError, what: &str) {
    match e {
        StorageError::Io(_) | StorageError::CorruptRecord(_) => {
            tracing::error!(partition = %tp, error = %e, "{what} failed")
        }
        _ => tracing::debug!(partition = %tp, error = %e, "{what} refused"),
    }
}

/// Reads the items in order within `max_bytes`, the response budget left: each
/// partition gets at most what the ones before it left over, and only the first
/// with data may exceed it by one batch (Kafka's rule, so a consumer always gets
/// past a batch larger than its limits). Nothing is read into memory here: ranges
/// come back as file ranges, resident or not.
pub async fn fetch(shard: &Rc<Shard>, items: Vec<FetchItem>, max_bytes: usize) -> Vec<FetchResult> {
    let mut out = Vec::with_capacity(items.len());
    let mut left = max_bytes;
    let mut first = true;
    for mut item in items {
        item.max_bytes = item.max_bytes.min(left);
        item.min_one_batch &= first;
        let result = fetch_one(shard, item).await;
        let len = result.records.len();
        if len > 0 {
            first = false;
            left = left.saturating_sub(len);
        }
        out.push(result);
    }
    out
}

async fn fetch_one(shard: &Rc<Shard>, item: FetchItem) -> FetchResult {
    let mut result = FetchResult {
        tp: item.tp.clone(),
        error_code: code::NONE,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: FetchRecords::Bytes(Bytes::new()),
        diverging_epoch: None,
        aborted_transactions: Vec::new(),
    };
    let Some(log) = shard.logs.get(&item.tp) else {
        result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
        return result;
    };
    if let Some(replica) = item.replica {
        return fetch_for_follower(shard, item, replica, log, result).await;
    }
    result.high_watermark = log.high_watermark().get();
    result.last_stable_offset = log.last_stable_offset().get();
    result.log_start_offset = log.log_start_offset().get();
    if let Some(e) = epoch_error(shard, &item.tp, item.current_leader_epoch) {
        result.error_code = e;
        return result;
    }
    let visible_end = if item.read_committed {
        result.last_stable_offset
    } else {
        result.high_watermark
    };
    if item.fetch_offset == visible_end || item.max_bytes == 0 && !item.min_one_batch {
        return result;
    }
    // KIP-392 on a follower: an offset the leader has shown but this replica has not
    // committed yet (between its high watermark and its log end) is answered empty, not out
    // of range, so the consumer waits instead of resetting its position.
    if item.fetch_offset > result.high_watermark
        && item.fetch_offset <= log.log_end_offset().get()
        && !shard.leads(&item.tp)
    {
        return result;
    }
    let read = if item.read_committed {
        log.read_slice_committed(
            Offset(item.fetch_offset),
            item.max_bytes,
            item.min_one_batch,
        )
        .await
    } else {
        log.read_slice(
            Offset(item.fetch_offset),
            item.max_bytes,
            item.min_one_batch,
        )
        .await
    };
    let slice = match read {
        Ok(slice) => slice,
        Err(e) => {
            log_storage_error(&item.tp, &e, "read");
            result.error_code = errors::storage(&e);
            return result;
        }
    };
    result.high_watermark = slice.high_watermark.get();
    result.last_stable_offset = slice.last_stable_offset.get();
    result.log_start_offset = slice.log_start_offset.get();
    result.aborted_transactions = slice
        .aborted
        .iter()
        .map(|t| (t.producer_id, t.first_offset))
        .collect();
    if let Some(records) = file_records(slice) {
        result.records = records;
    }
    result
}

/// The records of a slice read: resident ranges go out by sendfile from the connection's
/// shard; the others are read there through io_uring, once the response's byte limit has
/// been applied. `None` when there is nothing to send.
fn file_records(slice: slice::SliceRead) -> Option<FetchRecords> {
    let (_path, file) = slice.file?;
    let range = slice::FileSlice {
        file,
        position: slice.position,
        len: slice.len,
    };
    Some(
        if slice::is_resident(&range.file, range.position, range.len) {
            FetchRecords::File(range)
        } else {
            FetchRecords::Cold(range)
        },
    )
}

/// A follower's fetch on the leader (Kafka's `Partition.fetchRecords` for a replica): the
/// diverging-epoch check first (v12: the follower's last fetched epoch must end where the
/// follower's log does, else it is told where it diverged), then the follower's progress is
/// recorded (its fetch offset is what it holds durably: the high watermark may move), then its
/// data is read up to the written end, by sendfile like any fetch.
async fn fetch_for_follower(
    shard: &Rc<Shard>,
    item: FetchItem,
    replica: ReplicaFetch,
    log: Rc<crate::storage::PartitionLog>,
    mut result: FetchResult,
) -> FetchResult {
    let fill = |r: &mut FetchResult| {
        r.high_watermark = log.high_watermark().get();
        r.last_stable_offset = log.last_stable_offset().get();
        r.log_start_offset = log.log_start_offset().get();
    };
    fill(&mut result);
    if let Some(e) = epoch_error(shard, &item.tp, item.current_leader_epoch) {
        result.error_code = e;
        return result;
    }
    if replica.last_fetched_epoch >= 0 {
        let end = end_offset_of_epoch(shard, &log, &item.tp, replica.last_fetched_epoch);
        match end {
            Some((epoch, end))
                if epoch != replica.last_fetched_epoch || end < item.fetch_offset =>
            {
                result.diverging_epoch = Some((epoch, end));
                return result;
            }
            // An epoch newer than this leader's: its epoch check answers the follower.
            _ => {}
        }
    }
    let written = log.written_offset().get();
    if item.fetch_offset < log.log_start_offset().get() || item.fetch_offset > written {
        result.error_code = code::OFFSET_OUT_OF_RANGE;
        return result;
    }
    if let Err(e) = shard
        .replicas
        .on_follower_fetch(&log, replica.replica_id, item.fetch_offset)
    {
        result.error_code = e;
        return result;
    }
    fill(&mut result);
    if item.fetch_offset == written || item.max_bytes == 0 {
        return result;
    }
    let slice = match log
        .read_slice_for_replica(Offset(item.fetch_offset), item.max_bytes)
        .await
    {
        Ok(slice) => slice,
        Err(e) => {
            log_storage_error(&item.tp, &e, "replica read");
            result.error_code = errors::storage(&e);
            return result;
        }
    };
    if let Some(records) = file_records(slice) {
        result.records = records;
    }
    result
}

/// Where `epoch` ends in this leader's log (Kafka's `endOffsetForEpoch` as the leader answers
/// it): the current epoch at the log end, an older one from the leader epoch cache; `None` for
/// an epoch newer than the current one or one below everything the cache holds.
fn end_offset_of_epoch(
    shard: &Shard,
    log: &crate::storage::PartitionLog,
    tp: &TopicPartition,
    requested: i32,
) -> Option<(i32, i64)> {
    let current = leader_epoch(shard, tp);
    if requested < 0 || requested > current {
        None
    } else if requested == current {
        Some((current, log.log_end_offset().get()))
    } else {
        match log.end_offset_for_epoch(LeaderEpoch(requested)) {
            Some((epoch, end)) => Some((epoch.0, end.get())),
            None => {
                let latest = log.leader_epoch_entries().last().map(|e| e.epoch.0);
                Some((latest.unwrap_or(requested), log.log_end_offset().get()))
            }
        }
    }
}

/// Resolves when any listed partition's high watermark (written end, for a follower's fetch;
/// last stable offset, for read_committed) passes its offset, or after `wait_ms`.
pub async fn wait_for_data(
    shard: &Rc<Shard>,
    items: Vec<(TopicPartition, Offset)>,
    wait_ms: u64,
    replica: bool,
    read_committed: bool,
) {
    let waits: Vec<_> = items
        .into_iter()
        .filter_map(|(tp, offset)| shard.logs.get(&tp).map(|log| (log, offset)))
        .map(|(log, offset)| {
            Box::pin(async move {
                if replica {
                    log.wait_written_above(offset).await
                } else if read_committed {
                    log.wait_lso_above(offset).await
                } else {
                    log.wait_hwm_above(offset).await
                }
            })
        })
        .collect();
    if waits.is_empty() {
        glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
        return;
    }
    let any = futures::future::select_all(waits);
    futures_lite::future::or(
        async {
            any.await;
        },
        async {
            glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
        },
    )
    .await;
}

/// ListOffsets: -1 latest, -2 earliest, -3 max timestamp, -4 earliest local, -5 latest tiered; else by time.
pub async fn list_offsets(
    shard: &Rc<Shard>,
    items: Vec<ListOffsetsItem>,
) -> Vec<ListOffsetsResult> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut r = ListOffsetsResult {
            tp: item.tp.clone(),
            error_code: code::NONE,
            timestamp: -1,
            offset: -1,
            leader_epoch: -1,
        };
        let log = match current_log(shard, &item.tp, item.current_leader_epoch) {
            Ok(log) => log,
            Err(e) => {
                r.error_code = e;
                out.push(r);
                continue;
            }
        };
        let epoch = leader_epoch(shard, &item.tp);
        // Kafka's `lastFetchableOffset`: lookups answer only offsets below it.
        let fetchable = if item.read_committed {
            log.last_stable_offset().get()
        } else {
            log.high_watermark().get()
        };
        match item.timestamp {
            -1 | -5 => {
                r.offset = fetchable;
                r.leader_epoch = epoch;
            }
            -2 | -4 => {
                r.offset = log.log_start_offset().get();
                r.leader_epoch = epoch;
            }
            -3 => match log.max_timestamp().await {
                Ok(Some((o, ts))) if o.get() < fetchable => {
                    r.offset = o.get();
                    r.timestamp = ts;
                    r.leader_epoch = epoch;
                }
                Ok(_) => {}
                Err(e) => r.error_code = errors::storage(&e),
            },
            ts if ts >= 0 => match log.offset_for_timestamp(ts).await {
                Ok(Some((o, found))) if o.get() < fetchable => {
                    r.offset = o.get();
                    r.timestamp = found;
                    r.leader_epoch = epoch;
                }
                Ok(_) => {}
                Err(e) => r.error_code = errors::storage(&e),
            },
            _ => r.error_code = code::INVALID_REQUEST,
        }
        out.push(r);
    }
    out
}

/// OffsetForLeaderEpoch on the owner (Kafka's `Partition.lastOffsetForLeaderEpoch`): the
/// current epoch ends at the log end offset; an older one where the leader epoch cache says
/// (`PartitionLog::end_offset_for_epoch`); a newer one is unknown (-1, -1). Kafka's leader
/// records its epoch in the cache when it takes over; here the epoch changes in the image, so
/// an epoch newer than the cache's latest (no batch written in it yet) ends at the log end.
pub fn epoch_end_offsets(shard: &Rc<Shard>, items: Vec<EpochEndItem>) -> Vec<EpochEndResult> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut r = EpochEndResult {
            tp: item.tp.clone(),
            error_code: code::NONE,
            leader_epoch: -1,
            end_offset: -1,
        };
        let log = match current_log(shard, &item.tp, item.current_leader_epoch) {
            Ok(log) => log,
            Err(e) => {
                r.error_code = e;
                out.push(r);
                continue;
            }
        };
        if let Some((epoch, end)) = end_offset_of_epoch(shard, &log, &item.tp, item.leader_epoch) {
            r.leader_epoch = epoch;
            r.end_offset = end;
        }
        out.push(r);
    }
    out
}

/// DeleteRecords: -1 means "up to the high watermark".
pub async fn delete_records(
    shard: &Rc<Shard>,
    items: Vec<(TopicPartition, i64)>,
) -> Vec<(TopicPartition, i16, i64)> {
    let mut out = Vec::with_capacity(items.len());
    for (tp, offset) in items {
        let Some(log) = shard.logs.get(&tp) else {
            out.push((tp, code::UNKNOWN_TOPIC_OR_PARTITION, -1));
            continue;
        };
        // Kafka: the log start offset never passes the first unstable offset.
        let hwm = log.last_stable_offset().get();
        let target = if offset == -1 { hwm } else { offset };
        if target < 0 || target > hwm {
            out.push((tp, code::OFFSET_OUT_OF_RANGE, log.log_start_offset().get()));
            continue;
        }
        match log.delete_records_before(Offset(target)).await {
            Ok(low) => out.push((tp, code::NONE, low.get())),
            Err(e) => {
                log_storage_error(&tp, &e, "delete records");
                out.push((tp, errors::storage(&e), log.log_start_offset().get()));
            }
        }
    }
    out
}

/// For each (partition, producer id, epoch): whether the producer has an ongoing transaction
/// in that partition at that epoch (its partition needs no KIP-890 verification then).
pub fn ongoing_transactions(shard: &Rc<Shard>, items: &[(TopicPartition, i64, i16)]) -> Vec<bool> {
    items
        .iter()
        .map(|(tp, pid, epoch)| {
            shard
                .logs
                .get(tp)
                .and_then(|log| log.producer_state(crate::model::ProducerId(*pid)))
                .is_some_and(|e| e.epoch == *epoch && e.current_txn_first_offset.is_some())
        })
        .collect()
}

pub fn log_dirs(shard: &Rc<Shard>, items: Vec<TopicPartition>) -> Vec<(TopicPartition, u64)> {
    let all = items.is_empty();
    shard
        .logs
        .partitions()
        .into_iter()
        .filter(|l| all || items.contains(l.topic_partition()))
        .map(|l| (l.topic_partition().clone(), l.size_bytes()))
        .collect()
}
