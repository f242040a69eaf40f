//! Group coordinator: classic consumer groups (JoinGroup/SyncGroup/Heartbeat) and
//! KIP-848 consumer groups (ConsumerGroupHeartbeat), plus committed offsets.
//!
//! Placement: group `G` lives in partition `abs(java_hash(G)) % offsets.topic.num.partitions`
//! of `__consumer_offsets`; the shard that owns that partition owns the group's state
//! ([`GroupCoordinator`] on that core). Handlers on other cores forward a
//! [`GroupRequest`] through the shard mesh and get a [`GroupResponse`] back.
//!
//! Layers, pure first:
//! - [`classic`]: the classic group state machine, driven by explicit `now_ms`.
//! - [`consumer`]: the KIP-848 group state machine; [`assignor`] computes targets.
//! - [`offsets`]: committed offsets of one group, with retention.
//! - [`records`]: the `__consumer_offsets` key/value codec (Kafka's format).
//! - [`coordinator`]: the per-shard async front: persistence, replay, timers; `snapshot`
//!   keeps the offsets log small.
//! - [`txn`]: TxnOffsetCommit (pending transactional offsets) and transaction markers;
//!   [`txn_hook`] is the entry for markers written by WriteTxnMarkers.
//!
//! Architecture Invariant: nothing below `coordinator` does I/O or reads a clock.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod coordinator;
pub mod dispatch;
pub mod offsets;
pub mod ops;
pub mod records;
pub mod request;
mod snapshot;
pub mod txn;
pub mod txn_hook;
#[cfg(test)]
mod txn_tests;

pub use coordinator::GroupCoordinator;
pub use dispatch::dispatch;
pub use request::{GroupRequest, GroupResponse};
pub use txn_hook::txn_marker_written;

/// Name of the internal topic that holds group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Typed errors of the group module. Handlers map them to Kafka error codes.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("the offsets partition {0} is not present on this shard")]
    OffsetsPartitionMissing(i32),
    #[error("writing to the offsets log failed: {0}")]
    Append(String),
    #[error("reading the offsets log failed: {0}")]
    Read(String),
    #[error("malformed __consumer_offsets record: {0}")]
    Malformed(&'static str),
    #[error("this node does not lead the offsets partition")]
    NotLeader,
    #[error("the producer epoch is older than the transaction's")]
    InvalidProducerEpoch,
}

/// Kafka-compatible group configuration (property names in the doc comments).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`
    pub offsets_topic_partitions: i32,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`
    pub max_group_size: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`
    pub consumer_max_group_size: usize,
    /// Bytes appended to one offsets partition before a compacted snapshot of its live
    /// state is written and the log start advanced past the older records
    /// (`offsets.topic.segment.bytes`; at least twice the last snapshot).
    pub snapshot_bytes_min: u64,
    /// Period of the coordinator's timer task (session/rebalance deadlines).
    pub tick_interval_ms: u64,
    /// `transaction.partition.verification.enable`: TxnOffsetCommit is verified with the
    /// transaction coordinator (KIP-890).
    pub verify_transactions: bool,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_group_size: usize::MAX,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_max_group_size: usize::MAX,
            snapshot_bytes_min: 104_857_600,
            tick_interval_ms: 100,
            verify_transactions: true,
        }
    }
}

/// The `__consumer_offsets` partition that holds a group: Kafka's
/// `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions` (one definition, in placement).
pub use crate::runtime::placement::group_partition as offsets_partition_for;

/// Wall clock in milliseconds since the epoch; only the coordinator reads it.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_matches_kafka() {
        // "my-group".hashCode() == -1906497762 on the JVM.
        assert_eq!(offsets_partition_for("my-group", 50), 12);
    }
}
