//! The partition log: segments, sparse indexes, DMA appends with group commit, recovery,
//! idempotent-producer state and retention. Layered like Kafka/Redpanda:
//! `segment` (one `.log` + indexes) → `log` (`PartitionLog`: the segment set and its offsets) →
//! `manager` (`LogManager`: one per shard, owns the flusher and retention tasks).
//! All I/O goes through the seam in `io`. See docs/on-disk-format.md.

pub mod appender;
pub mod batch;
pub mod cleaner;
pub mod config;
pub mod decompress;
pub mod error;
pub mod fault_io;
pub mod file_names;
pub mod flush;
pub mod index;
pub mod io;
pub mod leader_epoch;
pub mod log;
pub mod manager;
pub mod producer_state;
pub mod record_walk;
pub mod recovery;
pub mod replicated;
pub mod retention;
pub mod segment;
pub mod slice;
pub mod transactions;
pub mod truncate;
pub mod txn_index;
pub mod waiters;

pub use config::{
    Acks, AppendOptions, AppendResult, CleanerConfig, CompactionConfig, FlushPolicy, LogConfig,
    ReadResult, StorageBrokerConfig,
};
pub use error::StorageError;
pub use io::{DiskSpace, FileKind, GlommioIo, IoBuffer, IoFile, StorageIo};
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::PartitionLog;
pub use manager::LogManager;
pub use producer_state::{BatchMetadata, ProducerEntry, TxnMarker};
pub use txn_index::AbortedTxn;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod leader_epoch_tests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod truncate_tests;
#[cfg(test)]
mod txn_tests;
