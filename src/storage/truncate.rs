//! Log truncation: Kafka's `UnifiedLog.truncateTo` and `truncateFullyAndStartAt`. Used by the
//! Raft metadata log (entries that conflict with the leader's) and by follower replication.
//!
//! Crash safety comes from an intent file, `truncation-checkpoint`, written durably before the
//! first change and removed when every file agrees with the new log: a power cut at any step
//! leaves either no intent (the old log, untouched) or the intent, which recovery completes
//! (the new log). Steps in fsync order and the recovery of each: docs/on-disk-format.md,
//! "Truncation".
//!
//! Lives with its partition log on the shard (core) that owns the partition.

use std::io;
use std::path::Path;
use std::rc::Rc;

use crate::model::Offset;

use super::error::StorageError;
use super::file_names::{
    parse_offset_file_name, LOG_START_OFFSET_FILE, SNAPSHOT_SUFFIX, TRUNCATION_FILE,
};
use super::io::StorageIo;
use super::log::{Offsets, PartitionLog};
use super::producer_state::ProducerStateManager;
use super::recovery::encode_checkpoint;
use super::segment::{Segment, SegmentCut};

/// What a truncation in progress is doing: the content of `truncation-checkpoint`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum TruncationIntent {
    /// `truncate_to`: the log ends at this offset (the base offset of a batch, or the end).
    EndAt(i64),
    /// `truncate_fully_and_start_at`: the log is empty and starts at this offset.
    StartAt(i64),
}

impl TruncationIntent {
    /// `version: 0\nend_at: <offset>\n` or `version: 0\nstart_at: <offset>\n`.
    pub(super) fn encode(self) -> Vec<u8> {
        let (key, offset) = match self {
            TruncationIntent::EndAt(offset) => ("end_at", offset),
            TruncationIntent::StartAt(offset) => ("start_at", offset),
        };
        format!("version: 0\n{key}: {offset}\n").into_bytes()
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<TruncationIntent> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "version: 0" {
            return None;
        }
        let (key, value) = lines.next()?.split_once(": ")?;
        let offset = value.trim().parse::<i64>().ok().filter(|o| *o >= 0)?;
        match key {
            "end_at" => Some(TruncationIntent::EndAt(offset)),
            "start_at" => Some(TruncationIntent::StartAt(offset)),
            _ => None,
        }
    }
}

/// The intent file of `dir`, if a truncation was interrupted there. A damaged one is an error:
/// recovery must not guess which log end was meant.
pub(super) async fn read_intent(
    io: &dyn StorageIo,
    dir: &Path,
) -> Result<Option<TruncationIntent>, StorageError> {
    let path = dir.join(TRUNCATION_FILE);
    let Some(bytes) = io.read_file(&path).await? else {
        return Ok(None);
    };
    match TruncationIntent::decode(&bytes) {
        Some(intent) => Ok(Some(intent)),
        None => Err(StorageError::CorruptRecord(format!(
            "damaged {}",
            path.display()
        ))),
    }
}

/// Removes the intent file and fsyncs the directory: the truncation is complete (and every
/// unlink before it durable).
pub(super) async fn finish_intent(io: &dyn StorageIo, dir: &Path) -> io::Result<()> {
    io.remove_file(&dir.join(TRUNCATION_FILE)).await?;
    io.sync_dir(dir).await
}

/// Unlinks the producer snapshots above `offset`: they describe batches the log no longer has
/// (durable with the next directory fsync).
pub(super) async fn remove_snapshots_above(
    io: &dyn StorageIo,
    dir: &Path,
    offset: i64,
) -> io::Result<()> {
    for name in io.list_dir(dir).await? {
        if parse_offset_file_name(&name, SNAPSHOT_SUFFIX).is_some_and(|o| o.0 > offset) {
            io.remove_file(&dir.join(&name)).await?;
        }
    }
    Ok(())
}

