//! The log cleaner (compaction, `cleanup.policy=compact`): one background task per shard, like
//! one of Kafka's `LogCleaner` threads, over the logs of that shard only.
//!
//! Each round it picks the dirtiest eligible log (Kafka's `LogCleanerManager.grabFilthiestLog`:
//! dirty ratio ≥ `min.cleanable.dirty.ratio`, or dirty records older than
//! `max.compaction.lag.ms`), builds the key → latest offset map over its dirty section
//! (`rewrite::OffsetMap`, bounded by this shard's share of `log.cleaner.dedupe.buffer.size`),
//! then rewrites its sealed segments below [`cleanable_end`] in groups of at most
//! `segment.bytes`, keeping the latest record per key (`rewrite`), and swaps each cleaned group
//! in (`swap`, crash-safe). With no log to clean it sleeps `log.cleaner.backoff.ms`.
//!
//! Never blocks the executor: every read and write is an await on the I/O seam, the CPU work
//! (decoding, hashing, recompressing) yields between batches (`glommio::yield_if_needed`), and
//! I/O is throttled to this shard's share of `log.cleaner.io.max.bytes.per.second`.
//! The active segment is never touched; nor is anything at or above the high watermark.
//! Offsets never change.
//!
//! `cleaner-offset-checkpoint` (Kafka's format) records per partition the first offset not yet
//! cleaned, so a restart does not clean the whole log again.
//! Lives on the shard that owns the logs; `!Send`.

pub mod pass;
pub mod rewrite;
pub mod swap;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::model::TopicPartition;

use super::file_names::CLEANER_CHECKPOINT_FILE;
use super::io::StorageIo;
use super::log::PartitionLog;
use super::manager::LogManager;

/// Totals of one shard's cleaner since start-up (for log lines and metrics).
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct CleanerStats {
    pub passes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub segments_replaced: u64,
    pub elapsed_ms: u64,
}

/// Per shard: the cleaner checkpoint and the stats. Owned by the shard's `LogManager`.
#[derive(Default)]
pub struct CleanerState {
    /// First offset not yet cleaned, per partition (what `cleaner-offset-checkpoint` holds).
    pub checkpoints: RefCell<BTreeMap<TopicPartition, i64>>,
    pub stats: RefCell<CleanerStats>,
    loaded: std::cell::Cell<bool>,
}

/// The end (exclusive) of what may be cleaned: the last stable offset, capped at the active
/// segment's base offset. The one place this is decided.
pub fn cleanable_end(log: &PartitionLog) -> i64 {
    let active_base = log.active_segment().base_offset().0;
    // The last stable offset (at most the high watermark): nothing of an open transaction, or
    // of one whose marker is not yet replicated, is cleaned (Kafka's firstUnstableOffset).
    log.last_stable_offset().0.min(active_base)
}

/// The checkpoint file of shard `shard` in `data_dir`.
pub fn checkpoint_path(data_dir: &std::path::Path, shard: usize) -> PathBuf {
    if shard == 0 {
        data_dir.join(CLEANER_CHECKPOINT_FILE)
    } else {
        data_dir.join(format!("{CLEANER_CHECKPOINT_FILE}-{shard}"))
    }
}

/// Kafka's offset checkpoint text: `0`, the entry count, then `topic partition offset` lines.
pub fn encode_checkpoints(entries: &BTreeMap<TopicPartition, i64>) -> Vec<u8> {
    let mut out = format!("0\n{}\n", entries.len());
    for (tp, offset) in entries {
        out.push_str(&format!("{} {} {offset}\n", tp.topic, tp.partition));
    }
    out.into_bytes()
}

/// Parses Kafka's offset checkpoint text; `None` if it is not one.
pub fn decode_checkpoints(bytes: &[u8]) -> Option<BTreeMap<TopicPartition, i64>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = BTreeMap::new();
    for line in lines.take(count) {
        let mut parts = line.split_whitespace();
        let (topic, partition, offset) = (parts.next()?, parts.next()?, parts.next()?);
        out.insert(
            TopicPartition::new(topic.to_string(), partition.parse().ok()?),
            offset.parse().ok()?,
        );
    }
    (out.len() == count).then_some(out)
}

/// Paces the cleaner's I/O to `rate` bytes per second (Kafka's `Throttler`), in windows of
/// [`THROTTLE_WINDOW_MS`].
pub struct Throttle {
    rate: Option<f64>,
    window_start: Instant,
    window_bytes: u64,
}

/// Length of one throttle window.
pub const THROTTLE_WINDOW_MS: u64 = 100;

