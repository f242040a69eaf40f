//! Unit tests of the storage layer: each runs in its own glommio executor, on real files in a
//! tempdir (GlommioIo, O_DIRECT) or on the fault-injecting in-memory seam (FaultyIo).

use std::rc::Rc;

use bytes::Bytes;

use crate::model::{Offset, ShardId};

use super::batch;
use super::config::{Acks, LogConfig};
use super::error::StorageError;
use super::fault_io::FaultyIo;
use super::file_names::CLEAN_SHUTDOWN_FILE;
use super::io::DiskSpace;
use super::manager::LogManager;
use super::test_util::*;

#[test]
fn real_io_append_read_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let manager = LogManager::new(ShardId(0), broker_config(&path));
        manager.start_background();
        let topic_id = uuid::Uuid::new_v4();
        let log = manager
            .open_partition(&tp(), topic_id, small_config())
            .await
            .expect("open");
        let mut expected = 0;
        for i in 0..40 {
            // Odd sizes: every write rewrites a partially filled block.
            let result = log
                .append(
                    batch_at(1000 + i, 1 + (i as usize % 3), 37 + i as usize),
                    opts(Acks::All, 0),
                )
                .await
                .expect("append");
            assert_eq!(result.base_offset, Offset(expected));
            expected = result.last_offset.0 + 1;
        }
        assert_eq!(log.high_watermark(), Offset(expected));
        let headers = read_all(&log, 0).await;
        assert_eq!(headers.last().map(|h| h.last_offset() + 1), Some(expected));
        let middle = log.read(Offset(expected / 2), 1, true).await.expect("read");
        let first = batch::parse_header(&middle.records).expect("header");
        assert!(first.base_offset <= expected / 2 && first.last_offset() >= expected / 2);
        manager.shutdown().await;
        let log_file = log_path_in(&path, 0);
        assert_eq!(
            std::fs::metadata(&log_file).expect("log").len(),
            log.size_bytes(),
            "no zero padding"
        );
        assert!(path.join("t-0").join(CLEAN_SHUTDOWN_FILE).exists());
        let metadata =
            std::fs::read_to_string(path.join("t-0/partition.metadata")).expect("metadata");
        assert!(metadata.starts_with("version: 0\ntopic_id: "));

        let manager = LogManager::new(ShardId(0), broker_config(&path));
        let log = manager
            .open_partition(&tp(), topic_id, small_config())
            .await
            .expect("reopen");
        assert_eq!(log.log_end_offset(), Offset(expected));
        assert!(
            log.recovered_bytes() <= 1024,
            "clean reopen scans only the tail: {}",
            log.recovered_bytes()
        );
        assert_eq!(read_all(&log, 0).await.len(), 40);
        let result = log
            .append(batch_at(5000, 1, 10), opts(Acks::All, 0))
            .await
            .expect("append after reopen");
        assert_eq!(result.base_offset, Offset(expected));
        manager.shutdown().await;
    });
}

