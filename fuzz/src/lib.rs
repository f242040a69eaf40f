//! The functions the fuzz targets run, shared with the stable smoke test
//! (`tests/fuzz_smoke.rs` includes this file), so both exercise exactly the same code.
//!
//! Each takes arbitrary bytes and must return without a panic, an abort or an allocation
//! larger than its input can justify (libFuzzer's `-malloc_limit_mb` catches the latter).

use bytes::Bytes;

/// The frame size limit the broker applies before decoding is not the point here: any
/// frame, of any length, must decode to a request or an error.
pub fn decode_request(data: &[u8]) {
    let _ = sluice::protocol::frame::decode_request(Bytes::copy_from_slice(data));
}

/// `max.message.bytes` for the validation: Kafka's default (1 MiB + 12 bytes).
pub const PRODUCE_MAX_BYTES: usize = 1_048_588;

/// Where a v2 batch's CRC-32C is stored, and where the bytes it covers begin.
const CRC_AT: usize = 17;
const CRC_COVERS_FROM: usize = 21;

/// One partition's `records` field of a Produce request, as the handler validates it: as
/// given, and again with its CRC made right. Almost every mutation breaks the CRC and
/// validation stops there; the second call lets the fuzzer reach the rules after it (the
/// header checks, and whatever walks the records).
pub fn produce_validate(data: &[u8]) {
    validate(data);
    if data.len() >= CRC_COVERS_FROM {
        let mut fixed = data.to_vec();
        let crc = crc32c::crc32c(&fixed[CRC_COVERS_FROM..]);
        fixed[CRC_AT..CRC_COVERS_FROM].copy_from_slice(&crc.to_be_bytes());
        validate(&fixed);
    }
}

fn validate(data: &[u8]) {
    let _ = sluice::protocol::records::validate_produce(
        &Bytes::copy_from_slice(data),
        PRODUCE_MAX_BYTES,
    );
}
