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

/// One partition's `records` field of a Produce request, as the handler validates it.
pub fn produce_validate(data: &[u8]) {
    let _ = sluice::protocol::records::validate_produce(
        &Bytes::copy_from_slice(data),
        PRODUCE_MAX_BYTES,
    );
}
