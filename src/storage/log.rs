//! `PartitionLog`: the segment set of one partition and its offsets (log start offset <= high
//! watermark <= log end offset, asserted on every change, in release builds too).
//!
//! Lives on the shard (core) that owns the partition; `!Send`. Appends assign offsets and queue
//! bytes synchronously; the shard's flusher (see `flush.rs`) writes and fdatasyncs them, then
//! advances the high watermark and wakes the waiting appends. Readers never see bytes beyond the
//! high watermark.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use futures::channel::oneshot;

use crate::model::{LeaderEpoch, Offset, TopicId, TopicPartition};

use super::appender::APPEND_BUFFER_BYTES_MAX;
use super::batch::{self, BatchHeader};
use super::config::{Acks, AppendOptions, AppendResult, FlushPolicy, LogConfig, ReadResult};
use super::error::StorageError;
use super::index::{OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};
use super::leader_epoch::{EpochEntry, LeaderEpochCache};
use super::manager::ShardContext;
use super::producer_state::{ProducerEntry, ProducerStateManager, SequenceCheck};
use super::segment::{BatchEdit, RollLimits, Segment, NO_TIMESTAMP};
use super::waiters::WakerSet;
use crate::order::{OrderQueue, Ticket};

/// Offsets of the log. `written`/`durable` are offset ends (last offset + 1) of the bytes the
/// device confirmed / fdatasync'ed; the high watermark is one of them per the flush policy.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Offsets {
    pub log_start: i64,
    pub high_watermark: i64,
    pub log_end: i64,
    pub written: i64,
    pub durable: i64,
    /// Segment base and byte position of the high watermark (readers' limit).
    pub hwm_segment: i64,
    pub hwm_position: u64,
    pub leader_epoch: i32,
}

impl Offsets {
    pub fn check(&self) {
        assert!(
            self.log_start <= self.high_watermark,
            "log start > high watermark: {self:?}"
        );
        assert!(
            self.high_watermark <= self.log_end,
            "high watermark > log end: {self:?}"
        );
        assert!(
            self.durable <= self.written && self.written <= self.log_end,
            "{self:?}"
        );
    }
}

/// An append waiting for its bytes to be written (or made durable).
pub(super) struct Waiter {
    pub end_offset: i64,
    pub durable: bool,
    pub tx: oneshot::Sender<Result<(), StorageError>>,
}