#[test]
fn roll_by_size_and_index_full_and_lookups() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let cfg = LogConfig {
            segment_bytes: 8 * 1024,
            segment_index_bytes: 64,
            index_interval_bytes: 100,
            ..small_config()
        };
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        for i in 0..100 {
            log.append(batch_at(i * 10, 2, 100), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        assert!(log.segment_count() > 3, "rolled: {}", log.segment_count());
        // Index-full rolls: 64 bytes = 8 offset entries / 5 time entries per segment.
        for segment in log.segments.borrow().values() {
            let (offsets, times) = segment.index_entries();
            assert!(offsets <= 8 && times <= 6, "{offsets} {times}");
        }
        for offset in 0..200 {
            let read = log.read(Offset(offset), 1, true).await.expect("read");
            let header = batch::parse_header(&read.records).expect("header");
            assert!(
                header.base_offset <= offset && offset <= header.last_offset(),
                "offset {offset}"
            );
        }
        assert!(matches!(
            log.read(Offset(201), 10, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(log
            .read(Offset(200), 10, true)
            .await
            .expect("at hwm")
            .records
            .is_empty());
        // max_bytes smaller than a batch: empty unless min_one_batch.
        assert!(log
            .read(Offset(0), 10, false)
            .await
            .expect("read")
            .records
            .is_empty());
        // Timestamps: batch i has ts i*10.
        assert_eq!(
            log.offset_for_timestamp(0).await.expect("ts"),
            Some((Offset(0), 0))
        );
        assert_eq!(
            log.offset_for_timestamp(5).await.expect("ts"),
            Some((Offset(2), 10))
        );
        assert_eq!(
            log.offset_for_timestamp(500).await.expect("ts"),
            Some((Offset(100), 500))
        );
        assert_eq!(
            log.offset_for_timestamp(990).await.expect("ts"),
            Some((Offset(198), 990))
        );
        assert_eq!(log.offset_for_timestamp(991).await.expect("ts"), None);
        assert_eq!(
            log.max_timestamp().await.expect("max"),
            Some((Offset(198), 990))
        );
    });
}

#[test]
fn group_commit_covers_many_partitions() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        manager.start_background();
        let a = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        let b = manager
            .open_partition(
                &crate::model::TopicPartition::new("t", 1),
                uuid::Uuid::nil(),
                small_config(),
            )
            .await
            .expect("open");
        let before = io.fsyncs();
        let appends = (0..20).map(|i| {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move { log.append(batch_at(i, 1, 10), opts(Acks::All, 0)).await }
        });
        let results = futures::future::join_all(appends).await;
        assert!(results.iter().all(Result::is_ok));
        let fsyncs = io.fsyncs() - before;
        assert!(
            fsyncs <= 4,
            "one fsync per partition per group commit, got {fsyncs}"
        );
        assert_eq!(a.high_watermark(), Offset(10));
        assert_eq!(b.high_watermark(), Offset(10));
        manager.shutdown().await;
        assert!(matches!(
            a.append(batch_at(1, 1, 1), opts(Acks::All, 0)).await,
            Err(StorageError::Closed)
        ));
    });
}

#[test]
fn producer_sequence_rules() {
    run(|| async {
        let io = FaultyIo::new();
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        let append = |seq: i32, epoch: i16, n: usize| {
            let log = log.clone();
            async move {
                let b = Bytes::from(encode_batch(&vec![1; n], 10, (42, epoch, seq)));
                log.append(b, opts(Acks::All, 0)).await
            }
        };
        assert_eq!(append(0, 0, 2).await.expect("first").base_offset, Offset(0));
        assert_eq!(append(2, 0, 3).await.expect("next").base_offset, Offset(2));
        assert_eq!(
            append(0, 0, 2)
                .await
                .expect("dup of an older batch")
                .base_offset,
            Offset(0)
        );
        assert!(matches!(
            append(9, 0, 1).await,
            Err(StorageError::OutOfOrderSequence { expected: 5, .. })
        ));
        assert!(matches!(
            append(3, 1, 1).await,
            Err(StorageError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            append(0, 1, 1).await.expect("new epoch").base_offset,
            Offset(5)
        );
        assert!(matches!(
            append(5, 0, 1).await,
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(log.log_end_offset(), Offset(6));
    });
}

#[test]
fn log_append_time_rewrites_timestamps_and_crc() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            log_append_time: true,
            ..small_config()
        };
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        let result = log
            .append(batch_at(5, 3, 10), opts(Acks::All, 777))
            .await
            .expect("append");
        assert_eq!(result.log_append_time_ms, 777);
        let read = log.read(Offset(0), 1 << 16, true).await.expect("read");
        let header = batch::verify_batch(&read.records).expect("crc valid after rewrite");
        assert_eq!((header.base_timestamp, header.max_timestamp), (777, 777));
        assert_ne!(header.attributes & (1 << 3), 0);
    });
}

