//! Idempotent producer state (Kafka's `ProducerStateManager`): per producer id, the epoch and the
//! last `PRODUCER_BATCHES_MAX` batches' sequence ranges and offsets. Lives with its partition on
//! the owning shard.
//!
//! Transactions (Kafka's `ProducerAppendInfo`): a transactional batch starts or continues the
//! producer's ongoing transaction (its first offset is kept until the end-transaction marker);
//! a marker completes it and records the coordinator epoch, refusing an older one.
//!
//! Snapshot file `<offset>.snapshot` (ours, not Kafka's layout), big-endian:
//! `i16 version (=3)`, `u32 CRC-32C of everything after it`, `i32 producer count`, then per
//! producer `i64 producer id`, `i16 epoch`, `i32 last sequence before the batches (i32::MIN:
//! none)`, `i32 coordinator epoch (-1: none)`, `i64 first offset of the ongoing transaction
//! (-1: none)`, `i64 last timestamp`, `i64 first offset, i64 marker offset` of the last
//! completed transaction (-1, -1: none), `i32 batch count`, then per batch `i32 first seq, i32
//! last seq, i64 first offset, i64 last offset, i64 max timestamp, i64 log append time (-1:
//! CreateTime)`. Version 2 (no coordinator epoch, transaction or last timestamp) and version 1
//! (neither last sequence nor log append time either) are still read. `<offset>` is the log end
//! offset the snapshot covers (batches below it).

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::model::{Offset, ProducerEpoch, ProducerId};

use super::batch::BatchHeader;
use super::error::StorageError;

/// Batches remembered per producer for duplicate detection (Kafka: 5 in-flight requests).
pub const PRODUCER_BATCHES_MAX: usize = 5;
const SNAPSHOT_VERSION: i16 = 3;
const SNAPSHOT_VERSION_V2: i16 = 2;
const SNAPSHOT_VERSION_V1: i16 = 1;
/// Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`-style "none" for the coordinator epoch.
pub const NO_COORDINATOR_EPOCH: i32 = -1;
/// Snapshot encoding of `ProducerEntry::last_seq_before == None`.
const NO_SEQUENCE: i32 = i32::MIN;
const NO_PRODUCER_ID: i64 = -1;

/// Sequence range and offsets of one appended batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// The append time a `LogAppendTime` batch was given (a duplicate answers with it), else -1.
    pub log_append_time_ms: i64,
}

/// State of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    /// The last sequence before the first remembered batch, kept when a truncation removed
    /// every remembered batch (the sequence check continues from it); `None` otherwise.
    /// `Some(-1)` after a marker bumped the epoch: the next batch must start at sequence 0.
    pub last_seq_before: Option<i32>,
    /// Coordinator epoch of the last end-transaction marker (`NO_COORDINATOR_EPOCH`: none).
    pub coordinator_epoch: i32,
    /// First offset of the ongoing transaction (its first transactional batch since the last
    /// marker); `None` outside a transaction.
    pub current_txn_first_offset: Option<i64>,
    /// Max timestamp of the last batch or marker appended.
    pub last_timestamp: i64,
    /// The last transaction a marker completed, `(first offset, marker offset)`: a
    /// truncation that removes the marker makes the transaction ongoing again. One level:
    /// the coordinator ends a producer's next transaction only after this marker is
    /// acknowledged (below the high watermark), and truncations and snapshots cut only above
    /// the high watermark, so at most one marker per producer is ever cut.
    pub last_completed_txn: Option<(i64, i64)>,
}

impl ProducerEntry {
    fn new() -> ProducerEntry {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_seq_before: None,
            coordinator_epoch: NO_COORDINATOR_EPOCH,
            current_txn_first_offset: None,
            last_timestamp: -1,
            last_completed_txn: None,
        }
    }
    /// The last sequence appended, if any.
    pub fn last_sequence(&self) -> i32 {
        self.batches
            .back()
            .map(|b| b.last_seq)
            .or(self.last_seq_before)
            .unwrap_or(-1)
    }
}

/// An end-transaction marker's content (Kafka's `EndTransactionMarker`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// A transaction a marker completed (Kafka's `CompletedTxn`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
    /// Kafka's `lastStableOffset(completedTxn)`: the first offset of the next transaction
    /// still ongoing (another producer's), or the marker's offset + 1.
    pub last_stable_offset: i64,
}

