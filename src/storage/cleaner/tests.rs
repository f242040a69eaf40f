//! The cleaner on the fault layer: a pass over a log with many updates per key, and a power cut
//! at every step of a pass (the nth yield of its I/O): the recovered log holds either the old
//! segments or the cleaned ones, every key's latest record at its offset, nothing else changed,
//! and it takes appends and recovers to the same state again.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::model::Offset;

use super::super::config::{Acks, CompactionConfig, LogConfig};
use super::super::fault_io::FaultyIo;
use super::super::file_names::{CLEANED_SUFFIX, SWAP_SUFFIX};
use super::super::log::PartitionLog;
use super::super::manager::LogManager;
use super::super::test_util::*;

const KEYS: usize = 7;
const BATCHES: usize = 30;
const RECORDS: usize = 3;

fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        file_delete_delay_ms: 0,
        compaction: CompactionConfig {
            compact: true,
            delete: false,
            min_cleanable_dirty_ratio: 0.01,
            ..CompactionConfig::default()
        },
        ..small_config()
    }
}

/// Batch `id`: RECORDS records with keys cycling over KEYS, 100-byte values naming the record.
fn keyed_batch(id: usize, codec: Compression) -> Bytes {
    let records: Vec<Record> = (0..RECORDS)
        .map(|j| {
            let n = id * RECORDS + j;
            let mut value = format!("v{n}-").into_bytes();
            value.resize(100, b'.');
            Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: j as i64,
                sequence: j as i32 - 1,
                timestamp: 1_700_000_000_000 + n as i64,
                key: Some(Bytes::from(format!("k{}", n % KEYS))),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
                delete_horizon: false,
            }
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
    .expect("encode");
    buf.freeze()
}

/// Every record readable, as offset → (key, value).
async fn records(log: &PartitionLog) -> BTreeMap<i64, (Bytes, Bytes)> {
    let mut out = BTreeMap::new();
    let mut next = log.log_start_offset().0;
    while next < log.high_watermark().0 {
        let read = log.read(Offset(next), 1 << 20, true).await.expect("read");
        let mut buf = read.records.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).expect("decode");
        assert!(!read.records.is_empty());
        for (_, h) in super::super::batch::split_batches(&read.records).expect("batches") {
            next = next.max(h.last_offset() + 1);
        }
        for r in sets.into_iter().flat_map(|s| s.records) {
            let (k, v) = (r.key.expect("key"), r.value.expect("value"));
            assert!(
                out.insert(r.offset, (k, v)).is_none(),
                "offset {} twice",
                r.offset
            );
        }
    }
    out
}

async fn open(io: &FaultyIo) -> (Rc<LogManager>, Rc<PartitionLog>) {
    let manager = fake_manager(io, &data_dir());
    let log = manager
        .open_partition(&tp(), uuid::Uuid::nil(), compacted())
        .await
        .expect("open");
    (manager, log)
}

/// Builds the log, returns what was written (offset → (key, value)).
async fn written(log: &PartitionLog, codec: Compression) -> BTreeMap<i64, (Bytes, Bytes)> {
    for id in 0..BATCHES {
        log.append(keyed_batch(id, codec), opts(Acks::All, 0))
            .await
            .expect("append");
    }
    records(log).await
}

/// The latest record of each key.
fn latest(all: &BTreeMap<i64, (Bytes, Bytes)>) -> BTreeMap<Bytes, i64> {
    all.iter().map(|(o, (k, _))| (k.clone(), *o)).collect()
}

#[test]
fn a_pass_keeps_the_latest_record_of_each_key_in_sealed_segments() {
    run(|| async {
        for codec in [Compression::None, Compression::Snappy, Compression::Zstd] {
            let io = FaultyIo::new();
            let (manager, log) = open(&io).await;
            let all = written(&log, codec).await;
            let segments_before = log.segment_count();
            assert!(
                super::clean_dirtiest(&manager).await,
                "{codec:?}: a pass ran"
            );
            let after = records(&log).await;
            let active = log.active_segment().base_offset().0;
            for (offset, record) in &after {
                assert_eq!(
                    all.get(offset),
                    Some(record),
                    "{codec:?}: record {offset} changed"
                );
            }
            for (key, offset) in latest(&all) {
                assert!(
                    after.contains_key(&offset),
                    "{codec:?}: latest of {key:?} lost"
                );
            }
            // Below the active segment only latest records remain.
            let sealed = after.keys().filter(|o| **o < active).count();
            assert!(
                sealed <= KEYS,
                "{codec:?}: {sealed} records left in sealed segments"
            );
            // Groups are sized by the segments' sizes before cleaning (as Kafka's): merging
            // happens in later passes, once cleaned segments are small.
            assert!(log.segment_count() <= segments_before, "{codec:?}");
            let stats = manager.cleaner_stats();
            assert_eq!(stats.passes, 1);
            assert!(stats.bytes_written < stats.bytes_read);
            // Nothing new: no second pass.
            assert!(!super::clean_dirtiest(&manager).await);
        }
    });
}

/// A power cut after `cut_at` yields of a pass. Returns whether the pass finished first.
async fn power_cut_during_pass(cut_at: u64, saw_old: &mut bool, saw_new: &mut bool) -> bool {
    let io = FaultyIo::new();
    let (manager, log) = open(&io).await;
    let all = written(&log, Compression::Lz4).await;
    let end = log.log_end_offset().0;
    io.set_yields(1, 100);
    let pass = {
        let manager = manager.clone();
        glommio::spawn_local(async move { super::clean_dirtiest(&manager).await })
    };
    for _ in 0..cut_at {
        futures_lite::future::yield_now().await;
    }
    let rebooted = io.power_cut();
    let finished = pass.await;
    drop((manager, log));
    let (_manager, log) = open(&rebooted).await;
    assert_eq!(log.log_end_offset().0, end, "cut {cut_at}: the log end");
    let got = records(&log).await;
    if got == all {
        *saw_old = true;
    } else {
        *saw_new = true;
    }
    for (offset, record) in &got {
        assert_eq!(
            all.get(offset),
            Some(record),
            "cut {cut_at}: record {offset} changed"
        );
    }
    for (key, offset) in latest(&all) {
        assert!(
            got.contains_key(&offset),
            "cut {cut_at}: latest of {key:?} lost"
        );
    }
    let dir = data_dir().join("t-0");
    let names = super::super::io::StorageIo::list_dir(&rebooted, &dir)
        .await
        .expect("list");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(CLEANED_SUFFIX) || n.ends_with(SWAP_SUFFIX)),
        "cut {cut_at}: recovery left {names:?}"
    );
    let next = log
        .append(keyed_batch(99, Compression::None), opts(Acks::All, 0))
        .await
        .expect("append after recovery");
    assert_eq!(next.base_offset.0, end, "cut {cut_at}");
    let got = records(&log).await;
    rebooted.crash();
    let (_manager, again) = open(&rebooted).await;
    assert_eq!(
        records(&again).await,
        got,
        "cut {cut_at}: recovers the same again"
    );
    finished
}

#[test]
fn a_power_cut_at_every_step_of_a_pass_recovers_old_or_cleaned_segments() {
    run(|| async {
        let (mut saw_old, mut saw_new) = (false, false);
        let mut cut_at = 0u64;
        while !power_cut_during_pass(cut_at, &mut saw_old, &mut saw_new).await {
            cut_at += 1;
            assert!(cut_at < 20_000, "the pass finishes");
        }
        assert!(
            saw_old && saw_new,
            "cuts before and after a swap ({cut_at} steps)"
        );
    });
}
