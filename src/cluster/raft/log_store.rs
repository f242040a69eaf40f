//! The Raft log on Sluice's storage engine: the partition `__cluster_metadata-0`.
//!
//! Lives on shard 0 (`Rc`, `!Send`), on its own `LogManager` so that the shard's partitions
//! (`Shard::apply_image`) never see it. One entry = one record batch holding one record whose
//! value is the entry's serde_json; batch base offset = log index, partition leader epoch =
//! term. Appends use `acks=all` under the default (sync) flush policy, so `append` returns
//! once the entries are fdatasync'ed, and only then tells openraft they are flushed; entries
//! are readable (below the high watermark) when `append` returns, as openraft requires.
//!
//! `quorum-state` (in the partition directory, as Kafka keeps it) holds the vote and the last
//! purged log id, serde_json, replaced atomically (temp file, fdatasync, rename, directory
//! fsync) through the storage I/O seam. Purge = DeleteRecords (advance the log start offset).

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId, TypeConfig, Vote};
use crate::group::records::encode_uncompressed_batch;
use crate::limits;
use crate::model::{LeaderEpoch, Offset, ShardId, TopicPartition};
use crate::storage::{
    Acks, AppendOptions, LogConfig, LogManager, PartitionLog, StorageBrokerConfig, StorageError,
    StorageIo,
};

/// The metadata topic (Kafka's name) and its one partition.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Kafka's fixed topic id of `__cluster_metadata` (`Uuid.METADATA_TOPIC_ID`, AAAAAAAAAAAAAAAAAAAAAQ).
pub const METADATA_TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(1);
/// The vote file in the partition directory (Kafka's name).
pub const QUORUM_STATE_FILE: &str = "quorum-state";

/// What `quorum-state` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct QuorumStateFile {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    /// The last committed log id this node knew. At start openraft re-applies the log up to it,
    /// so a node that restarts alone serves the image it had, not only its last snapshot.
    #[serde(default)]
    committed: Option<LogId>,
}

struct LogShared {
    log: Rc<PartitionLog>,
    manager: Rc<LogManager>,
    dir: PathBuf,
    io: Rc<dyn StorageIo>,
    state: RefCell<QuorumStateFile>,
    /// Id of the last entry present, or the last purged one.
    last_log_id: Cell<Option<LogId>>,
}

/// The log store and its reader (clones share one log).
#[derive(Clone)]
pub struct LogStore {
    shared: Rc<LogShared>,
}