#[test]
fn retention_by_time_size_and_disk_share() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("open");
        for i in 0..40 {
            log.append(batch_at(i * 1000, 1, 400), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        let segments = log.segment_count();
        assert!(segments > 5);
        // retention.ms: segments whose newest record is older than now - 10s go.
        manager.update_config(
            &tp(),
            LogConfig {
                retention_ms: Some(10_000),
                ..cfg.clone()
            },
        );
        let deleted = log
            .apply_retention(30_000, 1 << 40)
            .await
            .expect("retention");
        assert!(deleted > 0);
        assert!(log.log_start_offset().0 > 0 && log.log_start_offset().0 <= 21);
        assert!(matches!(
            log.read(Offset(0), 100, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // retention.bytes
        manager.update_config(
            &tp(),
            LogConfig {
                retention_bytes: Some(5000),
                ..cfg.clone()
            },
        );
        log.apply_retention(0, 1 << 40).await.expect("retention");
        assert!(
            log.size_bytes() >= 5000 - 2048 && log.size_bytes() < 5000 + 2048,
            "{}",
            log.size_bytes()
        );
        // retention.disk.percent: 1% of 200 KB over 2 partitions = 1000 bytes -> only the active.
        manager.update_config(
            &tp(),
            LogConfig {
                retention_disk_percent: Some(1.0),
                topic_partition_count: 2,
                ..cfg
            },
        );
        log.apply_retention(0, 200_000).await.expect("retention");
        assert_eq!(log.segment_count(), 1, "never deletes the active segment");
        assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
        assert!(!io.exists(&log_path(&log, 0)));
    });
}

#[test]
fn delete_records_advances_log_start() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("open");
        for i in 0..20 {
            log.append(batch_at(i, 1, 400), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        assert_eq!(
            log.delete_records_before(Offset(13)).await.expect("delete"),
            Offset(13)
        );
        assert!(log.segment_base_offsets()[0].0 <= 13 && log.segment_base_offsets()[0].0 > 0);
        let read = log.read(Offset(13), 1, true).await.expect("read");
        assert!(batch::parse_header(&read.records).is_some());
        assert!(log.delete_records_before(Offset(21)).await.is_err());
        drop(log);
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("reopen");
        assert_eq!(
            log.log_start_offset(),
            Offset(13),
            "log start offset is checkpointed"
        );
    });
}

#[test]
fn disk_pressure_enters_and_leaves_read_only() {
    run(|| async {
        let io = FaultyIo::new();
        let mut broker = broker_config(&data_dir());
        broker.capacity_override_bytes = Some(1_000_000);
        broker.min_free_percent = Some(10.0);
        let manager = LogManager::with_io(ShardId(0), broker, Rc::new(io.clone()));
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        io.set_disk_space(DiskSpace {
            capacity_bytes: 1 << 40,
            free_bytes: 50_000,
        });
        manager.check_disk_space().await.expect("check");
        assert!(manager.is_read_only());
        assert!(matches!(
            log.append(batch_at(1, 1, 1), opts(Acks::All, 0)).await,
            Err(StorageError::DiskPressure)
        ));
        assert!(
            log.read(Offset(0), 100, true).await.is_ok(),
            "reads still work"
        );
        io.set_disk_space(DiskSpace {
            capacity_bytes: 1 << 40,
            free_bytes: 500_000,
        });
        manager.check_disk_space().await.expect("check");
        assert!(!manager.is_read_only());
        log.append(batch_at(1, 1, 1), opts(Acks::All, 0))
            .await
            .expect("append after leaving");
    });
}

#[test]
fn acks_none_and_leader_resolve_and_wait_hwm() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        manager.start_background();
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        let waiter = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_hwm_above(Offset(1)).await })
        };
        log.append(batch_at(1, 1, 1), opts(Acks::None, 0))
            .await
            .expect("acks=0");
        log.append(batch_at(1, 1, 1), opts(Acks::Leader, 0))
            .await
            .expect("acks=1");
        log.flush(true).await.expect("flush");
        waiter.await;
        assert_eq!(log.high_watermark(), Offset(2));
        manager.remove_partition(&tp()).await.expect("remove");
        assert!(!io.exists(&log_path(&log, 0)));
        manager.shutdown().await;
    });
}

#[test]
fn roll_by_segment_ms_counts_from_first_batch() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_ms: Some(1000),
            ..small_config()
        };
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        log.append(batch_at(10_000, 1, 10), opts(Acks::All, 10_000))
            .await
            .expect("append");
        log.append(batch_at(10_500, 1, 10), opts(Acks::All, 10_900))
            .await
            .expect("append");
        assert_eq!(log.segment_count(), 1);
        log.append(batch_at(11_500, 1, 10), opts(Acks::All, 11_001))
            .await
            .expect("append");
        assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(2)]);
    });
}

/// A backfill (record timestamps from 1970, far older than segment.ms before now) fills one
/// segment as usual: the rule compares the incoming timestamp with the segment's first, not
/// the wall clock (Kafka's `LogSegment.timeWaitedForRoll`).
#[test]
fn roll_by_segment_ms_ignores_the_wall_clock_for_old_timestamps() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_ms: Some(1000),
            ..small_config()
        };
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        let now = super::flush::wall_clock_ms();
        for i in 0..20 {
            // 1 ms apart, in January 1970; the clock says today.
            log.append(batch_at(1 + i, 1, 10), opts(Acks::All, now + i))
                .await
                .expect("append");
        }
        assert_eq!(log.segment_count(), 1);
        // Exactly segment.ms past the first batch does not roll; one more millisecond does.
        log.append(batch_at(1001, 1, 10), opts(Acks::All, now))
            .await
            .expect("append");
        assert_eq!(log.segment_count(), 1);
        log.append(batch_at(1002, 1, 10), opts(Acks::All, now))
            .await
            .expect("append");
        assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(21)]);
        // An older timestamp than the new segment's first never rolls it.
        log.append(batch_at(5, 1, 10), opts(Acks::All, now + 10_000))
            .await
            .expect("append");
        assert_eq!(log.segment_count(), 2);
    });
}

