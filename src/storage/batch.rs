//! Record batch v2 header: field positions, parsing, verification and the in-place rewrites of the
//! header (base offset and leader epoch by the log; LogAppendTime; MaxTimestamp by Produce
//! validation). The records are walked, never decoded, by `record_walk`.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8 (bytes after this field),
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C over @21..end),
//! attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57; records @61.

use super::record_walk::{walk_stored_records, SliceSource};

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Size of the v2 batch header; records start here.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s payload: baseOffset + batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only magic this log stores.
pub const MAGIC_V2: i8 = 2;
/// Upper bound on one batch; anything larger on disk is treated as corruption.
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Attributes bit: the batch's timestamps are LogAppendTime.
pub const TIMESTAMP_TYPE_LOG_APPEND_TIME: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// The parsed fixed header of one batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Total bytes of the batch on disk, header included.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    /// The log append time for a `LogAppendTime` batch (its max timestamp), else -1.
    pub fn log_append_time_ms(&self) -> i64 {
        if self.attributes & TIMESTAMP_TYPE_LOG_APPEND_TIME != 0 {
            self.max_timestamp
        } else {
            -1
        }
    }
    /// Marks the parsed header as `LogAppendTime` at `now_ms` (as `set_log_append_time` does
    /// to the bytes).
    pub fn set_log_append_time(&mut self, now_ms: i64) {
        self.attributes |= TIMESTAMP_TYPE_LOG_APPEND_TIME;
        self.base_timestamp = now_ms;
        self.max_timestamp = now_ms;
    }
    /// Last sequence number of the batch (wraps at i32::MAX like Kafka).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Parses a header without checking the CRC. `None` when fewer than 61 bytes are given.
pub fn parse_header(buf: &[u8]) -> Option<BatchHeader> {
    if buf.len() < BATCH_HEADER_BYTES {
        return None;
    }
    Some(BatchHeader {
        base_offset: read_i64(buf, BASE_OFFSET_AT),
        batch_length: read_i32(buf, BATCH_LENGTH_AT),
        partition_leader_epoch: read_i32(buf, LEADER_EPOCH_AT),
        magic: buf[MAGIC_AT] as i8,
        crc: read_i32(buf, CRC_AT) as u32,
        attributes: read_i16(buf, ATTRIBUTES_AT),
        last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA_AT),
        base_timestamp: read_i64(buf, BASE_TIMESTAMP_AT),
        max_timestamp: read_i64(buf, MAX_TIMESTAMP_AT),
        producer_id: read_i64(buf, PRODUCER_ID_AT),
        producer_epoch: read_i16(buf, PRODUCER_EPOCH_AT),
        base_sequence: read_i32(buf, BASE_SEQUENCE_AT),
        record_count: read_i32(buf, RECORD_COUNT_AT),
    })
}

/// Why a batch failed verification.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchDefect {
    /// Fewer bytes than the header or the declared length: a torn or zero tail.
    Truncated,
    BadLength(i32),
    BadMagic(i8),
    BadCrc,
    BadCounts,
}

/// Verifies the batch at the start of `buf` (length sane, magic 2, CRC-32C, counts) and returns its
/// header. Used on both sides of the disk: Produce validation before the write, and reads and
/// recovery after it.
pub fn verify_batch(buf: &[u8]) -> Result<BatchHeader, BatchDefect> {
    let header = check_frame(buf)?;
    if crc32c::crc32c(&buf[ATTRIBUTES_AT..header.size_bytes()]) != header.crc {
        return Err(BatchDefect::BadCrc);
    }
    Ok(header)
}

/// Everything `verify_batch` checks except the CRC: what `append` re-checks about bytes whose
/// CRC its caller already verified (computing it twice was a full pass over every produced byte).
pub fn check_frame(buf: &[u8]) -> Result<BatchHeader, BatchDefect> {
    let header = parse_header(buf).ok_or(BatchDefect::Truncated)?;
    let length = header.batch_length;
    if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
        || length as usize > BATCH_BYTES_MAX
    {
        return Err(BatchDefect::BadLength(length));
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchDefect::BadMagic(header.magic));
    }
    if buf.len() < header.size_bytes() {
        return Err(BatchDefect::Truncated);
    }
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(BatchDefect::BadCounts);
    }
    Ok(header)
}

/// Rewrites baseOffset (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Kafka's LogAppendTime rewrite: timestamp-type bit, baseTimestamp and maxTimestamp set to
/// `now_ms`, CRC recomputed. `batch` is exactly one batch.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = read_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_LOG_APPEND_TIME;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The total size a batch starting at `buf` declares (`None` while its length field is not
/// all there, or is negative).
pub fn declared_size(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD_BYTES {
        return None;
    }
    usize::try_from(read_i32(buf, BATCH_LENGTH_AT))
        .ok()
        .map(|len| LOG_OVERHEAD_BYTES + len)
}

/// Splits `buf` into whole batches, verifying each (CRC included); fails on the first defect.
pub fn split_batches(buf: &[u8]) -> Result<Vec<(usize, BatchHeader)>, BatchDefect> {
    split_with(buf, verify_batch)
}

/// Splits `buf` into whole, well-framed batches without computing their CRCs (see
/// `check_frame`).
pub fn split_framed(buf: &[u8]) -> Result<Vec<(usize, BatchHeader)>, BatchDefect> {
    split_with(buf, check_frame)
}

fn split_with(
    buf: &[u8],
    check: fn(&[u8]) -> Result<BatchHeader, BatchDefect>,
) -> Result<Vec<(usize, BatchHeader)>, BatchDefect> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let header = check(&buf[pos..])?;
        out.push((pos, header));
        pos += header.size_bytes();
    }
    Ok(out)
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

/// Compression codec bits of the attributes (0 = none).
pub const COMPRESSION_MASK: i16 = 0x07;

/// Rewrites MaxTimestamp and recomputes the CRC (Kafka's `setMaxTimestamp`): Produce validation
/// stores the records' largest timestamp when the producer's header disagrees.
/// `batch` is exactly one batch.
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Offset and timestamp of each record of a batch (`batch` = the whole batch); compressed
/// batches are walked through the bounded streaming decompressor. `None` for malformed records.
/// Used only by ListOffsets lookups, which need per-record answers. The vector grows with the
/// records actually walked, never with the count the header claims.
pub fn record_timestamps(batch: &[u8]) -> Option<Vec<(i64, i64)>> {
    let header = parse_header(batch)?;
    if batch.len() < header.size_bytes() {
        return None;
    }
    let mut out = Vec::new();
    let payload = &batch[BATCH_HEADER_BYTES..header.size_bytes()];
    let mut push = |offset_delta: i32, timestamp: i64| {
        out.push((header.base_offset + i64::from(offset_delta), timestamp));
    };
    let codec = (header.attributes & COMPRESSION_MASK) as u8;
    if codec == 0 {
        walk_stored_records(&header, &mut SliceSource::new(payload), &mut push).ok()?;
    } else {
        // Stored batches were walked at produce time; a failure here means corruption.
        super::decompress::with_records(codec, payload, |source| {
            walk_stored_records(&header, source, &mut push)
        })
        .ok()?
        .ok()?;
    }
    Some(out)
}
