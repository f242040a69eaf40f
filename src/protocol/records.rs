//! Validation of produced record data, in place (no decoding of records, no copy).
//!
//! Kafka's LogValidator rules for magic v2: exactly one batch per partition per
//! request, a known magic, a matching CRC-32C, a sane record count and offset
//! delta, a known compression codec, and the topic's `max.message.bytes`.

use bytes::Bytes;

/// Size of a v2 batch header; records follow it.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;

/// Offsets of header fields.
pub mod field {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// CORRUPT_MESSAGE (2)
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// INVALID_RECORD (87)
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// MESSAGE_TOO_LARGE (10)
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// UNSUPPORTED_COMPRESSION_TYPE (76)
    #[error("unknown compression codec {0}")]
    Compression(u8),
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT (43)
    #[error("magic {0} is not supported; only v2 record batches")]
    Magic(i8),
}

/// What the broker needs to know about a validated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub size: usize,
    pub record_count: i32,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub compression: u8,
    pub transactional: bool,
    pub control: bool,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Reads and checks the header of the batch at the start of `b` (which may hold
/// more bytes after it). Shared by Produce validation and storage recovery.
pub fn parse_batch(b: &[u8]) -> Result<BatchInfo, RecordsError> {
    if b.len() < BATCH_HEADER_BYTES {
        return Err(RecordsError::Corrupt(format!(
            "{} bytes is shorter than a batch header",
            b.len()
        )));
    }
    let magic = b[field::MAGIC] as i8;
    if magic != 2 {
        return Err(RecordsError::Magic(magic));
    }
    let batch_length = be_i32(b, field::BATCH_LENGTH);
    if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return Err(RecordsError::Corrupt(format!(
            "batch length {batch_length} too small"
        )));
    }
    let size = LOG_OVERHEAD + batch_length as usize;
    if size > b.len() {
        return Err(RecordsError::Corrupt(format!(
            "batch of {size} bytes truncated to {}",
            b.len()
        )));
    }
    let stored = u32::from_be_bytes([
        b[field::CRC],
        b[field::CRC + 1],
        b[field::CRC + 2],
        b[field::CRC + 3],
    ]);
    let computed = crc32c::crc32c(&b[field::ATTRIBUTES..size]);
    if stored != computed {
        return Err(RecordsError::Corrupt(format!(
            "crc {stored:#x} != computed {computed:#x}"
        )));
    }
    let attributes = be_i16(b, field::ATTRIBUTES);
    let compression = (attributes & 0x07) as u8;
    if compression > 4 {
        return Err(RecordsError::Compression(compression));
    }
    let record_count = be_i32(b, field::RECORD_COUNT);
    let last_offset_delta = be_i32(b, field::LAST_OFFSET_DELTA);
    if record_count <= 0 {
        return Err(RecordsError::Invalid(format!(
            "record count {record_count}"
        )));
    }
    if last_offset_delta != record_count - 1 {
        return Err(RecordsError::Invalid(format!(
            "last offset delta {last_offset_delta} does not match record count {record_count}"
        )));
    }
    Ok(BatchInfo {
        size,
        record_count,
        last_offset_delta,
        base_timestamp: be_i64(b, field::BASE_TIMESTAMP),
        max_timestamp: be_i64(b, field::MAX_TIMESTAMP),
        producer_id: be_i64(b, field::PRODUCER_ID),
        producer_epoch: be_i16(b, field::PRODUCER_EPOCH),
        base_sequence: be_i32(b, field::BASE_SEQUENCE),
        compression,
        transactional: attributes & 0x10 != 0,
        control: attributes & 0x20 != 0,
    })
}

/// Validates a partition's produced records: exactly one v2 batch, within `max_bytes`.
pub fn validate_produce(records: &Bytes, max_bytes: usize) -> Result<BatchInfo, RecordsError> {
    let info = parse_batch(records)?;
    if info.size != records.len() {
        return Err(RecordsError::Invalid(
            "Produce requests must contain exactly one record batch per partition".into(),
        ));
    }
    if info.size > max_bytes {
        return Err(RecordsError::TooLarge {
            size: info.size,
            max: max_bytes,
        });
    }
    if info.control {
        return Err(RecordsError::Invalid(
            "clients may not produce control batches".into(),
        ));
    }
    Ok(info)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub fn batch(values: &[&[u8]], compression: Compression) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: 1_700_000_000_000 + i as i64,
                key: None,
                value: Some(Bytes::copy_from_slice(v)),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn accepts_valid_batches_of_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(&[b"a", b"bb", b"ccc"], c);
            let info = validate_produce(&b, 1 << 20).unwrap();
            assert_eq!(info.record_count, 3);
        }
    }

    #[test]
    fn rejects_corruption_size_and_two_batches() {
        let b = batch(&[b"hello"], Compression::None);
        let mut bad = BytesMut::from(&b[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            validate_produce(&bad.freeze(), 1 << 20),
            Err(RecordsError::Corrupt(_))
        ));
        assert!(matches!(
            validate_produce(&b, 10),
            Err(RecordsError::TooLarge { .. })
        ));
        let mut two = BytesMut::from(&b[..]);
        two.extend_from_slice(&b);
        assert!(matches!(
            validate_produce(&two.freeze(), 1 << 20),
            Err(RecordsError::Invalid(_))
        ));
        assert!(validate_produce(&b.slice(0..30), 1 << 20).is_err());
    }
}
