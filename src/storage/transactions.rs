//! The transactional half of `PartitionLog` (Kafka's `UnifiedLog` transaction paths): the
//! producers' ongoing transactions, end-transaction markers appended on the leader, the last
//! stable offset (LSO), the aborted transactions a read_committed fetch returns, and the
//! writes of the `.txnindex` files.
//!
//! LSO = min(first offset of every ongoing transaction, first offset of every transaction
//! whose marker is not yet below the high watermark, high watermark), never below the log
//! start offset. Markers count only once below the high watermark, so a consumer never reads
//! a transaction's records as decided before its marker is replicated.
//!
//! Lives with its partition log on the shard (core) that owns the partition.

use std::time::Duration;

use super::batch::BatchHeader;
use super::config::{AppendOptions, AppendResult};
use super::error::StorageError;
use super::file_names::{offset_file_path, TXN_INDEX_SUFFIX};
use super::log::{AppendMode, Offsets, PartitionLog};
use super::producer_state::{CompletedTxn, ProducerEntry, TxnMarker};
use super::txn_index::{self, AbortedTxn};
use crate::model::{Offset, ProducerId};
use crate::order::Ticket;

impl PartitionLog {
    /// Appends an end-transaction marker for (`producer_id`, `producer_epoch`) on the leader:
    /// one control batch through the normal (replicated) append path, at the place taken
    /// with `reserve_append`. A marker of an older producer epoch is refused
    /// (`InvalidProducerEpoch`), and so is one from an older coordinator epoch than the last
    /// marker's (`CoordinatorFenced`). `limit` bounds an acks=all wait for replication.
    pub async fn append_marker(
        &self,
        place: Ticket,
        producer_id: ProducerId,
        producer_epoch: i16,
        marker: TxnMarker,
        opts: AppendOptions,
        limit: Option<Duration>,
    ) -> Result<AppendResult, StorageError> {
        if self.unreplicated_txns.borrow().len()
            >= crate::limits::UNREPLICATED_TXNS_PER_PARTITION_MAX
        {
            return Err(StorageError::ReplicationTimeout);
        }
        let batch =
            txn_index::encode_marker_batch(producer_id.0, producer_epoch, marker, opts.now_ms);
        self.append_in_mode(place, batch, AppendMode::Leader(opts), limit)
            .await
    }

    /// The last stable offset (see the module docs).
    pub fn last_stable_offset(&self) -> Offset {
        let offsets = self.offsets.get();
        let hw = offsets.high_watermark;
        let mut lso = hw;
        if let Some(first) = self.producers.borrow().first_ongoing_offset() {
            lso = lso.min(first);
        }
        for (first, marker) in self.unreplicated_txns.borrow().iter() {
            if *marker >= hw {
                lso = lso.min(*first);
            }
        }
        Offset(lso.max(offsets.log_start))
    }

    /// Kafka's `collectAbortedTransactions`: the aborted transactions overlapping
    /// `[start, upper)`.
    pub fn aborted_transactions(&self, start: Offset, upper: Offset) -> Vec<AbortedTxn> {
        self.txn_index.borrow().collect(start.0, upper.0)
    }

    /// Every aborted transaction the index holds (tests and tools).
    pub fn all_aborted_transactions(&self) -> Vec<AbortedTxn> {
        self.txn_index.borrow().all()
    }

    /// The active producers of this partition, by id (DescribeProducers).
    pub fn producers(&self) -> Vec<(ProducerId, ProducerEntry)> {
        let producers = self.producers.borrow();
        let mut out: Vec<_> = producers.entries().map(|(id, e)| (id, e.clone())).collect();
        out.sort_by_key(|(id, _)| id.0);
        out
    }

    /// Resolves when the last stable offset is above `offset`, or the log closes
    /// (read_committed long polls: the LSO moves only with the high watermark or an append).
    pub async fn wait_lso_above(&self, offset: Offset) {
        self.hwm_waiters
            .wait_until(|| self.closed.get() || self.last_stable_offset().0 > offset.0)
            .await
    }

