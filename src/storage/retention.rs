//! Retention (retention.ms, retention.bytes, retention.disk.percent), DeleteRecords, and the
//! disk-pressure rule. Only whole sealed segments are deleted; the active segment never is.

use std::rc::Rc;
use std::time::Duration;

use crate::model::Offset;

use super::error::StorageError;
use super::file_names::LOG_START_OFFSET_FILE;
use super::io::DiskSpace;
use super::log::PartitionLog;
use super::recovery::encode_checkpoint;
use super::segment::{Segment, NO_TIMESTAMP};

/// The byte limit of one partition from retention.bytes and retention.disk.percent.
pub fn retention_bytes_limit(
    retention_bytes: Option<i64>,
    disk_percent: Option<f64>,
    partition_count: u32,
    capacity_bytes: u64,
) -> Option<u64> {
    let by_bytes = retention_bytes.filter(|b| *b >= 0).map(|b| b as u64);
    let by_disk = disk_percent
        .filter(|p| *p > 0.0)
        .map(|p| (capacity_bytes as f64 * p / 100.0 / f64::from(partition_count.max(1))) as u64);
    match (by_bytes, by_disk) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether free space is below the configured floor (read-only mode).
pub fn is_disk_pressure(
    space: DiskSpace,
    min_free_bytes: Option<u64>,
    min_free_percent: Option<f64>,
) -> bool {
    let below_bytes = min_free_bytes.is_some_and(|m| space.free_bytes < m);
    let below_percent = min_free_percent
        .is_some_and(|p| (space.free_bytes as f64) * 100.0 < p * space.capacity_bytes as f64);
    below_bytes || below_percent
}

impl PartitionLog {
    /// Deletes the oldest sealed segments that retention.ms, the byte limits, or the log start
    /// offset make obsolete. Returns the number of segments deleted.
    pub async fn apply_retention(
        &self,
        now_ms: i64,
        capacity_bytes: u64,
    ) -> Result<usize, StorageError> {
        let _delete = self.delete_lock.lock().await;
        let cfg = self.config();
        let limit = retention_bytes_limit(
            cfg.retention_bytes,
            cfg.retention_disk_percent,
            cfg.topic_partition_count,
            capacity_bytes,
        );
        // cleanup.policy without `delete` (compact only): only the log start offset deletes.
        let (retention_ms, limit) = if cfg.compaction.delete {
            (cfg.retention_ms.filter(|ms| *ms >= 0), limit)
        } else {
            (None, None)
        };
        let doomed = self.obsolete_segments(now_ms, retention_ms, limit).await?;
        self.delete_segments(&doomed).await?;
        Ok(doomed.len())
    }

    /// Base offsets of the prefix of sealed segments that are below the log start offset, older
    /// than `retention_ms`, or over the byte `limit` (Kafka stops at the first segment to keep).
    async fn obsolete_segments(
        &self,
        now_ms: i64,
        retention_ms: Option<i64>,
        limit: Option<u64>,
    ) -> Result<Vec<i64>, StorageError> {
        let segments: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        let log_start = self.offsets.get().log_start;
        // The log start offset never passes the first unstable offset (an ongoing transaction
        // keeps its batches, and read_committed consumers their aborted list).
        let stable = self.last_stable_offset().0;
        let mut remaining = self.size_bytes();
        let mut doomed = Vec::new();
        for pair in segments.windows(2) {
            let (segment, next_base) = (&pair[0], pair[1].base_offset().0);
            if next_base > stable {
                break;
            }
            let below_start = next_base <= log_start;
            let expired = match retention_ms {
                Some(ms) => {
                    let ts = segment.largest_timestamp().await?;
                    ts != NO_TIMESTAMP && now_ms - ts > ms
                }
                None => false,
            };
            let over = limit.is_some_and(|l| remaining - segment.size() >= l);
            if !(below_start || expired || over) {
                break;
            }
            remaining -= segment.size();
            doomed.push(segment.base_offset().0);
        }
        Ok(doomed)
    }

    /// DeleteRecords: advances the log start offset to `offset` and deletes whole segments below it.
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _delete = self.delete_lock.lock().await;
        let offsets = self.offsets.get();
        // Not beyond the first unstable offset (<= the high watermark): Kafka's log start
        // offset never passes an ongoing transaction.
        if offset.0 > self.last_stable_offset().0 || offset.0 < 0 {
            return Err(self.out_of_range(offset));
        }
        if offset.0 > offsets.log_start {
            let checkpoint = encode_checkpoint(&self.tp, offset);
            self.shard
                .io
                .write_file_atomic(&self.dir.join(LOG_START_OFFSET_FILE), checkpoint)
                .await?;
            let mut offsets = self.offsets.get();
            offsets.log_start = offsets.log_start.max(offset.0);
            self.set_offsets(offsets);
        }
        let doomed = self.obsolete_segments(0, None, None).await?;
        self.delete_segments(&doomed).await?;
        Ok(self.log_start_offset())
    }

    /// Deletes exactly the segments with these base offsets, the oldest ones (never the active
    /// one). Called with `delete_lock` held, so no other deletion changed the set since they
    /// were chosen. The new log start offset is checkpointed first, so a restart never
    /// resurrects a segment whose deletion was pending.
    async fn delete_segments(&self, doomed_bases: &[i64]) -> Result<(), StorageError> {
        assert!(self.delete_lock.is_locked());
        let Some(&last_doomed) = doomed_bases.last() else {
            return Ok(());
        };
        let new_start = {
            let segments = self.segments.borrow();
            let oldest: Vec<i64> = segments.keys().take(doomed_bases.len()).copied().collect();
            assert_eq!(
                oldest, doomed_bases,
                "retention deletes the oldest segments it chose"
            );
            match segments.range(last_doomed + 1..).next() {
                Some((base, _)) => *base,
                None => panic!("never delete the active segment"),
            }
        };
        if new_start > self.offsets.get().log_start {
            let checkpoint = encode_checkpoint(&self.tp, Offset(new_start));
            let path = self.dir.join(LOG_START_OFFSET_FILE);
            self.shard.io.write_file_atomic(&path, checkpoint).await?;
        }
        let doomed: Vec<Rc<Segment>> = {
            let mut segments = self.segments.borrow_mut();
            let doomed = doomed_bases
                .iter()
                .filter_map(|b| segments.remove(b))
                .collect();
            let mut txn_index = self.txn_index.borrow_mut();
            for base in doomed_bases {
                txn_index.remove_segment(*base);
            }
            assert!(!segments.is_empty(), "never delete the active segment");
            doomed
        };
        let mut offsets = self.offsets.get();
        if new_start > offsets.log_start {
            offsets.log_start = new_start;
            self.set_offsets(offsets);
        }
        let delay_ms = self.config.borrow().file_delete_delay_ms;
        for segment in &doomed {
            tracing::info!(partition = %self.tp, base = segment.base_offset().0, "deleting segment");
            segment.mark_deleted().await?;
        }
        self.shard.io.sync_dir(&self.dir).await?;
        for segment in doomed {
            if delay_ms == 0 {
                segment.delete_marked_files().await?;
            } else {
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
                    if let Err(err) = segment.delete_marked_files().await {
                        tracing::warn!(error = %err, "deleting segment files");
                    }
                })
                .detach();
            }
        }
        Ok(())
    }
}
