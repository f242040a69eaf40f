//! Transactions in the partition log: end-transaction markers (control batches) and Kafka's
//! aborted-transaction index (`TransactionIndex`, one `.txnindex` per segment).
//!
//! A marker is a control batch (attributes transactional | control, base sequence -1) holding
//! one record: key `i16 version (=0), i16 type (0 = ABORT, 1 = COMMIT)`, value `i16 version
//! (=0), i32 coordinator epoch` (Kafka's `EndTransactionMarker`, `ControlRecordType`).
//!
//! `.txnindex` (Kafka's format): 34-byte big-endian entries `i16 version (=0), i64 producer id,
//! i64 first offset, i64 last offset (the ABORT marker's offset), i64 last stable offset (as
//! the marker left it)`, in marker order; an entry lives in the file of the segment holding its
//! marker. The in-memory index holds every entry; the files are rewritten atomically (only the
//! segments that changed) before the recovery point passes their markers, so recovery trusts
//! the entries below the recovery point and rebuilds those above it from the scanned markers.
//!
//! Lives with its partition log on the shard (core) that owns the partition.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use super::producer_state::TxnMarker;

/// Bytes of one `.txnindex` entry.
pub const ABORTED_TXN_ENTRY_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;
const MARKER_VERSION: i16 = 0;
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;
/// Attributes of a marker batch: transactional (bit 4) | control (bit 5).
const MARKER_ATTRIBUTES: i16 = (1 << 4) | (1 << 5);

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    /// The entries of a `.txnindex` file; `None` when an entry has an unknown version or the
    /// file is not a whole number of entries (the caller rebuilds the segment's entries).
    pub fn decode_all(bytes: &[u8]) -> Option<Vec<AbortedTxn>> {
        if !bytes.len().is_multiple_of(ABORTED_TXN_ENTRY_BYTES) {
            return None;
        }
        let i64_at = |e: &[u8], at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[at..at + 8]);
            i64::from_be_bytes(b)
        };
        bytes
            .chunks_exact(ABORTED_TXN_ENTRY_BYTES)
            .map(|e| {
                (i16::from_be_bytes([e[0], e[1]]) == ENTRY_VERSION).then(|| AbortedTxn {
                    producer_id: i64_at(e, 2),
                    first_offset: i64_at(e, 10),
                    last_offset: i64_at(e, 18),
                    last_stable_offset: i64_at(e, 26),
                })
            })
            .collect()
    }
}

/// The aborted transactions of one partition, by segment base offset.
#[derive(Clone, Debug, Default)]
pub struct TransactionIndex {
    segments: BTreeMap<i64, SegmentTxns>,
}

#[derive(Clone, Debug, Default)]
struct SegmentTxns {
    entries: Vec<AbortedTxn>,
    /// The file does not hold `entries` yet.
    dirty: bool,
}

impl TransactionIndex {
    /// Adds the entry of an ABORT marker appended to the segment at `segment_base`.
    pub fn add(&mut self, segment_base: i64, txn: AbortedTxn) {
        let segment = self.segments.entry(segment_base).or_default();
        segment.entries.push(txn);
        segment.dirty = true;
    }

    /// Loads the entries read from a segment's file (clean: the file holds them).
    pub fn load(&mut self, segment_base: i64, entries: Vec<AbortedTxn>) {
        self.segments.insert(
            segment_base,
            SegmentTxns {
                entries,
                dirty: false,
            },
        );
    }

    /// Kafka's `collectAbortedTransactions`: the aborted transactions that overlap
    /// `[start, upper)` (last offset >= `start`, first offset < `upper`), from the segment
    /// holding `start` on, stopping after an entry whose last stable offset reaches `upper`
    /// (no later marker can abort a transaction that started below it).
    pub fn collect(&self, start: i64, upper: i64) -> Vec<AbortedTxn> {
        let floor = self
            .segments
            .range(..=start)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut out = Vec::new();
        for segment in self.segments.range(floor..).map(|(_, s)| s) {
            let mut complete = false;
            for e in &segment.entries {
                if e.last_offset >= start && e.first_offset < upper {
                    out.push(*e);
                }
                complete |= e.last_stable_offset >= upper;
            }
            if complete {
                break;
            }
        }
        out
    }

    /// Removes the entries whose marker is at or above `offset` (Kafka's `truncateTo`).
    pub fn truncate_to(&mut self, offset: i64) {
        for segment in self.segments.values_mut() {
            let before = segment.entries.len();
            segment.entries.retain(|e| e.last_offset < offset);
            segment.dirty |= segment.entries.len() != before;
        }
    }

    /// Forgets a deleted segment's entries (its file goes with the segment).
    pub fn remove_segment(&mut self, segment_base: i64) {
        self.segments.remove(&segment_base);
    }

    pub fn clear(&mut self) {
        self.segments.clear();
    }

