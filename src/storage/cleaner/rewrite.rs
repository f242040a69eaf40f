//! The cleaner's batch rewrite, sans I/O: the key → latest offset map of the dirty section, and
//! the filter that keeps, per batch, the latest record of each key (Kafka's
//! `Cleaner.shouldRetainRecord` and `MemoryRecords.filterTo`).
//!
//! This module DECODES RECORDS: with Produce validation (`protocol::records`, which only walks
//! them) it is the one place that looks inside stored batches, and the only one that rebuilds
//! them. A compressed batch is decompressed (`storage::decompress`, bounded by
//! `limits::DECOMPRESSED_BATCH_BYTES_MAX`) and the records kept are recompressed with the batch's
//! own codec. A batch whose records are all kept (and that needs no delete horizon) is copied
//! byte for byte. Offsets never change: a rebuilt batch keeps its base offset, last offset delta,
//! producer id, epoch and base sequence (Kafka's `overrideLastOffset`), so the offsets of the
//! records kept, and each producer's last sequence, are what they were.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;

use super::super::batch::{BatchHeader, BATCH_HEADER_BYTES, COMPRESSION_MASK, LOG_OVERHEAD_BYTES};
use super::super::decompress;

/// Attributes bit 6: the batch's base timestamp is its delete horizon (KIP-534): tombstones
/// (and, with transactions, markers) in it are removed once the horizon has passed.
pub const DELETE_HORIZON_FLAG: i16 = 1 << 6;
/// Memory one offset map entry is counted at (a 128-bit key hash and an offset in a hash table
/// with its control bytes and load factor): `log.cleaner.dedupe.buffer.size` / this = entries.
pub const OFFSET_MAP_ENTRY_BYTES: u64 = 40;
/// Records per snappy block in the xerial framing Kafka's Java client writes.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;

/// Key (128-bit hash, as Kafka's MD5-keyed `SkimpyOffsetMap`) → offset of its latest record in
/// the dirty section. Bounded: `is_full` once it holds `entries_max` keys.
pub struct OffsetMap {
    entries: HashMap<u128, i64>,
    entries_max: usize,
    /// Largest offset put (Kafka's `latestOffset`); records above it are always kept.
    latest_offset: i64,
}

impl OffsetMap {
    pub fn with_memory(bytes: u64) -> OffsetMap {
        OffsetMap {
            entries: HashMap::new(),
            entries_max: (bytes / OFFSET_MAP_ENTRY_BYTES).max(1) as usize,
            latest_offset: -1,
        }
    }
    pub fn put(&mut self, key: &[u8], offset: i64) {
        assert!(offset >= self.latest_offset, "offsets put in order");
        self.entries.insert(key_hash(key), offset);
        self.latest_offset = offset;
    }
    /// The latest offset of `key`, or -1.
    pub fn get(&self, key: &[u8]) -> i64 {
        self.entries.get(&key_hash(key)).copied().unwrap_or(-1)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.entries_max
    }
    /// Whether `n` more keys fit.
    pub fn has_room_for(&self, n: usize) -> bool {
        self.entries.len() + n <= self.entries_max
    }
    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }
}

fn key_hash(key: &[u8]) -> u128 {
    let half = |seed: u64| {
        let mut h = std::hash::DefaultHasher::new();
        seed.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x5109_ce01)) << 64) | u128::from(half(0x0c1e_a4e2))
}

/// One record of a decoded batch: where its bytes are, and what the filter needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    /// The whole record (length prefix included) within the decoded records.
    pub start: usize,
    pub end: usize,
    /// Position right after the timestamp delta (the rest of the body is copied as is).
    pub after_timestamp: usize,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<(usize, usize)>,
    pub has_value: bool,
}

/// Why a stored batch could not be decoded; the cleaner then keeps it as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("compressed payload: {0}")]
    Codec(String),
    #[error("malformed record {0}")]
    Record(usize),
}

/// The batch's records, decompressed if needed (`batch` = exactly one whole batch).
pub fn batch_records(batch: &[u8], header: &BatchHeader) -> Result<Vec<u8>, DecodeError> {
    let payload = &batch[BATCH_HEADER_BYTES..header.size_bytes()];
    let codec = (header.attributes & COMPRESSION_MASK) as u8;
    if codec == 0 {
        return Ok(payload.to_vec());
    }
    decompress::decompress_all(codec, payload).map_err(|e| DecodeError::Codec(format!("{e:?}")))
}

