//! Recovery and fault tests: crashes, torn / corrupt / zero tails, failed writes and fsyncs,
//! clean-shutdown reopen, checkpoints, index rebuilds.

use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;

use crate::model::{Offset, ProducerId, ShardId};

use super::config::{Acks, LogConfig};
use super::error::StorageError;
use super::fault_io::{FaultyIo, WriteFault};
use super::file_names::offset_file_path;
use super::io::{FileKind, StorageIo};
use super::log::PartitionLog;
use super::manager::LogManager;
use super::test_util::*;

#[test]
fn crash_drops_unflushed_and_recovery_rebuilds() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let relaxed = LogConfig {
            flush_messages: Some(1_000_000),
            ..small_config()
        };
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), relaxed.clone())
            .await
            .expect("open");
        for i in 0..10 {
            log.append(batch_at(i, 1, 50), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        log.flush(true).await.expect("fsync");
        for i in 10..20 {
            // Acked once written (relaxed policy), not fdatasync'ed.
            log.append(batch_at(i, 1, 50), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        assert_eq!(log.high_watermark(), Offset(20));
        io.crash();
        drop(log);
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), relaxed)
            .await
            .expect("recover");
        assert_eq!(
            log.log_end_offset(),
            Offset(10),
            "only fdatasync'ed batches survive"
        );
        assert_eq!(read_all(&log, 0).await.len(), 10);
        let result = log
            .append(batch_at(99, 1, 50), opts(Acks::All, 0))
            .await
            .expect("append");
        assert_eq!(result.base_offset, Offset(10));
    });
}

/// Appends `n` one-record batches, then damages the log with `damage` and reopens uncleanly.
async fn reopen_after_damage(
    n: i64,
    damage: impl FnOnce(&FaultyIo, &PathBuf, Vec<u8>),
) -> Rc<PartitionLog> {
    let io = FaultyIo::new();
    let manager = fake_manager(&io, &data_dir());
    let log = manager
        .open_partition(&tp(), uuid::Uuid::nil(), small_config())
        .await
        .expect("open");
    for i in 0..n {
        log.append(batch_at(i, 1, 30), opts(Acks::All, 0))
            .await
            .expect("append");
    }
    let path = log_path(&log, 0);
    let bytes = io.file_bytes(&path).expect("log file");
    damage(&io, &path, bytes);
    drop(log);
    let manager = fake_manager(&io, &data_dir());
    manager
        .open_partition(&tp(), uuid::Uuid::nil(), small_config())
        .await
        .expect("recover")
}

#[test]
fn recovery_truncates_torn_corrupt_and_zero_tails() {
    run(|| async {
        let batch_len = batch_at(0, 1, 30).len();
        // Torn: the last batch lost its second half.
        let log = reopen_after_damage(10, |io, path, bytes| {
            let logical = 10 * batch_len;
            io.set_file_bytes(path, bytes[..logical - batch_len / 2].to_vec());
        })
        .await;
        assert_eq!(log.log_end_offset(), Offset(9));
        // Corrupt CRC in batch 5: batches 5.. are dropped.
        let log = reopen_after_damage(10, |io, path, mut bytes| {
            bytes[5 * batch_len + 70] ^= 0xff;
            io.set_file_bytes(path, bytes);
        })
        .await;
        assert_eq!(log.log_end_offset(), Offset(5));
        assert_eq!(read_all(&log, 0).await.len(), 5);
        // Zero tail (O_DIRECT padding, preallocation): ignored.
        let log = reopen_after_damage(10, |io, path, mut bytes| {
            bytes.resize(bytes.len() + 8192, 0);
            io.set_file_bytes(path, bytes);
        })
        .await;
        assert_eq!(log.log_end_offset(), Offset(10));
        let result = log
            .append(batch_at(0, 1, 30), opts(Acks::All, 0))
            .await
            .expect("append");
        assert_eq!(result.base_offset, Offset(10));
    });
}

