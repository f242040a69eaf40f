//! Every bound of the broker in one place, named with the qualifier last.
//!
//! Bounds that an operator may change are broker properties (see `config`);
//! these are the fixed ones and the defaults for the configurable ones.

/// Largest frame the broker reads before it refuses the connection
/// (`socket.request.max.bytes`, Kafka's default).
pub const SOCKET_REQUEST_BYTES_DEFAULT: usize = 100 * 1024 * 1024;
/// Largest record batch accepted on a topic (`message.max.bytes`, Kafka's default).
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1_048_588;
/// Requests read from one connection whose responses are not yet written.
/// Clients pipeline up to 5 by default; the bound keeps a client from queuing without end.
pub const INFLIGHT_REQUESTS_PER_CONNECTION_MAX: usize = 32;
/// Response bytes one connection may hold made and not yet written before it stops reading
/// requests (Kafka stops after one response; Sluice pipelines within this many bytes).
/// A handler that copies record bytes into memory (a Fetch of cold ranges) reserves them
/// first and waits while they do not fit, unless its response is the next to leave; so a
/// connection holds at most this plus one response. One response is at most
/// `FETCH_RESPONSE_BYTES_MAX` of records (`fetch.max.bytes`, Kafka's default) plus headers;
/// a client that asks for less pipelines more. Requests are bounded apart from it
/// (`socket.request.max.bytes` each, `queued.max.request.bytes` per broker).
pub const RESPONSE_QUEUED_BYTES_PER_CONNECTION_MAX: usize = 16 * 1024 * 1024;
/// The buffer a connection reads requests through (larger frame bodies bypass it),
/// taken from the shard's `queued.max.request.bytes` share when the connection opens.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// The read buffer of a connection that opens while the budget has no room for
/// `READ_BUFFER_BYTES`: outside the budget, so at most `max.connections` times this.
pub const READ_BUFFER_UNCOUNTED_BYTES: usize = 4 * 1024;
/// Request bytes held in memory at once, broker-wide (`queued.max.request.bytes`),
/// split evenly across shards. Kafka's default is -1 (no bound); Sluice bounds it.
pub const QUEUED_REQUEST_BYTES_DEFAULT: usize = 512 * 1024 * 1024;
/// Largest piece of a frame's buffer allocated (and zeroed) ahead of the bytes that
/// fill it, so a frame that arrives slowly is resident only as far as it arrived.
pub const FRAME_READ_CHUNK_BYTES: usize = 1024 * 1024;
/// Per-shard limit on how often a refused-connection warning is logged.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 1000;
/// Open client connections per shard (`max.connections` divided across shards).
pub const CONNECTIONS_MAX_DEFAULT: usize = 4096;
/// Bytes the records of one compressed batch may decompress to. Produce validation walks them as
/// a stream and refuses the batch (CORRUPT_MESSAGE) past this, so a decompression bomb costs a
/// bounded amount of CPU and no memory. The same as the largest batch the log stores
/// (`storage::batch::BATCH_BYTES_MAX`): what a consumer holds in memory for one batch.
/// KIP-467 record errors listed in one partition's Produce answer (one per keyless record on a
/// compacted topic); a batch under `message.max.bytes` holds fewer records than this.
pub const PRODUCE_RECORD_ERRORS_MAX: usize = 1 << 18;
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The buffer per shard that the record walk reads decompressed bytes through.
pub const DECOMPRESSION_SCRATCH_BYTES: usize = 32 * 1024;
/// Messages queued on one cross-core channel before senders wait.
pub const MESH_CHANNEL_MESSAGES_MAX: usize = 1024;
/// Mesh requests (partition and group work from other shards) one shard works on at once;
/// beyond it the shard stops reading its request mesh and senders wait.
pub const MESH_REQUESTS_IN_PROGRESS_MAX: usize = 1024;
/// Long polls (a Fetch's wait for data) from other shards parked on one shard at once. They
/// hold no permit of `MESH_REQUESTS_IN_PROGRESS_MAX` (parked for up to `FETCH_WAIT_MS_MAX`, they
/// would stop the mesh for that long); past this bound a wait is answered at once and its
/// fetch re-reads. Each holds only its partition list, whose request frame its own shard's
/// `queued.max.request.bytes` share still counts while the fetch waits.
pub const MESH_WAITS_PARKED_MAX: usize = 16 * 1024;
/// Incremental fetch sessions (KIP-227) cached per shard (`max.incremental.fetch.session.cache.slots`).
pub const FETCH_SESSIONS_PER_SHARD_MAX: usize = 1000;
/// Longest `max_wait_ms` a fetch may park for.
pub const FETCH_WAIT_MS_MAX: i64 = 30_000;

