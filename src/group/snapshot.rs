//! Snapshots of an offsets partition: the whole live state of its groups as one batch, after
//! which the log start moves past what it supersedes (how `__consumer_offsets` stays small).
//! Runs on the partition's coordinator shard, under the partition's write lock.

use bytes::{Bytes, BytesMut};

use super::coordinator::{encode_batch, Group, GroupCoordinator, SNAPSHOT_ATTEMPTS_MAX};
use super::records::{BatchKind, OffsetsRecord};
use super::{now_ms, GroupError, OFFSETS_TOPIC};
use crate::limits::GROUP_SNAPSHOT_BATCH_BYTES_MAX;
use crate::model::TopicPartition;

impl GroupCoordinator {
    /// Writes a snapshot of `partition` once enough was appended since the last one.
    pub(crate) async fn maybe_snapshot(&self, partition: i32) {
        let state = self.partition_state(partition);
        let due = self
            .config
            .snapshot_bytes_min
            .max(2 * state.last_snapshot_bytes.get());
        if state.bytes_since_snapshot.get() >= due {
            state.bytes_since_snapshot.set(0);
            if let Err(e) = self.snapshot(partition).await {
                tracing::warn!(partition, error = %e, "group state snapshot failed");
            }
        }
    }

    /// Writes every live record of the partition as one batch, then drops what precedes it.
    ///
    /// The batch takes its place in the log at the moment the state is read, so every record
    /// applied before is below it and every later one above it. Transaction markers appended
    /// outside `write_lock` (the `txn_hook` path) are the exception: one placed below the
    /// snapshot but applied after the state was read would make the snapshot stale, so when
    /// one was applied meanwhile, the log is kept and the snapshot written again.
    pub(crate) async fn snapshot(&self, partition: i32) -> Result<(), GroupError> {
        let state = self.partition_state(partition);
        let _guard = state.write_lock.lock().await;
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        for _ in 0..SNAPSHOT_ATTEMPTS_MAX {
            let log = self
                .logs
                .get(&tp)
                .ok_or(GroupError::OffsetsPartitionMissing(partition))?;
            let markers_before = state.markers_applied.get();
            let place = log.reserve_append();
            let records = self.live_records(partition);
            let count = records.len();
            let base = if records.is_empty() {
                drop(place);
                log.log_end_offset()
            } else {
                let batch = encode_snapshot(records, now_ms())?;
                let (base, bytes) = self.append_encoded(partition, Some(place), batch).await?;
                state.last_snapshot_bytes.set(bytes);
                base
            };
            if state.markers_applied.get() != markers_before {
                tracing::warn!(
                    partition,
                    "a transaction marker was applied while the snapshot was written; writing it again"
                );
                continue;
            }
            log.delete_records_before(base)
                .await
                .map_err(|e| GroupError::Append(e.to_string()))?;
            tracing::info!(
                partition,
                records = count,
                log_start = base.0,
                "group state snapshot written"
            );
            return Ok(());
        }
        // Due again at the next write: a later snapshot supersedes a stale one on replay.
        state.bytes_since_snapshot.set(u64::MAX / 2);
        Err(GroupError::Append(
            "transaction markers kept landing while the snapshot was written".into(),
        ))
    }

    /// The records that rebuild the current state of every group in `partition`.
    pub(crate) fn live_records(&self, partition: i32) -> Vec<OffsetsRecord> {
        let groups = self.groups.borrow();
        let mut out = Vec::new();
        for (id, g) in groups.iter() {
            if self.partition_for(id) != partition {
                continue;
            }
            match g {
                Group::Classic(c) => out.push(OffsetsRecord::Group {
                    group: id.clone(),
                    value: Some(c.to_record()),
                }),
                Group::Consumer(c) => out.push(OffsetsRecord::ConsumerGroup {
                    group: id.clone(),
                    epoch: Some(c.group_epoch()),
                }),
            }
            for (tp, o) in g.offsets().iter() {
                out.push(OffsetsRecord::Offset {
                    group: id.clone(),
                    tp: tp.clone(),
                    value: Some(o.clone()),
                });
            }
            for (producer_id, txn) in g.offsets().pending() {
                for (tp, p) in &txn.offsets {
                    out.push(OffsetsRecord::PendingOffset {
                        group: id.clone(),
                        tp: tp.clone(),
                        producer_id,
                        pending: super::records::PendingOffsetValue {
                            producer_epoch: txn.producer_epoch,
                            record_offset: p.record_offset,
                            superseded: p.superseded,
                            value: p.value.clone(),
                        },
                    });
                }
            }
        }
        out
    }
}

/// Framing bytes a record adds to its key and value in a v2 batch, at most (attributes,
/// varints, header).
const RECORD_OVERHEAD_BYTES: usize = 64;

/// Encodes a snapshot as batches of at most [`GROUP_SNAPSHOT_BATCH_BYTES_MAX`] bytes of
/// records (one record alone may exceed it), appended together. Every pending transactional
/// offset is in the first batch, so the batch where replay forgets the partition's open
/// transactions is the one that states them all again: a snapshot torn after it (a crash
/// before the append was durable) still leaves every open transaction; the rest only restates.
pub(crate) fn encode_snapshot(records: Vec<OffsetsRecord>, now: i64) -> Result<Bytes, GroupError> {
    encode_snapshot_in(records, now, GROUP_SNAPSHOT_BATCH_BYTES_MAX)
}

/// [`encode_snapshot`] with batches of at most `batch_bytes_max` bytes of records.
pub(crate) fn encode_snapshot_in(
    records: Vec<OffsetsRecord>,
    now: i64,
    batch_bytes_max: usize,
) -> Result<Bytes, GroupError> {
    let (pending, rest): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|r| matches!(r, OffsetsRecord::PendingOffset { .. }));
    let mut out = BytesMut::new();
    let mut chunk_bytes: usize = pending.iter().map(record_bytes).sum();
    // The first batch holds every pending offset, whatever their size (bounded by the log's
    // batch bound: past it the snapshot fails and the log is kept).
    let mut chunk: Vec<OffsetsRecord> = pending;
    let mut first = true;
    for r in rest {
        let n = record_bytes(&r);
        if !chunk.is_empty() && chunk_bytes + n > batch_bytes_max {
            out.extend_from_slice(&encode_batch(&chunk, now, BatchKind::Snapshot { first })?);
            first = false;
            chunk.clear();
            chunk_bytes = 0;
        }
        chunk.push(r);
        chunk_bytes += n;
    }
    if !chunk.is_empty() {
        out.extend_from_slice(&encode_batch(&chunk, now, BatchKind::Snapshot { first })?);
    }
    Ok(out.freeze())
}

fn record_bytes(r: &OffsetsRecord) -> usize {
    let (key, value) = r.encode();
    key.len() + value.as_ref().map_or(0, |v| v.len()) + RECORD_OVERHEAD_BYTES
}
