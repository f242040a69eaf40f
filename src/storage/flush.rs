//! The write and fsync half of `PartitionLog`: group-commit flushes, waiter resolution, failure
//! rollback, recovery-point checkpoints and clean close. See docs/on-disk-format.md for the
//! order of writes and fsyncs.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::Offset;

use super::error::StorageError;
use super::file_names::{
    offset_file_name, parse_offset_file_name, CLEAN_SHUTDOWN_FILE, LEADER_EPOCH_FILE,
    RECOVERY_POINT_FILE, SNAPSHOT_SUFFIX,
};
use super::log::PartitionLog;
use super::recovery::encode_checkpoint;
use super::segment::Segment;

/// Milliseconds since the epoch (for flush.ms bookkeeping only).
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    /// Writes every queued byte with one write, then fdatasyncs when the flush policy (or
    /// `force_fsync`) asks for it. One call covers every append queued before it started.
    pub async fn flush(&self, force_fsync: bool) -> Result<(), StorageError> {
        let _guard = self.lock_flush().await;
        if self.closed.get() {
            return Ok(());
        }
        if self.failed.get() {
            return Err(StorageError::LogFailed);
        }
        self.write_queued().await?;
        let policy = self.flush_policy();
        let offsets = self.offsets.get();
        if offsets.durable < offsets.written {
            let since = (wall_clock_ms() - self.last_fsync_ms.get()).max(0) as u64;
            if force_fsync
                || policy.is_sync()
                || policy.fsync_due(self.unflushed_messages.get(), since)
            {
                self.sync().await?;
            }
        }
        Ok(())
    }

    /// Whether a relaxed policy's fsync (timer or message count) is due without a new append
    /// (the flusher's tick asks). A failed fdatasync is never retried: the log fail-stops.
    pub(super) fn fsync_due(&self) -> bool {
        let offsets = self.offsets.get();
        let since = (wall_clock_ms() - self.last_fsync_ms.get()).max(0) as u64;
        let policy = self.flush_policy();
        !self.closed.get()
            && !self.failed.get()
            && offsets.durable < offsets.written
            && !policy.is_sync()
            && policy.fsync_due(self.unflushed_messages.get(), since)
    }

    async fn write_queued(&self) -> Result<(), StorageError> {
        let active = self.active_segment();
        if self.marker_sync_pending.get() && active.has_queued_write() {
            // The clean-shutdown marker's removal must be durable before the log changes.
            self.shard.io.sync_dir(&self.dir).await?;
            self.marker_sync_pending.set(false);
        }
        let Some((file, write, mark)) = active.take_write() else {
            return Ok(());
        };
        let len = write.buf.len();
        let end = write.end;
        let failure = match file.write_at(write.buf, write.pos).await {
            Ok(written) if written == len => None,
            Ok(written) => Some(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes"),
            )),
            Err(err) => Some(err),
        };
        if let Some(err) = failure {
            tracing::warn!(partition = %self.tp, error = %err, "segment write failed; rolling back");
            self.fail_write(&active, &err).await;
            return Err(StorageError::Io(err));
        }
        active.write_succeeded(end);
        let mut offsets = self.offsets.get();
        let messages = (mark.next_offset - offsets.written) as u64;
        offsets.written = mark.next_offset;
        if !self.flush_policy().is_sync() && self.hw_bound.get().is_none() {
            offsets.high_watermark = offsets.written;
            offsets.hwm_segment = active.base_offset().0;
            offsets.hwm_position = end;
        }
        self.set_offsets(offsets);
        self.unflushed_messages
            .set(self.unflushed_messages.get() + messages);
        self.resolve_waiters(offsets.written, false);
        self.write_waiters.wake_all();
        self.update_high_watermark();
        Ok(())
    }

    async fn sync(&self) -> Result<(), StorageError> {
        let active = self.active_segment();
        let committed = active.committed_mark();
        let file = active.log_file().await?;
        let started = std::time::Instant::now();
        let synced = file.fdatasync().await;
        crate::metrics::with(|m| m.fdatasync(started.elapsed()));
        if let Err(err) = synced {
            self.fail_stop(&err);
            return Err(StorageError::Io(err));
        }
        let mut offsets = self.offsets.get();
        assert_eq!(offsets.written, committed.next_offset);
        offsets.durable = offsets.written;
        if self.flush_policy().is_sync() && self.hw_bound.get().is_none() {
            offsets.high_watermark = offsets.durable;
            offsets.hwm_segment = active.base_offset().0;
            offsets.hwm_position = committed.size;
        }
        self.set_offsets(offsets);
        self.unflushed_messages.set(0);
        self.last_fsync_ms.set(wall_clock_ms());
        self.resolve_waiters(offsets.durable, true);
        self.update_high_watermark();
        Ok(())
    }

    /// Forgets everything after the last successful write: segment tail, indexes, producer
    /// state, log end offset; fails every waiting append above it. Nothing of a failed write
    /// becomes visible. Every in-memory change is made before the first `.await`: an append
    /// arriving while the file is truncated sees the rolled-back log, never half of it.
    async fn fail_write(&self, active: &Segment, err: &io::Error) {
        active.rollback();
        let committed = active.committed_mark();
        self.producers
            .borrow_mut()
            .truncate_to(Offset(committed.next_offset));
        self.epochs
            .borrow_mut()
            .truncate_from_end(committed.next_offset);
        let mut offsets = self.offsets.get();
        assert_eq!(offsets.written, committed.next_offset);
        offsets.log_end = committed.next_offset;
        self.set_offsets(offsets);
        self.forget_hw_marks_above(committed.next_offset);
        self.fail_waiters_above(committed.next_offset, err, false);
        self.fail_replica_waiters_above(committed.next_offset);
        // Best effort: drop any torn bytes so a crash before the next write cannot resurrect
        // them. The flush lock is held, so no write of the appends queued meanwhile starts
        // before this truncate.
        if let Ok(file) = active.log_file().await {
            if let Err(truncate_err) = file.truncate(committed.size).await {
                tracing::warn!(partition = %self.tp, error = %truncate_err, "truncate after failed write");
            }
        }
    }

    /// Fail-stop after an fdatasync error: Linux does not promise that a later fdatasync covers
    /// the writes made before the error, so nothing written since the last good one is trusted.
    /// Every waiter fails, appends are refused (`LogFailed`), the high watermark stays at the
    /// last durable offset, no fdatasync is retried, and no checkpoint or clean-shutdown marker
    /// is written: reopening the log (or restarting) recovers it as after an unclean stop.
    pub(super) fn fail_stop(&self, err: &io::Error) {
        if !self.failed.replace(true) {
            let offsets = self.offsets.get();
            tracing::error!(partition = %self.tp, error = %err, durable = offsets.durable,
                written = offsets.written, log_end = offsets.log_end,
                "fdatasync failed: the partition log stops (fail-stop) until it is reopened");
        }
        self.fail_waiters_above(i64::MIN, err, false);
        self.fail_replica_waiters_above(i64::MIN);
        self.hwm_waiters.wake_all();
        self.write_waiters.wake_all();
    }

    fn resolve_waiters(&self, upto: i64, durable: bool) {
        let mut waiters = self.waiters.borrow_mut();
        let mut keep = std::collections::VecDeque::with_capacity(waiters.len());
        for waiter in waiters.drain(..) {
            if waiter.end_offset <= upto && (durable || !waiter.durable) {
                let _ = waiter.tx.send(Ok(()));
            } else {
                keep.push_back(waiter);
            }
        }
        *waiters = keep;
    }

    /// Fails waiters whose batches end above `offset` (`only_durable`: only acks=all waiters).
    fn fail_waiters_above(&self, offset: i64, err: &io::Error, only_durable: bool) {
        let mut waiters = self.waiters.borrow_mut();
        let mut keep = std::collections::VecDeque::with_capacity(waiters.len());
        for waiter in waiters.drain(..) {
            if waiter.end_offset > offset && (waiter.durable || !only_durable) {
                let _ = waiter.tx.send(Err(StorageError::io_copy(err)));
            } else {
                keep.push_back(waiter);
            }
        }
        *waiters = keep;
    }

    /// Fails every waiter with `Closed` and wakes long polls (log closing or deleted).
    pub(super) fn close_waiters(&self) {
        self.closed.set(true);
        for waiter in self.waiters.borrow_mut().drain(..) {
            let _ = waiter.tx.send(Err(StorageError::Closed));
        }
        for waiter in self.replica_waiters.borrow_mut().drain(..) {
            let _ = waiter.tx.send(Err(StorageError::Closed));
        }
        self.hwm_waiters.wake_all();
        self.write_waiters.wake_all();
    }

    /// Persists the recovery point: active indexes (fdatasync), producer snapshot, then the
    /// checkpoint file naming the durable offset. Recovery scans only what lies above it.
    /// `flush_lock` is held only for the index write (rolls rewrite the same files) and the
    /// synchronous capture of the durable offset and producer state; the snapshot and the
    /// checkpoint file are written under `checkpoint_lock`, so group commits go on meanwhile.
    pub async fn checkpoint(&self) -> Result<(), StorageError> {
        let truncations = self.truncations.get();
        let (durable, snapshot) = {
            let _guard = self.lock_flush().await;
            let durable = self.offsets.get().durable;
            if durable == self.recovery_point.get() || self.failed.get() || self.closed.get() {
                return Ok(());
            }
            let index_bytes = self.config.borrow().segment_index_bytes;
            self.active_segment()
                .write_indexes(false, index_bytes)
                .await?;
            // No await from here to the end of the block: flushes wait, so `durable` holds.
            assert_eq!(durable, self.offsets.get().durable);
            (durable, self.producer_snapshot(durable))
        };
        let _checkpoint = self.checkpoint_lock.lock().await;
        if durable <= self.recovery_point.get()
            || self.failed.get()
            || self.closed.get()
            || truncations != self.truncations.get()
        {
            return Ok(());
        }
        self.write_recovery_point(durable, snapshot).await
    }

    /// Producer state as of `offset`, encoded (synchronous).
    pub(super) fn producer_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut producers = self.producers.borrow().clone();
        producers.truncate_to(Offset(offset));
        producers.encode_snapshot()
    }

    /// The producer snapshot at `offset`, then the recovery-point file. Called with
    /// `checkpoint_lock` held.
    pub(super) async fn write_recovery_point(
        &self,
        offset: i64,
        snapshot: Vec<u8>,
    ) -> Result<(), StorageError> {
        assert!(self.checkpoint_lock.is_locked());
        let io = self.shard.io.clone();
        // The epochs of the batches below the new recovery point are durable before it is
        // (recovery does not scan those batches again).
        let (epochs, changes) = {
            let epochs = self.epochs.borrow();
            (epochs.encode(), epochs.changes())
        };
        if changes != self.epochs_written.get() {
            io.write_file_atomic(&self.dir.join(LEADER_EPOCH_FILE), epochs)
                .await?;
            self.epochs_written.set(changes);
        }
        // Likewise the aborted-transaction entries of the markers below it.
        self.write_txn_index().await?;
        let path = self
            .dir
            .join(offset_file_name(Offset(offset), SNAPSHOT_SUFFIX));
        io.write_file_atomic(&path, snapshot).await?;
        for name in io.list_dir(&self.dir).await? {
            match parse_offset_file_name(&name, SNAPSHOT_SUFFIX) {
                Some(old) if old.0 < offset => io.remove_file(&self.dir.join(&name)).await?,
                _ => {}
            }
        }
        let checkpoint = encode_checkpoint(&self.tp, Offset(offset));
        io.write_file_atomic(&self.dir.join(RECOVERY_POINT_FILE), checkpoint)
            .await?;
        self.recovery_point.set(offset);
        Ok(())
    }

    /// Clean close: write and fdatasync everything, truncate the active `.log` to its logical
    /// size, trim its indexes, snapshot producer state, checkpoint, then the clean-shutdown
    /// marker. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.closed.get() {
            return Ok(());
        }
        let _append = self.append_lock.lock().await;
        if let Err(err) = self.flush(true).await {
            // A failed log is left for recovery: no truncation, checkpoint or marker.
            self.close_waiters();
            return Err(err);
        }
        let _guard = self.lock_flush().await;
        self.close_waiters();
        let index_bytes = self.config.borrow().segment_index_bytes;
        self.active_segment().close_active(index_bytes).await?;
        let end = self.offsets.get().log_end;
        let snapshot = self.producer_snapshot(end);
        let _checkpoint = self.checkpoint_lock.lock().await;
        self.write_recovery_point(end, snapshot).await?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        self.shard.io.write_file_atomic(&marker, Vec::new()).await?;
        Ok(())
    }
}
