//! Tests on the yielding, durability-modelling fault layer (`fault_io`): idempotent duplicates
//! and durability, the failed-write rollback racing appends, index/log disagreement, checkpoint
//! progress on a hot partition, retention racing DeleteRecords.

use std::rc::Rc;

use bytes::Bytes;

use crate::model::Offset;

use super::config::{Acks, LogConfig};
use super::error::StorageError;
use super::fault_io::FaultyIo;
use super::io::FileKind;
use super::log::PartitionLog;
use super::test_util::*;

async fn open(io: &FaultyIo, cfg: LogConfig) -> Rc<PartitionLog> {
    fake_manager(io, &data_dir())
        .open_partition(&tp(), uuid::Uuid::nil(), cfg)
        .await
        .expect("open")
}

fn idempotent(seq: i32, ts: i64) -> Bytes {
    Bytes::from(encode_batch(&[ts], 100, (7, 0, seq)))
}

#[test]
fn duplicate_waits_for_the_original_to_be_durable() {
    run(|| async {
        // Yield at every I/O: the original's write and fdatasync are "in flight" while the
        // duplicate arrives.
        let io = FaultyIo::with_yields(1, 100);
        let log = open(&io, small_config()).await;
        let original = {
            let log = log.clone();
            glommio::spawn_local(
                async move { log.append(idempotent(0, 1), opts(Acks::All, 0)).await },
            )
        };
        // Let the original queue its bytes and start its flush.
        futures_lite::future::yield_now().await;
        assert_eq!(log.log_end_offset(), Offset(1), "original queued");
        assert_eq!(log.high_watermark(), Offset(0), "not yet durable");
        let duplicate = log
            .append(idempotent(0, 1), opts(Acks::All, 0))
            .await
            .expect("duplicate");
        assert_eq!(duplicate.base_offset, Offset(0));
        assert_eq!(
            log.high_watermark(),
            Offset(1),
            "a duplicate is acknowledged only once the original is durable"
        );
        assert_eq!(original.await.expect("original").base_offset, Offset(0));
        assert_eq!(log.log_end_offset(), Offset(1), "not appended twice");
    });
}

#[test]
fn retry_after_a_failed_fsync_is_not_acknowledged() {
    run(|| async {
        let io = FaultyIo::new();
        let log = open(&io, small_config()).await;
        io.fail_next_fsync(FileKind::Direct);
        let err = log
            .append(idempotent(0, 1), opts(Acks::All, 0))
            .await
            .expect_err("fdatasync fails");
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
        // The producer retries the same batch: its bytes are known not to be durable.
        let retry = log.append(idempotent(0, 1), opts(Acks::All, 0)).await;
        assert!(
            matches!(retry, Err(StorageError::LogFailed)),
            "retry must fail, not be acknowledged: {retry:?}"
        );
        // After recovery the retry is appended for real, and is durable when acknowledged.
        io.crash();
        let log = open(&io, small_config()).await;
        assert_eq!(log.log_end_offset(), Offset(0), "the failed batch is gone");
        let ok = log
            .append(idempotent(0, 1), opts(Acks::All, 0))
            .await
            .expect("retry after recovery");
        assert_eq!(ok.base_offset, Offset(0));
        io.crash();
        let log = open(&io, small_config()).await;
        assert_eq!(log.log_end_offset(), Offset(1), "durable once acknowledged");
    });
}

#[test]
fn duplicate_answers_the_original_log_append_time() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            log_append_time: true,
            ..small_config()
        };
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("open");
        let first = log
            .append(idempotent(0, 1), opts(Acks::All, 1234))
            .await
            .expect("append");
        assert_eq!(first.log_append_time_ms, 1234);
        let dup = log
            .append(idempotent(0, 1), opts(Acks::All, 9999))
            .await
            .expect("duplicate");
        assert_eq!(dup.log_append_time_ms, 1234);
        // Kept in the producer snapshot across a clean restart.
        manager.shutdown().await;
        let log = open(&io, cfg).await;
        let dup = log
            .append(idempotent(0, 1), opts(Acks::All, 5555))
            .await
            .expect("duplicate after restart");
        assert_eq!((dup.base_offset, dup.log_append_time_ms), (Offset(0), 1234));
    });
}

