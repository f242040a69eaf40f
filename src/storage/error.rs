//! Typed storage errors. Mapped to Kafka error codes by the handler layer, not here.

use crate::model::{Offset, ProducerEpoch, ProducerId};

/// Everything the partition log can refuse or fail with.
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    /// The requested offset is below the log start offset or above the high watermark.
    #[error("offset {requested} out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        requested: Offset,
        log_start_offset: Offset,
        high_watermark: Offset,
    },
    /// Bytes handed to `append` are not well-formed v2 batches, or bytes on disk failed verification.
    #[error("corrupt record: {0}")]
    CorruptRecord(String),
    /// The data volume is below its free-space floor; the shard is read-only until space returns.
    #[error("disk pressure: the log is read-only")]
    DiskPressure,
    /// An I/O error from the device (EIO, ENOSPC, short write, ...). Nothing of the failed append is visible.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The batch's first sequence does not follow the producer's last sequence.
    #[error("out of order sequence for producer {producer_id:?}: expected {expected}, received {received}")]
    OutOfOrderSequence {
        producer_id: ProducerId,
        expected: i32,
        received: i32,
    },
    /// The producer epoch is older than the one the log has seen (Kafka's PRODUCER_FENCED /
    /// INVALID_PRODUCER_EPOCH).
    #[error(
        "invalid producer epoch for {producer_id:?}: current {current:?}, received {received:?}"
    )]
    InvalidProducerEpoch {
        producer_id: ProducerId,
        current: ProducerEpoch,
        received: ProducerEpoch,
    },
    /// An end-transaction marker from a coordinator older than the last marker's (Kafka's
    /// TRANSACTION_COORDINATOR_FENCED).
    #[error(
        "coordinator epoch {received} of a marker for {producer_id:?} is older than {current}"
    )]
    CoordinatorFenced {
        producer_id: ProducerId,
        current: i32,
        received: i32,
    },
    /// A non-transactional batch from a producer with an ongoing transaction (Kafka's
    /// INVALID_TXN_STATE).
    #[error("producer {producer_id:?} has an ongoing transaction")]
    InvalidTxnState { producer_id: ProducerId },
    /// Kept for the broker's mapping; the log currently accepts unknown producers (Kafka >= 2.5).
    #[error("unknown producer id {0:?}")]
    UnknownProducerId(ProducerId),
    /// A single batch is larger than `segment.bytes`.
    #[error("record batch of {size} bytes exceeds segment.bytes {segment_bytes}")]
    RecordBatchTooLarge { size: usize, segment_bytes: u64 },
    /// The partition's log stopped after an fdatasync error (fail-stop): nothing written since
    /// the last good fdatasync is trusted. Retriable: the log recovers (as after an unclean
    /// stop) when it is reopened or the broker restarts.
    #[error("partition log stopped after an fdatasync error; it recovers when reopened")]
    LogFailed,
    /// This replica stopped leading the partition before the append was replicated (or a
    /// truncation removed it): Kafka's NOT_LEADER_OR_FOLLOWER, retriable.
    #[error("this replica is no longer the partition's leader")]
    NotLeader,
    /// acks=all: the in-sync replicas did not make the append durable within the request's
    /// timeout (Kafka's REQUEST_TIMED_OUT; the append stays in the log).
    #[error("the in-sync replicas did not acknowledge the append in time")]
    ReplicationTimeout,
    /// The log (or the shard's log manager) is closed.
    #[error("log closed")]
    Closed,
}

impl StorageError {
    /// A copy of an I/O failure that can be handed to every waiter of a failed write.
    pub(crate) fn io_copy(err: &std::io::Error) -> StorageError {
        StorageError::Io(std::io::Error::new(err.kind(), err.to_string()))
    }
}
