//! Validation of produced record data, in place (no decoding of records, no copy).
//!
//! Kafka's LogValidator rules for magic v2: exactly one batch per partition per
//! request, a known magic, a matching CRC-32C, a sane record count and offset
//! delta, a known compression codec, and the topic's `max.message.bytes`.

use bytes::Bytes;

use crate::storage::batch::{verify_batch, BatchDefect, BatchHeader};

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

/// Reads and checks the batch at the start of `b` (which may hold more bytes after
/// it). The v2 format itself is checked by `storage::batch::verify_batch`, the same
/// code that checks batches again on read and recovery; this adds the rules Kafka
/// applies to produced batches.
pub fn parse_batch(b: &[u8]) -> Result<BatchHeader, RecordsError> {
    let h = verify_batch(b).map_err(|defect| match defect {
        BatchDefect::BadMagic(m) => RecordsError::Magic(m),
        BatchDefect::Truncated => {
            RecordsError::Corrupt(format!("batch truncated to {} bytes", b.len()))
        }
        BatchDefect::BadLength(l) => {
            RecordsError::Corrupt(format!("batch length {l} out of range"))
        }
        BatchDefect::BadCrc => RecordsError::Corrupt("CRC-32C mismatch".into()),
        BatchDefect::BadCounts => {
            RecordsError::Invalid("negative record count or offset delta".into())
        }
    })?;
    let compression = (h.attributes & 0x07) as u8;
    if compression > 4 {
        return Err(RecordsError::Compression(compression));
    }
    if h.record_count <= 0 {
        return Err(RecordsError::Invalid(format!(
            "record count {}",
            h.record_count
        )));
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(RecordsError::Invalid(format!(
            "last offset delta {} does not match record count {}",
            h.last_offset_delta, h.record_count
        )));
    }
    Ok(h)
}

/// Validates a partition's produced records: exactly one v2 batch, within `max_bytes`.
pub fn validate_produce(records: &Bytes, max_bytes: usize) -> Result<BatchHeader, RecordsError> {
    let header = parse_batch(records)?;
    let size = header.size_bytes();
    if size != records.len() {
        return Err(RecordsError::Invalid(
            "Produce requests must contain exactly one record batch per partition".into(),
        ));
    }
    if size > max_bytes {
        return Err(RecordsError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    if header.is_control() {
        return Err(RecordsError::Invalid(
            "clients may not produce control batches".into(),
        ));
    }
    Ok(header)
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