/// What the producer check decided for one batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Same sequence range as a remembered batch: answer with its original offsets.
    Duplicate(BatchMetadata),
}

/// All producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// `(first offset, producer id)` of every ongoing transaction (the LSO's candidates).
    ongoing: BTreeSet<(i64, i64)>,
}

impl ProducerStateManager {
    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id.0)
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    /// Every producer, by id.
    pub fn entries(&self) -> impl Iterator<Item = (ProducerId, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (ProducerId(*id), e))
    }
    /// The first offset of the oldest ongoing transaction.
    pub fn first_ongoing_offset(&self) -> Option<i64> {
        self.ongoing.iter().next().map(|(first, _)| *first)
    }

    /// Kafka's marker checks (`ProducerAppendInfo.appendEndTxnMarker`): an older producer
    /// epoch is refused, and so is a coordinator epoch older than the last marker's.
    pub fn check_marker(
        &self,
        producer_id: ProducerId,
        producer_epoch: i16,
        marker: TxnMarker,
    ) -> Result<(), StorageError> {
        let Some(entry) = self.producers.get(&producer_id.0) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                current: ProducerEpoch(entry.epoch),
                received: ProducerEpoch(producer_epoch),
            });
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(StorageError::CoordinatorFenced {
                producer_id,
                current: entry.coordinator_epoch,
                received: marker.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records an appended end-transaction marker (the control batch `header`, offset
    /// assigned); returns the transaction it completed, if one was ongoing.
    pub fn complete_txn(
        &mut self,
        header: &BatchHeader,
        marker: TxnMarker,
    ) -> Option<CompletedTxn> {
        let offset = header.base_offset;
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(ProducerEntry::new);
        if header.producer_epoch != entry.epoch {
            // Transactions v2: the coordinator bumps the epoch with the marker; the next
            // batch of the new epoch starts at sequence 0.
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
            entry.last_seq_before = Some(-1);
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp = header.max_timestamp;
        let first = entry.current_txn_first_offset.take()?;
        entry.last_completed_txn = Some((first, offset));
        self.ongoing.remove(&(first, header.producer_id));
        let last_stable_offset = self.first_ongoing_offset().unwrap_or(offset + 1);
        Some(CompletedTxn {
            producer_id: header.producer_id,
            first_offset: first,
            last_offset: offset,
            aborted: !marker.commit,
            last_stable_offset,
        })
    }

    /// Kafka's sequence and epoch rules for a batch about to be appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, StorageError> {
        if header.producer_id == NO_PRODUCER_ID || header.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let producer_id = ProducerId(header.producer_id);
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer (new, or its state expired with retention): accept any sequence.
            return Ok(SequenceCheck::Append);
        };
        if !header.is_transactional()
            && entry.current_txn_first_offset.is_some()
            && header.producer_epoch >= entry.epoch
        {
            return Err(StorageError::InvalidTxnState { producer_id });
        }
        if header.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                current: ProducerEpoch(entry.epoch),
                received: ProducerEpoch(header.producer_epoch),
            });
        }
        if header.producer_epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    received: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let last_seq = header.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == header.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let last = entry.batches.back().map(|b| b.last_seq);
        let expected = match last.or(entry.last_seq_before) {
            Some(i32::MAX) => 0,
            Some(last) => last + 1,
            None => header.base_sequence,
        };
        if header.base_sequence != expected {
            return Err(StorageError::OutOfOrderSequence {
                producer_id,
                expected,
                received: header.base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended batch (offsets already assigned in `header`).
    pub fn update(&mut self, header: &BatchHeader) {
        if header.producer_id == NO_PRODUCER_ID || header.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(ProducerEntry::new);
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
            entry.last_seq_before = None;
        }
        entry.last_timestamp = header.max_timestamp;
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(header.base_offset);
            self.ongoing
                .insert((header.base_offset, header.producer_id));
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
            log_append_time_ms: header.log_append_time_ms(),
        });
        while entry.batches.len() > PRODUCER_BATCHES_MAX {
            entry.batches.pop_front();
        }
    }

    /// Forgets batches at or above `offset` (after a failed write, for a snapshot at `offset`).
    /// A producer keeps its epoch, and its last sequence below `offset` when every remembered
    /// batch is removed: a retry of a removed batch is then checked against it, not accepted
    /// as the first batch of an unknown producer.
    ///
    /// Transactions: one that started at or above `offset` never started; one whose marker
    /// was at or above `offset` is ongoing again (see `ProducerEntry::last_completed_txn`).
    pub fn truncate_to(&mut self, offset: Offset) {
        for (id, entry) in self.producers.iter_mut() {
            if let Some(first) = entry.current_txn_first_offset {
                if first >= offset.0 {
                    entry.current_txn_first_offset = None;
                    self.ongoing.remove(&(first, *id));
                }
            }
            if let Some((first, marker)) = entry.last_completed_txn {
                if marker >= offset.0 {
                    entry.last_completed_txn = None;
                    if first < offset.0 && entry.current_txn_first_offset.is_none() {
                        entry.current_txn_first_offset = Some(first);
                        self.ongoing.insert((first, *id));
                    }
                }
            }
            let Some(first) = entry.batches.front().copied() else {
                continue;
            };
            entry.batches.retain(|b| b.last_offset < offset.0);
            if entry.batches.is_empty() {
                // Sequences of one epoch are consecutive: the batch before the first
                // remembered one ended just below it.
                entry.last_seq_before = Some(first.first_seq - 1);
            }
        }
    }

    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.producers.len() as i32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        for id in ids {
            let entry = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            let before = entry.last_seq_before.unwrap_or(NO_SEQUENCE);
            body.extend_from_slice(&before.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            let txn = entry.current_txn_first_offset.unwrap_or(-1);
            body.extend_from_slice(&txn.to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            let (done_first, done_marker) = entry.last_completed_txn.unwrap_or((-1, -1));
            body.extend_from_slice(&done_first.to_be_bytes());
            body.extend_from_slice(&done_marker.to_be_bytes());
            body.extend_from_slice(&(entry.batches.len() as i32).to_be_bytes());
            for b in &entry.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.max_timestamp.to_be_bytes());
                body.extend_from_slice(&b.log_append_time_ms.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// `None` when the snapshot is damaged (the caller then rebuilds from the log).
    pub fn decode_snapshot(bytes: &[u8]) -> Option<ProducerStateManager> {
        let mut reader = Reader { bytes, at: 0 };
        let version = reader.i16()?;
        if !(SNAPSHOT_VERSION_V1..=SNAPSHOT_VERSION).contains(&version) {
            return None;
        }
        let v2 = version >= SNAPSHOT_VERSION_V2;
        let v3 = version >= SNAPSHOT_VERSION;
        let crc = reader.i32()? as u32;
        if crc32c::crc32c(bytes.get(6..)?) != crc {
            return None;
        }
        let mut state = ProducerStateManager::default();
        for _ in 0..reader.i32()? {
            let id = reader.i64()?;
            let epoch = reader.i16()?;
            let before = if v2 { reader.i32()? } else { NO_SEQUENCE };
            let (coordinator_epoch, txn, last_timestamp, done) = if v3 {
                let (epoch, txn, ts) = (reader.i32()?, reader.i64()?, reader.i64()?);
                let (first, marker) = (reader.i64()?, reader.i64()?);
                (epoch, txn, ts, (first >= 0).then_some((first, marker)))
            } else {
                (NO_COORDINATOR_EPOCH, -1, -1, None)
            };
            let mut entry = ProducerEntry {
                epoch,
                batches: VecDeque::new(),
                last_seq_before: (before != NO_SEQUENCE).then_some(before),
                coordinator_epoch,
                current_txn_first_offset: (txn >= 0).then_some(txn),
                last_timestamp,
                last_completed_txn: done,
            };
            if txn >= 0 {
                state.ongoing.insert((txn, id));
            }
            for _ in 0..reader.i32()? {
                entry.batches.push_back(BatchMetadata {
                    first_seq: reader.i32()?,
                    last_seq: reader.i32()?,
                    first_offset: reader.i64()?,
                    last_offset: reader.i64()?,
                    max_timestamp: reader.i64()?,
                    log_append_time_ms: if v2 { reader.i64()? } else { -1 },
                });
            }
            state.producers.insert(id, entry);
        }
        Some(state)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let slice = self.bytes.get(self.at..self.at + N)?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Some(out)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::parse_header;
    use crate::storage::test_util::encode_batch;

    fn header(seq: i32, offset: i64) -> BatchHeader {
        let mut header = parse_header(&encode_batch(&[0], 10, (7, 3, seq))).expect("header");
        header.base_offset = offset;
        header
    }

    #[test]
    fn truncation_keeps_epoch_and_last_sequence() {
        let mut state = ProducerStateManager::default();
        for seq in 0..10 {
            state.update(&header(seq, i64::from(seq)));
        }
        // Every remembered batch (5..10) is above the snapshot offset.
        state.truncate_to(Offset(4));
        let entry = state.get(ProducerId(7)).expect("kept");
        assert_eq!(entry.epoch, 3);
        assert!(entry.batches.is_empty());
        assert_eq!(entry.last_seq_before, Some(4));
        assert_eq!(
            state.check(&header(5, 5)).expect("next"),
            SequenceCheck::Append
        );
        assert!(matches!(
            state.check(&header(7, 5)),
            Err(StorageError::OutOfOrderSequence { expected: 5, .. })
        ));
        let decoded =
            ProducerStateManager::decode_snapshot(&state.encode_snapshot()).expect("decodes");
        assert_eq!(decoded, state);
    }
}

#[cfg(test)]
mod txn_tests {
    use super::*;
    use crate::storage::batch::parse_header;
    use crate::storage::test_util::encode_batch;

    fn txn_header(pid: i64, epoch: i16, seq: i32, offset: i64) -> BatchHeader {
        let mut header = parse_header(&encode_batch(&[0], 10, (pid, epoch, seq))).expect("header");
        header.base_offset = offset;
        header.attributes |= 1 << 4;
        header
    }

    fn marker_header(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        let mut header = txn_header(pid, epoch, -1, offset);
        header.attributes |= 1 << 5;
        header
    }

    #[test]
    fn transactions_start_complete_and_survive_snapshots() {
        let mut state = ProducerStateManager::default();
        state.update(&txn_header(1, 0, 0, 10));
        state.update(&txn_header(1, 0, 1, 11));
        state.update(&txn_header(2, 0, 0, 12));
        assert_eq!(state.first_ongoing_offset(), Some(10));
        let decoded = ProducerStateManager::decode_snapshot(&state.encode_snapshot()).expect("v3");
        assert_eq!(decoded, state);
        assert_eq!(decoded.first_ongoing_offset(), Some(10));
        assert_eq!(
            decoded
                .get(ProducerId(1))
                .and_then(|e| e.current_txn_first_offset),
            Some(10)
        );

        let abort = TxnMarker {
            commit: false,
            coordinator_epoch: 4,
        };
        let done = state
            .complete_txn(&marker_header(1, 0, 13), abort)
            .expect("completed");
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 13,
                aborted: true,
                last_stable_offset: 12,
            }
        );
        assert_eq!(state.first_ongoing_offset(), Some(12));
        let stale = TxnMarker {
            commit: true,
            coordinator_epoch: 3,
        };
        assert!(matches!(
            state.check_marker(ProducerId(1), 0, stale),
            Err(StorageError::CoordinatorFenced { .. })
        ));
        // A truncation below the marker makes the transaction ongoing again, from a
        // snapshot too.
        let mut state =
            ProducerStateManager::decode_snapshot(&state.encode_snapshot()).expect("v3");
        state.truncate_to(Offset(13));
        assert_eq!(state.first_ongoing_offset(), Some(10));
        // One below its first batch removes it.
        state.truncate_to(Offset(10));
        assert_eq!(state.first_ongoing_offset(), None);
    }

    #[test]
    fn an_epoch_bumping_marker_resets_the_sequence() {
        let mut state = ProducerStateManager::default();
        state.update(&txn_header(1, 0, 0, 0));
        let commit = TxnMarker {
            commit: true,
            coordinator_epoch: 0,
        };
        state.complete_txn(&marker_header(1, 1, 1), commit);
        assert_eq!(
            state.check(&txn_header(1, 1, 0, 2)).expect("seq 0"),
            SequenceCheck::Append
        );
        assert!(state.check(&txn_header(1, 1, 5, 2)).is_err());
    }

    #[test]
    fn version_2_snapshots_still_read() {
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&5i64.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&NO_SEQUENCE.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        let mut bytes = SNAPSHOT_VERSION_V2.to_be_bytes().to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        let state = ProducerStateManager::decode_snapshot(&bytes).expect("v2");
        let entry = state.get(ProducerId(5)).expect("producer");
        assert_eq!(entry.epoch, 2);
        assert_eq!(entry.coordinator_epoch, NO_COORDINATOR_EPOCH);
        assert_eq!(entry.current_txn_first_offset, None);
    }
}
