//! The walk over the records of one v2 batch: every length, varint and delta is read and checked
//! against the bytes present, like Kafka's `DefaultRecord.readFrom` and the record iterator that
//! `LogValidator` drives. Nothing is decoded into values and nothing is allocated: the walk reads
//! from a [`RecordSource`], which is either the batch's own bytes ([`SliceSource`], uncompressed
//! batches) or a decompressing stream (`protocol::decompress`, compressed batches).
//!
//! Record layout (v2): length varint, then `length` bytes of body: attributes i8,
//! timestampDelta varlong, offsetDelta varint, keyLength varint, key, valueLength varint, value,
//! headerCount varint, and per header keyLength varint, key, valueLength varint, value.
//! Varints are zigzag; a varint takes at most 5 bytes and a varlong at most 10, as in Kafka.

use super::batch::{BatchHeader, TIMESTAMP_TYPE_LOG_APPEND_TIME};

/// Kafka's `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;
/// Longest varint (i32) on the wire.
const VARINT_BYTES_MAX: usize = 5;
/// Longest varlong (i64) on the wire.
const VARLONG_BYTES_MAX: usize = 10;

/// Why a source could not give the bytes asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// No byte left: the batch, or the decompressed stream, ended.
    End,
    /// The decompressor refused the payload (garbage, a truncated frame, a bad checksum).
    Codec(String),
    /// The payload decompressed to more than the named bound allows.
    OverBudget(u64),
}

/// Bytes of a batch's records, read front to back once.
pub trait RecordSource {
    /// The next byte.
    fn next_byte(&mut self) -> Result<u8, SourceError>;
    /// Skips `n` bytes.
    fn skip(&mut self, n: u64) -> Result<(), SourceError>;
    /// Bytes consumed so far.
    fn position(&self) -> u64;
    /// The most bytes the source may still give: exact for a slice, the rest of the budget for a
    /// stream. Every length read from the wire is checked against it before it is used.
    fn remaining_max(&self) -> u64;
    /// Whether every byte was consumed (for a stream: the compressed frame is complete and its
    /// checksums matched).
    fn at_end(&mut self) -> Result<bool, SourceError>;
}

/// The records of an uncompressed batch: the bytes after its 61-byte header.
pub struct SliceSource<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> SliceSource<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        SliceSource { bytes, at: 0 }
    }
}

impl RecordSource for SliceSource<'_> {
    #[inline]
    fn next_byte(&mut self) -> Result<u8, SourceError> {
        let byte = *self.bytes.get(self.at).ok_or(SourceError::End)?;
        self.at += 1;
        Ok(byte)
    }

    #[inline]
    fn skip(&mut self, n: u64) -> Result<(), SourceError> {
        if n > self.remaining_max() {
            self.at = self.bytes.len();
            return Err(SourceError::End);
        }
        self.at += n as usize;
        Ok(())
    }

    #[inline]
    fn position(&self) -> u64 {
        self.at as u64
    }

    #[inline]
    fn remaining_max(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn at_end(&mut self) -> Result<bool, SourceError> {
        Ok(self.at == self.bytes.len())
    }
}

/// A defect found by the walk; `record` is the index of the record within the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDefect {
    #[error("record {record}: the records end early (the batch claims {claimed} records)")]
    Truncated { record: i32, claimed: i32 },
    #[error("record {record}: varint longer than {max} bytes")]
    VarintTooLong { record: i32, max: usize },
    #[error("record {record}: length {length} exceeds the {available} bytes left")]
    Length {
        record: i32,
        length: i64,
        available: u64,
    },
    #[error("record {record}: offset delta {found}, expected {record}")]
    OffsetDelta { record: i32, found: i64 },
    #[error("record {record}: {field} length {length} is invalid")]
    FieldLength {
        record: i32,
        field: &'static str,
        length: i64,
    },
    #[error("record {record}: {declared} bytes declared, {read} read")]
    RecordSize {
        record: i32,
        declared: u64,
        read: u64,
    },
    #[error("record {record}: timestamp overflows")]
    Timestamp { record: i32 },
    #[error("bytes remain after the {count} records the batch claims")]
    Trailing { count: i32 },
    #[error("record {record}: compressed payload: {reason}")]
    Codec { record: i32, reason: String },
    #[error("record {record}: records decompress to more than {limit} bytes")]
    OverBudget { record: i32, limit: u64 },
}

/// What the walk learned about a well-formed batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordsSummary {
    /// Records walked (equals the header's record count).
    pub count: i32,
    /// Largest record timestamp, at least [`NO_TIMESTAMP`]: what Kafka stores as the batch's
    /// MaxTimestamp for CreateTime.
    pub max_timestamp: i64,
    /// (smallest, largest) record timestamp other than [`NO_TIMESTAMP`], for the KIP-937 bounds.
    pub timestamp_bounds: Option<(i64, i64)>,
    /// Records whose key is null: refused on compacted topics (Kafka's `LogValidator.validateKey`).
    pub keyless: i32,
}

