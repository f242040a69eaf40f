//! `LogManager`: the partition logs of one shard, and the shard's background tasks — the
//! group-commit flusher, the retention / disk-space loop and recovery-point checkpoints.
//!
//! One per shard (core); `!Send`, shared as `Rc`. Every partition log it holds lives on the same
//! core.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::model::{ShardId, TopicId, TopicPartition};

use super::config::{LogConfig, StorageBrokerConfig};
use super::error::StorageError;
use super::io::{GlommioIo, StorageIo};
use super::log::PartitionLog;
use super::recovery;
use super::retention::is_disk_pressure;
use super::waiters::WakerSet;

/// How often the flusher wakes without appends (relaxed flush.ms policies).
pub const FLUSH_TICK_MS: u64 = 100;
/// Partitions opened or closed at the same time by one shard (bounded by the ring depth).
pub const PARALLEL_FILE_OPS_MAX: usize = 32;
/// Longest time between free-space checks (read-only mode enters and leaves at this pace even
/// when log.retention.check.interval.ms is longer).
pub const DISK_CHECK_INTERVAL_MS_MAX: u64 = 5_000;
/// How often recovery points are checkpointed (Kafka: log.flush.offset.checkpoint.interval.ms).
pub const RECOVERY_POINT_CHECKPOINT_INTERVAL_MS: u64 = 60_000;

/// State shared by the manager and its partition logs (same core).
pub struct ShardContext {
    pub(super) io: Rc<dyn StorageIo>,
    pub(super) broker: StorageBrokerConfig,
    pub(super) read_only: Cell<bool>,
    pub(super) closed: Cell<bool>,
    pub(super) flusher_running: Cell<bool>,
    dirty: RefCell<Vec<Rc<PartitionLog>>>,
    flusher_wake: WakerSet,
    /// Set by the ticker every FLUSH_TICK_MS: the flusher then also looks for relaxed-policy
    /// fsyncs that came due and failed fsyncs to retry. Kept out of the hot path so a group
    /// commit neither arms a timer nor scans every partition.
    tick_due: Cell<bool>,
}

impl ShardContext {
    /// Queues the log for the next group commit.
    pub(super) fn mark_dirty(&self, log: &PartitionLog) {
        let Some(log) = log.me.upgrade() else { return };
        let mut dirty = self.dirty.borrow_mut();
        if !dirty.iter().any(|d| Rc::ptr_eq(d, &log)) {
            dirty.push(log);
        }
        drop(dirty);
        self.flusher_wake.wake_all();
    }
}

/// The logs of one shard.
pub struct LogManager {
    shard: ShardId,
    context: Rc<ShardContext>,
    partitions: RefCell<HashMap<TopicPartition, Rc<PartitionLog>>>,
    /// Partitions being loaded, and the wake-up for callers waiting on them.
    opening: RefCell<HashSet<TopicPartition>>,
    opened: WakerSet,
    capacity_bytes: Cell<u64>,
    /// The log cleaner's checkpoint and stats (`storage::cleaner`).
    cleaner: super::cleaner::CleanerState,
}

impl LogManager {
    /// With real glommio I/O. Call from inside the shard's executor.
    pub fn new(shard: ShardId, cfg: StorageBrokerConfig) -> Rc<Self> {
        LogManager::with_io(shard, cfg, Rc::new(GlommioIo))
    }