#[test]
fn write_errors_leave_no_visible_half_batch() {
    run(|| async {
        for fault in [
            WriteFault::Enospc,
            WriteFault::Eio,
            WriteFault::Short(4096),
            WriteFault::Torn(4096),
        ] {
            let io = FaultyIo::new();
            let manager = fake_manager(&io, &data_dir());
            let log = manager
                .open_partition(&tp(), uuid::Uuid::nil(), small_config())
                .await
                .expect("open");
            log.append(batch_at(1, 3, 100), opts(Acks::All, 0))
                .await
                .expect("append");
            io.inject_write_fault(fault.clone());
            let big = batch_at(2, 50, 200);
            let err = log
                .append(big.clone(), opts(Acks::All, 0))
                .await
                .expect_err("fails");
            assert!(matches!(err, StorageError::Io(_)), "{fault:?}: {err:?}");
            assert_eq!(log.high_watermark(), Offset(3));
            assert_eq!(log.log_end_offset(), Offset(3), "rolled back");
            assert_eq!(read_all(&log, 0).await.len(), 1);
            let ok = log
                .append(big, opts(Acks::All, 0))
                .await
                .expect("later append");
            assert_eq!(ok.base_offset, Offset(3));
            assert_eq!(read_all(&log, 0).await.len(), 2);
            io.crash();
            drop(log);
            let log = fake_manager(&io, &data_dir())
                .open_partition(&tp(), uuid::Uuid::nil(), small_config())
                .await
                .expect("recover");
            assert_eq!(log.log_end_offset(), Offset(53), "{fault:?}");
        }
    });
}

#[test]
fn fsync_failure_fail_stops_the_log() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        log.append(batch_at(1, 1, 10), opts(Acks::All, 0))
            .await
            .expect("append");
        io.fail_next_fsync(FileKind::Direct);
        let err = log
            .append(batch_at(1, 1, 10), opts(Acks::All, 0))
            .await
            .expect_err("fsync fails");
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
        assert!(log.is_failed());
        assert_eq!(log.high_watermark(), Offset(1));
        // The device would accept the next fdatasync; the log does not try it.
        let err = log
            .append(batch_at(1, 1, 10), opts(Acks::Leader, 0))
            .await
            .expect_err("refused");
        assert!(matches!(err, StorageError::LogFailed), "{err:?}");
        assert!(matches!(
            log.flush(true).await,
            Err(StorageError::LogFailed)
        ));
        log.checkpoint().await.expect("checkpoint is a no-op");
        assert_eq!(log.high_watermark(), Offset(1), "frozen");
        // Reopening recovers it as after an unclean stop: the batch whose fdatasync failed
        // reads back as zeros (the fault layer's fsyncgate model) and is truncated.
        let reopened = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("reopen");
        assert!(!Rc::ptr_eq(&log, &reopened));
        assert!(!reopened.is_failed());
        assert!(reopened.recovered_bytes() > 0, "scanned as unclean");
        assert_eq!(reopened.log_end_offset(), Offset(1));
        let ok = reopened
            .append(batch_at(2, 1, 10), opts(Acks::All, 0))
            .await
            .expect("append after recovery");
        assert_eq!(ok.base_offset, Offset(1));
        assert_eq!(read_all(&reopened, 0).await.len(), 2);
    });
}

#[test]
fn clean_shutdown_skips_scan_and_keeps_producer_state() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        for seq in 0..30 {
            let b = Bytes::from(encode_batch(&[seq as i64], 100, (7, 0, seq)));
            log.append(b, opts(Acks::All, 0)).await.expect("append");
        }
        manager.shutdown().await;
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("reopen");
        assert!(
            log.recovered_bytes() < 1024,
            "scanned {}",
            log.recovered_bytes()
        );
        let entry = log
            .producer_state(ProducerId(7))
            .expect("producer restored");
        assert_eq!(entry.batches.back().map(|b| b.last_seq), Some(29));
        // A duplicate of the last batch returns its original offset.
        let dup = Bytes::from(encode_batch(&[29], 100, (7, 0, 29)));
        assert_eq!(
            log.append(dup, opts(Acks::All, 0))
                .await
                .expect("dup")
                .base_offset,
            Offset(29)
        );
        assert_eq!(log.log_end_offset(), Offset(30));
    });
}

