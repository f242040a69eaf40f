//! The transaction coordinator (Kafka's EOS, KIP-98, with KIP-890 part 1's partition
//! verification): transactional ids, their producer ids and epochs, and the two-phase end of
//! every transaction.
//!
//! Placement: transactional id `T` lives in partition `abs(java_hash(T)) %
//! transaction.state.log.num.partitions` of `__transaction_state` (created on first use, as
//! Kafka does); the leader of that partition is `T`'s coordinator, and the shard that owns the
//! partition on that node holds `T`'s state ([`TxnCoordinator`] on that core). Handlers on other
//! cores forward a [`TxnRequest`] over the shard mesh.
//!
//! Layers, pure first:
//! - [`state`]: one transactional id's state machine, driven by explicit `now_ms`.
//! - [`records`]: the `__transaction_state` key/value codec (Kafka's format).
//! - [`coordinator`]: the per-shard async front: persistence, replay after a restart or a
//!   leadership change, the timer (timeouts, expiration), and the marker sender.
//! - [`client`]: connections to other brokers (markers to partition leaders; a partition
//!   leader's verification request to a coordinator).
//!
//! Architecture Invariant: nothing below `coordinator` does I/O or reads a clock.

pub mod client;
pub mod coordinator;
pub mod records;
pub mod request;
pub mod route;
pub mod state;
pub mod verify;

pub use coordinator::TxnCoordinator;
pub use request::{TxnRequest, TxnResponse};
pub use route::forward;

/// Name of the internal topic that holds transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka-named transaction settings of the broker.
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`
    pub partitions: i32,
    /// `transaction.state.log.replication.factor`
    pub replication_factor: i64,
    /// `transaction.state.log.min.isr`
    pub min_isr: i64,
    /// `transaction.state.log.segment.bytes` (also the snapshot threshold, as for groups)
    pub segment_bytes: u64,
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_interval_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`
    pub remove_interval_ms: u64,
}

impl TxnConfig {
    pub fn from_broker(b: &crate::config::BrokerConfig) -> TxnConfig {
        TxnConfig {
            partitions: b.int("transaction.state.log.num.partitions", 50).max(1) as i32,
            replication_factor: b.int("transaction.state.log.replication.factor", 3).max(1),
            min_isr: b.int("transaction.state.log.min.isr", 2).max(1),
            segment_bytes: b
                .int("transaction.state.log.segment.bytes", 104_857_600)
                .max(1024) as u64,
            max_timeout_ms: b.int("transaction.max.timeout.ms", 900_000).max(1) as i32,
            id_expiration_ms: b.int("transactional.id.expiration.ms", 604_800_000).max(1),
            abort_interval_ms: b
                .int(
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                    10_000,
                )
                .max(10) as u64,
            remove_interval_ms: b
                .int(
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                    3_600_000,
                )
                .max(10) as u64,
        }
    }
}

/// The `__transaction_state` partition of a transactional id (Kafka's placement, the same
/// hash as a group's).
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::runtime::placement::group_partition(transactional_id, partitions)
}

/// The `__transaction_state` partition of `transactional_id`, once that topic exists.
pub fn state_partition(
    image: &crate::cluster::MetadataImage,
    transactional_id: &str,
) -> Option<crate::model::TopicPartition> {
    let n = image.topic(TRANSACTION_STATE_TOPIC)?.partition_count();
    Some(crate::model::TopicPartition::new(
        TRANSACTION_STATE_TOPIC,
        partition_for(transactional_id, n),
    ))
}

/// Wall clock in milliseconds since the epoch; only the coordinator reads it.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
