//! Tests of `PartitionLog::truncate_to` and `truncate_fully_and_start_at` on the fault layer:
//! where the cut falls (active segment, segment boundary, older segment, below the log start),
//! appends and reads afterwards, index lookups, reopening (clean and after a power cut), and a
//! power cut at every step of a truncation.

use std::rc::Rc;

use futures::FutureExt;

use crate::model::{LeaderEpoch, Offset, ProducerId};

use super::batch::{self, BatchHeader};
use super::config::{Acks, AppendOptions, LogConfig};
use super::error::StorageError;
use super::fault_io::FaultyIo;
use super::file_names::{offset_file_path, INDEX_SUFFIX, TRUNCATION_FILE};
use super::index::OffsetIndex;
use super::log::PartitionLog;
use super::manager::LogManager;
use super::test_util::*;

/// Records per test batch: a batch spans offsets `[3k, 3k + 2]`.
const RECORDS: usize = 3;

async fn open(io: &FaultyIo, cfg: &LogConfig) -> (Rc<LogManager>, Rc<PartitionLog>) {
    let manager = fake_manager(io, &data_dir());
    let log = manager
        .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
        .await
        .expect("open");
    (manager, log)
}

/// Small segments: about four 3-record batches of 100-byte values per segment.
fn segmented() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        ..small_config()
    }
}

/// Appends `count` batches whose timestamps are their index from `first` (the batch's id),
/// in leader epoch `epoch_of(id)`.
async fn append_batches(log: &PartitionLog, first: i64, count: i64) {
    for id in first..first + count {
        let options = AppendOptions {
            leader_epoch: LeaderEpoch(epoch_of(id)),
            ..opts(Acks::All, 0)
        };
        log.append(batch_at(id, RECORDS, 100), options)
            .await
            .expect("append");
    }
}

/// A new leader epoch every five batches.
fn epoch_of(id: i64) -> i32 {
    (id / 5) as i32
}

/// The epoch cache of a log holding `batches` (base offset, id), as `(epoch, start offset)`.
fn expected_epochs(batches: &[(i64, i64)]) -> Vec<(i32, i64)> {
    let mut out: Vec<(i32, i64)> = Vec::new();
    for (base, id) in batches {
        if out.last().is_none_or(|(epoch, _)| *epoch < epoch_of(*id)) {
            out.push((epoch_of(*id), *base));
        }
    }
    out
}

fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.leader_epoch_entries()
        .iter()
        .map(|e| (e.epoch.0, e.start_offset.0))
        .collect()
}

/// (base offset, id) of every batch readable from the log start.
async fn contents(log: &PartitionLog) -> Vec<(i64, i64)> {
    read_all(log, log.log_start_offset().0)
        .await
        .iter()
        .map(|h| (h.base_offset, h.max_timestamp))
        .collect()
}

/// Every offset of the log is found through the indexes in the batch that holds it, the
/// batches are contiguous, and the log end is where the last batch ends.
async fn check_lookups(log: &PartitionLog) {
    let (start, end) = (log.log_start_offset().0, log.high_watermark().0);
    for offset in start..end {
        let read = log.read(Offset(offset), 1, true).await.expect("read");
        let batches = batch::split_batches(&read.records).expect("whole batches");
        let header: &BatchHeader = &batches[0].1;
        assert!(
            header.base_offset <= offset && offset <= header.last_offset(),
            "offset {offset} looked up in {header:?}"
        );
    }
    let headers = read_all(log, start).await;
    for pair in headers.windows(2) {
        assert_eq!(pair[1].base_offset, pair[0].last_offset() + 1, "contiguous");
    }
    if let Some(last) = headers.last() {
        assert_eq!(last.last_offset() + 1, log.log_end_offset().0);
    }
}

/// Entries of the `.index` file of the segment at `base`, as the file holds them.
fn index_file_entries(io: &FaultyIo, base: i64) -> OffsetIndex {
    let path = offset_file_path(&data_dir().join("t-0"), Offset(base), INDEX_SUFFIX);
    OffsetIndex::decode(&io.file_bytes(&path).expect("index file"))
}