/// The log of one partition. Owned by one shard; reach it from other cores through messages.
pub struct PartitionLog {
    pub(super) me: Weak<PartitionLog>,
    pub(super) tp: TopicPartition,
    pub(super) topic_id: TopicId,
    pub(super) dir: PathBuf,
    pub(super) shard: Rc<ShardContext>,
    pub(super) config: RefCell<LogConfig>,
    pub(super) segments: RefCell<BTreeMap<i64, Rc<Segment>>>,
    pub(super) offsets: Cell<Offsets>,
    pub(super) producers: RefCell<ProducerStateManager>,
    /// Kafka's leader epoch cache, from the batches' partition leader epochs.
    pub(super) epochs: RefCell<LeaderEpochCache>,
    /// `epochs.changes()` as of the last write of `leader-epoch-checkpoint`.
    pub(super) epochs_written: Cell<u64>,
    pub(super) waiters: RefCell<VecDeque<Waiter>>,
    pub(super) hwm_waiters: WakerSet,
    /// Appends take their offsets in the order they took a place here (FIFO, the place
    /// taken synchronously: see `reserve_append`); maintenance that must exclude appends
    /// takes its turn in the same queue.
    pub(super) append_lock: OrderQueue,
    /// Serialises writes, fdatasyncs, checkpoints and rolls (one write in flight per segment).
    /// FIFO with hand-off: see `crate::order`.
    pub(super) flush_lock: OrderQueue,
    /// Serialises writes of the producer snapshot and recovery-point file (taken after
    /// `flush_lock` when both are held).
    pub(super) checkpoint_lock: OrderQueue,
    /// Serialises segment deletions (retention, DeleteRecords): the segments chosen are the
    /// segments deleted.
    pub(super) delete_lock: OrderQueue,
    /// Bumped by every truncation: a checkpoint that captured its offset and producer state
    /// before one does not write them after it.
    pub(super) truncations: Cell<u64>,
    pub(super) unflushed_messages: Cell<u64>,
    pub(super) last_fsync_ms: Cell<i64>,
    pub(super) recovery_point: Cell<i64>,
    pub(super) recovered_bytes: Cell<u64>,
    /// Set while the removal of the clean-shutdown marker is not yet durable; the first
    /// write fsyncs the directory before touching the log (see recovery).
    pub(super) marker_sync_pending: Cell<bool>,
    pub(super) closed: Cell<bool>,
    /// Set by the first fdatasync error (fail-stop): appends are refused, the high watermark is
    /// frozen, and the log recovers as after an unclean stop when reopened.
    pub(super) failed: Cell<bool>,
    /// `Some(bound)` for a replicated log (see `replicated.rs`); `None` for a local one.
    pub(super) hw_bound: Cell<Option<i64>>,
    /// Batch ends above the high watermark of a replicated log (bounded).
    pub(super) hw_marks: RefCell<VecDeque<super::replicated::HwMark>>,
    /// acks=all appends of a replicated log waiting for the high watermark, in offset order.
    pub(super) replica_waiters: RefCell<VecDeque<super::replicated::ReplicaWaiter>>,
    /// Woken when the written end moves (followers' long polls) or the log is truncated.
    pub(super) write_waiters: WakerSet,
    /// Aborted transactions (the `.txnindex` files' entries; see `txn_index.rs`).
    pub(super) txn_index: RefCell<super::txn_index::TransactionIndex>,
    /// `(first offset, marker offset)` of the transactions completed by a marker not yet
    /// below the high watermark: they still hold the last stable offset (Kafka's
    /// `unreplicatedTxns`). In offset order of the markers.
    pub(super) unreplicated_txns: RefCell<VecDeque<(i64, i64)>>,
}

/// How an append is made: a leader's (offsets and leader epoch assigned here, producer
/// sequences checked) or a follower's (the leader's batches as they are).
#[derive(Copy, Clone, Debug)]
pub(super) enum AppendMode {
    Leader(AppendOptions),
    Follower { now_ms: i64 },
}

/// What recovery hands to [`PartitionLog::from_loaded`].
pub(super) struct LoadedLog {
    pub dir: PathBuf,
    pub segments: BTreeMap<i64, Rc<Segment>>,
    pub offsets: Offsets,
    pub producers: ProducerStateManager,
    pub txn_index: super::txn_index::TransactionIndex,
    pub epochs: LeaderEpochCache,
    /// `epochs.changes()` of what `leader-epoch-checkpoint` holds.
    pub epochs_written: u64,
    pub recovery_point: i64,
    pub recovered_bytes: u64,
    /// The clean-shutdown marker was removed at open and the directory not yet fsynced.
    pub marker_sync_pending: bool,
}

