//! The replicated half of `PartitionLog`: the high watermark as the replication layer sets it,
//! acks=all waiters that wait for it, the appends of a follower, and the written limit a
//! leader serves its followers from.
//!
//! A log is *local* (the single-node broker, the Raft metadata log) or *replicated* (a
//! partition of a cluster). A local log's high watermark follows its own flushes: the durable
//! end (default policy) or the written end (a relaxed `flush.*` policy). A replicated log's high
//! watermark is the smaller of that local end and a *bound* the replication layer sets:
//! - on a leader, the smallest offset the other ISR members reported durable (`i64::MAX` when
//!   the ISR is the leader alone);
//! - on a follower, the leader's high watermark from the last fetch response.
//!
//! The high watermark must stop at a batch boundary with a known byte position (readers send
//! file ranges up to it), so appends of a replicated log record where each batch ends
//! (`hw_marks`, bounded by `limits::HW_MARKS_PER_PARTITION_MAX`; the oldest is dropped when
//! full, which only makes the high watermark wait for a later boundary), and the written end of
//! the active segment is always a boundary too.

use bytes::Bytes;
use futures::channel::oneshot;

use super::batch;
use super::config::AppendResult;
use super::error::StorageError;
use super::log::{AppendMode, Offsets, PartitionLog};
use super::segment::BatchEdit;
use crate::model::Offset;

/// The end of one appended batch: its offset end and its byte end in its segment.
#[derive(Copy, Clone, Debug)]
pub(super) struct HwMark {
    pub end_offset: i64,
    pub segment: i64,
    pub position: u64,
}

/// An acks=all append of a replicated log waiting for the high watermark.
pub(super) struct ReplicaWaiter {
    pub end_offset: i64,
    pub tx: oneshot::Sender<Result<(), StorageError>>,
}

impl PartitionLog {
    /// Sets the replication bound of the high watermark (see the module docs), making the log
    /// replicated if it was not. The high watermark never moves back; it moves forward at once
    /// where the new bound allows.
    pub fn set_hw_bound(&self, bound: i64) {
        if self.hw_bound.replace(Some(bound)).is_none() {
            self.hw_marks.borrow_mut().clear();
        }
        self.update_high_watermark();
    }

    /// Makes this (freshly opened) log replicated with its high watermark at the log start:
    /// a replica does not know after a restart how much of its log the ISR held (Kafka keeps
    /// `replication-offset-checkpoint` for that; Sluice asks the replication again), so its
    /// high watermark starts low and rises as the leader's (or, on a leader, the followers')
    /// reports allow. Records above the true high watermark are thus never shown to consumers
    /// because this replica happened to hold them.
    pub fn start_replicated_from_log_start(&self) {
        if self.hw_bound.get().is_some() {
            return;
        }
        let mut offsets = self.offsets.get();
        let first = self.segments.borrow().keys().next().copied();
        offsets.high_watermark = offsets.log_start;
        offsets.hwm_segment = first.unwrap_or(offsets.log_start);
        offsets.hwm_position = 0;
        self.offsets.set(offsets);
        offsets.check();
        self.hw_bound.set(Some(offsets.log_start));
        self.hw_marks.borrow_mut().clear();
        self.hold_completed_txns_above_hw();
    }

    /// The replication bound, if the log is replicated.
    pub fn hw_bound(&self) -> Option<i64> {
        self.hw_bound.get()
    }

    pub fn is_replicated(&self) -> bool {
        self.hw_bound.get().is_some()
    }

    /// The offset end of the bytes written to the segment files (device-confirmed).
    pub fn written_offset(&self) -> Offset {
        Offset(self.offsets.get().written)
    }

    /// The offset end of the bytes fdatasync'ed.
    pub fn durable_offset(&self) -> Offset {
        Offset(self.offsets.get().durable)
    }

    /// What this log itself lets the high watermark reach: the durable end under the default
    /// policy, the written end under a relaxed one.
    pub fn local_commit_offset(&self) -> Offset {
        let o = self.offsets.get();
        Offset(if self.flush_policy().is_sync() {
            o.durable
        } else {
            o.written
        })
    }

    /// Offsets as a read up to the written end sees them (`high_watermark` = written end at
    /// the active segment's written byte end): what followers are served.
    pub(super) fn written_limit(&self) -> Offsets {
        let mut o = self.offsets.get();
        let active = self.active_segment();
        let committed = active.committed_mark();
        if committed.next_offset == o.written {
            o.high_watermark = o.written;
            o.hwm_segment = active.base_offset().0;
            o.hwm_position = committed.size;
        }
        o
    }

    /// Records where the batches just appended end (replicated logs only).
    pub(super) fn record_hw_marks(&self, segment: i64, marks: impl Iterator<Item = (i64, u64)>) {
        if self.hw_bound.get().is_none() {
            return;
        }
        let mut all = self.hw_marks.borrow_mut();
        for (end_offset, position) in marks {
            if all.len() >= crate::limits::HW_MARKS_PER_PARTITION_MAX {
                all.pop_front();
            }
            all.push_back(HwMark {
                end_offset,
                segment,
                position,
            });
        }
    }

    /// Drops the marks above `end` (truncation, failed write).
    pub(super) fn forget_hw_marks_above(&self, end: i64) {
        self.hw_marks.borrow_mut().retain(|m| m.end_offset <= end);
    }