/// Splits decoded records into views. `count` = the header's record count.
pub fn parse_records(bytes: &[u8], count: i32) -> Result<Vec<RecordView>, DecodeError> {
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(bytes.len() / 7));
    let mut at = 0usize;
    for index in 0..count.max(0) as usize {
        let bad = || DecodeError::Record(index);
        let start = at;
        let length = read_varint(bytes, &mut at).ok_or_else(bad)?;
        let end = at
            .checked_add(usize::try_from(length).map_err(|_| bad())?)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(bad)?;
        at += 1; // attributes
        let timestamp_delta = read_varint(bytes, &mut at).ok_or_else(bad)?;
        let after_timestamp = at;
        let offset_delta =
            i32::try_from(read_varint(bytes, &mut at).ok_or_else(bad)?).map_err(|_| bad())?;
        let key = read_field(bytes, &mut at, end).ok_or_else(bad)?;
        let value = read_field(bytes, &mut at, end).ok_or_else(bad)?;
        if at > end {
            return Err(bad());
        }
        out.push(RecordView {
            start,
            end,
            after_timestamp,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value.is_some(),
        });
        at = end;
    }
    if at != bytes.len() {
        return Err(DecodeError::Record(out.len()));
    }
    Ok(out)
}

/// What the filter decided about one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every record kept, no horizon to set: the batch is copied as it is.
    Keep,
    /// Nothing kept: the batch disappears.
    Drop,
    /// The rebuilt batch (fewer records, or a delete horizon set, or both).
    Rebuilt(Vec<u8>),
}

/// What the filter knows about the pass.
pub struct FilterContext<'a> {
    pub map: &'a OffsetMap,
    pub now_ms: i64,
    /// `delete.retention.ms`: the delete horizon of a batch whose tombstones are cleaned first.
    pub delete_retention_ms: i64,
}

/// Counts of one batch's filtering (for the pass's statistics).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterCounts {
    pub records_read: u64,
    pub records_kept: u64,
}

/// Filters one stored batch. `is_producer_last_batch`: the batch is its idempotent producer's
/// last one, whose metadata must survive (as an empty batch if no record is kept). Control and
/// transactional batches are kept whole (transactions: their markers and aborted records are
/// not cleaned yet). A batch the cleaner cannot decode is kept whole.
pub fn filter_batch(
    batch: &[u8],
    header: &BatchHeader,
    ctx: &FilterContext<'_>,
    is_producer_last_batch: bool,
    counts: &mut FilterCounts,
) -> BatchOutcome {
    let records_claimed = u64::try_from(header.record_count).unwrap_or(0);
    counts.records_read += records_claimed;
    if header.attributes & (TRANSACTIONAL_BIT | CONTROL_BIT) != 0 || header.record_count == 0 {
        counts.records_kept += records_claimed;
        return BatchOutcome::Keep;
    }
    let decoded = batch_records(batch, header)
        .and_then(|bytes| parse_records(&bytes, header.record_count).map(|v| (bytes, v)));
    let (bytes, views) = match decoded {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(base = header.base_offset, error = %e, "cleaner keeps a batch it cannot decode");
            counts.records_kept += records_claimed;
            return BatchOutcome::Keep;
        }
    };
    let horizon = (header.attributes & DELETE_HORIZON_FLAG != 0).then_some(header.base_timestamp);
    let keep: Vec<&RecordView> = views
        .iter()
        .filter(|r| retain(&bytes, r, header, horizon, ctx))
        .collect();
    counts.records_kept += keep.len() as u64;
    let tombstones_kept = keep.iter().any(|r| !r.has_value);
    let set_horizon = horizon.is_none() && tombstones_kept;
    if keep.len() == views.len() && !set_horizon {
        return BatchOutcome::Keep;
    }
    if keep.is_empty() {
        if is_producer_last_batch {
            return BatchOutcome::Rebuilt(empty_batch(header));
        }
        return BatchOutcome::Drop;
    }
    let horizon = if set_horizon {
        Some(ctx.now_ms.saturating_add(ctx.delete_retention_ms))
    } else {
        horizon
    };
    match rebuild(header, &bytes, &keep, horizon) {
        Some(rebuilt) => BatchOutcome::Rebuilt(rebuilt),
        None => {
            tracing::warn!(
                base = header.base_offset,
                "cleaner keeps a batch it could not recompress"
            );
            counts.records_kept += (views.len() - keep.len()) as u64;
            BatchOutcome::Keep
        }
    }
}

/// Kafka's `Cleaner.shouldRetainRecord` for one record.
fn retain(
    bytes: &[u8],
    record: &RecordView,
    header: &BatchHeader,
    horizon: Option<i64>,
    ctx: &FilterContext<'_>,
) -> bool {
    let offset = header.base_offset + i64::from(record.offset_delta);
    if offset > ctx.map.latest_offset() {
        return true;
    }
    let Some((ks, ke)) = record.key else {
        // A record without a key (written before the policy became compact) is removed.
        return false;
    };
    let latest_for_key = offset >= ctx.map.get(&bytes[ks..ke]);
    let retain_tombstone = horizon.is_none_or(|h| ctx.now_ms < h);
    latest_for_key && (record.has_value || retain_tombstone)
}