/// Batches `[0, count)` as (base offset, id).
fn expected(count: i64) -> Vec<(i64, i64)> {
    (0..count).map(|k| (k * RECORDS as i64, k)).collect()
}

#[test]
fn truncate_in_the_middle_of_the_active_segment() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = small_config();
        let (_manager, log) = open(&io, &cfg).await;
        append_batches(&log, 0, 20).await;
        assert_eq!(log.segment_count(), 1);
        log.truncate_to(Offset(30)).await.expect("truncate");
        assert_eq!(log.log_end_offset(), Offset(30));
        assert_eq!(log.high_watermark(), Offset(30));
        assert_eq!(contents(&log).await, expected(10));
        check_lookups(&log).await;
        // A target inside a batch removes that batch whole (batch granularity).
        log.truncate_to(Offset(25)).await.expect("truncate");
        assert_eq!(log.log_end_offset(), Offset(24), "the batch 24..26 goes");
        assert_eq!(contents(&log).await, expected(8));
        let index = index_file_entries(&io, 0);
        let size = log.segments.borrow()[&0].size();
        assert!(!index.is_empty(), "the kept part is indexed");
        assert!(
            index.last().is_some_and(|e| u64::from(e.1) < size),
            "no index entry past the cut (entries grow)"
        );
        // At or past the log end: nothing changes.
        log.truncate_to(Offset(24)).await.expect("no-op");
        log.truncate_to(Offset(1000)).await.expect("no-op");
        assert_eq!(log.log_end_offset(), Offset(24));
        // Appends continue at the new end; reads return exactly the kept and the new batches.
        let result = log
            .append(batch_at(100, RECORDS, 100), opts(Acks::All, 0))
            .await
            .expect("append");
        assert_eq!(result.base_offset, Offset(24));
        let mut want = expected(8);
        want.push((24, 100));
        assert_eq!(contents(&log).await, want);
        check_lookups(&log).await;
        // A power cut after it returned: everything was durable.
        io.crash();
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(contents(&log).await, want);
        check_lookups(&log).await;
    });
}

#[test]
fn truncate_at_a_segment_boundary_and_in_an_older_segment() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = segmented();
        let (manager, log) = open(&io, &cfg).await;
        append_batches(&log, 0, 30).await;
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 5, "{bases:?}");
        // At a segment's base offset: that segment is emptied, the later ones deleted.
        log.truncate_to(bases[4]).await.expect("truncate");
        assert_eq!(log.log_end_offset(), bases[4]);
        assert_eq!(log.segment_base_offsets(), bases[..5].to_vec());
        assert_eq!(contents(&log).await, expected(bases[4].0 / 3));
        check_lookups(&log).await;
        // Inside an older, sealed segment: it becomes the active one again.
        let target = bases[1].0 + 4;
        log.truncate_to(Offset(target)).await.expect("truncate");
        let end = target / 3 * 3;
        assert_eq!(log.log_end_offset(), Offset(end));
        assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
        for base in &bases[2..] {
            assert!(
                !io.exists(&log_path(&log, base.0)),
                "segment {base} deleted"
            );
        }
        assert_eq!(contents(&log).await, expected(end / 3));
        check_lookups(&log).await;
        // Appends fill the reactivated segment and roll as usual.
        append_batches(&log, 100, 12).await;
        assert!(log.segment_count() >= 3, "rolled after the truncation");
        let mut want = expected(end / 3);
        want.extend((0..12).map(|k| (end + 3 * k, 100 + k)));
        assert_eq!(contents(&log).await, want);
        check_lookups(&log).await;
        // Clean restart (index files trusted) and a power cut (recovery scan) agree.
        manager.shutdown().await;
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(contents(&log).await, want);
        check_lookups(&log).await;
        log.truncate_to(Offset(end + 6)).await.expect("truncate");
        io.crash();
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(contents(&log).await, want[..want.len() - 10].to_vec());
        check_lookups(&log).await;
    });
}