/// Walks all `header.record_count` records of the batch from `source` and checks that they fill
/// it exactly. `visit` gets each record's offset delta and timestamp. Allocates nothing; the
/// loop ends at the first defect, so a count or length from the wire costs at most the bytes
/// present.
pub fn walk_records<S: RecordSource>(
    header: &BatchHeader,
    source: &mut S,
    mut visit: impl FnMut(i32, i64),
) -> Result<RecordsSummary, RecordDefect> {
    walk_records_with_keys(header, source, |index, timestamp, _| {
        visit(index, timestamp)
    })
}

/// [`walk_records`] whose `visit` also learns whether each record's key is null.
pub fn walk_records_with_keys<S: RecordSource>(
    header: &BatchHeader,
    source: &mut S,
    visit: impl FnMut(i32, i64, bool),
) -> Result<RecordsSummary, RecordDefect> {
    walk(header, source, true, visit)
}

/// The walk over a stored batch, which a log cleaner may have rebuilt (`storage::cleaner`): the
/// offset deltas increase up to the header's last offset delta but may have gaps. `visit` gets
/// each record's offset delta (not its index) and timestamp.
pub fn walk_stored_records<S: RecordSource>(
    header: &BatchHeader,
    source: &mut S,
    mut visit: impl FnMut(i32, i64),
) -> Result<RecordsSummary, RecordDefect> {
    walk(header, source, false, |delta, timestamp, _| {
        visit(delta, timestamp)
    })
}

/// `strict`: offset deltas are exactly 0..count (a produced batch); else increasing.
fn walk<S: RecordSource>(
    header: &BatchHeader,
    source: &mut S,
    strict: bool,
    mut visit: impl FnMut(i32, i64, bool),
) -> Result<RecordsSummary, RecordDefect> {
    let log_append_time = header.attributes & TIMESTAMP_TYPE_LOG_APPEND_TIME != 0;
    let mut summary = RecordsSummary {
        count: 0,
        max_timestamp: NO_TIMESTAMP,
        timestamp_bounds: None,
        keyless: 0,
    };
    let mut previous_delta = -1i64;
    for index in 0..header.record_count.max(0) {
        let mut walker = Walker {
            source: &mut *source,
            record: index,
            claimed: header.record_count,
        };
        let (timestamp_delta, offset_delta, key_null) = walker.record()?;
        let delta_ok = if strict {
            offset_delta == i64::from(index)
        } else {
            offset_delta > previous_delta && offset_delta <= i64::from(header.last_offset_delta)
        };
        if !delta_ok {
            return Err(RecordDefect::OffsetDelta {
                record: index,
                found: offset_delta,
            });
        }
        previous_delta = offset_delta;
        let timestamp = if log_append_time {
            header.max_timestamp
        } else {
            header
                .base_timestamp
                .checked_add(timestamp_delta)
                .ok_or(RecordDefect::Timestamp { record: index })?
        };
        visit(offset_delta as i32, timestamp, key_null);
        summary.count = index + 1;
        summary.keyless += i32::from(key_null);
        summary.max_timestamp = summary.max_timestamp.max(timestamp);
        if timestamp != NO_TIMESTAMP {
            let (low, high) = summary.timestamp_bounds.unwrap_or((timestamp, timestamp));
            summary.timestamp_bounds = Some((low.min(timestamp), high.max(timestamp)));
        }
    }
    let end = source
        .at_end()
        .map_err(|e| source_defect(e, summary.count, header))?;
    if !end {
        return Err(RecordDefect::Trailing {
            count: header.record_count,
        });
    }
    Ok(summary)
}

fn source_defect(error: SourceError, record: i32, header: &BatchHeader) -> RecordDefect {
    match error {
        SourceError::End => RecordDefect::Truncated {
            record,
            claimed: header.record_count,
        },
        SourceError::Codec(reason) => RecordDefect::Codec { record, reason },
        SourceError::OverBudget(limit) => RecordDefect::OverBudget { record, limit },
    }
}

/// Reads one record from a source; errors carry the record's index.
struct Walker<'s, S> {
    source: &'s mut S,
    record: i32,
    claimed: i32,
}

