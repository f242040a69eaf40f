//! Typed messages between shards. Everything here is `Send`; requests and replies travel
//! on two meshes (see `runtime::run`).

use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::controller::Outcome;
use crate::cluster::{ControllerCommand, ControllerError, MetadataImage};
use crate::model::{Offset, TopicPartition};

/// What travels on the mesh. Replies travel on the mesh too (not on a
/// cross-thread oneshot), so every cross-core wake-up goes through glommio's
/// bounded shared channels and no waker crosses threads. The caller matches the
/// reply to its call by `id`.
pub enum Envelope {
    Request {
        id: u64,
        from: usize,
        request: ShardRequest,
    },
    Response {
        id: u64,
        response: ShardResponse,
    },
}

pub enum ShardRequest {
    /// Install a new metadata image (open/close/reconfigure owned partitions).
    ApplyImage(Arc<MetadataImage>),
    /// A metadata change; only shard 0 (the controller) receives these.
    Controller(ControllerCommand),
    Produce(ProduceBatch),
    /// Partition reads; `max_bytes` is what is left of the response's budget: the owner
    /// reads its partitions in order and never past it (beyond the first batch).
    Fetch {
        items: Vec<FetchItem>,
        max_bytes: usize,
    },
    /// Resolve once any listed partition's high watermark (for a follower's fetch, `replica`:
    /// its written end) is above the offset, or after `wait_ms`.
    WaitForData {
        items: Vec<(TopicPartition, Offset)>,
        wait_ms: u64,
        replica: bool,
        /// read_committed: wait for the last stable offset instead of the high watermark.
        read_committed: bool,
    },
    ListOffsets(Vec<ListOffsetsItem>),
    /// OffsetForLeaderEpoch: where each requested epoch ends, from the leader epoch cache.
    EpochEndOffsets(Vec<EpochEndItem>),
    DeleteRecords(Vec<(TopicPartition, i64)>),
    LogDirs(Vec<TopicPartition>),
    /// WriteTxnMarkers: append end-transaction markers on the partitions' leaders (this
    /// shard); each partition's append place is taken when the request is taken.
    WriteTxnMarkers(Vec<MarkerItem>),
    /// DescribeProducers: the active producers of each partition.
    DescribeProducers(Vec<TopicPartition>),
    Group(Box<crate::group::GroupRequest>),
    /// For each (partition, producer id, epoch): does the producer have an ongoing transaction
    /// there at that epoch (a transactional produce needs no verification then)?
    OngoingTxns(Vec<(TopicPartition, i64, i16)>),
    /// A transaction coordinator request, to the shard that owns the id's state partition.
    Txn(Box<crate::txn::TxnRequest>),
    /// DescribeQuorum: the metadata quorum's state, as shard 0's Raft member sees it.
    DescribeQuorum,
    /// A scrape: this shard's metrics snapshot (see `metrics::gather`).
    Metrics,
}

impl ShardRequest {
    /// Work that counts against the owner's bound on mesh work in progress; metadata changes
    /// (which other work never waits for in a cycle) do not.
    pub fn is_data_work(&self) -> bool {
        !matches!(
            self,
            ShardRequest::ApplyImage(_) | ShardRequest::Controller(_) | ShardRequest::Metrics
        )
    }
}

pub enum ShardResponse {
    Applied,
    /// `None`: no quorum configured (a single node).
    Quorum(Option<crate::cluster::raft::QuorumState>),
    Controller(Result<Outcome, ControllerError>),
    Produce(Vec<ProduceResult>),
    Fetch(Vec<FetchResult>),
    DataReady,
    ListOffsets(Vec<ListOffsetsResult>),
    EpochEndOffsets(Vec<EpochEndResult>),
    DeleteRecords(Vec<(TopicPartition, i16, i64)>),
    LogDirs(Vec<(TopicPartition, u64)>),
    WriteTxnMarkers(Vec<MarkerResult>),
    DescribeProducers(Vec<ProducersResult>),
    Group(crate::group::GroupResponse),
    Txn(Box<crate::txn::TxnResponse>),
    OngoingTxns(Vec<bool>),
    Metrics(Box<crate::metrics::ShardSnapshot>),
    /// The target shard is gone (shutting down).
    Unavailable,
}