#[test]
fn truncate_below_the_log_start_and_fully() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = segmented();
        let (_manager, log) = open(&io, &cfg).await;
        append_batches(&log, 0, 20).await;
        let bases = log.segment_base_offsets();
        log.delete_records_before(bases[2])
            .await
            .expect("delete records");
        assert_eq!(log.log_start_offset(), bases[2]);
        // Below the log start offset: nothing visible remains; the log restarts at the target.
        let target = Offset(bases[2].0 - 1);
        log.truncate_to(target).await.expect("truncate");
        assert_eq!(
            (
                log.log_start_offset(),
                log.high_watermark(),
                log.log_end_offset()
            ),
            (target, target, target)
        );
        assert_eq!(log.segment_base_offsets(), vec![target]);
        let result = log
            .append(batch_at(50, RECORDS, 100), opts(Acks::All, 0))
            .await
            .expect("append");
        assert_eq!(result.base_offset, target);
        assert_eq!(contents(&log).await, vec![(target.0, 50)]);
        io.crash();
        let (_manager, mut log) = open(&io, &cfg).await;
        assert_eq!(log.log_start_offset(), target);
        assert_eq!(contents(&log).await, vec![(target.0, 50)]);
        // Fully, at an offset above the log end (a follower catching up with a leader's log
        // start) and then below it.
        for start in [1000, 7] {
            log.truncate_fully_and_start_at(Offset(start))
                .await
                .expect("truncate fully");
            assert_eq!(log.log_start_offset(), Offset(start));
            assert_eq!(log.log_end_offset(), Offset(start));
            assert_eq!(log.high_watermark(), Offset(start));
            let result = log
                .append(batch_at(60, RECORDS, 100), opts(Acks::All, 0))
                .await
                .expect("append");
            assert_eq!(result.base_offset, Offset(start));
            assert!(matches!(
                log.read(Offset(start - 1), 1024, true).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            io.crash();
            let (_manager, reopened) = open(&io, &cfg).await;
            assert_eq!(reopened.log_start_offset(), Offset(start));
            assert_eq!(contents(&reopened).await, vec![(start, 60)]);
            check_lookups(&reopened).await;
            log = reopened;
        }
    });
}

#[test]
fn appends_take_their_place_around_a_truncation() {
    run(|| async {
        let io = FaultyIo::with_yields(9, 100);
        let cfg = segmented();
        let (_manager, log) = open(&io, &cfg).await;
        append_batches(&log, 0, 10).await;
        // A fetch waiting for the high watermark to pass the new log end.
        let waiting = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_hwm_above(Offset(12)).await })
        };
        let before = {
            let log = log.clone();
            let place = log.reserve_append();
            glommio::spawn_local(async move {
                log.append_reserved(place, batch_at(20, RECORDS, 100), opts(Acks::All, 0))
                    .await
            })
        };
        let truncation = {
            let log = log.clone();
            glommio::spawn_local(async move { log.truncate_to(Offset(12)).await })
        };
        futures_lite::future::yield_now().await;
        let after = {
            let log = log.clone();
            glommio::spawn_local(async move {
                log.append(batch_at(21, RECORDS, 100), opts(Acks::All, 0))
                    .await
            })
        };
        let before = before.await.expect("placed before: stored, then truncated");
        assert_eq!(before.base_offset, Offset(30));
        truncation.await.expect("truncate");
        let after = after.await.expect("placed after");
        assert_eq!(
            after.base_offset,
            Offset(12),
            "offsets continue at the new end"
        );
        let mut want = expected(4);
        want.push((12, 21));
        assert_eq!(contents(&log).await, want);
        assert!(log.high_watermark() > Offset(12));
        waiting.await;
    });
}