#[test]
fn checkpoint_bounds_recovery_scan() {
    // Batches of several records too: recovery starts at the index entry at or below the
    // recovery point only if the batch there has the entry's (last) offset.
    for records in [1usize, 4] {
        checkpoint_bounds_recovery_scan_with(records);
    }
}

fn checkpoint_bounds_recovery_scan_with(records: usize) {
    run(move || async move {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("open");
        for i in 0..200 {
            log.append(batch_at(i, records, 200), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        log.checkpoint().await.expect("checkpoint");
        for i in 0..5 {
            log.append(batch_at(i, records, 200), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        let size = log.size_bytes();
        io.crash();
        drop(log);
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("recover");
        let end = 205 * records;
        assert_eq!(log.log_end_offset(), Offset(end as i64));
        assert!(
            log.recovered_bytes() < size / 10,
            "{records} records a batch: scanned {} of {size}",
            log.recovered_bytes()
        );
        assert_eq!(read_all(&log, 0).await.len(), 205, "batches");
    });
}

#[test]
fn real_io_concurrent_appends_survive_unclean_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let topic_id = uuid::Uuid::new_v4();
        let cfg = LogConfig {
            segment_bytes: 32 * 1024,
            ..small_config()
        };
        {
            let manager = LogManager::new(ShardId(0), broker_config(&path));
            manager.start_background();
            let log = manager
                .open_partition(&tp(), topic_id, cfg.clone())
                .await
                .expect("open");
            let appends = (0..200).map(|i| {
                let log = log.clone();
                async move {
                    log.append(
                        batch_at(i, 1 + (i as usize % 4), 50 + (i as usize * 7) % 300),
                        opts(Acks::All, 0),
                    )
                    .await
                }
            });
            let results = futures::future::join_all(appends).await;
            assert!(results.iter().all(Result::is_ok));
            assert!(log.segment_count() > 2);
            assert_eq!(log.high_watermark(), log.log_end_offset());
            // No shutdown: the next open is unclean and must verify every batch.
        }
        let manager = LogManager::new(ShardId(0), broker_config(&path));
        let log = manager
            .open_partition(&tp(), topic_id, cfg)
            .await
            .expect("recover");
        let headers = read_all(&log, 0).await;
        assert_eq!(headers.len(), 200);
        let records: i64 = (0..200).map(|i| 1 + (i % 4)).sum();
        assert_eq!(log.log_end_offset(), Offset(records));
        manager.shutdown().await;
    });
}

#[test]
fn missing_index_files_are_rebuilt() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 4096,
            ..small_config()
        };
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("open");
        for i in 0..30 {
            log.append(batch_at(i, 1, 300), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        manager.shutdown().await;
        let dir = data_dir().join("t-0");
        let index = offset_file_path(&dir, Offset(0), super::file_names::INDEX_SUFFIX);
        let before = io.file_bytes(&index).expect("index exists");
        assert!(!before.is_empty());
        io.remove_file(&index).await.expect("remove");
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("reopen");
        assert_eq!(io.file_bytes(&index), Some(before), "rebuilt identically");
        assert_eq!(read_all(&log, 0).await.len(), 30);
    });
}

#[test]
fn flush_ms_relaxes_fsync_to_a_timer() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        manager.start_background();
        let cfg = LogConfig {
            flush_ms: Some(50),
            ..small_config()
        };
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        let before = io.fsyncs();
        for i in 0..5 {
            log.append(batch_at(i, 1, 10), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        assert_eq!(log.high_watermark(), Offset(5), "visible once written");
        assert_eq!(io.fsyncs(), before, "no fsync yet");
        glommio::timer::sleep(std::time::Duration::from_millis(400)).await;
        assert!(io.fsyncs() > before, "the flusher's timer fsynced");
        io.crash();
        drop(log);
        drop(manager);
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("reopen");
        assert_eq!(log.log_end_offset(), Offset(5));
    });
}