impl<S: RecordSource> Walker<'_, S> {
    /// Walks one record and returns its timestamp delta, offset delta and whether its key is
    /// null.
    #[inline]
    fn record(&mut self) -> Result<(i64, i64, bool), RecordDefect> {
        let record = self.record;
        let length = self.varint()?;
        let available = self.source.remaining_max();
        if length < 0 || length as u64 > available {
            return Err(RecordDefect::Length {
                record,
                length,
                available,
            });
        }
        let start = self.source.position();
        let end = start + length as u64;
        self.byte()?; // attributes: unused in v2, as in Kafka
        let timestamp_delta = self.varlong()?;
        let offset_delta = self.varint()?;
        let key_null = self.bytes("key", end, true)?;
        self.bytes("value", end, true)?;
        let headers = self.varint()?;
        if headers < 0 {
            return Err(self.field("header count", headers));
        }
        for _ in 0..headers {
            // A header takes at least two bytes, so this loop is bounded by the record length.
            if self.source.position() >= end {
                return Err(self.field("header count", headers));
            }
            self.bytes("header key", end, false)?;
            self.bytes("header value", end, true)?;
        }
        let read = self.source.position() - start;
        if read != length as u64 {
            return Err(RecordDefect::RecordSize {
                record,
                declared: length as u64,
                read,
            });
        }
        Ok((timestamp_delta, offset_delta, key_null))
    }

    /// A length varint and that many bytes, which must end within the record (`-1` = null).
    /// Returns whether the field was null.
    #[inline]
    fn bytes(
        &mut self,
        field: &'static str,
        end: u64,
        nullable: bool,
    ) -> Result<bool, RecordDefect> {
        let length = self.varint()?;
        if length == -1 && nullable {
            return Ok(true);
        }
        let left = end.saturating_sub(self.source.position());
        if length < 0 || length as u64 > left {
            return Err(self.field(field, length));
        }
        self.source
            .skip(length as u64)
            .map_err(|e| self.defect(e))?;
        Ok(false)
    }

    fn field(&self, field: &'static str, length: i64) -> RecordDefect {
        RecordDefect::FieldLength {
            record: self.record,
            field,
            length,
        }
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, RecordDefect> {
        self.source.next_byte().map_err(|e| self.defect(e))
    }

    #[inline]
    fn varint(&mut self) -> Result<i64, RecordDefect> {
        self.zigzag(VARINT_BYTES_MAX)
    }

    #[inline]
    fn varlong(&mut self) -> Result<i64, RecordDefect> {
        self.zigzag(VARLONG_BYTES_MAX)
    }

    /// Kafka's `readVarint`/`readVarlong`: at most `max` bytes, the last without the
    /// continuation bit; a varint must fit in 32 bits.
    #[inline]
    fn zigzag(&mut self, max: usize) -> Result<i64, RecordDefect> {
        let mut value: u64 = 0;
        for i in 0..max {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if max == VARINT_BYTES_MAX && value > u64::from(u32::MAX) {
                    break;
                }
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(RecordDefect::VarintTooLong {
            record: self.record,
            max,
        })
    }

    fn defect(&self, error: SourceError) -> RecordDefect {
        match error {
            SourceError::End => RecordDefect::Truncated {
                record: self.record,
                claimed: self.claimed,
            },
            SourceError::Codec(reason) => RecordDefect::Codec {
                record: self.record,
                reason,
            },
            SourceError::OverBudget(limit) => RecordDefect::OverBudget {
                record: self.record,
                limit,
            },
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::storage::batch::{parse_header, record_timestamps, BATCH_HEADER_BYTES};

    pub const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

    /// Kafka's zigzag varint encoding.
    pub fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// One record with the given offset and timestamp deltas, value and one header.
    pub fn record(offset_delta: i64, timestamp_delta: i64, value: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varint(&mut body, timestamp_delta);
        put_varint(&mut body, offset_delta);
        put_varint(&mut body, -1);
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 1);
        put_varint(&mut body, 1);
        body.push(b'h');
        put_varint(&mut body, -1);
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
        out
    }

    /// A v2 batch header (correct CRC) in front of `payload`.
    pub fn batch(
        count: i32,
        last_offset_delta: i32,
        codec: i16,
        max_ts: i64,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + payload.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + payload.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&codec.to_be_bytes());
        b.extend_from_slice(&last_offset_delta.to_be_bytes());
        b.extend_from_slice(&BASE_TIMESTAMP.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(payload);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn walk(batch: &[u8]) -> Result<RecordsSummary, RecordDefect> {
        let header = parse_header(batch).unwrap();
        walk_records(
            &header,
            &mut SliceSource::new(&batch[BATCH_HEADER_BYTES..]),
            |_, _| {},
        )
    }

    fn three() -> Vec<u8> {
        [record(0, 5, b"a"), record(1, 0, b"bb"), record(2, 9, b"")].concat()
    }

    #[test]
    fn walks_well_formed_records_and_takes_timestamps_from_them() {
        let b = batch(3, 2, 0, -1, &three());
        let summary = walk(&b).unwrap();
        assert_eq!(summary.count, 3);
        assert_eq!(summary.max_timestamp, BASE_TIMESTAMP + 9);
        assert_eq!(
            summary.timestamp_bounds,
            Some((BASE_TIMESTAMP, BASE_TIMESTAMP + 9))
        );
        let per_record = record_timestamps(&b).unwrap();
        assert_eq!(
            per_record,
            vec![
                (0, BASE_TIMESTAMP + 5),
                (1, BASE_TIMESTAMP),
                (2, BASE_TIMESTAMP + 9)
            ]
        );
    }

    #[test]
    fn a_forged_count_fails_without_allocating_for_it() {
        let b = batch(i32::MAX, i32::MAX - 1, 0, -1, &three());
        assert!(matches!(
            walk(&b),
            Err(RecordDefect::Truncated { record: 3, .. })
        ));
        // ListOffsets' per-record parser must not reserve 2^31 entries either.
        assert_eq!(record_timestamps(&b), None);
    }

    #[test]
    fn fewer_records_claimed_than_present_leaves_trailing_bytes() {
        let b = batch(2, 1, 0, -1, &three());
        assert!(matches!(walk(&b), Err(RecordDefect::Trailing { count: 2 })));
    }

    #[test]
    fn offset_deltas_must_be_zero_to_n_minus_one() {
        let payload = [record(0, 0, b"a"), record(2, 0, b"b")].concat();
        assert_eq!(
            walk(&batch(2, 1, 0, -1, &payload)),
            Err(RecordDefect::OffsetDelta {
                record: 1,
                found: 2
            })
        );
        let payload = [record(1, 0, b"a"), record(0, 0, b"b")].concat();
        assert!(matches!(
            walk(&batch(2, 1, 0, -1, &payload)),
            Err(RecordDefect::OffsetDelta { record: 0, .. })
        ));
    }

    #[test]
    fn lengths_are_bounded_by_the_bytes_present() {
        // Record length overruns the batch.
        let mut payload = record(0, 0, b"abc");
        payload[0] = 0x7e; // zigzag 63
        assert!(matches!(
            walk(&batch(1, 0, 0, -1, &payload)),
            Err(RecordDefect::Length { length: 63, .. })
        ));
        // Negative record length.
        payload[0] = 0x01;
        assert!(matches!(
            walk(&batch(1, 0, 0, -1, &payload)),
            Err(RecordDefect::Length { length: -1, .. })
        ));
        // A value length past the record's end.
        let mut payload = record(0, 0, b"abc");
        payload[5] = 0x7e;
        assert!(matches!(
            walk(&batch(1, 0, 0, -1, &payload)),
            Err(RecordDefect::FieldLength { field: "value", .. })
        ));
        // A record length shorter than its fields.
        let mut payload = record(0, 0, b"abc");
        payload[0] -= 2;
        payload.extend_from_slice(&[0, 0]);
        assert!(walk(&batch(1, 0, 0, -1, &payload)).is_err());
        // A header count the record cannot hold.
        let mut payload = record(0, 0, b"abc");
        let at = payload.len() - 4;
        payload[at] = 0x7e;
        assert!(matches!(
            walk(&batch(1, 0, 0, -1, &payload)),
            Err(RecordDefect::FieldLength {
                field: "header count",
                ..
            })
        ));
    }

    #[test]
    fn varints_longer_than_kafka_allows_are_refused() {
        // A 6-byte length varint.
        let payload = [0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk(&batch(1, 0, 0, -1, &payload)),
            Err(RecordDefect::VarintTooLong { record: 0, max: 5 })
        );
        // A 5-byte varint whose value does not fit 32 bits.
        let payload = [0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            walk(&batch(1, 0, 0, -1, &payload)),
            Err(RecordDefect::VarintTooLong { .. })
        ));
        // An 11-byte timestamp varlong.
        let mut body = vec![0u8];
        body.extend_from_slice(&[0x80; 10]);
        body.extend_from_slice(&[0x00, 0, 1, 0, 0]);
        let mut payload = Vec::new();
        put_varint(&mut payload, body.len() as i64);
        payload.extend_from_slice(&body);
        assert_eq!(
            walk(&batch(1, 0, 0, -1, &payload)),
            Err(RecordDefect::VarintTooLong { record: 0, max: 10 })
        );
    }

    #[test]
    fn empty_and_truncated_payloads_fail() {
        assert!(matches!(
            walk(&batch(1, 0, 0, -1, &[])),
            Err(RecordDefect::Truncated { record: 0, .. })
        ));
        let payload = three();
        assert!(walk(&batch(3, 2, 0, -1, &payload[..payload.len() - 1])).is_err());
    }
}
