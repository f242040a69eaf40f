//! Validation of produced record data, in place (records are walked, not decoded or copied).
//!
//! Kafka's LogValidator rules for magic v2: exactly one batch per partition per
//! request, a known magic, a matching CRC-32C, a sane record count and offset
//! delta, a known compression codec, and the topic's `max.message.bytes`; then every
//! record is walked (`storage::record_walk`), through a bounded decompressing stream for
//! compressed batches (`protocol::decompress`): lengths, varints, offset deltas 0..n-1, the
//! count, and records that fill the batch exactly.

use bytes::Bytes;

use crate::storage::batch::{verify_batch, BatchDefect, BatchHeader, BATCH_HEADER_BYTES};
use crate::storage::decompress;
use crate::storage::record_walk::{
    walk_records, walk_records_with_keys, RecordDefect, RecordsSummary, SliceSource,
};

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

/// A produced batch that passed validation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ValidBatch {
    pub header: BatchHeader,
    /// What the walk found in the records (timestamps come from the records, not the header).
    pub records: RecordsSummary,
}

/// Validates a partition's produced records: exactly one v2 batch, within `max_bytes`, whose
/// records are well formed.
pub fn validate_produce(records: &Bytes, max_bytes: usize) -> Result<ValidBatch, RecordsError> {
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
    let summary = walk(&header, &records[BATCH_HEADER_BYTES..size])?;
    Ok(ValidBatch {
        header,
        records: summary,
    })
}

/// The indexes (within the batch) of the records whose key is null, at most `max` of them, for
/// KIP-467 `record_errors` on a compacted topic. Only called for a batch that `validate_produce`
/// accepted and whose summary counted keyless records, so the walk cannot fail here; a failure
/// gives the indexes found before it.
pub fn keyless_records(records: &[u8], header: &BatchHeader, max: usize) -> Vec<i32> {
    let mut out = Vec::new();
    let payload = records
        .get(BATCH_HEADER_BYTES..header.size_bytes())
        .unwrap_or(&[]);
    let mut visit = |index: i32, _timestamp: i64, key_null: bool| {
        if key_null && out.len() < max {
            out.push(index);
        }
    };
    let codec = (header.attributes & crate::storage::batch::COMPRESSION_MASK) as u8;
    if codec == 0 {
        let _ = walk_records_with_keys(header, &mut SliceSource::new(payload), &mut visit);
    } else {
        let _ = decompress::with_records(codec, payload, |source| {
            walk_records_with_keys(header, source, &mut visit)
        });
    }
    out
}

