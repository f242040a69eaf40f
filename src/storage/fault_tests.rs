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