fn storage_err(err: StorageError) -> io::Error {
    match err {
        StorageError::Io(err) => err,
        other => io::Error::other(other.to_string()),
    }
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The metadata log's topic configuration: no retention (only purges after snapshots delete),
/// fdatasync on every append (the default flush policy).
fn metadata_log_config() -> LogConfig {
    LogConfig {
        segment_bytes: limits::METADATA_LOG_SEGMENT_BYTES,
        segment_ms: None,
        segment_index_bytes: limits::METADATA_LOG_INDEX_BYTES,
        retention_ms: None,
        retention_bytes: None,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

impl LogStore {
    /// Opens (creating if absent) `<data_dir>/__cluster_metadata-0` and its `quorum-state`.
    pub async fn open(data_dir: &Path, io: Rc<dyn StorageIo>) -> io::Result<LogStore> {
        let manager =
            LogManager::with_io(ShardId(0), StorageBrokerConfig::new(data_dir), io.clone());
        let tp = TopicPartition::new(METADATA_TOPIC, 0);
        let log = manager
            .open_partition(&tp, METADATA_TOPIC_ID, metadata_log_config())
            .await
            .map_err(storage_err)?;
        let dir = data_dir.join(tp.dir_name());
        let state = match io.read_file(&dir.join(QUORUM_STATE_FILE)).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(format!("{QUORUM_STATE_FILE}: {e}")))?,
            None => QuorumStateFile::default(),
        };
        let store = LogStore {
            shared: Rc::new(LogShared {
                log,
                manager,
                dir,
                io,
                state: RefCell::new(state),
                last_log_id: Cell::new(None),
            }),
        };
        store.recover_last_log_id().await?;
        Ok(store)
    }

    /// The partition directory (snapshots live there too).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn log_end_offset(&self) -> i64 {
        self.shared.log.log_end_offset().0
    }

    /// Clean close of the log (flush, checkpoints, clean-shutdown marker).
    pub async fn close(&self) {
        self.shared.manager.shutdown().await;
    }

    async fn recover_last_log_id(&self) -> io::Result<()> {
        let log = &self.shared.log;
        let purged = self.shared.state.borrow().last_purged;
        let start = log.log_start_offset().0;
        let end = log.log_end_offset().0;
        let next_after_purge = purged.map_or(0, |p| p.index as i64 + 1);
        if end < next_after_purge {
            // A snapshot was installed past the end of this log and the purge that restarts
            // the log at the snapshot did not complete before the stop.
            self.restart_log_at(next_after_purge).await?;
            self.shared.last_log_id.set(purged);
            return Ok(());
        }
        let last = if end > start.max(next_after_purge) {
            let entries = self.read_entries(end as u64 - 1, end as u64).await?;
            entries.last().map(|e| e.log_id)
        } else {
            None
        };
        self.shared.last_log_id.set(last.or(purged));
        tracing::info!(log_start = start, log_end = end, last = ?self.shared.last_log_id.get(),
            "metadata log opened");
        Ok(())
    }

    /// Entries with index in `start..end`, from the log.
    async fn read_entries(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        let log = &self.shared.log;
        let mut out = Vec::new();
        let mut next = start;
        while next < end {
            let read = log
                .read(
                    Offset(next as i64),
                    limits::METADATA_LOG_READ_BYTES_MAX,
                    true,
                )
                .await
                .map_err(storage_err)?;
            if read.records.is_empty() {
                return Err(corrupt(format!(
                    "metadata log entry {next} missing (log end {})",
                    log.log_end_offset()
                )));
            }
            let mut buf = read.records.clone();
            let batches = RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| corrupt(format!("metadata log batch at {next}: {e}")))?;
            let before = next;
            for record in batches.into_iter().flat_map(|b| b.records) {
                let index = record.offset as u64;
                if index < next {
                    continue;
                }
                if index >= end {
                    break;
                }
                let value = record.value.unwrap_or_default();
                let entry: Entry = serde_json::from_slice(&value)
                    .map_err(|e| corrupt(format!("metadata log entry {index}: {e}")))?;
                if entry.log_id.index != index {
                    return Err(corrupt(format!(
                        "metadata log entry at offset {index} has index {}",
                        entry.log_id.index
                    )));
                }
                out.push(entry);
                next = index + 1;
            }
            if next == before {
                return Err(corrupt(format!(
                    "metadata log read at {next} made no progress"
                )));
            }
        }
        Ok(out)
    }

    async fn write_state(&self, state: QuorumStateFile) -> io::Result<()> {
        let bytes = serde_json::to_vec(&state).map_err(io::Error::other)?;
        self.shared
            .io
            .write_file_atomic(&self.shared.dir.join(QUORUM_STATE_FILE), bytes)
            .await?;
        *self.shared.state.borrow_mut() = state;
        Ok(())
    }

    /// Appends entries of one term as one write (one batch per entry), durable on return.
    async fn append_term(&self, term: u64, entries: &[Entry]) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let log = &self.shared.log;
        if first.log_id.index as i64 != log.log_end_offset().0 {
            return Err(io::Error::other(format!(
                "metadata log append at index {} but the log ends at {}",
                first.log_id.index,
                log.log_end_offset()
            )));
        }
        let now = crate::storage::flush::wall_clock_ms();
        let mut bytes = Vec::new();
        for entry in entries {
            let value = serde_json::to_vec(entry).map_err(io::Error::other)?;
            let batch = encode_uncompressed_batch(&[(None, Some(Bytes::from(value)))], now)
                .map_err(io::Error::other)?;
            bytes.extend_from_slice(&batch);
        }
        let epoch = i32::try_from(term)
            .map_err(|_| io::Error::other(format!("term {term} exceeds a Kafka leader epoch")))?;
        let opts = AppendOptions {
            acks: Acks::All,
            leader_epoch: LeaderEpoch(epoch),
            now_ms: now,
        };
        let result = log
            .append(Bytes::from(bytes), opts)
            .await
            .map_err(storage_err)?;
        let last = entries.last().map(|e| e.log_id);
        assert_eq!(
            result.last_offset.0 as u64,
            last.map_or(0, |l| l.index),
            "one metadata log entry per offset"
        );
        self.shared.last_log_id.set(last);
        Ok(())
    }

    /// Empties the log and starts it at `offset` (after a snapshot installed past its end).
    /// Durable on return (`truncate_fully_and_start_at`).
    async fn restart_log_at(&self, offset: i64) -> io::Result<()> {
        tracing::info!(offset, "metadata log restarts after an installed snapshot");
        self.shared
            .log
            .truncate_fully_and_start_at(Offset(offset))
            .await
            .map_err(storage_err)
    }

    /// Removes entries at `offset` and after (one batch per entry, so the cut is exact).
    /// Durable on return (`truncate_to`).
    async fn truncate_from(&self, offset: i64) -> io::Result<()> {
        let log = &self.shared.log;
        log.truncate_to(Offset(offset)).await.map_err(storage_err)?;
        let end = log.log_end_offset().0;
        if end != offset {
            return Err(io::Error::other(format!(
                "metadata log truncated to {end}, not to entry {offset}"
            )));
        }
        Ok(())
    }
}