#[test]
fn appends_racing_a_failed_write_rollback_do_not_panic() {
    run(|| async {
        for seed in 0..16 {
            let io = FaultyIo::with_yields(seed, 100);
            let log = open(&io, small_config()).await;
            log.append(batch_at(1, 3, 100), opts(Acks::All, 0))
                .await
                .expect("append");
            io.inject_write_fault(super::fault_io::WriteFault::Eio);
            let failing = {
                let log = log.clone();
                glommio::spawn_local(async move {
                    log.append(batch_at(2, 20, 200), opts(Acks::All, 0)).await
                })
            };
            // Appends arriving while the failed write is rolled back (its truncate yields).
            let mut racing = Vec::new();
            for i in 0..12 {
                futures_lite::future::yield_now().await;
                let log = log.clone();
                racing.push(glommio::spawn_local(async move {
                    log.append(batch_at(3 + i, 1, 50), opts(Acks::All, 0)).await
                }));
            }
            assert!(failing.await.is_err(), "seed {seed}: the write failed");
            let mut acknowledged = 0;
            for append in racing {
                match append.await {
                    Ok(_) => acknowledged += 1,
                    Err(StorageError::Io(_)) => {}
                    Err(err) => panic!("seed {seed}: {err:?}"),
                }
            }
            let headers = read_all(&log, 0).await;
            assert_eq!(headers.len(), 1 + acknowledged, "seed {seed}");
            for pair in headers.windows(2) {
                assert_eq!(pair[1].base_offset, pair[0].last_offset() + 1, "contiguous");
            }
            assert_eq!(log.high_watermark(), log.log_end_offset(), "seed {seed}");
            let end = log.log_end_offset();
            io.crash();
            let log = open(&io, small_config()).await;
            assert_eq!(
                log.log_end_offset(),
                end,
                "seed {seed}: acknowledged = durable"
            );
        }
    });
}

fn index_path() -> std::path::PathBuf {
    super::file_names::offset_file_path(
        &data_dir().join("t-0"),
        Offset(0),
        super::file_names::INDEX_SUFFIX,
    )
}