    /// Moves a replicated log's high watermark to the largest batch boundary at or below
    /// min(local commit offset, bound), and answers the acks=all appends it covers.
    pub(super) fn update_high_watermark(&self) {
        let Some(bound) = self.hw_bound.get() else {
            return;
        };
        let mut offsets = self.offsets.get();
        let target = self.local_commit_offset().0.min(bound);
        if target > offsets.high_watermark {
            let active = self.active_segment();
            let committed = active.committed_mark();
            let mark =
                if committed.next_offset <= target && committed.next_offset == offsets.written {
                    Some(HwMark {
                        end_offset: committed.next_offset,
                        segment: active.base_offset().0,
                        position: committed.size,
                    })
                } else {
                    self.hw_marks
                        .borrow()
                        .iter()
                        .rev()
                        .find(|m| m.end_offset <= target)
                        .copied()
                };
            if let Some(mark) = mark.filter(|m| m.end_offset > offsets.high_watermark) {
                offsets.high_watermark = mark.end_offset;
                offsets.hwm_segment = mark.segment;
                offsets.hwm_position = mark.position;
                self.set_offsets(offsets);
                self.hw_marks
                    .borrow_mut()
                    .retain(|m| m.end_offset > mark.end_offset);
            }
        }
        let hwm = self.offsets.get().high_watermark;
        let mut waiters = self.replica_waiters.borrow_mut();
        while waiters.front().is_some_and(|w| w.end_offset <= hwm) {
            if let Some(w) = waiters.pop_front() {
                let _ = w.tx.send(Ok(()));
            }
        }
    }

    /// A waiter for the high watermark to reach `end_offset` (acks=all on a replicated log).
    pub(super) fn wait_for_hwm(
        &self,
        end_offset: i64,
    ) -> Option<oneshot::Receiver<Result<(), StorageError>>> {
        if end_offset <= self.offsets.get().high_watermark {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.replica_waiters
            .borrow_mut()
            .push_back(ReplicaWaiter { end_offset, tx });
        Some(rx)
    }

    /// Fails every acks=all append still waiting for the high watermark (this replica stopped
    /// leading: it cannot acknowledge what it can no longer replicate).
    pub fn fail_replica_waiters(&self) {
        self.fail_replica_waiters_above(i64::MIN);
    }

    /// Fails the replica waiters of appends ending above `offset` with `NotLeader` (a
    /// truncation or a failed write took their bytes; a deposed leader all of them).
    pub(super) fn fail_replica_waiters_above(&self, offset: i64) {
        let mut waiters = self.replica_waiters.borrow_mut();
        let keep = waiters
            .iter()
            .take_while(|w| w.end_offset <= offset)
            .count();
        for w in waiters.drain(keep..) {
            let _ = w.tx.send(Err(StorageError::NotLeader));
        }
    }

    /// Waits, at most `limit`, until the high watermark reached the log end (a new leader's
    /// followers caught up), so a coordinator replaying the log reads nothing that a
    /// truncation could still replace. True when it did; an unreplicated log always has.
    pub async fn wait_caught_up(&self, limit: std::time::Duration) -> bool {
        if !self.is_replicated() {
            return true;
        }
        let end = self.log_end_offset();
        if self.high_watermark() >= end {
            return true;
        }
        let reached = futures_lite::future::or(
            async {
                self.wait_hwm_above(Offset(end.get() - 1)).await;
                true
            },
            async {
                glommio::timer::sleep(limit).await;
                false
            },
        )
        .await;
        reached && self.high_watermark() >= end
    }

    /// Resolves when the written end is above `offset`, or the log closes (followers' long
    /// polls on the leader).
    pub async fn wait_written_above(&self, offset: Offset) {
        self.write_waiters
            .wait_until(|| self.closed.get() || self.offsets.get().written > offset.0)
            .await
    }

    /// Appends a leader's batches on a follower as they are: same base offsets, same leader
    /// epochs, same timestamps, no producer-sequence check (the leader made it). The first
    /// batch must start at this log's end and the batches must follow each other. Returns
    /// once the bytes are durable (written, under a relaxed flush policy), like a local
    /// acks=all append. A trailing partial batch (a fetch cut by its byte limit) is dropped.
    pub async fn append_as_follower(
        &self,
        records: Bytes,
        now_ms: i64,
    ) -> Result<Option<AppendResult>, StorageError> {
        let whole = super::log::verified_batches_len(&records);
        if whole < records.len() {
            // Only a batch cut short by the fetch's byte limit may follow the whole ones.
            let rest = &records[whole..];
            let complete = batch::declared_size(rest).is_some_and(|size| size <= rest.len());
            if complete {
                return Err(StorageError::CorruptRecord(format!(
                    "follower fetch: batch at byte {whole} fails verification"
                )));
            }
        }
        if whole == 0 {
            return Ok(None);
        }
        let records = records.slice(..whole);
        let place = self.reserve_append();
        self.append_in_mode(place, records, AppendMode::Follower { now_ms }, None)
            .await
            .map(Some)
    }

    /// Checks that follower batches continue this log exactly (called with the append turn
    /// held, before anything changes).
    pub(super) fn check_follower_batches(
        &self,
        batches: &[(usize, batch::BatchHeader)],
    ) -> Result<(), StorageError> {
        let mut next = self.offsets.get().log_end;
        for (_, h) in batches {
            if h.base_offset != next {
                return Err(StorageError::CorruptRecord(format!(
                    "follower append: batch at offset {} where the log ends at {next}",
                    h.base_offset
                )));
            }
            next = h.last_offset() + 1;
        }
        Ok(())
    }

    /// The edit a follower append makes: none (its leader epoch and times are the leader's).
    pub(super) fn follower_edit() -> BatchEdit {
        BatchEdit {
            leader_epoch: None,
            log_append_time_ms: None,
        }
    }
}
