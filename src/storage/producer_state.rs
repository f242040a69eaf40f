//! Idempotent producer state (Kafka's `ProducerStateManager`): per producer id, the epoch and the
//! last `PRODUCER_BATCHES_MAX` batches' sequence ranges and offsets. Lives with its partition on
//! the owning shard.
//!
//! Snapshot file `<offset>.snapshot` (ours, not Kafka's layout), big-endian:
//! `i16 version (=2)`, `u32 CRC-32C of everything after it`, `i32 producer count`, then per
//! producer `i64 producer id`, `i16 epoch`, `i32 last sequence before the batches (i32::MIN:
//! none)`, `i32 batch count`, then per batch `i32 first seq, i32 last seq, i64 first offset,
//! i64 last offset, i64 max timestamp, i64 log append time (-1: CreateTime)`. Version 1 (no
//! last sequence, no log append time) is still read. `<offset>` is the log end offset the
//! snapshot covers (batches below it).

use std::collections::{HashMap, VecDeque};

use crate::model::{Offset, ProducerEpoch, ProducerId};

use super::batch::BatchHeader;
use super::error::StorageError;

/// Batches remembered per producer for duplicate detection (Kafka: 5 in-flight requests).
pub const PRODUCER_BATCHES_MAX: usize = 5;
const SNAPSHOT_VERSION: i16 = 2;
const SNAPSHOT_VERSION_V1: i16 = 1;
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    /// The last sequence before the first remembered batch, kept when a truncation removed
    /// every remembered batch (the sequence check continues from it); `None` otherwise.
    pub last_seq_before: Option<i32>,
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
}

impl ProducerStateManager {
    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id.0)
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
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
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
            entry.last_seq_before = None;
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
    pub fn truncate_to(&mut self, offset: Offset) {
        for entry in self.producers.values_mut() {
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
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_V1 {
            return None;
        }
        let v2 = version == SNAPSHOT_VERSION;
        let crc = reader.i32()? as u32;
        if crc32c::crc32c(bytes.get(6..)?) != crc {
            return None;
        }
        let mut state = ProducerStateManager::default();
        for _ in 0..reader.i32()? {
            let id = reader.i64()?;
            let epoch = reader.i16()?;
            let before = if v2 { reader.i32()? } else { NO_SEQUENCE };
            let mut entry = ProducerEntry {
                epoch,
                batches: VecDeque::new(),
                last_seq_before: (before != NO_SEQUENCE).then_some(before),
            };
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