impl PartitionLog {
    pub(super) fn from_loaded(
        shard: Rc<ShardContext>,
        tp: &TopicPartition,
        topic_id: TopicId,
        config: LogConfig,
        loaded: LoadedLog,
    ) -> Rc<PartitionLog> {
        loaded.offsets.check();
        Rc::new_cyclic(|me| PartitionLog {
            me: me.clone(),
            tp: tp.clone(),
            topic_id,
            dir: loaded.dir,
            shard,
            config: RefCell::new(config),
            segments: RefCell::new(loaded.segments),
            offsets: Cell::new(loaded.offsets),
            producers: RefCell::new(loaded.producers),
            epochs: RefCell::new(loaded.epochs),
            epochs_written: Cell::new(loaded.epochs_written),
            waiters: RefCell::new(VecDeque::new()),
            hwm_waiters: WakerSet::default(),
            append_lock: OrderQueue::new(),
            flush_lock: OrderQueue::new(),
            checkpoint_lock: OrderQueue::new(),
            delete_lock: OrderQueue::new(),
            truncations: Cell::new(0),
            unflushed_messages: Cell::new(0),
            last_fsync_ms: Cell::new(super::flush::wall_clock_ms()),
            recovery_point: Cell::new(loaded.recovery_point),
            recovered_bytes: Cell::new(loaded.recovered_bytes),
            marker_sync_pending: Cell::new(loaded.marker_sync_pending),
            closed: Cell::new(false),
            failed: Cell::new(false),
            hw_bound: Cell::new(None),
            hw_marks: RefCell::new(VecDeque::new()),
            replica_waiters: RefCell::new(VecDeque::new()),
            write_waiters: WakerSet::default(),
            txn_index: RefCell::new(loaded.txn_index),
            unreplicated_txns: RefCell::new(VecDeque::new()),
        })
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }
    pub fn topic_id(&self) -> TopicId {
        self.topic_id
    }
    pub fn log_start_offset(&self) -> Offset {
        Offset(self.offsets.get().log_start)
    }
    /// The next offset to assign.
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.offsets.get().log_end)
    }
    pub fn high_watermark(&self) -> Offset {
        Offset(self.offsets.get().high_watermark)
    }
    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.offsets.get().leader_epoch)
    }
    /// Logical bytes of all segments (queued bytes included).
    pub fn size_bytes(&self) -> u64 {
        self.segments.borrow().values().map(|s| s.size()).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.segments.borrow().keys().map(|b| Offset(*b)).collect()
    }
    /// Bytes verified by recovery when this log was opened (0 after a clean shutdown, apart
    /// from the tail after the last index entry).
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes.get()
    }
    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }
    pub fn producer_state(&self, producer_id: crate::model::ProducerId) -> Option<ProducerEntry> {
        self.producers.borrow().get(producer_id).cloned()
    }
    /// Kafka's `UnifiedLog.endOffsetForEpoch`, for OffsetForLeaderEpoch: the largest epoch
    /// <= `epoch` this log holds and the offset where it ends (the next epoch's start offset,
    /// or the log end offset for the latest epoch). `None` for a negative epoch, an epoch above
    /// the latest, or a log that has none (Kafka's UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs
            .borrow()
            .end_offset_for(epoch.0, self.offsets.get().log_end)
    }
    /// The leader epoch cache: each epoch and the first offset written in it, oldest first.
    pub fn leader_epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs.borrow().entries().to_vec()
    }
    /// Whether the log stopped after an fdatasync error (see [`StorageError::LogFailed`]).
    pub fn is_failed(&self) -> bool {
        self.failed.get()
    }
    /// Takes `flush_lock`, in arrival order: a checkpoint waiting behind a hot partition's
    /// group commits gets its turn (with an unfair lock the flusher re-locks first).
    pub(super) async fn lock_flush(&self) -> Ticket {
        self.flush_lock.lock().await
    }
    pub(super) fn flush_policy(&self) -> FlushPolicy {
        FlushPolicy::resolve(&self.config.borrow(), &self.shard.broker)
    }
    pub(super) fn active_segment(&self) -> Rc<Segment> {
        match self.segments.borrow().values().next_back() {
            Some(segment) => segment.clone(),
            None => panic!("a partition log always has an active segment"),
        }
    }
    pub(super) fn set_offsets(&self, offsets: Offsets) {
        offsets.check();
        let old = self.offsets.get();
        let advanced = offsets.high_watermark > old.high_watermark;
        if offsets.log_start > old.log_start {
            self.epochs
                .borrow_mut()
                .truncate_from_start(offsets.log_start);
        }
        self.offsets.set(offsets);
        if advanced {
            self.forget_replicated_txns(offsets.high_watermark);
            self.hwm_waiters.wake_all();
        }
    }

    /// Appends one or more complete v2 batches whose CRC the caller verified (Produce
    /// validation does, with `batch::verify_batch`; internal writers build their batches).
    /// Framing is checked again here, the CRC is not: it is checked once before the write and
    /// again on read and recovery. See the module docs and docs/on-disk-format.md for what each
    /// `acks` level promises.
    pub async fn append(
        &self,
        records: Bytes,
        opts: AppendOptions,
    ) -> Result<AppendResult, StorageError> {
        let place = self.reserve_append();
        self.append_reserved(place, records, opts).await
    }

    /// Takes this append's place in the partition's append queue, now. Appends are stored in
    /// the order their places were taken, whatever happens between this call and
    /// [`append_reserved`](Self::append_reserved) — so callers take the place at the moment
    /// the order is known (a request taken off its connection or the mesh).
    pub fn reserve_append(&self) -> Ticket {
        self.append_lock.take()
    }

    /// [`append`](Self::append) at a place taken earlier with `reserve_append`.
    pub async fn append_reserved(
        &self,
        place: Ticket,
        records: Bytes,
        opts: AppendOptions,
    ) -> Result<AppendResult, StorageError> {
        self.append_in_mode(place, records, AppendMode::Leader(opts), None)
            .await
    }

    /// [`append_reserved`](Self::append_reserved) whose wait for replication (acks=all on a
    /// replicated log) is bounded by `limit`: past it the answer is `ReplicationTimeout`, and
    /// the append stays in the log (Kafka's REQUEST_TIMED_OUT).
    pub async fn append_reserved_within(
        &self,
        place: Ticket,
        records: Bytes,
        opts: AppendOptions,
        limit: std::time::Duration,
    ) -> Result<AppendResult, StorageError> {
        self.append_in_mode(place, records, AppendMode::Leader(opts), Some(limit))
            .await
    }

    pub(super) async fn append_in_mode(
        &self,
        place: Ticket,
        records: Bytes,
        mode: AppendMode,
        limit: Option<std::time::Duration>,
    ) -> Result<AppendResult, StorageError> {
        let (acks, now_ms) = match mode {
            AppendMode::Leader(opts) => (opts.acks, opts.now_ms),
            // A follower's append is acknowledged (its fetch offset moves) once durable.
            AppendMode::Follower { now_ms } => (Acks::All, now_ms),
        };
        if self.closed.get() || self.shard.closed.get() {
            return Err(StorageError::Closed);
        }
        if self.failed.get() {
            return Err(StorageError::LogFailed);
        }
        if self.shard.read_only.get() {
            return Err(StorageError::DiskPressure);
        }
        let batches = batch::split_framed(&records)
            .map_err(|defect| StorageError::CorruptRecord(format!("{defect:?}")))?;
        if batches.is_empty() {
            return Err(StorageError::CorruptRecord("no record batch".into()));
        }
        let segment_bytes = self.config.borrow().segment_bytes;
        if records.len() as u64 > segment_bytes {
            return Err(StorageError::RecordBatchTooLarge {
                size: records.len(),
                segment_bytes,
            });
        }
        let rx = {
            place.turn().await;
            let _guard = place;
            let follower = matches!(mode, AppendMode::Follower { .. });
            if follower {
                self.check_follower_batches(&batches)?;
            } else if let Some(duplicate) = self.check_producers(&records, &batches, acks)? {
                drop(_guard);
                return duplicate.acknowledged().await;
            }
            self.prepare_room(records.len() as u64, &batches, now_ms)
                .await?;
            // No await from here to the end of the block: offsets, producer state and the
            // append buffer change together.
            if self.shard.read_only.get() {
                return Err(StorageError::DiskPressure);
            }
            if follower {
                self.check_follower_batches(&batches)?;
            } else if let Some(duplicate) = self.check_producers(&records, &batches, acks)? {
                drop(_guard);
                return duplicate.acknowledged().await;
            }
            self.append_queued(&records, &batches, mode)
        };
        self.shard.mark_dirty(self);
        let (result, rx) = rx;
        if !self.shard.flusher_running.get() {
            // No shard flusher (start_background not called): flush inline. A failure reaches
            // the waiter below; with acks=0 it is dropped, as Kafka drops acks=0 errors.
            if let Err(err) = self.flush(false).await {
                tracing::debug!(partition = %self.tp, error = %err, "inline flush failed");
            }
        }
        if let Some(rx) = rx {
            let answer = match limit {
                None => rx.await,
                Some(limit) => {
                    let timeout = async {
                        glommio::timer::sleep(limit).await;
                        Ok(Err(StorageError::ReplicationTimeout))
                    };
                    futures_lite::future::or(rx, timeout).await
                }
            };
            match answer {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(StorageError::Closed),
            }
        }
        Ok(result)
    }

    /// Whether the log takes these batches now (it may have failed while the append waited for
    /// its turn), and `Some` when the only batch is a duplicate of a remembered one: its
    /// acknowledgement then waits, like the original's, until the original batch's end is
    /// written or (acks=all, default policy) durable, and carries the original's offsets and
    /// append time. Synchronous: the waiter is registered before the caller awaits anything.
    fn check_producers(
        &self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        acks: Acks,
    ) -> Result<Option<DuplicateAck>, StorageError> {
        if self.failed.get() {
            return Err(StorageError::LogFailed);
        }
        let producers = self.producers.borrow();
        for (at, header) in batches {
            if let Some(marker) = super::txn_index::marker_of(header, &records[*at..]) {
                let id = crate::model::ProducerId(header.producer_id);
                producers.check_marker(id, header.producer_epoch, marker)?;
                continue;
            }
            if let SequenceCheck::Duplicate(original) = producers.check(header)? {
                if batches.len() == 1 {
                    let result = AppendResult {
                        base_offset: Offset(original.first_offset),
                        last_offset: Offset(original.last_offset),
                        log_append_time_ms: original.log_append_time_ms,
                        log_start_offset: self.log_start_offset(),
                    };
                    let rx = self.wait_for(original.last_offset + 1, acks);
                    return Ok(Some(DuplicateAck { result, rx }));
                }
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: crate::model::ProducerId(header.producer_id),
                    expected: original.last_seq + 1,
                    received: header.base_sequence,
                });
            }
        }
        Ok(None)
    }

    /// A waiter for the bytes below `end_offset` per `acks` (written; with acks=all under the
    /// default policy, fdatasync'ed), or `None` when there is nothing to wait for.
    fn wait_for(
        &self,
        end_offset: i64,
        acks: Acks,
    ) -> Option<oneshot::Receiver<Result<(), StorageError>>> {
        if acks == Acks::None {
            return None;
        }
        if acks == Acks::All && self.hw_bound.get().is_some() {
            return self.wait_for_hwm(end_offset);
        }
        self.wait_for_local(end_offset, acks)
    }

    /// A waiter for this log's own write (acks=1) or durable end (acks=all, default policy).
    pub(super) fn wait_for_local(
        &self,
        end_offset: i64,
        acks: Acks,
    ) -> Option<oneshot::Receiver<Result<(), StorageError>>> {
        if acks == Acks::None {
            return None;
        }
        let durable = acks == Acks::All && self.flush_policy().is_sync();
        let offsets = self.offsets.get();
        let reached = if durable {
            offsets.durable
        } else {
            offsets.written
        };
        if end_offset <= reached {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push_back(Waiter {
            end_offset,
            durable,
            tx,
        });
        Some(rx)
    }

    /// Rolls the active segment if this append would not fit, and bounds queued bytes.
    async fn prepare_room(
        &self,
        bytes: u64,
        batches: &[(usize, BatchHeader)],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let active = self.active_segment();
        let deltas: i64 = batches
            .iter()
            .map(|(_, h)| i64::from(h.last_offset_delta) + 1)
            .sum();
        let last_offset = self.offsets.get().log_end + deltas - 1;
        let max_timestamp = if self.config.borrow().log_append_time {
            now_ms
        } else {
            batches
                .iter()
                .map(|(_, h)| h.max_timestamp)
                .max()
                .unwrap_or(NO_TIMESTAMP)
        };
        // A roll that sealed the old segment but failed to create the next one is finished here.
        if !active.is_active()
            || active.should_roll(
                bytes,
                now_ms,
                max_timestamp,
                last_offset,
                &self.roll_limits(),
            )
        {
            self.roll().await?;
        } else if active.mark().size - active.committed_mark().size > APPEND_BUFFER_BYTES_MAX as u64
        {
            self.flush(false).await?;
        }
        Ok(())
    }

    pub(super) fn roll_limits(&self) -> RollLimits {
        let cfg = self.config.borrow();
        RollLimits {
            segment_bytes: cfg.segment_bytes.min(i32::MAX as u64),
            segment_ms: cfg.segment_ms,
            segment_jitter_ms: cfg.segment_jitter_ms,
            offset_entries_max: (cfg.segment_index_bytes as usize / OFFSET_INDEX_ENTRY_BYTES)
                .max(1),
            time_entries_max: (cfg.segment_index_bytes as usize / TIME_INDEX_ENTRY_BYTES).max(1),
        }
    }

    /// The synchronous half of `append`: assign offsets, copy into the append buffer, record
    /// producer state, register the waiter.
    #[allow(clippy::type_complexity)]
    fn append_queued(
        &self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        mode: AppendMode,
    ) -> (
        AppendResult,
        Option<oneshot::Receiver<Result<(), StorageError>>>,
    ) {
        let (log_append_time, interval) = {
            let cfg = self.config.borrow();
            (cfg.log_append_time, cfg.index_interval_bytes)
        };
        let (edit, acks, now_ms, epoch) = match mode {
            AppendMode::Leader(opts) => (
                BatchEdit {
                    leader_epoch: Some(opts.leader_epoch.0),
                    log_append_time_ms: log_append_time.then_some(opts.now_ms),
                },
                opts.acks,
                opts.now_ms,
                opts.leader_epoch.0,
            ),
            AppendMode::Follower { now_ms } => (
                Self::follower_edit(),
                Acks::Leader,
                now_ms,
                batches
                    .iter()
                    .map(|(_, h)| h.partition_leader_epoch)
                    .max()
                    .unwrap_or(0),
            ),
        };
        let mut offsets = self.offsets.get();
        let active = self.active_segment();
        let start = active.mark().size;
        let stored = active.append(records, batches, &edit, interval);
        self.record_hw_marks(
            active.base_offset().0,
            stored
                .iter()
                .zip(batches)
                .map(|(h, (at, _))| (h.last_offset() + 1, start + (*at + h.size_bytes()) as u64)),
        );
        {
            let mut epochs = self.epochs.borrow_mut();
            for header in &stored {
                epochs.assign(header.partition_leader_epoch, header.base_offset);
            }
        }
        self.record_producer_batches(records, batches, &stored, active.base_offset().0);
        let first = stored.first().map_or(offsets.log_end, |h| h.base_offset);
        let last = stored
            .last()
            .map_or(offsets.log_end, BatchHeader::last_offset);
        assert_eq!(first, offsets.log_end);
        offsets.log_end = last + 1;
        offsets.leader_epoch = offsets.leader_epoch.max(epoch);
        self.set_offsets(offsets);
        let rx = match mode {
            // Durable (written, under a relaxed policy) before the follower's fetch offset moves.
            AppendMode::Follower { .. } => self.wait_for_local(last + 1, Acks::All),
            AppendMode::Leader(_) => self.wait_for(last + 1, acks),
        };
        let result = AppendResult {
            base_offset: Offset(first),
            last_offset: Offset(last),
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: Offset(offsets.log_start),
        };
        (result, rx)
    }

    /// Seals the active segment after writing and syncing everything, and starts a new one.
    /// Called with the append lock held.
    pub(super) async fn roll(&self) -> Result<(), StorageError> {
        self.flush(true).await?;
        let _flush = self.lock_flush().await;
        let active = self.active_segment();
        let index_bytes = self.config.borrow().segment_index_bytes;
        if active.is_active() {
            active.seal(index_bytes).await?;
        }
        let base = self.offsets.get().log_end;
        let segment =
            Segment::create(self.shard.io.clone(), &self.dir, Offset(base), index_bytes).await?;
        // The new files' entries are durable before the segment takes appends.
        self.shard.io.sync_dir(&self.dir).await?;
        self.segments.borrow_mut().insert(base, segment);
        tracing::debug!(partition = %self.tp, base, "rolled segment");
        Ok(())
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (at least one batch if
    /// `min_one_batch`), never beyond the high watermark.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        let offsets = self.offsets.get();
        let truncations = self.truncations.get();
        let mut result = ReadResult {
            records: Bytes::new(),
            high_watermark: Offset(offsets.high_watermark),
            log_start_offset: Offset(offsets.log_start),
            last_stable_offset: self.last_stable_offset(),
        };
        if offset.0 < offsets.log_start || offset.0 > offsets.high_watermark {
            return Err(self.out_of_range(offset));
        }
        if offset.0 == offsets.high_watermark {
            return Ok(result);
        }
        match self
            .read_batches(offset, max_bytes, min_one_batch, &offsets)
            .await
        {
            Ok(records) => {
                result.records = records;
                Ok(result)
            }
            // Retention deleted the segment between the lookup and the read.
            Err(StorageError::Io(err))
                if err.kind() == std::io::ErrorKind::NotFound
                    && offset.0 < self.offsets.get().log_start =>
            {
                Err(self.out_of_range(offset))
            }
            // A truncation cut or deleted the file under the read: answer as of the new log.
            Err(_) if self.truncations.get() != truncations => {
                let now = self.offsets.get();
                if offset.0 < now.log_start || offset.0 > now.high_watermark {
                    return Err(self.out_of_range(offset));
                }
                result.high_watermark = Offset(now.high_watermark);
                result.log_start_offset = Offset(now.log_start);
                result.last_stable_offset = self.last_stable_offset();
                Ok(result)
            }
            Err(err) => Err(err),
        }
    }

    async fn read_batches(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
        offsets: &Offsets,
    ) -> Result<Bytes, StorageError> {
        let Some((segment, position, want)) = self
            .locate(offset, max_bytes, min_one_batch, offsets)
            .await?
        else {
            return Ok(Bytes::new());
        };
        let bytes = segment.read(position, want).await?;
        // Verified again on the way out (TigerBeetle: both sides of the disk).
        let whole = verified_batches_len(&bytes);
        if whole == 0 {
            tracing::warn!(partition = %self.tp, base = segment.base_offset().0, position,
                "corrupt batch below the high watermark");
            return Err(StorageError::CorruptRecord(format!(
                "segment {} position {position}",
                segment.base_offset()
            )));
        }
        Ok(bytes.slice(..whole))
    }

    /// Where a read at `offset` starts and how many bytes it takes: from the batch holding
    /// `offset`, up to `max_bytes` (at least that batch if `min_one_batch`), never beyond the
    /// high watermark in `offsets`. `None` when there is nothing to read. Shared by `read`
    /// and the zero-copy `read_slice`.
    pub(super) async fn locate(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
        offsets: &Offsets,
    ) -> Result<Option<(Rc<Segment>, u64, usize)>, StorageError> {
        for segment in self.segments_from(offset.0) {
            let limit = Self::visible_limit(&segment, offsets);
            let Some((position, header)) = segment.find_batch(offset.0, limit).await? else {
                continue;
            };
            let available = (limit - position) as usize;
            let mut want = available.min(max_bytes);
            if want < header.size_bytes() {
                if !min_one_batch {
                    return Ok(None);
                }
                want = header.size_bytes().min(available);
            }
            return Ok(Some((segment, position, want)));
        }
        Ok(None)
    }

    pub(super) fn out_of_range(&self, offset: Offset) -> StorageError {
        let offsets = self.offsets.get();
        StorageError::OffsetOutOfRange {
            requested: offset,
            log_start_offset: Offset(offsets.log_start),
            high_watermark: Offset(offsets.high_watermark),
        }
    }

    /// Segments that may hold `offset` or later ones, oldest first.
    pub(super) fn segments_from(&self, offset: i64) -> Vec<Rc<Segment>> {
        let segments = self.segments.borrow();
        let floor = segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        segments.range(floor..).map(|(_, s)| s.clone()).collect()
    }

    /// Bytes of `segment` below the high watermark.
    pub(super) fn visible_limit(segment: &Segment, offsets: &Offsets) -> u64 {
        let base = segment.base_offset().0;
        if base < offsets.hwm_segment {
            segment.size()
        } else if base == offsets.hwm_segment {
            offsets.hwm_position
        } else {
            0
        }
    }

    /// Resolves when the high watermark is above `offset`, or the log closes.
    pub async fn wait_hwm_above(&self, offset: Offset) {
        self.hwm_waiters
            .wait_until(|| self.closed.get() || self.offsets.get().high_watermark > offset.0)
            .await
    }

    /// ListOffsets by time: the first offset whose timestamp is >= `ts_ms`, with that timestamp.
    /// Exact per record for uncompressed batches; for compressed ones the batch's base offset
    /// and max timestamp (their records are not decompressed here).
    pub async fn offset_for_timestamp(
        &self,
        ts_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let offsets = self.offsets.get();
        for segment in self.segments_from(offsets.log_start) {
            let limit = Self::visible_limit(&segment, &offsets);
            if limit == 0 || segment.largest_timestamp().await? < ts_ms {
                continue;
            }
            let Some((position, header)) = segment.find_timestamp(ts_ms, limit).await? else {
                continue;
            };
            if header.last_offset() < offsets.log_start {
                continue;
            }
            let bytes = segment.read(position, header.size_bytes()).await?;
            let records = batch::record_timestamps(&bytes).unwrap_or_default();
            let found = records
                .into_iter()
                .find(|(offset, ts)| *ts >= ts_ms && *offset >= offsets.log_start);
            let (offset, ts) = found.unwrap_or((
                header.base_offset.max(offsets.log_start),
                header.max_timestamp,
            ));
            return Ok(Some((Offset(offset), ts)));
        }
        Ok(None)
    }

    /// ListOffsets -3 (KIP-734): the offset of the record with the largest timestamp (the first
    /// such record; for compressed batches the batch's last offset).
    pub async fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, StorageError> {
        let offsets = self.offsets.get();
        let mut best: Option<(Rc<Segment>, i64, i64)> = None;
        for segment in self.segments_from(offsets.log_start) {
            let limit = Self::visible_limit(&segment, &offsets);
            if limit == 0 {
                continue;
            }
            let (ts, offset) = if segment.is_active() {
                let mark = segment.committed_mark();
                (mark.max_timestamp, mark.offset_of_max_timestamp)
            } else {
                let ts = segment.largest_timestamp().await?;
                (ts, segment.mark().offset_of_max_timestamp)
            };
            let better = best.as_ref().is_none_or(|(_, b, _)| ts > *b);
            if ts != NO_TIMESTAMP && better && offset < offsets.high_watermark {
                best = Some((segment, ts, offset));
            }
        }
        let Some((segment, ts, offset)) = best else {
            return Ok(None);
        };
        let limit = Self::visible_limit(&segment, &offsets);
        if let Some((position, header)) = segment.find_batch(offset, limit).await? {
            let bytes = segment.read(position, header.size_bytes()).await?;
            let records = batch::record_timestamps(&bytes).unwrap_or_default();
            if let Some((first, _)) = records.into_iter().find(|(_, t)| *t == ts) {
                return Ok(Some((Offset(first), ts)));
            }
        }
        Ok(Some((Offset(offset), ts)))
    }
}

/// The answer to an idempotent duplicate: the original's result, once the original is as
/// durable as the duplicate's `acks` asks (see `PartitionLog::check_producers`).
pub(super) struct DuplicateAck {
    result: AppendResult,
    rx: Option<oneshot::Receiver<Result<(), StorageError>>>,
}

impl DuplicateAck {
    pub(super) async fn acknowledged(self) -> Result<AppendResult, StorageError> {
        if let Some(rx) = self.rx {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(StorageError::Closed),
            }
        }
        Ok(self.result)
    }
}

/// Length of the longest prefix of `bytes` made of whole, valid batches (CRC checked).
pub(super) fn verified_batches_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while at < bytes.len() {
        match batch::verify_batch(&bytes[at..]) {
            Ok(header) => at += header.size_bytes(),
            Err(_) => break,
        }
    }
    at
}