/// The batch rebuilt from the kept records, compressed with its codec; `horizon` becomes its
/// base timestamp (timestamp deltas re-encoded against it) with the delete-horizon flag.
fn rebuild(
    header: &BatchHeader,
    bytes: &[u8],
    keep: &[&RecordView],
    horizon: Option<i64>,
) -> Option<Vec<u8>> {
    let base_timestamp = horizon.unwrap_or(header.base_timestamp);
    let mut records = Vec::with_capacity(bytes.len());
    let mut max_timestamp = -1i64;
    for r in keep {
        let timestamp = header.base_timestamp.saturating_add(r.timestamp_delta);
        max_timestamp = max_timestamp.max(timestamp);
        if horizon.is_none() || base_timestamp == header.base_timestamp {
            records.extend_from_slice(&bytes[r.start..r.end]);
            continue;
        }
        let mut body = Vec::with_capacity(r.end - r.start + 10);
        body.push(0u8); // attributes (unused in v2)
        write_varint(&mut body, timestamp.saturating_sub(base_timestamp));
        body.extend_from_slice(&bytes[r.after_timestamp..r.end]);
        write_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let log_append_time = header.attributes & TIMESTAMP_TYPE_BIT != 0;
    if log_append_time || max_timestamp < 0 {
        max_timestamp = header.max_timestamp;
    }
    let codec = (header.attributes & COMPRESSION_MASK) as u8;
    let payload = compress(codec, &records)?;
    let mut attributes = header.attributes;
    if horizon.is_some() {
        attributes |= DELETE_HORIZON_FLAG;
    }
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + payload.len());
    write_header(
        &mut out,
        header,
        attributes,
        base_timestamp,
        max_timestamp,
        keep.len() as i32,
    );
    out.extend_from_slice(&payload);
    finish(&mut out);
    Some(out)
}

/// Kafka's `DefaultRecordBatch.writeEmptyHeader`: the batch's offsets, producer and sequence
/// without records, uncompressed.
fn empty_batch(header: &BatchHeader) -> Vec<u8> {
    let attributes = header.attributes & !COMPRESSION_MASK & !DELETE_HORIZON_FLAG;
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES);
    write_header(
        &mut out,
        header,
        attributes,
        header.max_timestamp,
        header.max_timestamp,
        0,
    );
    finish(&mut out);
    out
}

fn write_header(
    out: &mut Vec<u8>,
    h: &BatchHeader,
    attributes: i16,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
) {
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // length, set by `finish`
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, set by `finish`
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&record_count.to_be_bytes());
    debug_assert_eq!(out.len(), BATCH_HEADER_BYTES);
}

/// Sets the batch length and the CRC-32C (over attributes to the end).
fn finish(out: &mut [u8]) {
    let length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Compresses records with a batch codec as Kafka's clients frame them (`None`: the codec
/// failed, which compressing into memory should never do).
pub fn compress(codec: u8, records: &[u8]) -> Option<Vec<u8>> {
    match codec {
        decompress::CODEC_GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(records).ok()?;
            e.finish().ok()
        }
        decompress::CODEC_SNAPPY => xerial_snappy(records),
        decompress::CODEC_LZ4 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).ok()?;
            e.write_all(records).ok()?;
            let (out, result) = e.finish();
            result.ok().map(|_| out)
        }
        decompress::CODEC_ZSTD => zstd::bulk::compress(records, 3).ok(),
        _ => Some(records.to_vec()),
    }
}

/// xerial's snappy framing (Kafka's Java `SnappyOutputStream`), which librdkafka reads too.
fn xerial_snappy(records: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(records.len() / 2 + 32);
    out.extend_from_slice(b"\x82SNAPPY\x00");
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in records.chunks(SNAPPY_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(block).ok()?;
        out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Some(out)
}

/// A zigzag varint/varlong (Kafka's `ByteUtils.readVarlong`, at most 10 bytes).
pub fn read_varint(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

pub fn write_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A nullable length-prefixed field ending within `end`: `Some(None)` for null.
fn read_field(bytes: &[u8], at: &mut usize, end: usize) -> Option<Option<(usize, usize)>> {
    let length = read_varint(bytes, at)?;
    if length == -1 {
        return Some(None);
    }
    let start = *at;
    let stop = start.checked_add(usize::try_from(length).ok()?)?;
    if stop > end {
        return None;
    }
    *at = stop;
    Some(Some((start, stop)))
}

#[cfg(test)]
mod tests;