#[test]
fn a_truncation_wakes_no_fetch_waiter() {
    run(|| async {
        let io = FaultyIo::new();
        let (_manager, log) = open(&io, &small_config()).await;
        append_batches(&log, 0, 10).await;
        // A long poll waiting for offset 30, the log end.
        let mut waiting = Box::pin(log.wait_hwm_above(Offset(30)));
        assert!(waiting.as_mut().now_or_never().is_none());
        log.truncate_to(Offset(12)).await.expect("truncate");
        for _ in 0..10 {
            futures_lite::future::yield_now().await;
        }
        assert!(
            waiting.as_mut().now_or_never().is_none(),
            "high watermark went down"
        );
        append_batches(&log, 50, 6).await;
        assert_eq!(log.high_watermark(), Offset(30));
        assert!(waiting.as_mut().now_or_never().is_none());
        append_batches(&log, 56, 1).await;
        assert!(waiting.as_mut().now_or_never().is_some());
    });
}

#[test]
fn producer_state_forgets_the_truncated_batches() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = small_config();
        let (manager, log) = open(&io, &cfg).await;
        let idempotent =
            |seq: i32| bytes::Bytes::from(encode_batch(&[i64::from(seq)], 100, (7, 0, seq)));
        for seq in 0..10 {
            log.append(idempotent(seq), opts(Acks::All, 0))
                .await
                .expect("append");
        }
        // A checkpoint's snapshot above the truncation must not come back either.
        log.checkpoint().await.expect("checkpoint");
        log.truncate_to(Offset(8)).await.expect("truncate");
        let entry = log.producer_state(ProducerId(7)).expect("kept");
        assert_eq!(entry.batches.back().map(|b| b.last_seq), Some(7));
        assert!(matches!(
            log.append(idempotent(9), opts(Acks::All, 0)).await,
            Err(StorageError::OutOfOrderSequence { expected: 8, .. })
        ));
        let dup = log
            .append(idempotent(6), opts(Acks::All, 0))
            .await
            .expect("dup");
        assert_eq!(
            dup.base_offset,
            Offset(6),
            "a kept batch is still a duplicate"
        );
        drop(manager);
        io.crash();
        let (_manager, log) = open(&io, &cfg).await;
        let entry = log.producer_state(ProducerId(7)).expect("recovered");
        assert_eq!(entry.batches.back().map(|b| b.last_seq), Some(7));
        let next = log
            .append(idempotent(8), opts(Acks::All, 0))
            .await
            .expect("next");
        assert_eq!(next.base_offset, Offset(8));
    });
}

/// A power cut at every step of a truncation (the nth yield of its I/O), for `truncate_to` in
/// an older segment and for `truncate_fully_and_start_at`: the recovered log ends at the old
/// or the new log end, holds exactly that prefix of the batches (never a gap or a half batch),
/// takes appends at its end, and recovers to the same state again.
#[test]
fn a_power_cut_at_every_step_of_a_truncation_recovers_old_or_new() {
    run(|| async {
        for full in [false, true] {
            let mut cut_at = 0u64;
            let (mut saw_old, mut saw_new) = (false, false);
            loop {
                let finished =
                    power_cut_during_truncation(full, cut_at, &mut saw_old, &mut saw_new).await;
                if finished {
                    break;
                }
                cut_at += 1;
                assert!(cut_at < 5000, "the truncation finishes");
            }
            assert!(
                saw_old && saw_new,
                "full={full}: cuts before and after the intent"
            );
        }
    });
}