/// (relative offset, position) entries of an `.index` file, up to the zero padding.
fn index_entries(bytes: &[u8]) -> Vec<(u32, u32)> {
    bytes
        .chunks_exact(8)
        .map(|e| {
            (
                u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .take_while(|e| *e != (0, 0))
        .collect()
}

fn encode_entries(entries: &[(u32, u32)], len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = entries
        .iter()
        .flat_map(|(o, p)| [o.to_be_bytes(), p.to_be_bytes()].concat())
        .collect();
    out.resize(len, 0);
    out
}

#[test]
fn a_stale_index_entry_is_rebuilt_never_a_reason_to_truncate() {
    run(|| async {
        let io = FaultyIo::with_yields(3, 30);
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = open(&io, cfg.clone()).await;
        for i in 0..40 {
            log.append(batch_at(i, 1, 300), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        log.checkpoint().await.expect("checkpoint");
        for i in 40..50 {
            log.append(batch_at(i, 1, 300), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        // The entry recovery starts from (the last one at or below the recovery point) points
        // into the middle of a batch, as a stale entry from an earlier, longer write would.
        let bytes = io.file_bytes(&index_path()).expect("index");
        let mut entries = index_entries(&bytes);
        let at = entries.iter().rposition(|e| e.0 <= 40).expect("an entry");
        entries[at].1 += 7;
        io.set_file_bytes(&index_path(), encode_entries(&entries, bytes.len()));
        io.crash();
        let log = open(&io, cfg).await;
        assert_eq!(
            log.log_end_offset(),
            Offset(50),
            "nothing acknowledged is lost"
        );
        assert_eq!(read_all(&log, 0).await.len(), 50);
        let rewritten = index_entries(&io.file_bytes(&index_path()).expect("index"));
        assert!(
            !rewritten.contains(&entries[at]),
            "the stale entry is gone from the file"
        );
    });
}

#[test]
fn a_shorter_index_write_zero_fills_the_old_tail() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = open(&io, cfg.clone()).await;
        for i in 0..20 {
            log.append(batch_at(i, 1, 300), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        log.checkpoint().await.expect("checkpoint");
        let bytes = io.file_bytes(&index_path()).expect("index");
        let mut entries = index_entries(&bytes);
        let written = entries.len();
        // Entries of an earlier, longer write (e.g. before a rollback) past the current ones.
        let (last_offset, last_position) = entries[written - 1];
        for k in 1..=5 {
            entries.push((last_offset + 100 * k, last_position + 100_000 * k));
        }
        io.set_file_bytes(&index_path(), encode_entries(&entries, bytes.len()));
        log.append(batch_at(20, 1, 10), opts(Acks::All, 0))
            .await
            .expect("append");
        log.checkpoint().await.expect("checkpoint");
        let after = io.file_bytes(&index_path()).expect("index");
        assert_eq!(
            after.len() as u64,
            cfg.segment_index_bytes,
            "still preallocated"
        );
        let now = index_entries(&after);
        assert!(now.len() <= written + 1, "no stale entry survives: {now:?}");
        assert!(after[now.len() * 8..].iter().all(|b| *b == 0));
    });
}

#[test]
fn checkpoints_progress_on_a_hot_partition() {
    run(|| async {
        let io = FaultyIo::with_yields(5, 100);
        let manager = fake_manager(&io, &data_dir());
        manager.start_background();
        let cfg = LogConfig {
            segment_bytes: 1 << 30,
            segment_index_bytes: 1 << 20,
            ..small_config()
        };
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("open");
        let stop = Rc::new(std::cell::Cell::new(false));
        let producers: Vec<_> = (0..4)
            .map(|_| {
                let (log, stop) = (log.clone(), stop.clone());
                glommio::spawn_local(async move {
                    // Pipelined producers: the partition is dirty again whenever the
                    // flusher comes back for it.
                    while !stop.get() {
                        log.append(batch_at(1, 1, 100), opts(Acks::None, 0))
                            .await
                            .expect("append");
                        futures_lite::future::yield_now().await;
                    }
                })
            })
            .collect();
        let mut points = Vec::new();
        for _ in 0..5 {
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            let checkpoint = std::pin::pin!(log.checkpoint());
            let limit = std::pin::pin!(glommio::timer::sleep(std::time::Duration::from_secs(5)));
            match futures::future::select(checkpoint, limit).await {
                futures::future::Either::Left((result, _)) => result.expect("checkpoint"),
                futures::future::Either::Right(_) => panic!("checkpoint starved for 5 s"),
            }
            points.push(log.recovery_point.get());
        }
        stop.set(true);
        for producer in producers {
            producer.await;
        }
        assert!(
            points.windows(2).all(|w| w[0] < w[1]),
            "the recovery point advances: {points:?}"
        );
        manager.shutdown().await;
    });
}

#[test]
fn retention_racing_delete_records_deletes_only_what_it_chose() {
    run(|| async {
        for seed in 0..8 {
            let io = FaultyIo::new();
            let cfg = LogConfig {
                segment_bytes: 2048,
                ..small_config()
            };
            let manager = fake_manager(&io, &data_dir());
            let log = manager
                .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
                .await
                .expect("open");
            // Offsets 0..12 are old (timestamp 1), 12..40 recent.
            for i in 0..40 {
                let ts = if i < 12 { 1 } else { 1_000_000 };
                log.append(batch_at(ts, 1, 400), opts(Acks::All, 0))
                    .await
                    .expect("append");
            }
            manager.shutdown().await;
            // After a restart, retention reads sealed segments' time indexes (I/O that yields).
            io.set_yields(seed, 100);
            let log = open(&io, cfg.clone()).await;
            *log.config.borrow_mut() = LogConfig {
                retention_ms: Some(1000),
                ..cfg
            };
            let bases = log.segment_base_offsets();
            let retention = {
                let log = log.clone();
                glommio::spawn_local(async move { log.apply_retention(1_000_010, 1 << 40).await })
            };
            let start = log
                .delete_records_before(bases[1])
                .await
                .expect("delete records");
            assert!(start >= bases[1]);
            retention.await.expect("retention");
            assert!(
                log.log_start_offset() <= Offset(12),
                "seed {seed}: an unexpired segment was deleted: log start {}",
                log.log_start_offset()
            );
            assert_eq!(read_all(&log, 12).await.len(), 28, "seed {seed}");
        }
    });
}

#[test]
fn segments_deleted_by_recovery_stay_deleted_after_a_crash() {
    run(|| async {
        let io = FaultyIo::with_yields(11, 30);
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let log = open(&io, cfg.clone()).await;
        for i in 0..20 {
            log.append(batch_at(i, 1, 400), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4);
        let path = log_path(&log, bases[1].0);
        drop(log);
        io.crash();
        // Corrupt the second segment's last batch: recovery truncates it and deletes the rest.
        let mut bytes = io.file_bytes(&path).expect("segment");
        let len = bytes.len();
        bytes[len - 10] ^= 0xff;
        io.set_file_bytes(&path, bytes);
        let log = open(&io, cfg.clone()).await;
        let (end, count) = (log.log_end_offset(), log.segment_count());
        assert_eq!(count, 2);
        assert!(end < bases[2]);
        drop(log);
        io.crash();
        let log = open(&io, cfg).await;
        assert_eq!(
            (log.log_end_offset(), log.segment_count()),
            (end, count),
            "deleted segments did not come back"
        );
        assert_eq!(read_all(&log, 0).await.len() as i64, end.0);
    });
}

#[test]
fn a_gap_between_segments_ends_the_log_at_the_gap() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let log = open(&io, cfg.clone()).await;
        for i in 0..20 {
            log.append(batch_at(i, 1, 400), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        let bases = log.segment_base_offsets();
        let dir = data_dir().join("t-0");
        for suffix in [
            super::file_names::LOG_SUFFIX,
            super::file_names::INDEX_SUFFIX,
            super::file_names::TIME_INDEX_SUFFIX,
        ] {
            let path = super::file_names::offset_file_path(&dir, bases[1], suffix);
            super::io::StorageIo::remove_file(&io, &path)
                .await
                .expect("remove");
        }
        drop(log);
        let log = open(&io, cfg).await;
        assert_eq!(log.log_end_offset(), bases[1], "the log ends at the gap");
        assert_eq!(log.segment_count(), 1);
        assert_eq!(read_all(&log, 0).await.len() as i64, bases[1].0);
    });
}

#[test]
fn a_producer_snapshot_above_the_recovered_log_end_is_discarded() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        for seq in 0..10 {
            log.append(idempotent(seq, i64::from(seq)), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        let path = log_path(&log, 0);
        manager.shutdown().await; // snapshot at 10, clean marker
        let dir = data_dir().join("t-0");
        super::io::StorageIo::remove_file(&io, &dir.join(super::file_names::CLEAN_SHUTDOWN_FILE))
            .await
            .expect("remove marker");
        // Batch 8 goes bad: recovery truncates the log to 8, below the snapshot.
        let batch_len = idempotent(0, 0).len();
        let mut bytes = io.file_bytes(&path).expect("segment");
        bytes[8 * batch_len + 70] ^= 0xff;
        io.set_file_bytes(&path, bytes);
        let log = open(&io, small_config()).await;
        assert_eq!(log.log_end_offset(), Offset(8));
        // The retry of batch 8 is appended, not answered as a duplicate of data that is gone.
        let retry = log
            .append(idempotent(8, 8), opts(Acks::All, 0))
            .await
            .expect("retry");
        assert_eq!(retry.base_offset, Offset(8));
        assert_eq!(log.log_end_offset(), Offset(9));
        let entry = log
            .producer_state(crate::model::ProducerId(7))
            .expect("rebuilt from the log");
        assert_eq!(entry.batches.back().map(|b| b.last_seq), Some(8));
    });
}

#[test]
fn acknowledged_appends_survive_power_cuts_at_random_points() {
    run(|| async {
        for seed in 0..12u64 {
            let io = FaultyIo::with_yields(seed, 40);
            let cfg = LogConfig {
                segment_bytes: 8192,
                ..small_config()
            };
            let manager = fake_manager(&io, &data_dir());
            manager.start_background();
            let log = manager
                .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
                .await
                .expect("open");
            let acked = Rc::new(std::cell::RefCell::new(Vec::new()));
            let producers: Vec<_> = (0..4i64)
                .map(|p| {
                    let (log, acked) = (log.clone(), acked.clone());
                    glommio::spawn_local(async move {
                        for k in 0..1000i64 {
                            let id = p * 1_000_000 + k + 1;
                            let value = 20 + ((id * 37) % 300) as usize;
                            match log.append(batch_at(id, 1, value), opts(Acks::All, 0)).await {
                                Ok(result) => acked.borrow_mut().push((result.base_offset, id)),
                                Err(_) => break,
                            }
                        }
                    })
                })
                .collect();
            for _ in 0..(20 + (seed * 53) % 400) {
                futures_lite::future::yield_now().await;
            }
            let rebooted = io.power_cut();
            for producer in producers {
                producer.await;
            }
            manager.shutdown().await;
            let log = open(&rebooted, cfg).await;
            let stored: std::collections::HashMap<Offset, i64> = read_all(&log, 0)
                .await
                .into_iter()
                .map(|h| (Offset(h.base_offset), h.max_timestamp))
                .collect();
            let acked = acked.borrow();
            assert!(!acked.is_empty(), "seed {seed}: something was acknowledged");
            for (offset, id) in acked.iter() {
                assert_eq!(
                    stored.get(offset),
                    Some(id),
                    "seed {seed}: acknowledged {offset} lost"
                );
            }
        }
    });
}