/// How long a WriteTxnMarkers marker waits for the in-sync replicas (Kafka's
/// `request.timeout.ms` default, which its marker appends use).
pub const TXN_MARKER_TIMEOUT_MS: u64 = 30_000;
/// Bytes one Fetch response may carry, whatever the client asks (`fetch.max.bytes`).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 55 * 1024 * 1024;
/// Partitions a topic may have.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;
/// Partitions one ElectLeaders request (or one automatic rebalance) may name: Kafka's bound
/// on the records of one controller operation (`MAX_RECORDS_PER_USER_OP`).
pub const ELECT_LEADERS_PARTITIONS_MAX: usize = 10_000;
/// Partitions one AlterPartitionReassignments request may name (Kafka's `MAX_RECORDS_PER_USER_OP`):
/// the whole request is one metadata command.
pub const REASSIGNMENT_PARTITIONS_PER_REQUEST_MAX: usize = 10_000;
/// Longest topic name Kafka allows.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// io_uring memory per executor; the machines have an 8 MiB locked-memory limit shared by all shards.
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 1024 * 1024;
/// io_uring ring depth per executor.
pub const EXECUTOR_RING_DEPTH: usize = 256;
/// Producer ids handed to a shard per controller allocation.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Largest frame on the CONTROLLER listener (Raft RPCs, forwarded commands, control requests);
/// a longer length prefix closes the connection.
pub const CONTROL_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest cluster id carried in a CONTROLLER frame (Kafka's are 22 characters).
pub const CONTROL_CLUSTER_ID_BYTES_MAX: usize = 255;
/// Connections the CONTROLLER listener serves at once; more are closed at accept.
pub const CONTROL_CONNECTIONS_MAX: usize = 256;
/// Idle connections kept per peer for forwarded proposals and control requests.
pub const CONTROL_IDLE_CONNECTIONS_PER_PEER_MAX: usize = 4;
/// Segment size of the metadata log (`__cluster_metadata-0`).
pub const METADATA_LOG_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Index size per metadata log segment.
pub const METADATA_LOG_INDEX_BYTES: u64 = 1024 * 1024;
/// Bytes of the metadata log read at once (one read holds at least one entry).
pub const METADATA_LOG_READ_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest wait of a metadata proposal (commit and apply, including forwarding to the leader).
pub const METADATA_PROPOSE_TIMEOUT_MS: u64 = 5_000;
/// Committed entries between metadata snapshots (openraft's snapshot policy); the log is then
/// purged up to the snapshot, keeping openraft's `max_in_snapshot_log_to_keep` entries.
pub const METADATA_SNAPSHOT_ENTRIES: u64 = 5_000;
/// Batch ends a replicated partition remembers above its high watermark (24 bytes each); the
/// oldest is dropped when full (the high watermark then waits for a later boundary).
pub const HW_MARKS_PER_PARTITION_MAX: usize = 4096;
/// Transactions completed by a marker not yet below a partition's high watermark (they hold
/// its last stable offset; 16 bytes each). A leader refuses further markers beyond it
/// (REQUEST_TIMED_OUT: the coordinator retries once the followers catch up); a follower holds
/// at most what its leader held.
pub const UNREPLICATED_TXNS_PER_PARTITION_MAX: usize = 65_536;

/// Bytes of records per batch of a group coordinator snapshot (a snapshot of a large
/// `__consumer_offsets` partition is several batches, each well under the log's batch bound).
pub const GROUP_SNAPSHOT_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
const _: () = assert!(GROUP_SNAPSHOT_BATCH_BYTES_MAX < crate::storage::batch::BATCH_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT < SOCKET_REQUEST_BYTES_DEFAULT);
const _: () = assert!(DECOMPRESSED_BATCH_BYTES_MAX >= crate::storage::batch::BATCH_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT <= DECOMPRESSED_BATCH_BYTES_MAX);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX < SOCKET_REQUEST_BYTES_DEFAULT);
const _: () = assert!(FRAME_READ_CHUNK_BYTES <= SOCKET_REQUEST_BYTES_DEFAULT);
const _: () = assert!(QUEUED_REQUEST_BYTES_DEFAULT >= SOCKET_REQUEST_BYTES_DEFAULT);
const _: () = assert!(INFLIGHT_REQUESTS_PER_CONNECTION_MAX >= 5);
const _: () = assert!(RESPONSE_QUEUED_BYTES_PER_CONNECTION_MAX >= MESSAGE_BYTES_MAX_DEFAULT);
const _: () = assert!(READ_BUFFER_UNCOUNTED_BYTES <= READ_BUFFER_BYTES);
const _: () = assert!(RESPONSE_QUEUED_BYTES_PER_CONNECTION_MAX <= FETCH_RESPONSE_BYTES_MAX);
const _: () = assert!(MESH_REQUESTS_IN_PROGRESS_MAX >= INFLIGHT_REQUESTS_PER_CONNECTION_MAX);
const _: () = assert!(MESH_WAITS_PARKED_MAX >= MESH_REQUESTS_IN_PROGRESS_MAX);
const _: () = assert!(CONTROL_FRAME_BYTES_MAX >= FRAME_READ_CHUNK_BYTES);
const _: () = assert!(METADATA_LOG_READ_BYTES_MAX as u64 <= METADATA_LOG_SEGMENT_BYTES);

/// Open connections of the HTTP admin listener (shard 0); past it a new one is closed at once.
pub const ADMIN_CONNECTIONS_MAX: usize = 16;
/// Bytes of an admin request head (no endpoint takes a body); a larger one is a 400.
pub const ADMIN_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Headers of an admin request; more is a 400.
pub const ADMIN_HEADERS_MAX: usize = 32;
/// How long one admin exchange (read, answer, write) may take before the connection closes.
pub const ADMIN_EXCHANGE_TIMEOUT_MS: u64 = 10_000;
/// Kafka API keys counted per API (keys at or above it count only as bytes).
pub const METRICS_API_KEYS_MAX: usize = 96;
/// Distinct (API, error code) pairs a shard counts apart; further pairs count as `OTHER`.
pub const METRICS_ERROR_SERIES_MAX: usize = 512;
/// Highest latency a histogram records apart (longer ones count as this): 5 minutes, in µs.
pub const METRICS_LATENCY_MICROS_MAX: u64 = 300_000_000;
/// Partitions one shard describes one by one in a scrape snapshot (`/v1/partitions`, the
/// per-partition series); the rest count only in the totals.
pub const METRICS_PARTITION_SNAPSHOTS_MAX: usize = 20_000;