impl PartitionLog {
    /// Kafka's `UnifiedLog.truncateTo`: removes every record at offset >= `target`. A target at
    /// or above the log end offset changes nothing; one below the first segment or the log
    /// start offset empties the log, as [`truncate_fully_and_start_at`] at `target`.
    ///
    /// Batch granularity, as Kafka: the batch holding `target` is removed whole, so the log
    /// end offset becomes that batch's base offset (<= `target`; equal when `target` is a batch
    /// boundary, the normal case for Raft and replication). Read [`log_end_offset`] for it.
    ///
    /// Takes its turn in the append queue (appends placed before it are stored first, later
    /// ones after it and get offsets from the new log end), writes and fdatasyncs everything
    /// queued, then excludes flushes, checkpoints and segment deletions. The high watermark
    /// (and the recovery point) are clamped to the new log end; fetches waiting for the high
    /// watermark are not woken (it only went down); producer state forgets the removed
    /// batches. Memory changes in one step before the file work, so readers see the old log
    /// or the new one.
    ///
    /// Durable when it returns: all of it (segments above deleted, the cut segment and its
    /// indexes fdatasync'ed, producer snapshot and recovery point rewritten, directory
    /// fsynced). On an I/O error from the first file change on, the log fail-stops
    /// ([`StorageError::LogFailed`] afterwards) and reopening it (`LogManager::open_partition`
    /// or a restart) recovers the old log end or, when the intent file was durable, completes
    /// the truncation.
    ///
    /// [`truncate_fully_and_start_at`]: Self::truncate_fully_and_start_at
    /// [`log_end_offset`]: Self::log_end_offset
    pub async fn truncate_to(&self, target: Offset) -> Result<(), StorageError> {
        if target.0 < 0 {
            return Err(self.out_of_range(target));
        }
        let _append = self.append_lock.lock().await;
        let _delete = self.delete_lock.lock().await;
        self.check_writable()?;
        if target.0 >= self.offsets.get().log_end {
            return Ok(());
        }
        self.flush(true).await?;
        let _flush = self.lock_flush().await;
        let _checkpoint = self.checkpoint_lock.lock().await;
        self.check_writable()?;
        self.sync_marker_removal().await?;
        let offsets = self.offsets.get();
        let first_base = self.segments.borrow().keys().next().copied();
        if first_base.is_none_or(|base| target.0 < base) || target.0 < offsets.log_start {
            return self.start_at_locked(target.0).await;
        }
        let Some(segment) = self.segments_from(target.0).into_iter().next() else {
            unreachable!("a segment at or below the target exists");
        };
        let cut = segment.plan_cut(target.0).await?;
        if cut.next_offset < offsets.log_start {
            // The batch holding `target` starts below the log start offset (DeleteRecords
            // moved it into a batch): nothing visible remains.
            return self.start_at_locked(cut.next_offset).await;
        }
        let end = cut.next_offset;
        if let Err(err) = self.write_intent(TruncationIntent::EndAt(end)).await {
            return Err(self.fail_truncation(err));
        }
        let doomed = self.apply_truncation(&segment, &cut);
        tracing::info!(partition = %self.tp, target = target.0, log_end = end,
            old_log_end = offsets.log_end, deleted_segments = doomed.len(), "truncating the log");
        if let Err(err) = self.truncate_files(&segment, &doomed, end).await {
            return Err(self.fail_truncation(err));
        }
        Ok(())
    }

    /// Kafka's `UnifiedLog.truncateFullyAndStartAt`: deletes every segment and starts an empty
    /// one at `offset`; log start offset = log end offset = high watermark = `offset` (lower or
    /// higher than before). Producer state is cleared. Ordering, locks and durability as
    /// [`truncate_to`](Self::truncate_to): all of it is durable when it returns.
    pub async fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<(), StorageError> {
        if offset.0 < 0 {
            return Err(self.out_of_range(offset));
        }
        let _append = self.append_lock.lock().await;
        let _delete = self.delete_lock.lock().await;
        self.check_writable()?;
        self.flush(true).await?;
        let _flush = self.lock_flush().await;
        let _checkpoint = self.checkpoint_lock.lock().await;
        self.check_writable()?;
        self.sync_marker_removal().await?;
        self.start_at_locked(offset.0).await
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        if self.closed.get() || self.shard.closed.get() {
            return Err(StorageError::Closed);
        }
        if self.failed.get() {
            return Err(StorageError::LogFailed);
        }
        Ok(())
    }