fn range_to_indexes<RB: RangeBounds<u64>>(range: &RB, end_exclusive: u64) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => end_exclusive,
    };
    (start, end.min(end_exclusive))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let log_end = self.shared.log.log_end_offset().0.max(0) as u64;
        let (start, end) = range_to_indexes(&range, log_end);
        let start = start.max(self.shared.log.log_start_offset().0.max(0) as u64);
        if start >= end {
            return Ok(Vec::new());
        }
        self.read_entries(start, end).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.state.borrow().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        Ok(LogState {
            last_purged_log_id: self.shared.state.borrow().last_purged,
            last_log_id: self.shared.last_log_id.get(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut state = self.shared.state.borrow().clone();
        state.vote = Some(*vote);
        self.write_state(state).await
    }

    /// Writes `committed` (atomically, with the vote) when it advanced: one small fsync'ed
    /// replace per commit advance (openraft advances it per replicated batch, not per entry).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut state = self.shared.state.borrow().clone();
        if committed <= state.committed {
            return Ok(());
        }
        state.committed = committed;
        self.write_state(state).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.state.borrow().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry>,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut result = Ok(());
        // One storage append (one fdatasync) per run of entries of the same term: the batch
        // leader epoch is set per append.
        for run in entries.chunk_by(|a, b| a.log_id.leader_id.term == b.log_id.leader_id.term) {
            if let Err(err) = self.append_term(run[0].log_id.leader_id.term, run).await {
                result = Err(err);
                break;
            }
        }
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(err) => {
                tracing::error!(error = %err, "metadata log append failed");
                callback.io_completed(Err(io::Error::new(err.kind(), err.to_string())));
                Err(err)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index as i64 + 1);
        if from < self.shared.log.log_end_offset().0 {
            tracing::info!(from, "truncating conflicting metadata log entries");
            self.truncate_from(from).await?;
        }
        let purged = self.shared.state.borrow().last_purged;
        self.shared.last_log_id.set(last_log_id.or(purged));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut state = self.shared.state.borrow().clone();
        if state.last_purged.is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        state.last_purged = Some(log_id);
        // The purge point is durable first: a restart never reads purged entries as present.
        self.write_state(state).await?;
        let new_start = log_id.index as i64 + 1;
        let log = &self.shared.log;
        if new_start > log.log_end_offset().0 {
            self.restart_log_at(new_start).await?;
        } else {
            log.delete_records_before(Offset(new_start))
                .await
                .map_err(storage_err)?;
        }
        if self.shared.last_log_id.get().is_none_or(|l| l < log_id) {
            self.shared.last_log_id.set(Some(log_id));
        }
        Ok(())
    }
}