/// One run: builds a log of several segments, cuts the power after `cut_at` yields of a
/// truncation, checks the recovered log. Returns whether the truncation finished first.
async fn power_cut_during_truncation(
    full: bool,
    cut_at: u64,
    saw_old: &mut bool,
    saw_new: &mut bool,
) -> bool {
    let io = FaultyIo::new();
    let cfg = segmented();
    let (manager, log) = open(&io, &cfg).await;
    append_batches(&log, 0, 24).await;
    log.checkpoint().await.expect("checkpoint");
    let bases = log.segment_base_offsets();
    let old_end = log.log_end_offset().0;
    let (target, new_start, new_end) = if full {
        (Offset(500), 500, 500)
    } else {
        let target = bases[1].0 + 4;
        (Offset(target), 0, target / 3 * 3)
    };
    // One seed for every run: the nth yield is the same step of the truncation each time.
    io.set_yields(1, 100);
    let truncation = {
        let log = log.clone();
        glommio::spawn_local(async move {
            if full {
                log.truncate_fully_and_start_at(target).await
            } else {
                log.truncate_to(target).await
            }
        })
    };
    for _ in 0..cut_at {
        futures_lite::future::yield_now().await;
    }
    let rebooted = io.power_cut();
    let result = truncation.await;
    let finished = result.is_ok();
    drop(manager);
    let (_manager, log) = open(&rebooted, &cfg).await;
    let end = log.log_end_offset().0;
    let kept = contents(&log).await;
    if end == old_end {
        *saw_old = true;
        assert!(!finished, "cut {cut_at}: a finished truncation is durable");
        assert_eq!(
            kept,
            expected(old_end / 3),
            "cut {cut_at}: the old log, whole"
        );
    } else {
        *saw_new = true;
        assert_eq!(end, new_end, "cut {cut_at}: old or new log end");
        assert_eq!(log.log_start_offset().0, new_start.min(end));
        let want = if full {
            Vec::new()
        } else {
            expected(new_end / 3)
        };
        assert_eq!(kept, want, "cut {cut_at}: the new log, whole");
    }
    check_lookups(&log).await;
    assert_eq!(
        epochs(&log),
        expected_epochs(&kept),
        "cut {cut_at}: epoch cache"
    );
    assert!(
        !rebooted.exists(&data_dir().join("t-0").join(TRUNCATION_FILE)),
        "cut {cut_at}: recovery completed the truncation"
    );
    let next = log
        .append(batch_at(999, RECORDS, 100), opts(Acks::All, 0))
        .await
        .expect("append after recovery");
    assert_eq!(next.base_offset.0, end, "cut {cut_at}");
    rebooted.crash();
    let (_manager, again) = open(&rebooted, &cfg).await;
    assert_eq!(
        again.log_end_offset().0,
        end + RECORDS as i64,
        "cut {cut_at}"
    );
    assert_eq!(contents(&again).await, contents(&log).await, "cut {cut_at}");
    finished
}

#[test]
fn reads_racing_a_truncation_see_the_old_or_the_new_log() {
    run(|| async {
        for seed in 0..8 {
            let io = FaultyIo::new();
            // Older segments and the cut one (the file cut shortly after the memory change).
            let cfg = if seed % 2 == 0 {
                small_config()
            } else {
                segmented()
            };
            let (_manager, log) = open(&io, &cfg).await;
            append_batches(&log, 0, 24).await;
            io.set_yields(seed, 100);
            let done = Rc::new(std::cell::Cell::new(false));
            let readers: Vec<_> = (0..24i64)
                .map(|k| {
                    let (log, done) = (log.clone(), done.clone());
                    glommio::spawn_local(async move {
                        while !done.get() {
                            let offset = Offset(k * RECORDS as i64 + 1);
                            match log.read(offset, 4096, true).await {
                                Ok(read) => {
                                    let batches = batch::split_batches(&read.records)
                                        .expect("whole, valid batches");
                                    if let Some((_, first)) = batches.first() {
                                        assert!(first.base_offset <= offset.0);
                                        assert!(offset.0 <= first.last_offset());
                                    }
                                }
                                Err(StorageError::OffsetOutOfRange { .. }) => {}
                                Err(err) => panic!("seed {seed}: read at {offset}: {err:?}"),
                            }
                            futures_lite::future::yield_now().await;
                        }
                    })
                })
                .collect();
            futures_lite::future::yield_now().await;
            log.truncate_to(Offset(13)).await.expect("truncate");
            done.set(true);
            for reader in readers {
                reader.await;
            }
            assert_eq!(contents(&log).await, expected(4), "seed {seed}");
        }
    });
}

