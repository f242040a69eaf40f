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
    /// `cleanup.policy` (`delete`, `compact`, or both) and the cleaner's topic settings.
    pub compaction: CompactionConfig,
}

/// A topic's `cleanup.policy` and the settings of its log cleaner (`storage::cleaner`).
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionConfig {
    /// `cleanup.policy` contains `delete`: retention.ms/retention.bytes delete old segments.
    pub delete: bool,
    /// `cleanup.policy` contains `compact`: the cleaner keeps the latest record per key.
    pub compact: bool,
    /// `min.cleanable.dirty.ratio`
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are never cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log with dirty records older than this is cleaned whatever
    /// its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones stay once cleaned.
    pub delete_retention_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete: true,
            compact: false,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: DAY_MS as i64,
        }
    }
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
            compaction: CompactionConfig::default(),
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
    /// The shard's log cleaner (`log.cleaner.*`).
    pub cleaner: CleanerConfig,
}

/// Broker settings of one shard's log cleaner. Kafka's values are per broker; each shard's cleaner
/// gets `1/shards` of the dedupe buffer and of the I/O rate, so the broker total is Kafka's.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`
    pub enable: bool,
    /// `log.cleaner.dedupe.buffer.size / shards`: bounds the key → offset map of one pass.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.max.bytes.per.second / shards` (read + written); `None` = unthrottled.
    pub io_max_bytes_per_second: Option<f64>,
    /// `log.cleaner.backoff.ms`: the sleep when no log is cleanable.
    pub backoff_ms: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            dedupe_buffer_bytes: 128 * MIB,
            io_max_bytes_per_second: None,
            backoff_ms: 15_000,
        }
    }
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
            cleaner: CleanerConfig::default(),
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
