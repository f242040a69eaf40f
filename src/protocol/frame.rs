//! Request framing and decoding; response encoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::api;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame too short ({0} bytes)")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {key:?}")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("cannot decode {key:?} v{version}: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode response: {0}")]
    Encode(String),
}

pub enum Decoded {
    Request(RequestHeader, Box<RequestKind>),
    /// Answered without a handler (ApiVersions at a version we don't know).
    Immediate(Bytes),
}

/// Decodes a frame (without its size prefix). Errors mean the connection must be
/// closed: Kafka does the same when a request cannot be parsed.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApi(raw_key))?;
    let range = api::find(key).ok_or(FrameError::UnknownApi(raw_key))?;
    if key == ApiKey::ApiVersions && version > range.max {
        // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges, so the
        // client can retry with a version we know.
        return Ok(Decoded::Immediate(api_versions_fallback(correlation_id)?));
    }
    if version < range.min || version > range.max {
        return Err(FrameError::UnsupportedVersion { key, version });
    }
    let header_version = key.request_header_version(version);
    let malformed = |e: anyhow::Error| FrameError::Malformed {
        key,
        version,
        reason: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, header_version).map_err(malformed)?;
    let request = RequestKind::decode(key, &mut frame, version).map_err(malformed)?;
    if frame.has_remaining() {
        tracing::debug!(
            ?key,
            version,
            trailing = frame.remaining(),
            "trailing bytes after request"
        );
    }
    Ok(Decoded::Request(header, Box::new(request)))
}

/// The ApiVersions entries for every supported API.
pub fn api_version_entries() -> Vec<ApiVersion> {
    api::SUPPORTED
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.advertised_min)
                .with_max_version(r.max)
        })
        .collect()
}

fn api_versions_fallback(correlation_id: i32) -> Result<Bytes, FrameError> {
    let response = ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(api_version_entries());
    encode_response(
        correlation_id,
        ApiKey::ApiVersions,
        0,
        &ResponseKind::ApiVersions(response),
    )
}

/// Encodes a response with its size prefix and header.
pub fn encode_response(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<Bytes, FrameError> {
    let header_version = key.response_header_version(version);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| FrameError::Encode(format!("{key:?} v{version}: {e}")))?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;

    fn frame_of(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_api_versions() {
        let f = frame_of(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        match decode_request(f).unwrap() {
            Decoded::Request(h, r) if matches!(*r, RequestKind::ApiVersions(_)) => {
                assert_eq!(h.correlation_id, 7)
            }
            _ => panic!("expected ApiVersions"),
        }
    }

    #[test]
    fn unknown_api_versions_version_gets_v0_answer() {
        let mut f = BytesMut::new();
        f.put_i16(18);
        f.put_i16(99);
        f.put_i32(42);
        f.put_i16(-1);
        match decode_request(f.freeze()).unwrap() {
            Decoded::Immediate(b) => {
                assert_eq!(i32::from_be_bytes([b[4], b[5], b[6], b[7]]), 42);
                assert_eq!(i16::from_be_bytes([b[8], b[9]]), 35);
            }
            _ => panic!("expected an immediate answer"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = decode_request(Bytes::from(data));
        }
        let mut f = BytesMut::new();
        f.put_i16(0);
        f.put_i16(1);
        f.put_i32(1);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(FrameError::UnsupportedVersion { .. })
        ));
    }

    /// Issue 9: Metadata v0 whose topics array claims 2^31 entries once aborted the process
    /// (`Vec::with_capacity` of 150 GB in the decoder); it is now a decode error.
    #[test]
    fn array_count_larger_than_the_frame_is_malformed() {
        let frame = Bytes::from_static(&[
            0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x78, 0x7f, 0xff, 0xff,
            0xff,
        ]);
        assert!(matches!(
            decode_request(frame),
            Err(FrameError::Malformed { .. })
        ));
    }

    /// Metadata v12 (flexible): a compact array count of 2^32 - 2 topics, and a compact
    /// string whose varint has a continuation bit on its fifth byte (Kafka rejects both).
    #[test]
    fn hostile_compact_counts_and_varints_are_malformed() {
        let mut f = BytesMut::new();
        f.put_i16(3);
        f.put_i16(12);
        f.put_i32(1);
        f.put_i16(-1); // client id (nullable string, not compact in header v2)
        f.put_u8(0); // header tagged fields
        let header = f.clone();
        f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(FrameError::Malformed { .. })
        ));
        let mut f = header;
        f.put_u8(2); // one topic
        f.extend_from_slice(&[0u8; 16]); // topic id
        f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x8f, 0x00]); // name length
        assert!(matches!(
            decode_request(f.freeze()),
            Err(FrameError::Malformed { .. })
        ));
    }
}

/// A piece of an encoded response: bytes, or a stand-in `F` (a file range) of a known length.
#[derive(Debug)]
pub enum Piece<F> {
    Bytes(Bytes),
    File(F),
}