    /// The clean-shutdown marker's removal is durable before the log changes (as before the
    /// first write after a clean open).
    async fn sync_marker_removal(&self) -> Result<(), StorageError> {
        if self.marker_sync_pending.get() {
            self.shard.io.sync_dir(&self.dir).await?;
            self.marker_sync_pending.set(false);
        }
        Ok(())
    }

    async fn write_intent(&self, intent: TruncationIntent) -> Result<(), StorageError> {
        let path = self.dir.join(TRUNCATION_FILE);
        Ok(self
            .shard
            .io
            .write_file_atomic(&path, intent.encode())
            .await?)
    }

    /// Fail-stop after an I/O error once the intent file may be durable: the in-memory log and
    /// the files may disagree until recovery completes the truncation (or finds no intent).
    fn fail_truncation(&self, err: StorageError) -> StorageError {
        let io_err = match &err {
            StorageError::Io(err) => io::Error::new(err.kind(), err.to_string()),
            other => io::Error::other(other.to_string()),
        };
        tracing::error!(partition = %self.tp, error = %io_err,
            "truncation failed: the partition log stops until it is reopened");
        self.fail_stop(&io_err);
        err
    }

    /// The in-memory half of `truncate_to`, synchronous: removes the segments above `segment`
    /// from the map (returned newest first), cuts `segment`, and lowers the offsets, the
    /// producer state and the recovery point.
    fn apply_truncation(&self, segment: &Rc<Segment>, cut: &SegmentCut) -> Vec<Rc<Segment>> {
        let end = cut.next_offset;
        let doomed: Vec<Rc<Segment>> = {
            let mut segments = self.segments.borrow_mut();
            let later: Vec<i64> = segments
                .range(segment.base_offset().0 + 1..)
                .map(|(base, _)| *base)
                .collect();
            later
                .iter()
                .rev()
                .filter_map(|base| segments.remove(base))
                .collect()
        };
        segment.apply_cut(cut);
        self.producers.borrow_mut().truncate_to(Offset(end));
        self.truncate_txns(end);
        {
            let mut txn_index = self.txn_index.borrow_mut();
            for gone in &doomed {
                txn_index.remove_segment(gone.base_offset().0);
            }
        }
        self.epochs.borrow_mut().truncate_from_end(end);
        let mut offsets = self.offsets.get();
        assert_eq!(
            offsets.durable, offsets.log_end,
            "truncation after a full flush"
        );
        offsets.log_end = end;
        offsets.written = end;
        offsets.durable = end;
        if offsets.high_watermark > end {
            offsets.high_watermark = end;
            offsets.hwm_segment = segment.base_offset().0;
            offsets.hwm_position = cut.position;
        }
        self.set_offsets(offsets);
        self.recovery_point.set(self.recovery_point.get().min(end));
        self.truncations.set(self.truncations.get() + 1);
        self.forget_hw_marks_above(end);
        self.fail_replica_waiters_above(end);
        self.write_waiters.wake_all();
        assert!(
            self.waiters.borrow().iter().all(|w| w.end_offset <= end),
            "every append was resolved by the flush before the truncation"
        );
        doomed
    }

    /// The file half of `truncate_to`, in fsync order: each segment above (newest first)
    /// renamed to `.deleted` and the directory fsynced; the cut segment truncated and
    /// fdatasync'ed, its indexes rewritten and fdatasync'ed; the `.deleted` files unlinked;
    /// snapshots above the end removed; a snapshot and the recovery point at the end written
    /// atomically; the intent removed and the directory fsynced.
    async fn truncate_files(
        &self,
        segment: &Segment,
        doomed: &[Rc<Segment>],
        end: i64,
    ) -> Result<(), StorageError> {
        let io = self.shard.io.clone();
        for gone in doomed {
            gone.mark_deleted().await?;
            io.sync_dir(&self.dir).await?;
        }
        let index_bytes = self.config.borrow().segment_index_bytes;
        segment.cut_files(index_bytes).await?;
        for gone in doomed {
            gone.delete_marked_files().await?;
        }
        self.finish_files(end).await
    }

