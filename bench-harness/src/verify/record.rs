//! What a `verify` record carries, so that any copy of it read back names the producer and
//! sequence number that sent it, and so that a changed byte is caught.
//!
//! Value, little-endian: bytes 0..4 the magic `SLV1`, 4..12 the run id, 12..16 the producer
//! index, 16..20 the sequence number, 20..24 an FNV-1a hash of bytes 0..20 (so a changed
//! sequence number cannot pass for another record), then padding to `--record-size` (uppercase
//! letters, one of [`PADDINGS_COUNT`] seeded patterns, chosen by the sequence number). Key: the producer index
//! in decimal. A record whose first 12 bytes are not this run's is another writer's (foreign);
//! one that has them but differs anywhere else is corrupted.

use super::check::RecordId;
use crate::producer_perf::XorShift64;

/// Magic, run id, producer index, sequence number, hash.
pub const HEADER_BYTES: usize = 24;
/// The bytes the hash covers.
const HASHED_BYTES: usize = 20;
const MAGIC: [u8; 4] = *b"SLV1";
/// Magic and run id: what tells this run's records from others'.
const RUN_PREFIX_BYTES: usize = 12;
/// Distinct padding patterns (at most `--record-size` bytes each, held once).
const PADDINGS_COUNT: usize = 16;

/// Encodes and recognises one run's records; shared read-only by producers and readers.
pub struct Codec {
    run_id: u64,
    producers: u32,
    records_per_producer: u32,
    record_size: usize,
    paddings: Vec<Vec<u8>>,
}

/// A record read back.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Ours(RecordId),
    Foreign,
    Corrupted,
}

impl Codec {
    /// `record_size` must be at least [`HEADER_BYTES`] (checked by the caller's argument checks).
    pub fn new(
        seed: u64,
        run_id: u64,
        producers: u32,
        records_per_producer: u32,
        record_size: usize,
    ) -> Self {
        let padding_bytes = record_size.saturating_sub(HEADER_BYTES);
        let mut rng = XorShift64::new(seed);
        let paddings = (0..PADDINGS_COUNT)
            .map(|_| {
                (0..padding_bytes)
                    .map(|_| b'A' + (rng.next() % 26) as u8)
                    .collect()
            })
            .collect();
        Self {
            run_id,
            producers,
            records_per_producer,
            record_size: record_size.max(HEADER_BYTES),
            paddings,
        }
    }

    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    pub fn key(producer: u32) -> String {
        producer.to_string()
    }

    /// Writes the value of `id` into `value` (cleared first).
    pub fn encode(&self, id: RecordId, value: &mut Vec<u8>) {
        value.clear();
        value.extend_from_slice(&MAGIC);
        value.extend_from_slice(&self.run_id.to_le_bytes());
        value.extend_from_slice(&id.producer.to_le_bytes());
        value.extend_from_slice(&id.seq.to_le_bytes());
        let hash = fnv1a(value);
        value.extend_from_slice(&hash.to_le_bytes());
        value.extend_from_slice(self.padding(id.seq));
    }

    pub fn decode(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Decoded {
        let Some(value) = value else {
            return Decoded::Foreign;
        };
        let mut prefix = [0u8; RUN_PREFIX_BYTES];
        prefix[..4].copy_from_slice(&MAGIC);
        prefix[4..].copy_from_slice(&self.run_id.to_le_bytes());
        if !value.starts_with(&prefix) {
            return Decoded::Foreign;
        }
        let field = |at: usize| {
            value
                .get(at..at + 4)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let (Some(producer), Some(seq), Some(hash)) = (field(12), field(16), field(20)) else {
            return Decoded::Corrupted;
        };
        let intact = hash == fnv1a(&value[..HASHED_BYTES])
            && producer < self.producers
            && seq < self.records_per_producer
            && value.len() == self.record_size
            && &value[HEADER_BYTES..] == self.padding(seq)
            && key == Some(Self::key(producer).as_bytes());
        if intact {
            Decoded::Ours(RecordId { producer, seq })
        } else {
            Decoded::Corrupted
        }
    }

    fn padding(&self, seq: u32) -> &[u8] {
        &self.paddings[seq as usize % PADDINGS_COUNT]
    }
}

/// 32-bit FNV-1a: a check against changed bytes, not against an adversary.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Codec {
        Codec::new(7, 0xfeed, 3, 100, 64)
    }

    #[test]
    fn round_trip() {
        let codec = codec();
        let mut value = Vec::new();
        let id = RecordId {
            producer: 2,
            seq: 99,
        };
        codec.encode(id, &mut value);
        assert_eq!(value.len(), 64);
        assert_eq!(codec.decode(Some(b"2"), Some(&value)), Decoded::Ours(id));
    }

    #[test]
    fn another_run_is_foreign() {
        let mut value = Vec::new();
        let id = RecordId {
            producer: 0,
            seq: 0,
        };
        Codec::new(7, 0xbeef, 3, 100, 64).encode(id, &mut value);
        assert_eq!(codec().decode(Some(b"0"), Some(&value)), Decoded::Foreign);
        assert_eq!(codec().decode(None, Some(b"hello")), Decoded::Foreign);
        assert_eq!(codec().decode(Some(b"0"), None), Decoded::Foreign);
    }

    #[test]
    fn any_changed_byte_is_corruption() {
        let codec = codec();
        let mut value = Vec::new();
        let id = RecordId {
            producer: 1,
            seq: 5,
        };
        codec.encode(id, &mut value);
        for at in RUN_PREFIX_BYTES..value.len() {
            let mut changed = value.clone();
            changed[at] ^= 0x20;
            assert_eq!(
                codec.decode(Some(b"1"), Some(&changed)),
                Decoded::Corrupted,
                "byte {at}"
            );
        }
        assert_eq!(codec.decode(Some(b"2"), Some(&value)), Decoded::Corrupted);
        assert_eq!(
            codec.decode(Some(b"1"), Some(&value[..40])),
            Decoded::Corrupted
        );
    }
}