/// Replaces record fields that were encoded as 16-byte markers with file ranges
/// of `len` bytes, rewriting each field's length prefix and the frame size.
///
/// This lets Fetch responses be encoded by the generated codec while their record
/// data never enters user space. `version` decides the prefix: compact bytes
/// (unsigned varint of len + 1) from Fetch v12, a 4-byte length before.
///
/// `markers` must come in the order they appear in the frame: each is searched for
/// from the end of the one before, so the whole splice reads the frame once (linear
/// in the response size, whatever the number of markers).
pub fn splice_markers<F>(
    frame: Bytes,
    version: i16,
    markers: Vec<([u8; 16], F, usize)>,
) -> Result<Vec<Piece<F>>, FrameError> {
    let compact = version >= 12;
    let mut found: Vec<(usize, F, usize)> = Vec::with_capacity(markers.len());
    let mut from = 4;
    for (marker, file, len) in markers {
        let at = find(&frame, from, &marker)
            .ok_or_else(|| FrameError::Encode("fetch marker not found in order".into()))?;
        from = at + marker.len();
        found.push((at, file, len));
    }
    let old_prefix = if compact { 1 } else { 4 };
    let mut pieces = Vec::with_capacity(found.len() * 2 + 1);
    let mut size = frame.len() - 4;
    let mut cursor = 4;
    for (at, file, len) in found {
        let prefix_start = at
            .checked_sub(old_prefix)
            .filter(|p| *p >= cursor)
            .ok_or_else(|| FrameError::Encode("fetch marker overlaps".into()))?;
        let mut head = BytesMut::with_capacity(prefix_start - cursor + 5);
        head.extend_from_slice(&frame[cursor..prefix_start]);
        let before = head.len();
        if compact {
            put_unsigned_varint(&mut head, len as u32 + 1);
        } else {
            head.put_i32(len as i32);
        }
        let new_prefix = head.len() - before;
        size = size - old_prefix - 16 + new_prefix + len;
        pieces.push(Piece::Bytes(head.freeze()));
        pieces.push(Piece::File(file));
        cursor = at + 16;
    }
    pieces.push(Piece::Bytes(frame.slice(cursor..)));
    let mut first = BytesMut::new();
    first
        .put_i32(i32::try_from(size).map_err(|_| FrameError::Encode("response too large".into()))?);
    pieces.insert(0, Piece::Bytes(first.freeze()));
    Ok(pieces)
}

/// First position at or after `from` where `needle` starts.
fn find(haystack: &[u8], from: usize, needle: &[u8; 16]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod splice_tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(records: Bytes) -> ResponseKind {
        let p = PartitionData::default().with_records(Some(records));
        let t = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![p]);
        ResponseKind::Fetch(FetchResponse::default().with_responses(vec![t]))
    }

    /// Splicing a marker and then filling in the file's bytes must give exactly
    /// what the codec produces when it encodes the bytes itself.
    #[test]
    fn spliced_equals_directly_encoded() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        for version in [4i16, 11, 12, 16] {
            let direct = encode_response(
                9,
                ApiKey::Fetch,
                version,
                &response(Bytes::from(data.clone())),
            )
            .unwrap();
            let marker = *uuid::Uuid::new_v4().as_bytes();
            let with_marker = encode_response(
                9,
                ApiKey::Fetch,
                version,
                &response(Bytes::copy_from_slice(&marker)),
            )
            .unwrap();
            let pieces =
                splice_markers(with_marker, version, vec![(marker, (), data.len())]).unwrap();
            let mut rebuilt = Vec::new();
            for p in pieces {
                match p {
                    Piece::Bytes(b) => rebuilt.extend_from_slice(&b),
                    Piece::File(()) => rebuilt.extend_from_slice(&data),
                }
            }
            assert_eq!(rebuilt, direct.to_vec(), "version {version}");
        }
    }

    /// Many partitions' markers, in frame order, splice back to the direct encoding,
    /// and out-of-order markers are refused rather than searched for again.
    #[test]
    fn many_markers_splice_in_one_pass() {
        let parts = 2_000;
        let data: Vec<Vec<u8>> = (0..parts).map(|i| vec![i as u8; 1 + i % 50]).collect();
        let build = |records: &dyn Fn(usize) -> Bytes| {
            let partitions = (0..parts)
                .map(|i| {
                    PartitionData::default()
                        .with_partition_index(i as i32)
                        .with_records(Some(records(i)))
                })
                .collect();
            let t = FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions);
            ResponseKind::Fetch(FetchResponse::default().with_responses(vec![t]))
        };
        for version in [4i16, 12] {
            let direct = encode_response(
                1,
                ApiKey::Fetch,
                version,
                &build(&|i| Bytes::from(data[i].clone())),
            )
            .unwrap();
            let markers: Vec<[u8; 16]> = (0..parts)
                .map(|_| *uuid::Uuid::new_v4().as_bytes())
                .collect();
            let with_markers = encode_response(
                1,
                ApiKey::Fetch,
                version,
                &build(&|i| Bytes::copy_from_slice(&markers[i])),
            )
            .unwrap();
            let list = (0..parts).map(|i| (markers[i], i, data[i].len())).collect();
            let pieces = splice_markers(with_markers.clone(), version, list).unwrap();
            let mut rebuilt = Vec::new();
            for p in pieces {
                match p {
                    Piece::Bytes(b) => rebuilt.extend_from_slice(&b),
                    Piece::File(i) => rebuilt.extend_from_slice(&data[i]),
                }
            }
            assert_eq!(rebuilt, direct.to_vec(), "version {version}");
            let reversed = (0..parts)
                .rev()
                .map(|i| (markers[i], i, data[i].len()))
                .collect();
            assert!(splice_markers(with_markers, version, reversed).is_err());
        }
    }
}
