//! Storage configuration (Kafka's property names in the field docs) and the append/read types.

use std::path::PathBuf;

use bytes::Bytes;

use crate::model::{LeaderEpoch, Offset};

const MIB: u64 = 1024 * 1024;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Per-topic log configuration. `Default` = Kafka's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: Option<u64>,
    /// `segment.jitter.ms` (broker default `log.roll.jitter.ms` / `log.roll.jitter.hours`)
    pub segment_jitter_ms: u64,
    /// `segment.index.bytes`
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u64,
    /// `retention.ms`; `None` = -1 (infinite)
    pub retention_ms: Option<i64>,
    /// `retention.bytes`; `None` = -1
    pub retention_bytes: Option<i64>,
    /// `retention.disk.percent` (ours): the topic keeps its data on this broker under this share
    /// of the data volume capacity, divided evenly across its partitions.
    pub retention_disk_percent: Option<f64>,
    /// Partitions of the topic, to divide the disk share.
    pub topic_partition_count: u32,
    /// `flush.messages`; `None` = fsync every append (durable default).
    pub flush_messages: Option<u64>,
    /// `flush.ms`; `None` = no timer relaxation.
    pub flush_ms: Option<u64>,
    /// `message.timestamp.type=LogAppendTime`
    pub log_append_time: bool,
    /// `file.delete.delay.ms`
    pub file_delete_delay_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * MIB,
            segment_ms: Some(7 * DAY_MS),
            segment_jitter_ms: 0,
            segment_index_bytes: 10 * MIB,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * DAY_MS as i64),
            retention_bytes: None,
            retention_disk_percent: None,
            topic_partition_count: 1,
            flush_messages: None,
            flush_ms: None,
            log_append_time: false,
            file_delete_delay_ms: 60_000,
        }
    }
}

/// Broker-wide storage settings for one shard's log manager.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageBrokerConfig {
    /// `log.dirs` (one directory).
    pub data_dir: PathBuf,
    /// `log.retention.check.interval.ms`; also the disk-space check period.
    pub retention_check_interval_ms: u64,
    /// Read-only below this many free bytes.
    pub min_free_bytes: Option<u64>,
    /// Read-only below this percentage of free capacity.
    pub min_free_percent: Option<f64>,
    /// Capacity to use instead of the volume's (tests, or a quota on a shared volume).
    pub capacity_override_bytes: Option<u64>,
    /// `log.flush.interval.messages` (default for topics without `flush.messages`).
    pub flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms` (default for topics without `flush.ms`).
    pub flush_interval_ms: Option<u64>,
}

impl StorageBrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StorageBrokerConfig {
            data_dir: data_dir.into(),
            retention_check_interval_ms: 300_000,
            min_free_bytes: None,
            min_free_percent: None,
            capacity_override_bytes: None,
            flush_interval_messages: None,
            flush_interval_ms: None,
        }
    }
}

/// When `append` resolves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: once queued.
    None,
    /// acks=1: once the O_DIRECT write completed on the device.
    Leader,
    /// acks=-1: once written and fdatasync'ed (or written, when flush.messages/flush.ms relax it).
    All,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AppendOptions {
    pub acks: Acks,
    pub leader_epoch: LeaderEpoch,
    pub now_ms: i64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, as stored.
    pub records: Bytes,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub last_stable_offset: Offset,
}

/// The flush policy of one partition, resolved from topic and broker settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    /// fsync once this many messages are unflushed; `None` with `ms` also `None` = every append.
    pub messages: Option<u64>,
    pub ms: Option<u64>,
}

impl FlushPolicy {
    pub fn resolve(log: &LogConfig, broker: &StorageBrokerConfig) -> FlushPolicy {
        FlushPolicy {
            messages: log.flush_messages.or(broker.flush_interval_messages),
            ms: log.flush_ms.or(broker.flush_interval_ms),
        }
    }
    /// Every append is fsync'ed before it counts (the high watermark waits for fdatasync).
    pub fn is_sync(&self) -> bool {
        match (self.messages, self.ms) {
            (Some(messages), _) => messages <= 1,
            (None, ms) => ms.is_none(),
        }
    }
    /// A relaxed policy's fsync is due.
    pub fn fsync_due(&self, unflushed_messages: u64, since_fsync_ms: u64) -> bool {
        self.messages.is_some_and(|m| unflushed_messages >= m)
            || self.ms.is_some_and(|ms| since_fsync_ms >= ms)
    }
}