    /// The encoded files of the segments whose entries changed since they were last written;
    /// they count as written (call `mark_dirty` again if the write fails).
    pub fn take_dirty(&mut self) -> Vec<(i64, Vec<u8>)> {
        let mut out = Vec::new();
        for (base, segment) in self.segments.iter_mut().filter(|(_, s)| s.dirty) {
            let mut bytes = Vec::with_capacity(segment.entries.len() * ABORTED_TXN_ENTRY_BYTES);
            for e in &segment.entries {
                e.encode(&mut bytes);
            }
            segment.dirty = false;
            out.push((*base, bytes));
        }
        out
    }

    /// Marks a segment's file as stale (its write failed).
    pub fn mark_dirty(&mut self, segment_base: i64) {
        if let Some(segment) = self.segments.get_mut(&segment_base) {
            segment.dirty = true;
        }
    }

    /// Every entry, oldest segment first (tests, DescribeProducers-style views).
    pub fn all(&self) -> Vec<AbortedTxn> {
        self.segments
            .values()
            .flat_map(|s| s.entries.iter().copied())
            .collect()
    }
}

/// The end-transaction marker of a control batch (`batch` = the whole batch); `None` for a
/// batch that is not a transaction marker (a data batch, another control type, a malformed
/// record).
pub fn parse_marker(batch: &[u8]) -> Option<TxnMarker> {
    let header = batch::parse_header(batch)?;
    if !header.is_control() || !header.is_transactional() || header.record_count < 1 {
        return None;
    }
    let end = header.size_bytes().min(batch.len());
    let mut r = VarReader {
        bytes: batch.get(BATCH_HEADER_BYTES..end)?,
        at: 0,
    };
    let _length = r.varint()?;
    let _attributes = r.take(1)?;
    let _timestamp_delta = r.varint()?;
    let _offset_delta = r.varint()?;
    if r.varint()? < 4 {
        return None;
    }
    let key = r.take(4)?;
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    let commit = match control_type {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return None,
    };
    if r.varint()? < 6 {
        return None;
    }
    let value = r.take(6)?;
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Some(TxnMarker {
        commit,
        coordinator_epoch,
    })
}

/// The marker's batch if `header` is one, parsed from `batch` (the whole batch).
pub fn marker_of(header: &BatchHeader, batch: &[u8]) -> Option<TxnMarker> {
    if header.is_control() && header.is_transactional() {
        parse_marker(batch)
    } else {
        None
    }
}

/// Encodes an end-transaction marker as one control batch (offset 0; the log assigns the base
/// offset and the partition leader epoch).
pub fn encode_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: TxnMarker,
    now_ms: i64,
) -> Bytes {
    let control_type = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut body = vec![0u8]; // record attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, 4);
    body.extend_from_slice(&MARKER_VERSION.to_be_bytes());
    body.extend_from_slice(&control_type.to_be_bytes());
    put_varint(&mut body, 6);
    body.extend_from_slice(&MARKER_VERSION.to_be_bytes());
    body.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    put_varint(&mut body, 0); // headers
    let mut records = Vec::new();
    put_varint(&mut records, body.len() as i64);
    records.extend_from_slice(&body);
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    let length = (BATCH_HEADER_BYTES - batch::LOG_OVERHEAD_BYTES + records.len()) as i32;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(batch::MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    out.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&now_ms.to_be_bytes());
    out.extend_from_slice(&now_ms.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&1i32.to_be_bytes()); // record count
    out.extend_from_slice(&records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct VarReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> VarReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }
    /// A zigzag varint of at most 10 bytes.
    fn varint(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_batch_round_trips_and_verifies() {
        for commit in [false, true] {
            let marker = TxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let bytes = encode_marker_batch(42, 3, marker, 1_000);
            let header = batch::verify_batch(&bytes).expect("valid batch");
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(header.producer_id, 42);
            assert_eq!(header.producer_epoch, 3);
            assert_eq!(header.record_count, 1);
            assert_eq!(parse_marker(&bytes), Some(marker));
        }
    }

    #[test]
    fn entries_round_trip_and_collect_as_kafka() {
        let txns = [
            AbortedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 10,
                last_stable_offset: 5,
            },
            AbortedTxn {
                producer_id: 2,
                first_offset: 5,
                last_offset: 20,
                last_stable_offset: 21,
            },
        ];
        let mut bytes = Vec::new();
        for t in &txns {
            t.encode(&mut bytes);
        }
        assert_eq!(bytes.len(), 2 * ABORTED_TXN_ENTRY_BYTES);
        assert_eq!(AbortedTxn::decode_all(&bytes), Some(txns.to_vec()));
        assert_eq!(AbortedTxn::decode_all(&bytes[..33]), None);

        let mut index = TransactionIndex::default();
        index.add(0, txns[0]);
        index.add(15, txns[1]);
        assert_eq!(index.collect(0, 3), vec![txns[0]]);
        assert_eq!(index.collect(11, 30), vec![txns[1]]);
        assert_eq!(index.collect(4, 30), txns.to_vec());
        index.truncate_to(20);
        assert_eq!(index.all(), vec![txns[0]]);
        let dirty = index.take_dirty();
        assert_eq!(dirty.len(), 2, "both segments changed since loaded");
        assert!(index.take_dirty().is_empty());
    }
}