    /// With injected I/O (tests: `fault_io::FaultyIo`).
    pub fn with_io(shard: ShardId, cfg: StorageBrokerConfig, io: Rc<dyn StorageIo>) -> Rc<Self> {
        let capacity = cfg.capacity_override_bytes.unwrap_or(0);
        Rc::new(LogManager {
            shard,
            context: Rc::new(ShardContext {
                io,
                broker: cfg,
                read_only: Cell::new(false),
                closed: Cell::new(false),
                flusher_running: Cell::new(false),
                dirty: RefCell::new(Vec::new()),
                flusher_wake: WakerSet::default(),
                tick_due: Cell::new(false),
            }),
            partitions: RefCell::new(HashMap::new()),
            opening: RefCell::new(HashSet::new()),
            opened: WakerSet::default(),
            capacity_bytes: Cell::new(capacity),
            cleaner: super::cleaner::CleanerState::default(),
        })
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Opens the partition's log (creating its directory if absent; recovering if the last stop
    /// was unclean). Returns the open log if it already is, unless that log failed
    /// (fail-stop after an fdatasync error): it is then closed and recovered again, as after an
    /// unclean stop.
    pub async fn open_partition(
        &self,
        tp: &TopicPartition,
        topic_id: TopicId,
        cfg: LogConfig,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        if self.context.closed.get() {
            return Err(StorageError::Closed);
        }
        // One load per partition at a time: a second caller waits for the first.
        self.opened
            .wait_until(|| !self.opening.borrow().contains(tp))
            .await;
        let existing = self.get(tp);
        if let Some(log) = existing.as_ref().filter(|log| !log.is_failed()) {
            return Ok(log.clone());
        }
        self.opening.borrow_mut().insert(tp.clone());
        if let Some(failed) = existing {
            self.partitions.borrow_mut().remove(tp);
            let _append = failed.append_lock.lock().await;
            let _flush = failed.lock_flush().await;
            failed.close_waiters();
            tracing::warn!(partition = %tp, "reopening a failed partition log: unclean recovery");
        }
        let loaded = recovery::load(self.context.clone(), tp, topic_id, cfg).await;
        self.opening.borrow_mut().remove(tp);
        self.opened.wake_all();
        let log = loaded?;
        let mut partitions = self.partitions.borrow_mut();
        Ok(partitions.entry(tp.clone()).or_insert(log).clone())
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Rc<PartitionLog>> {
        self.partitions.borrow().get(tp).cloned()
    }

    pub fn partitions(&self) -> Vec<Rc<PartitionLog>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Delete topic: closes the log (pending appends fail with `Closed`) and deletes its directory.
    pub async fn remove_partition(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let log = self.partitions.borrow_mut().remove(tp);
        super::cleaner::forget(&self.cleaner, tp);
        let dir = self.context.broker.data_dir.join(tp.dir_name());
        if let Some(log) = log {
            let _append = log.append_lock.lock().await;
            let _flush = log.lock_flush().await;
            log.close_waiters();
        }
        self.context.io.remove_dir_all(&dir).await?;
        self.context
            .io
            .sync_dir(&self.context.broker.data_dir)
            .await?;
        Ok(())
    }

    pub fn update_config(&self, tp: &TopicPartition, cfg: LogConfig) {
        if let Some(log) = self.get(tp) {
            *log.config.borrow_mut() = cfg;
        }
    }

    /// Read-only mode because of disk pressure.
    pub fn is_read_only(&self) -> bool {
        self.context.read_only.get()
    }

    /// Spawns (glommio `spawn_local`, detached) the group-commit flusher and the retention /
    /// disk-space / checkpoint loop. Call once, from the shard's executor, after `new`.
    /// Without it, each append flushes inline (still correct, no cross-partition group commit).
    pub fn start_background(self: &Rc<Self>) {
        if self.context.flusher_running.replace(true) {
            return;
        }
        let weak = Rc::downgrade(self);
        glommio::spawn_local(flusher_loop(weak.clone(), self.context.clone())).detach();
        glommio::spawn_local(ticker_loop(self.context.clone())).detach();
        if self.context.broker.cleaner.enable {
            glommio::spawn_local(super::cleaner::cleaner_loop(weak.clone())).detach();
        }
        glommio::spawn_local(maintenance_loop(weak)).detach();
    }

    // ---- for the log cleaner (storage::cleaner) ----
    pub fn is_closed(&self) -> bool {
        self.context.closed.get()
    }
    pub fn broker_config(&self) -> &StorageBrokerConfig {
        &self.context.broker
    }
    pub fn io(&self) -> &Rc<dyn StorageIo> {
        &self.context.io
    }
    pub fn cleaner_state(&self) -> &super::cleaner::CleanerState {
        &self.cleaner
    }
    /// What this shard's cleaner did since start-up.
    pub fn cleaner_stats(&self) -> super::cleaner::CleanerStats {
        *self.cleaner.stats.borrow()
    }

    /// One group commit: flushes every log with queued appends (all at once). The flusher task
    /// calls this; tests may too.
    pub async fn flush_dirty(&self) {
        self.flush_round(true).await
    }

    /// A group commit over the queued logs, plus (when `include_due`) every log whose
    /// relaxed-policy fsync came due or whose last fsync failed.
    async fn flush_round(&self, include_due: bool) {
        let dirty = std::mem::take(&mut *self.context.dirty.borrow_mut());
        let due: Vec<Rc<PartitionLog>> = if include_due {
            self.partitions()
                .into_iter()
                .filter(|p| p.fsync_due())
                .collect()
        } else {
            Vec::new()
        };
        if !dirty.is_empty() || !due.is_empty() {
            crate::metrics::with(|m| m.flush_round());
        }
        let all = dirty.iter().chain(due.iter());
        let results = futures::future::join_all(all.map(|log| log.flush(false))).await;
        for err in results.into_iter().filter_map(Result::err) {
            tracing::warn!(shard = self.shard.0, error = %err, "group commit failed");
        }
    }

    /// Checks free space and enters or leaves read-only mode (warns once on each change).
    /// Returns the capacity used for retention.disk.percent.
    pub async fn check_disk_space(&self) -> Result<u64, StorageError> {
        let broker = &self.context.broker;
        let mut space = self.context.io.disk_space(&broker.data_dir).await?;
        if let Some(capacity) = broker.capacity_override_bytes {
            space.capacity_bytes = capacity;
            space.free_bytes = space.free_bytes.min(capacity);
        }
        self.capacity_bytes.set(space.capacity_bytes);
        let pressure = is_disk_pressure(space, broker.min_free_bytes, broker.min_free_percent);
        if pressure != self.context.read_only.replace(pressure) {
            if pressure {
                tracing::warn!(
                    shard = self.shard.0,
                    free = space.free_bytes,
                    capacity = space.capacity_bytes,
                    "disk pressure: entering read-only mode"
                );
            } else {
                tracing::warn!(
                    shard = self.shard.0,
                    free = space.free_bytes,
                    "disk space recovered: leaving read-only mode"
                );
            }
        }
        Ok(space.capacity_bytes)
    }

    /// One retention pass over every log (disk check first).
    pub async fn run_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let capacity = self.check_disk_space().await?;
        let mut deleted = 0;
        for log in self.partitions() {
            match log.apply_retention(now_ms, capacity).await {
                Ok(n) => deleted += n,
                Err(err) => {
                    tracing::warn!(partition = %log.topic_partition(), error = %err, "retention failed")
                }
            }
        }
        Ok(deleted)
    }

    /// Checkpoints every log's recovery point.
    pub async fn checkpoint_all(&self) {
        for log in self.partitions() {
            if let Err(err) = log.checkpoint().await {
                tracing::warn!(partition = %log.topic_partition(), error = %err, "checkpoint failed");
            }
        }
    }

    /// Clean shutdown: flush and fdatasync everything, truncate active segments, write
    /// snapshots, checkpoints and clean-shutdown markers; stops the background tasks.
    pub async fn shutdown(&self) {
        // Closes run concurrently, a bounded number at a time (each is a few I/Os and fsyncs).
        for chunk in self.partitions().chunks(PARALLEL_FILE_OPS_MAX) {
            let closes = chunk.iter().map(|log| async move {
                if let Err(err) = log.close().await {
                    tracing::warn!(partition = %log.topic_partition(), error = %err, "unclean close");
                }
            });
            futures::future::join_all(closes).await;
        }
        self.context.closed.set(true);
        self.context.flusher_wake.wake_all();
    }
}

async fn flusher_loop(manager: Weak<LogManager>, context: Rc<ShardContext>) {
    loop {
        context
            .flusher_wake
            .wait_until(|| {
                context.closed.get() || context.tick_due.get() || !context.dirty.borrow().is_empty()
            })
            .await;
        if context.closed.get() {
            break;
        }
        let Some(manager) = manager.upgrade() else {
            break;
        };
        let tick = context.tick_due.replace(false);
        manager.flush_round(tick).await;
    }
    context.flusher_running.set(false);
}

async fn ticker_loop(context: Rc<ShardContext>) {
    while !context.closed.get() {
        glommio::timer::sleep(Duration::from_millis(FLUSH_TICK_MS)).await;
        context.tick_due.set(true);
        context.flusher_wake.wake_all();
    }
}

async fn maintenance_loop(manager: Weak<LogManager>) {
    let mut since_retention_ms = 0;
    let mut since_checkpoint_ms = 0;
    loop {
        let (tick_ms, retention_ms) = match manager.upgrade() {
            Some(m) if !m.context.closed.get() => {
                let retention_ms = m.context.broker.retention_check_interval_ms.max(1);
                (retention_ms.min(DISK_CHECK_INTERVAL_MS_MAX), retention_ms)
            }
            _ => break,
        };
        glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
        let Some(manager) = manager.upgrade() else {
            break;
        };
        if manager.context.closed.get() {
            break;
        }
        since_retention_ms += tick_ms;
        since_checkpoint_ms += tick_ms;
        if since_retention_ms >= retention_ms {
            since_retention_ms = 0;
            if let Err(err) = manager.run_retention(super::flush::wall_clock_ms()).await {
                tracing::warn!(shard = manager.shard.0, error = %err, "retention pass failed");
            }
        } else if let Err(err) = manager.check_disk_space().await {
            tracing::warn!(shard = manager.shard.0, error = %err, "disk space check failed");
        }
        if since_checkpoint_ms >= RECOVERY_POINT_CHECKPOINT_INTERVAL_MS {
            since_checkpoint_ms = 0;
            manager.checkpoint_all().await;
        }
    }
}
