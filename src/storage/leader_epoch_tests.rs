//! The leader epoch cache of a partition log: assigned by appends, cut by truncation and
//! DeleteRecords, persisted in `leader-epoch-checkpoint` and recovered (clean, unclean, and
//! without the file).

use std::rc::Rc;

use crate::model::{LeaderEpoch, Offset};

use super::config::{Acks, AppendOptions, LogConfig};
use super::fault_io::FaultyIo;
use super::file_names::LEADER_EPOCH_FILE;
use super::io::StorageIo;
use super::log::PartitionLog;
use super::manager::LogManager;
use super::test_util::*;

async fn open(io: &FaultyIo, cfg: &LogConfig) -> (Rc<LogManager>, Rc<PartitionLog>) {
    let manager = fake_manager(io, &data_dir());
    let log = manager
        .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
        .await
        .expect("open");
    (manager, log)
}

/// Appends one 3-record batch in `epoch`.
async fn append_in(log: &PartitionLog, epoch: i32) {
    let options = AppendOptions {
        leader_epoch: LeaderEpoch(epoch),
        ..opts(Acks::All, 0)
    };
    log.append(batch_at(1, 3, 100), options)
        .await
        .expect("append");
}

fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.leader_epoch_entries()
        .iter()
        .map(|e| (e.epoch.0, e.start_offset.0))
        .collect()
}

fn end_for(log: &PartitionLog, epoch: i32) -> Option<(i32, i64)> {
    log.end_offset_for_epoch(LeaderEpoch(epoch))
        .map(|(e, o)| (e.0, o.0))
}

fn epoch_file() -> std::path::PathBuf {
    data_dir().join("t-0").join(LEADER_EPOCH_FILE)
}

#[test]
fn epochs_follow_appends_truncations_and_restarts() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let (manager, log) = open(&io, &cfg).await;
        for epoch in [0, 0, 0, 2, 2, 2, 5, 5, 5] {
            append_in(&log, epoch).await;
        }
        assert_eq!(epochs(&log), vec![(0, 0), (2, 9), (5, 18)]);
        assert_eq!(end_for(&log, 5), Some((5, 27)), "latest: the log end");
        assert_eq!(end_for(&log, 2), Some((2, 18)));
        assert_eq!(end_for(&log, 3), Some((2, 18)), "unknown: the floor epoch");
        assert_eq!(end_for(&log, 0), Some((0, 9)));
        assert_eq!(end_for(&log, 6), None);
        assert_eq!(end_for(&log, -1), None);

        manager.shutdown().await;
        assert_eq!(
            io.file_bytes(&epoch_file()),
            Some(b"0\n3\n0 0\n2 9\n5 18\n".to_vec()),
            "Kafka's checkpoint format"
        );
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(epochs(&log), vec![(0, 0), (2, 9), (5, 18)], "clean restart");

        log.truncate_to(Offset(12)).await.expect("truncate");
        assert_eq!(epochs(&log), vec![(0, 0), (2, 9)]);
        assert_eq!(end_for(&log, 2), Some((2, 12)));
        assert_eq!(end_for(&log, 5), None);
        io.crash();
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(
            epochs(&log),
            vec![(0, 0), (2, 9)],
            "durable with the truncation"
        );

        // Appended after the last checkpoint: the file lacks it, recovery scans it back.
        append_in(&log, 7).await;
        assert_eq!(epochs(&log), vec![(0, 0), (2, 9), (7, 12)]);
        io.crash();
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(
            epochs(&log),
            vec![(0, 0), (2, 9), (7, 12)],
            "unclean restart"
        );

        log.truncate_fully_and_start_at(Offset(100))
            .await
            .expect("truncate fully");
        assert!(epochs(&log).is_empty());
        append_in(&log, 8).await;
        io.crash();
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(epochs(&log), vec![(8, 100)]);
    });
}

#[test]
fn delete_records_moves_the_first_epoch_start() {
    run(|| async {
        let io = FaultyIo::new();
        let (manager, log) = open(&io, &small_config()).await;
        for epoch in [0, 0, 0, 2, 2, 2, 5] {
            append_in(&log, epoch).await;
        }
        log.delete_records_before(Offset(10))
            .await
            .expect("delete records");
        assert_eq!(epochs(&log), vec![(2, 10), (5, 18)]);
        manager.shutdown().await;
        let (_manager, log) = open(&io, &small_config()).await;
        assert_eq!(epochs(&log), vec![(2, 10), (5, 18)]);
    });
}

#[test]
fn a_missing_or_damaged_file_is_rebuilt_from_the_log() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let (manager, log) = open(&io, &cfg).await;
        for epoch in [1, 1, 1, 1, 3, 3, 3, 3, 4, 4, 4, 4] {
            append_in(&log, epoch).await;
        }
        assert!(log.segment_count() > 2);
        let want = vec![(1, 0), (3, 12), (4, 24)];
        assert_eq!(epochs(&log), want);
        manager.shutdown().await;
        // A data directory from before the file (clean shutdown: nothing is scanned).
        io.remove_file(&epoch_file()).await.expect("remove");
        let (manager, log) = open(&io, &cfg).await;
        assert_eq!(epochs(&log), want, "rebuilt from every batch header");
        manager.shutdown().await;
        assert!(io.file_bytes(&epoch_file()).is_some(), "written again");
        io.set_file_bytes(&epoch_file(), b"0\n3\n1 0\n".to_vec());
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(epochs(&log), want, "a damaged file is rebuilt too");
    });
}

#[test]
fn the_log_leader_epoch_survives_a_clean_restart() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let (manager, log) = open(&io, &cfg).await;
        for epoch in [3, 3, 3, 3, 3, 3, 6, 6, 6, 6] {
            append_in(&log, epoch).await;
        }
        // Truncated to a segment's base: the active segment is empty, a clean restart scans
        // nothing, and only the cache knows the epoch.
        let last = *log.segment_base_offsets().last().expect("segments");
        log.truncate_to(last).await.expect("truncate");
        assert_eq!(log.leader_epoch(), LeaderEpoch(6));
        let latest = epochs(&log).last().map(|e| e.0);
        manager.shutdown().await;
        let (_manager, log) = open(&io, &cfg).await;
        assert_eq!(
            Some(log.leader_epoch().0),
            latest,
            "the latest epoch the log holds"
        );
    });
}