impl Throttle {
    pub fn new(rate: Option<f64>) -> Throttle {
        Throttle {
            rate,
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }
    /// Counts `bytes` of I/O and sleeps as long as the rate asks.
    pub async fn account(&mut self, bytes: u64) {
        let Some(rate) = self.rate else { return };
        self.window_bytes += bytes;
        let elapsed = self.window_start.elapsed();
        let due = Duration::from_secs_f64(self.window_bytes as f64 / rate);
        if due > elapsed {
            glommio::timer::sleep(due - elapsed).await;
        }
        if self.window_start.elapsed() >= Duration::from_millis(THROTTLE_WINDOW_MS) {
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
    }
}

impl CleanerState {
    async fn load(&self, io: &dyn StorageIo, path: &std::path::Path) {
        if self.loaded.replace(true) {
            return;
        }
        match io.read_file(path).await {
            Ok(Some(bytes)) => match decode_checkpoints(&bytes) {
                Some(entries) => *self.checkpoints.borrow_mut() = entries,
                None => {
                    tracing::warn!(path = %path.display(), "unreadable cleaner checkpoint: cleaning from the log start")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading the cleaner checkpoint")
            }
        }
    }

    /// The first dirty offset of `log`: its checkpoint, reset to the log start when out of range
    /// (as Kafka's `LogCleanerManager.cleanableOffsets`).
    pub fn first_dirty(&self, log: &PartitionLog) -> i64 {
        let start = log.log_start_offset().0;
        let end = log.log_end_offset().0;
        match self.checkpoints.borrow().get(log.topic_partition()) {
            Some(o) if *o >= start && *o <= end => *o,
            _ => start,
        }
    }
}

/// The cleaner task of one shard (spawned by `LogManager::start_background` when
/// `log.cleaner.enable`). Ends when the manager closes.
pub async fn cleaner_loop(manager: Weak<LogManager>) {
    loop {
        let Some(m) = manager.upgrade() else { break };
        if m.is_closed() {
            break;
        }
        let backoff = Duration::from_millis(m.broker_config().cleaner.backoff_ms);
        let cleaned = clean_dirtiest(&m).await;
        drop(m);
        if !cleaned {
            glommio::timer::sleep(backoff).await;
        } else {
            glommio::yield_if_needed().await;
        }
    }
}

/// One round: cleans the dirtiest eligible log of the shard, if any. Returns whether one was.
pub async fn clean_dirtiest(manager: &LogManager) -> bool {
    let state = manager.cleaner_state();
    let path = checkpoint_path(&manager.broker_config().data_dir, manager.shard().0);
    state.load(manager.io().as_ref(), &path).await;
    let now_ms = super::flush::wall_clock_ms();
    let mut best: Option<(f64, Rc<PartitionLog>, pass::Cleanable)> = None;
    for log in manager.partitions() {
        if !log.config().compaction.compact || log.is_failed() {
            continue;
        }
        let first_dirty = state.first_dirty(&log);
        let cleanable = match pass::cleanable(&log, first_dirty, now_ms).await {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(partition = %log.topic_partition(), error = %e, "cleaner: sizing the dirty section");
                continue;
            }
        };
        if best.as_ref().is_none_or(|(r, _, _)| cleanable.ratio > *r) {
            best = Some((cleanable.ratio, log, cleanable));
        }
    }
    let Some((_, log, cleanable)) = best else {
        return false;
    };
    let cfg = manager.broker_config().cleaner.clone();
    let tp = log.topic_partition().clone();
    match pass::clean(&log, &cleanable, &cfg, now_ms).await {
        Ok(outcome) => {
            {
                let mut s = state.stats.borrow_mut();
                s.passes += 1;
                s.bytes_read += outcome.bytes_read;
                s.bytes_written += outcome.bytes_written;
                s.records_read += outcome.records_read;
                s.records_kept += outcome.records_kept;
                s.segments_replaced += outcome.segments_replaced;
                s.elapsed_ms += outcome.elapsed_ms;
            }
            let ratio = if outcome.bytes_read == 0 {
                1.0
            } else {
                outcome.bytes_written as f64 / outcome.bytes_read as f64
            };
            let mb_per_s =
                outcome.bytes_read as f64 / 1e6 / (outcome.elapsed_ms.max(1) as f64 / 1e3);
            tracing::info!(
                partition = %tp,
                first_dirty = cleanable.first_dirty,
                cleaned_to = outcome.next_dirty,
                bytes_read = outcome.bytes_read,
                bytes_written = outcome.bytes_written,
                size_ratio = format!("{ratio:.3}"),
                records_read = outcome.records_read,
                records_kept = outcome.records_kept,
                segments_replaced = outcome.segments_replaced,
                elapsed_ms = outcome.elapsed_ms,
                mb_per_s = format!("{mb_per_s:.1}"),
                "cleaner pass"
            );
            state
                .checkpoints
                .borrow_mut()
                .insert(tp, outcome.next_dirty);
            let entries = encode_checkpoints(&state.checkpoints.borrow());
            if let Err(e) = manager.io().write_file_atomic(&path, entries).await {
                tracing::warn!(error = %e, "writing the cleaner checkpoint");
            }
            true
        }
        Err(e) => {
            tracing::warn!(partition = %tp, error = %e, "cleaner pass failed");
            // Do not spin on a log that fails: its checkpoint moves on only when a pass ends.
            false
        }
    }
}

/// Drops the checkpoint of a removed partition (its next log starts dirty).
pub fn forget(state: &CleanerState, tp: &TopicPartition) {
    state.checkpoints.borrow_mut().remove(tp);
}

#[cfg(test)]
mod tests;