    /// Snapshot and recovery point at `end`, then the intent's removal (both truncations).
    async fn finish_files(&self, end: i64) -> Result<(), StorageError> {
        let io = self.shard.io.clone();
        remove_snapshots_above(io.as_ref(), &self.dir, end).await?;
        let snapshot = self.producer_snapshot(end);
        self.write_recovery_point(end, snapshot).await?;
        finish_intent(io.as_ref(), &self.dir).await?;
        Ok(())
    }

    /// `truncate_fully_and_start_at` with every lock held and everything queued flushed.
    async fn start_at_locked(&self, start: i64) -> Result<(), StorageError> {
        if let Err(err) = self.write_intent(TruncationIntent::StartAt(start)).await {
            return Err(self.fail_truncation(err));
        }
        // In memory, synchronously. The segment map stays empty until the new segment exists:
        // every user of the active segment holds a lock this truncation holds, and readers
        // find nothing between the log start offset and the high watermark.
        let doomed: Vec<Rc<Segment>> = std::mem::take(&mut *self.segments.borrow_mut())
            .into_values()
            .rev()
            .collect();
        *self.producers.borrow_mut() = ProducerStateManager::default();
        self.txn_index.borrow_mut().clear();
        self.unreplicated_txns.borrow_mut().clear();
        self.epochs.borrow_mut().clear();
        let old = self.offsets.get();
        assert_eq!(old.durable, old.log_end, "truncation after a full flush");
        self.set_offsets(Offsets {
            log_start: start,
            high_watermark: start,
            log_end: start,
            written: start,
            durable: start,
            hwm_segment: start,
            hwm_position: 0,
            leader_epoch: old.leader_epoch,
        });
        self.recovery_point
            .set(self.recovery_point.get().min(start));
        self.truncations.set(self.truncations.get() + 1);
        self.forget_hw_marks_above(i64::MIN);
        self.fail_replica_waiters_above(i64::MIN);
        self.write_waiters.wake_all();
        assert!(
            self.waiters.borrow().is_empty(),
            "every append was resolved by the flush before the truncation"
        );
        tracing::info!(partition = %self.tp, start, old_log_start = old.log_start,
            old_log_end = old.log_end, deleted_segments = doomed.len(),
            "truncating the log fully");
        if let Err(err) = self.start_at_files(&doomed, start).await {
            return Err(self.fail_truncation(err));
        }
        Ok(())
    }

    /// The file half of a full truncation, in fsync order: every segment (newest first)
    /// renamed to `.deleted` and the directory fsynced; the new segment created and the
    /// directory fsynced; the `.deleted` files unlinked; `log-start-offset-checkpoint`
    /// written atomically; then as `truncate_to` (snapshots, recovery point, intent).
    async fn start_at_files(&self, doomed: &[Rc<Segment>], start: i64) -> Result<(), StorageError> {
        let io = self.shard.io.clone();
        for gone in doomed {
            gone.mark_deleted().await?;
            io.sync_dir(&self.dir).await?;
        }
        let index_bytes = self.config.borrow().segment_index_bytes;
        let segment = Segment::create(io.clone(), &self.dir, Offset(start), index_bytes).await?;
        io.sync_dir(&self.dir).await?;
        self.segments.borrow_mut().insert(start, segment);
        for gone in doomed {
            gone.delete_marked_files().await?;
        }
        let checkpoint = encode_checkpoint(&self.tp, Offset(start));
        io.write_file_atomic(&self.dir.join(LOG_START_OFFSET_FILE), checkpoint)
            .await?;
        self.finish_files(start).await
    }
}

#[cfg(test)]
mod tests {
    use super::TruncationIntent;

    #[test]
    fn intent_round_trips() {
        for intent in [TruncationIntent::EndAt(42), TruncationIntent::StartAt(0)] {
            assert_eq!(TruncationIntent::decode(&intent.encode()), Some(intent));
        }
        assert_eq!(TruncationIntent::decode(b"version: 0\nend_at: -1\n"), None);
        assert_eq!(TruncationIntent::decode(b"version: 1\nend_at: 4\n"), None);
        assert_eq!(TruncationIntent::decode(b"version: 0\n"), None);
    }
}