/// Batches without timestamps (-1) roll on the segment's age instead (Kafka falls back to
/// the segment's creation time).
#[test]
fn roll_by_segment_ms_without_timestamps_uses_the_segment_age() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_ms: Some(1000),
            ..small_config()
        };
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        let created = super::flush::wall_clock_ms();
        log.append(batch_at(-1, 1, 10), opts(Acks::All, created))
            .await
            .expect("append");
        log.append(batch_at(-1, 1, 10), opts(Acks::All, created))
            .await
            .expect("append");
        assert_eq!(log.segment_count(), 1);
        // Well past segment.ms after the segment was made (with margin for a slow test).
        log.append(batch_at(-1, 1, 10), opts(Acks::All, created + 60_000))
            .await
            .expect("append");
        assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(2)]);
    });
}

/// `segment.jitter.ms` rolls each segment up to that much before segment.ms, never later.
#[test]
fn roll_by_segment_ms_with_jitter_stays_within_the_jitter() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_ms: Some(1000),
            segment_jitter_ms: 400,
            ..small_config()
        };
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        let now = super::flush::wall_clock_ms();
        log.append(batch_at(10_000, 1, 10), opts(Acks::All, now))
            .await
            .expect("append");
        // 600 ms waited: at most segment.ms - jitter, so no roll whatever this segment drew.
        log.append(batch_at(10_600, 1, 10), opts(Acks::All, now))
            .await
            .expect("append");
        assert_eq!(log.segment_count(), 1);
        log.append(batch_at(11_001, 1, 10), opts(Acks::All, now))
            .await
            .expect("append");
        assert_eq!(log.segment_count(), 2);
    });
}

#[test]
fn acks_none_without_flusher_is_written() {
    run(|| async {
        let io = FaultyIo::new();
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        let result = log
            .append(batch_at(1, 2, 10), opts(Acks::None, 0))
            .await
            .expect("append");
        assert_eq!(result.last_offset, Offset(1));
        assert_eq!(log.high_watermark(), Offset(2));
    });
}

#[test]
fn timestamp_lookups_are_per_record() {
    run(|| async {
        let io = FaultyIo::new();
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        let batch = Bytes::from(encode_batch(&[100, 250, 150, 200], 10, NO_PRODUCER));
        log.append(batch, opts(Acks::All, 0)).await.expect("append");
        assert_eq!(
            log.offset_for_timestamp(100).await.expect("ts"),
            Some((Offset(0), 100))
        );
        assert_eq!(
            log.offset_for_timestamp(120).await.expect("ts"),
            Some((Offset(1), 250))
        );
        assert_eq!(
            log.offset_for_timestamp(250).await.expect("ts"),
            Some((Offset(1), 250))
        );
        assert_eq!(log.offset_for_timestamp(251).await.expect("ts"), None);
        assert_eq!(
            log.max_timestamp().await.expect("max"),
            Some((Offset(1), 250))
        );
    });
}

#[test]
fn retention_renames_to_deleted_at_once_and_a_restart_unlinks_them() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let cfg = LogConfig {
            segment_bytes: 2048,
            file_delete_delay_ms: 60_000,
            ..small_config()
        };
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("open");
        for i in 0..20 {
            log.append(batch_at(i * 1000, 1, 400), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        assert!(log.segment_count() > 3);
        log.delete_records_before(Offset(15))
            .await
            .expect("delete records");
        let first = log_path(&log, 0);
        let mut deleted = first.as_os_str().to_owned();
        deleted.push(super::file_names::DELETED_SUFFIX);
        let deleted = std::path::PathBuf::from(deleted);
        assert!(!io.exists(&first), "the live name is gone at once");
        assert!(
            io.exists(&deleted),
            "the file waits under .deleted for file.delete.delay.ms"
        );
        manager.shutdown().await;

        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("reopen");
        assert!(!io.exists(&deleted), "a restart unlinks leftovers");
        assert!(log.log_start_offset().0 >= 15);
    });
}