/// Walks the records of a batch whose header is checked; `payload` = the bytes after the header.
/// A defect in the record structure is INVALID_RECORD, as Kafka's `InvalidRecordException`
/// from `DefaultRecord`; a payload the codec refuses, or one that ends before its records, or
/// a decompression bomb, is CORRUPT_MESSAGE.
pub fn walk(header: &BatchHeader, payload: &[u8]) -> Result<RecordsSummary, RecordsError> {
    let codec = (header.attributes & crate::storage::batch::COMPRESSION_MASK) as u8;
    let result = if codec == 0 {
        walk_records(header, &mut SliceSource::new(payload), |_, _| {})
    } else {
        decompress::with_records(codec, payload, |source| {
            walk_records(header, source, |_, _| {})
        })
        .map_err(|e| RecordsError::Corrupt(format!("compressed payload: {e:?}")))?
    };
    result.map_err(|defect| match defect {
        RecordDefect::Codec { .. } | RecordDefect::OverBudget { .. } => {
            RecordsError::Corrupt(defect.to_string())
        }
        RecordDefect::Truncated { .. } if codec != 0 => {
            RecordsError::Corrupt(format!("compressed payload ends early: {defect}"))
        }
        // In a stream the bytes left are the decompression budget, not bytes present.
        RecordDefect::Length { length, .. } if codec != 0 && length >= 0 => RecordsError::Corrupt(
            format!("records would decompress to more than the limit: {defect}"),
        ),
        _ => RecordsError::Invalid(defect.to_string()),
    })
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
            assert_eq!(info.header.record_count, 3);
            assert_eq!(info.records.count, 3);
            assert_eq!(info.records.max_timestamp, 1_700_000_000_002);
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

    /// `original`'s header in front of `payload`, with the length and CRC fixed.
    fn reframe(original: &[u8], payload: &[u8]) -> Bytes {
        let mut b = original[..BATCH_HEADER_BYTES].to_vec();
        b.extend_from_slice(payload);
        let length = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    const CODECS: [Compression; 4] = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn truncated_and_garbage_compressed_payloads_are_corrupt() {
        for c in CODECS {
            let b = batch(&[b"a", b"bb", b"ccc", &[7u8; 3000]], c);
            let payload = &b[BATCH_HEADER_BYTES..];
            for cut in [1, 4, payload.len() / 2, payload.len() - 1] {
                let t = reframe(&b, &payload[..cut]);
                let r = validate_produce(&t, 1 << 20);
                assert!(
                    matches!(r, Err(RecordsError::Corrupt(_))),
                    "{c:?} cut at {cut}: {r:?}"
                );
            }
            let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7919 % 251) as u8).collect();
            let r = validate_produce(&reframe(&b, &garbage), 1 << 20);
            assert!(
                matches!(r, Err(RecordsError::Corrupt(_))),
                "{c:?} garbage: {r:?}"
            );
            let mut trailing = payload.to_vec();
            trailing.extend_from_slice(b"junk");
            let r = validate_produce(&reframe(&b, &trailing), 1 << 20);
            assert!(r.is_err(), "{c:?} trailing bytes accepted");
        }
    }

    #[test]
    fn records_inside_compressed_batches_are_walked() {
        use crate::storage::record_walk::tests::{batch as raw_batch, record};
        let records = [record(0, 0, b"a"), record(2, 0, b"b")].concat();
        let compressed = zstd::encode_all(&records[..], 1).unwrap();
        let b = Bytes::from(raw_batch(2, 1, 4, -1, &compressed));
        let r = validate_produce(&b, 1 << 20);
        assert!(
            matches!(r, Err(RecordsError::Invalid(ref m)) if m.contains("offset delta")),
            "{r:?}"
        );
    }

    /// zstd-compressed records: `count` records, each a value of `value_bytes` zeros.
    fn zero_records_zstd(count: i64, value_bytes: i64) -> Vec<u8> {
        use crate::storage::record_walk::tests::put_varint;
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for i in 0..count {
            let mut body = vec![0u8, 0];
            put_varint(&mut body, i);
            put_varint(&mut body, -1);
            put_varint(&mut body, value_bytes);
            let mut prefix = Vec::new();
            put_varint(&mut prefix, body.len() as i64 + value_bytes + 1);
            prefix.extend_from_slice(&body);
            std::io::Write::write_all(&mut encoder, &prefix).unwrap();
            let mut left = value_bytes as usize;
            while left > 0 {
                let n = left.min(zeros.len());
                std::io::Write::write_all(&mut encoder, &zeros[..n]).unwrap();
                left -= n;
            }
            std::io::Write::write_all(&mut encoder, &[0]).unwrap();
        }
        encoder.finish().unwrap()
    }

    #[test]
    fn a_decompression_bomb_is_refused_with_bounded_work() {
        use crate::storage::record_walk::tests::batch as raw_batch;
        // One record that declares 80 MiB: refused at its length.
        let compressed = zero_records_zstd(1, 80 << 20);
        assert!(compressed.len() < 1 << 20);
        let b = Bytes::from(raw_batch(1, 0, 4, -1, &compressed));
        let r = validate_produce(&b, 1 << 20);
        assert!(
            matches!(r, Err(RecordsError::Corrupt(ref m)) if m.contains("more than the limit")),
            "{r:?}"
        );
        // 70 records of 1 MiB each: refused once the stream passes the limit.
        let compressed = zero_records_zstd(70, 1 << 20);
        let b = Bytes::from(raw_batch(70, 69, 4, -1, &compressed));
        let r = validate_produce(&b, 1 << 20);
        assert!(
            matches!(r, Err(RecordsError::Corrupt(ref m)) if m.contains("decompress to more")),
            "{r:?}"
        );
        // Just under the limit is accepted.
        let compressed = zero_records_zstd(60, 1 << 20);
        let b = Bytes::from(raw_batch(60, 59, 4, -1, &compressed));
        assert_eq!(validate_produce(&b, 1 << 20).unwrap().records.count, 60);
    }

    #[test]
    fn keyless_records_are_counted_and_found_in_every_codec() {
        use kafka_protocol::records::RecordBatchEncoder;
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let records: Vec<Record> = (0..5)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32 - 1,
                    timestamp: 1_700_000_000_000,
                    // Records 1 and 3 have no key; 4 has an empty (present) key.
                    key: match i {
                        1 | 3 => None,
                        4 => Some(Bytes::new()),
                        _ => Some(Bytes::from_static(b"k")),
                    },
                    value: Some(Bytes::from_static(b"v")),
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
                    compression: c,
                },
            )
            .unwrap();
            let b = buf.freeze();
            let valid = validate_produce(&b, 1 << 20).unwrap();
            assert_eq!(valid.records.keyless, 2, "{c:?}");
            assert_eq!(keyless_records(&b, &valid.header, 100), vec![1, 3]);
            assert_eq!(keyless_records(&b, &valid.header, 1), vec![1]);
        }
        let b = batch(&[b"a"], Compression::None);
        assert_eq!(validate_produce(&b, 1 << 20).unwrap().records.keyless, 1);
    }

    #[test]
    fn the_max_timestamp_comes_from_the_records() {
        use crate::storage::record_walk::tests::{batch as raw_batch, record, BASE_TIMESTAMP};
        let records = [record(0, 7, b"a"), record(1, 3, b"b")].concat();
        for (codec, payload) in [
            (0, records.clone()),
            (4, zstd::encode_all(&records[..], 1).unwrap()),
        ] {
            let b = Bytes::from(raw_batch(2, 1, codec, -1, &payload));
            let valid = validate_produce(&b, 1 << 20).unwrap();
            assert_eq!(valid.header.max_timestamp, -1);
            assert_eq!(valid.records.max_timestamp, BASE_TIMESTAMP + 7);
        }
    }
}
