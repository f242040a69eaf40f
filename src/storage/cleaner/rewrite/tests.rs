use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::storage::batch::{parse_header, verify_batch};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// One batch at `base` of (key, value) records; `producer_id` -1 = not idempotent.
fn batch(
    base: i64,
    records: &[(&str, Option<&str>)],
    codec: Compression,
    producer_id: i64,
) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 3,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset: base + i as i64,
            // The encoder starts a new batch where sequences are not consecutive.
            sequence: if producer_id < 0 {
                i as i32 - 1
            } else {
                10 + i as i32
            },
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
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
            compression: codec,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn decoded(bytes: &[u8]) -> Vec<(i64, String, Option<String>, i64)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let set = RecordBatchDecoder::decode(&mut buf).unwrap();
    set.records
        .into_iter()
        .map(|r| {
            let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
            (r.offset, s(r.key).unwrap(), s(r.value), r.timestamp)
        })
        .collect()
}

fn map_of(entries: &[(&str, i64)]) -> OffsetMap {
    let mut map = OffsetMap::with_memory(1 << 20);
    for (k, o) in entries {
        map.put(k.as_bytes(), *o);
    }
    map
}

#[test]
fn keeps_the_latest_record_per_key_at_its_offset_in_every_codec() {
    for codec in CODECS {
        let b = batch(
            100,
            &[
                ("a", Some("1")),
                ("b", Some("1")),
                ("a", Some("2")),
                ("c", Some("1")),
            ],
            codec,
            -1,
        );
        let header = parse_header(&b).unwrap();
        // Later in the log: b at 200; a's latest is 102 here; c at 300.
        let map = map_of(&[("a", 102), ("b", 200), ("c", 300)]);
        let ctx = FilterContext {
            map: &map,
            now_ms: 0,
            delete_retention_ms: 1000,
        };
        let mut counts = FilterCounts::default();
        let BatchOutcome::Rebuilt(out) = filter_batch(&b, &header, &ctx, false, &mut counts) else {
            panic!("{codec:?}: expected a rebuilt batch");
        };
        let h = verify_batch(&out).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.record_count),
            (100, 103, 1),
            "{codec:?}"
        );
        assert_eq!(
            h.attributes & COMPRESSION_MASK,
            header.attributes & COMPRESSION_MASK
        );
        assert_eq!(h.partition_leader_epoch, 3);
        assert_eq!(
            decoded(&out),
            vec![(102, "a".into(), Some("2".into()), 1_700_000_000_002)]
        );
        assert_eq!(
            counts,
            FilterCounts {
                records_read: 4,
                records_kept: 1
            }
        );
        // A batch whose records are all the latest is kept byte for byte.
        let map = map_of(&[("b", 101), ("a", 102), ("c", 103)]);
        let ctx = FilterContext {
            map: &map,
            now_ms: 0,
            delete_retention_ms: 1000,
        };
        let only_latest = batch(
            101,
            &[("b", Some("x")), ("a", Some("y")), ("c", Some("z"))],
            codec,
            -1,
        );
        let h = parse_header(&only_latest).unwrap();
        assert_eq!(
            filter_batch(&only_latest, &h, &ctx, false, &mut counts),
            BatchOutcome::Keep
        );
    }
}

#[test]
fn records_above_the_map_are_kept_and_superseded_batches_dropped() {
    let b = batch(
        10,
        &[("a", Some("1")), ("b", Some("1"))],
        Compression::None,
        -1,
    );
    let header = parse_header(&b).unwrap();
    let map = map_of(&[("a", 5)]);
    let ctx = FilterContext {
        map: &map,
        now_ms: 0,
        delete_retention_ms: 0,
    };
    let mut counts = FilterCounts::default();
    assert_eq!(
        filter_batch(&b, &header, &ctx, false, &mut counts),
        BatchOutcome::Keep
    );
    let map = map_of(&[("a", 20), ("b", 21)]);
    let ctx = FilterContext {
        map: &map,
        now_ms: 0,
        delete_retention_ms: 0,
    };
    assert_eq!(
        filter_batch(&b, &header, &ctx, false, &mut counts),
        BatchOutcome::Drop
    );
}

#[test]
fn tombstones_get_a_delete_horizon_and_go_after_it() {
    for codec in [Compression::None, Compression::Zstd] {
        let b = batch(0, &[("a", None), ("b", Some("1"))], codec, -1);
        let header = parse_header(&b).unwrap();
        let map = map_of(&[("a", 0), ("b", 1)]);
        let ctx = FilterContext {
            map: &map,
            now_ms: 5_000,
            delete_retention_ms: 1_000,
        };
        let mut counts = FilterCounts::default();
        let BatchOutcome::Rebuilt(first) = filter_batch(&b, &header, &ctx, false, &mut counts)
        else {
            panic!("the horizon must be set");
        };
        let h = verify_batch(&first).unwrap();
        assert_ne!(h.attributes & DELETE_HORIZON_FLAG, 0);
        assert_eq!(h.base_timestamp, 6_000);
        // Timestamps are unchanged although the base is now the horizon.
        let records = decoded(&first);
        assert_eq!(records[0].3, 1_700_000_000_000);
        assert_eq!(records[1].3, 1_700_000_000_001);
        // Before the horizon: kept as it is; after it: the tombstone goes.
        let ctx = FilterContext {
            map: &map,
            now_ms: 5_999,
            delete_retention_ms: 1_000,
        };
        assert_eq!(
            filter_batch(&first, &h, &ctx, false, &mut counts),
            BatchOutcome::Keep
        );
        let ctx = FilterContext {
            map: &map,
            now_ms: 6_000,
            delete_retention_ms: 1_000,
        };
        let BatchOutcome::Rebuilt(second) = filter_batch(&first, &h, &ctx, false, &mut counts)
        else {
            panic!("the tombstone must go");
        };
        let records = decoded(&second);
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].0, records[0].3), (1, 1_700_000_000_001));
    }
}

#[test]
fn a_producers_last_batch_survives_as_an_empty_batch() {
    let b = batch(
        40,
        &[("a", Some("1")), ("b", Some("1"))],
        Compression::Lz4,
        7,
    );
    let header = parse_header(&b).unwrap();
    let map = map_of(&[("a", 90), ("b", 91)]);
    let ctx = FilterContext {
        map: &map,
        now_ms: 0,
        delete_retention_ms: 0,
    };
    let mut counts = FilterCounts::default();
    let BatchOutcome::Rebuilt(out) = filter_batch(&b, &header, &ctx, true, &mut counts) else {
        panic!("expected an empty batch");
    };
    let h = verify_batch(&out).unwrap();
    assert_eq!(h.record_count, 0);
    assert_eq!((h.base_offset, h.last_offset()), (40, 41));
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (7, 0, 10)
    );
    assert_eq!(h.last_sequence(), 11);
    assert_eq!(
        filter_batch(&b, &header, &ctx, false, &mut counts),
        BatchOutcome::Drop
    );
}

#[test]
fn the_offset_map_is_bounded() {
    let mut map = OffsetMap::with_memory(OFFSET_MAP_ENTRY_BYTES * 2);
    assert!(map.has_room_for(2));
    map.put(b"a", 1);
    map.put(b"b", 2);
    assert!(map.is_full() && !map.has_room_for(1));
    assert_eq!(
        (map.get(b"a"), map.get(b"zz"), map.latest_offset()),
        (1, -1, 2)
    );
}