    /// `offsets` with its readers' limit lowered to the last stable offset (read_committed):
    /// the LSO is the base offset of a batch (a transaction's first) or the high watermark.
    pub(super) async fn stable_limit(&self, offsets: Offsets) -> Result<Offsets, StorageError> {
        let lso = self.last_stable_offset().0;
        if lso >= offsets.high_watermark {
            return Ok(offsets);
        }
        let mut limited = offsets;
        limited.high_watermark = lso;
        let Some(segment) = self.segments_from(lso).into_iter().next() else {
            return Ok(limited);
        };
        let limit = Self::visible_limit(&segment, &offsets);
        limited.hwm_segment = segment.base_offset().0;
        limited.hwm_position = match segment.find_batch(lso, limit).await? {
            Some((position, header)) => {
                if header.base_offset != lso {
                    tracing::warn!(partition = %self.tp, lso, base = header.base_offset,
                        "last stable offset inside a batch: serving up to the batch");
                }
                position
            }
            None => limit,
        };
        Ok(limited)
    }

    /// The producer-state half of an append (synchronous, inside `append_queued`): each
    /// stored batch updates its producer; a marker completes the producer's transaction,
    /// adds an aborted one to the active segment's index, and holds the LSO until the high
    /// watermark passes it. Leaders and followers run the same code on the same bytes.
    pub(super) fn record_producer_batches(
        &self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        stored: &[BatchHeader],
        segment_base: i64,
    ) {
        let mut completed = Vec::new();
        {
            let mut producers = self.producers.borrow_mut();
            for ((at, _), header) in batches.iter().zip(stored) {
                match txn_index::marker_of(header, &records[*at..]) {
                    Some(marker) => completed.extend(producers.complete_txn(header, marker)),
                    None => producers.update(header),
                }
            }
        }
        for done in completed {
            self.record_completed_txn(segment_base, done);
        }
    }

    fn record_completed_txn(&self, segment_base: i64, done: CompletedTxn) {
        if done.aborted {
            self.txn_index.borrow_mut().add(
                segment_base,
                AbortedTxn {
                    producer_id: done.producer_id,
                    first_offset: done.first_offset,
                    last_offset: done.last_offset,
                    last_stable_offset: done.last_stable_offset,
                },
            );
        }
        if done.last_offset >= self.offsets.get().high_watermark {
            let mut unreplicated = self.unreplicated_txns.borrow_mut();
            // Bounded: leaders refuse markers beyond UNREPLICATED_TXNS_PER_PARTITION_MAX.
            unreplicated.push_back((done.first_offset, done.last_offset));
        }
    }

    /// A replicated log reopened with its high watermark at the log start: the last marker of
    /// each producer (the only one that may not have been replicated) holds the LSO again
    /// until the high watermark passes it, as it did before the restart.
    pub(super) fn hold_completed_txns_above_hw(&self) {
        let hw = self.offsets.get().high_watermark;
        let mut held: Vec<(i64, i64)> = self
            .producers
            .borrow()
            .entries()
            .filter_map(|(_, e)| e.last_completed_txn)
            .filter(|(_, marker)| *marker >= hw)
            .collect();
        held.sort_by_key(|(_, marker)| *marker);
        *self.unreplicated_txns.borrow_mut() = held.into();
    }

    /// Drops the completed transactions whose markers the high watermark passed.
    pub(super) fn forget_replicated_txns(&self, high_watermark: i64) {
        self.unreplicated_txns
            .borrow_mut()
            .retain(|(_, marker)| *marker >= high_watermark);
    }

    /// The in-memory transaction half of a truncation to `end` (synchronous): index entries
    /// and unreplicated markers at or above it go (producer state is truncated by the caller).
    pub(super) fn truncate_txns(&self, end: i64) {
        self.txn_index.borrow_mut().truncate_to(end);
        self.unreplicated_txns
            .borrow_mut()
            .retain(|(_, marker)| *marker < end);
    }

    /// Rewrites (atomically) the `.txnindex` files whose entries changed: before the recovery
    /// point passes their markers (called from `write_recovery_point`), since recovery trusts
    /// the entries below it.
    pub(super) async fn write_txn_index(&self) -> Result<(), StorageError> {
        let dirty = self.txn_index.borrow_mut().take_dirty();
        for (i, (base, bytes)) in dirty.iter().enumerate() {
            let path = offset_file_path(&self.dir, Offset(*base), TXN_INDEX_SUFFIX);
            if let Err(err) = self.shard.io.write_file_atomic(&path, bytes.clone()).await {
                let mut index = self.txn_index.borrow_mut();
                for (base, _) in &dirty[i..] {
                    index.mark_dirty(*base);
                }
                return Err(err.into());
            }
            if !self.segments.borrow().contains_key(base) {
                // Retention deleted the segment during the write: its file goes too.
                self.shard.io.remove_file(&path).await?;
            }
        }
        Ok(())
    }
}