pub struct ProduceBatch {
    pub acks: i16,
    /// The request's `timeout_ms`: how long acks=all waits for replication.
    pub timeout_ms: i32,
    pub items: Vec<ProduceItem>,
}

pub struct ProduceItem {
    pub tp: TopicPartition,
    /// One validated v2 batch (CRC checked by `protocol::records`).
    pub records: Bytes,
}

#[derive(Clone, Debug)]
pub struct ProduceResult {
    pub tp: TopicPartition,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

pub struct FetchItem {
    pub tp: TopicPartition,
    pub fetch_offset: i64,
    pub max_bytes: usize,
    pub current_leader_epoch: i32,
    /// Kafka returns the first batch even when it exceeds the limits, so a consumer
    /// always makes progress; only the first partition of a response gets this.
    pub min_one_batch: bool,
    /// Set for a follower's fetch.
    pub replica: Option<ReplicaFetch>,
    /// isolation_level=1: served up to the last stable offset, with the aborted transactions.
    pub read_committed: bool,
}

/// What a follower's fetch of one partition adds (Fetch's replica id, v12's last fetched epoch).
#[derive(Copy, Clone, Debug)]
pub struct ReplicaFetch {
    pub replica_id: i32,
    pub last_fetched_epoch: i32,
}

pub struct FetchResult {
    pub tp: TopicPartition,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: FetchRecords,
    /// For a follower whose log diverged: the leader's (epoch, end offset) to truncate to.
    pub diverging_epoch: Option<(i32, i64)>,
    /// read_committed: (producer id, first offset) of the aborted transactions overlapping
    /// the fetched range.
    pub aborted_transactions: Vec<(i64, i64)>,
}

/// Record data of a fetched partition: a page-cache-resident file range (sent
/// with sendfile by the connection's shard), a range that is not resident (read by
/// the connection's shard, only if it survives the response's byte limit), or bytes
/// already read.
#[derive(Clone, Debug)]
pub enum FetchRecords {
    File(crate::storage::slice::FileSlice),
    Cold(crate::storage::slice::FileSlice),
    Bytes(Bytes),
}

impl FetchRecords {
    pub fn len(&self) -> usize {
        match self {
            FetchRecords::File(f) | FetchRecords::Cold(f) => f.len,
            FetchRecords::Bytes(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct ListOffsetsItem {
    pub tp: TopicPartition,
    pub timestamp: i64,
    pub current_leader_epoch: i32,
    /// isolation_level=1: "latest" is the last stable offset, and lookups stop below it.
    pub read_committed: bool,
}

/// One end-transaction marker to append (WriteTxnMarkers).
pub struct MarkerItem {
    pub tp: TopicPartition,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    /// How long the marker waits for the in-sync replicas (acks=all).
    pub timeout_ms: u64,
}

pub struct MarkerResult {
    pub tp: TopicPartition,
    pub producer_id: i64,
    pub error_code: i16,
}

/// One active producer of a partition (DescribeProducers).
#[derive(Clone, Debug)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// -1 outside a transaction.
    pub current_txn_start_offset: i64,
}

pub struct ProducersResult {
    pub tp: TopicPartition,
    pub error_code: i16,
    pub producers: Vec<ProducerSummary>,
}

pub struct EpochEndItem {
    pub tp: TopicPartition,
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// `leader_epoch` and `end_offset` are -1 when the epoch is unknown (Kafka's UNDEFINED).
pub struct EpochEndResult {
    pub tp: TopicPartition,
    pub error_code: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

pub struct ListOffsetsResult {
    pub tp: TopicPartition,
    pub error_code: i16,
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}