#[test]
fn failed_roll_is_finished_by_the_next_append() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        for i in 0..4 {
            log.append(batch_at(i, 1, 400), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        assert_eq!(log.segment_count(), 1);
        // The next append rolls: the old segment seals, creating the new one fails.
        // (Sealing rewrites the two index files: the third open is the new segment's `.log`.)
        io.fail_open_after(2);
        let err = log
            .append(batch_at(9, 1, 400), opts(Acks::All, 0))
            .await
            .expect_err("roll fails");
        assert!(matches!(err, StorageError::Io(_)));
        assert_eq!(log.log_end_offset(), Offset(4));
        assert_eq!(log.segment_count(), 1);
        assert!(
            !log.active_segment().is_active(),
            "sealed, next segment not created"
        );
        let ok = log
            .append(batch_at(9, 1, 400), opts(Acks::All, 0))
            .await
            .expect("roll finished");
        assert_eq!(ok.base_offset, Offset(4));
        assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(4)]);
        assert_eq!(read_all(&log, 0).await.len(), 5);
    });
}

#[test]
fn flusher_never_retries_a_failed_fsync_and_restart_recovers_uncleanly() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        manager.start_background();
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        log.append(batch_at(0, 1, 10), opts(Acks::All, 0))
            .await
            .expect("append");
        io.set_fsync_fails(true);
        let err = log
            .append(batch_at(1, 1, 10), opts(Acks::All, 0))
            .await
            .expect_err("fsync fails");
        assert!(matches!(err, StorageError::Io(_)));
        io.set_fsync_fails(false);
        let fsyncs = io.fsyncs();
        // Several flusher ticks (FLUSH_TICK_MS) pass: no retry, nothing becomes visible.
        glommio::timer::sleep(std::time::Duration::from_millis(350)).await;
        assert_eq!(io.fsyncs(), fsyncs, "no fdatasync retried");
        assert_eq!(log.high_watermark(), Offset(1));
        assert!(log.is_failed());
        manager.shutdown().await;
        let dir = data_dir().join("t-0");
        assert!(
            !io.exists(&dir.join(super::file_names::CLEAN_SHUTDOWN_FILE)),
            "a failed log is not marked clean"
        );
        io.crash();
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("restart");
        assert!(log.recovered_bytes() > 0, "unclean recovery");
        assert_eq!(log.log_end_offset(), Offset(1));
        assert_eq!(read_all(&log, 0).await.len(), 1);
    });
}

#[test]
fn pending_segment_deletions_do_not_come_back_after_restart() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            file_delete_delay_ms: 60_000,
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
        let retained = LogConfig {
            retention_bytes: Some(4000),
            ..cfg.clone()
        };
        *log.config.borrow_mut() = retained;
        assert!(log.apply_retention(0, 1 << 40).await.expect("retention") > 0);
        let (start, segments) = (log.log_start_offset(), log.segment_count());
        let mut marked = log_path(&log, 0).into_os_string();
        marked.push(super::file_names::DELETED_SUFFIX);
        let marked = std::path::PathBuf::from(marked);
        assert!(!io.exists(&log_path(&log, 0)), "renamed away at once");
        assert!(io.exists(&marked), "file deletion is delayed");
        drop(log);
        let log = fake_manager(&io, &data_dir())
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("reopen");
        assert_eq!(
            (log.log_start_offset(), log.segment_count()),
            (start, segments)
        );
        assert!(!io.exists(&log_path(&log, 0)), "deleted at open");
        assert!(
            !io.exists(&marked),
            "leftover .deleted files removed at open"
        );
    });
}