/// On real files (GlommioIo, O_DIRECT): truncation at unaligned positions in the active and in
/// an older segment, appends through the reloaded tail block, and clean and unclean reopens.
#[test]
fn real_io_truncate_append_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let cfg = segmented();
        let topic_id = uuid::Uuid::new_v4();
        let manager = LogManager::new(crate::model::ShardId(0), broker_config(&path));
        manager.start_background();
        let log = manager
            .open_partition(&tp(), topic_id, cfg.clone())
            .await
            .expect("open");
        append_batches(&log, 0, 30).await;
        let bases = log.segment_base_offsets();
        // In the active segment, then in an older one (the later segments' files go).
        let last = bases[bases.len() - 1].0;
        log.truncate_to(Offset(last + 4)).await.expect("truncate");
        assert_eq!(log.log_end_offset(), Offset(last + 3));
        log.truncate_to(Offset(bases[1].0 + 7))
            .await
            .expect("truncate");
        let end = (bases[1].0 + 7) / 3 * 3;
        assert_eq!(log.log_end_offset(), Offset(end));
        for base in &bases[2..] {
            assert!(
                !log_path_in(&path, base.0).exists(),
                "segment {base} deleted"
            );
        }
        assert_eq!(
            std::fs::metadata(log_path_in(&path, bases[1].0))
                .expect("cut segment")
                .len(),
            log.segments.borrow()[&bases[1].0].size(),
            "the file ends at the cut"
        );
        // Appends rewrite the partial tail block with its old bytes plus the new ones.
        append_batches(&log, 100, 10).await;
        let mut want = expected(end / 3);
        want.extend((0..10).map(|k| (end + 3 * k, 100 + k)));
        assert_eq!(contents(&log).await, want);
        check_lookups(&log).await;
        assert_eq!(epochs(&log), expected_epochs(&want));
        manager.shutdown().await;
        for clean in [true, false] {
            if !clean {
                std::fs::remove_file(
                    path.join("t-0")
                        .join(super::file_names::CLEAN_SHUTDOWN_FILE),
                )
                .expect("remove the marker: an unclean start");
            }
            let manager = LogManager::new(crate::model::ShardId(0), broker_config(&path));
            let log = manager
                .open_partition(&tp(), topic_id, cfg.clone())
                .await
                .expect("reopen");
            assert_eq!(contents(&log).await, want, "clean={clean}");
            check_lookups(&log).await;
            assert_eq!(epochs(&log), expected_epochs(&want));
            manager.shutdown().await;
        }
    });
}

/// An I/O error during a truncation fail-stops the log; reopening it gives the old log when
/// the intent was not yet durable, the new one when it was.
#[test]
fn an_io_error_during_a_truncation_fail_stops_and_reopening_finishes_it() {
    run(|| async {
        // The intent's own fdatasync (a buffered file) fails: nothing was decided.
        // The cut segment's fdatasync (the direct `.log`) fails: the intent is durable.
        for (kind, finished) in [
            (super::io::FileKind::Buffered, false),
            (super::io::FileKind::Direct, true),
        ] {
            let io = FaultyIo::new();
            let cfg = segmented();
            let (manager, log) = open(&io, &cfg).await;
            append_batches(&log, 0, 20).await;
            io.fail_next_fsync(kind);
            let err = log.truncate_to(Offset(10)).await.expect_err("fsync fails");
            assert!(matches!(err, StorageError::Io(_)), "{err:?}");
            assert!(log.is_failed(), "fail-stop");
            assert!(matches!(
                log.append(batch_at(1, RECORDS, 100), opts(Acks::All, 0))
                    .await,
                Err(StorageError::LogFailed)
            ));
            assert!(matches!(
                log.truncate_to(Offset(5)).await,
                Err(StorageError::LogFailed)
            ));
            // Reopening the failed log (as a restart would) recovers it.
            let log = manager
                .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
                .await
                .expect("reopen");
            let want = if finished { expected(3) } else { expected(20) };
            assert_eq!(contents(&log).await, want, "{kind:?}");
            check_lookups(&log).await;
            io.crash();
            let (_manager, log) = open(&io, &cfg).await;
            assert_eq!(
                contents(&log).await,
                want,
                "{kind:?}: after a power cut too"
            );
        }
    });
}
