//! Transactions in the partition log: ongoing transactions and the last stable offset,
//! end-transaction markers, the aborted-transaction index, and their recovery (clean and
//! unclean) and truncation.

use bytes::Bytes;

use crate::model::{Offset, ProducerId};

use super::config::{Acks, LogConfig};
use super::error::StorageError;
use super::fault_io::FaultyIo;
use super::file_names::{offset_file_path, TXN_INDEX_SUFFIX};
use super::log::PartitionLog;
use super::producer_state::TxnMarker;
use super::test_util::*;
use super::txn_index::{AbortedTxn, ABORTED_TXN_ENTRY_BYTES};

/// A transactional batch of `count` records from producer (`pid`, `epoch`) at `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    let mut bytes = encode_batch(&vec![1_000; count], 20, (pid, epoch, seq));
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | (1 << 4);
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

async fn marker(
    log: &PartitionLog,
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Result<Offset, StorageError> {
    let place = log.reserve_append();
    let marker = TxnMarker {
        commit,
        coordinator_epoch,
    };
    log.append_marker(
        place,
        ProducerId(pid),
        epoch,
        marker,
        opts(Acks::All, 5),
        None,
    )
    .await
    .map(|r| r.base_offset)
}

fn txn_index_path(base: i64) -> std::path::PathBuf {
    offset_file_path(&data_dir().join("t-0"), Offset(base), TXN_INDEX_SUFFIX)
}

/// Non-transactional 0..2, producer 7's transaction from 2 (two batches), producer 8's from 4.
async fn two_transactions(log: &PartitionLog) {
    log.append(batch_at(1, 2, 10), opts(Acks::All, 0))
        .await
        .expect("plain");
    log.append(txn_batch(7, 0, 0, 1), opts(Acks::All, 0))
        .await
        .expect("txn 7");
    log.append(txn_batch(7, 0, 1, 1), opts(Acks::All, 0))
        .await
        .expect("txn 7 again");
    log.append(txn_batch(8, 0, 0, 2), opts(Acks::All, 0))
        .await
        .expect("txn 8");
}

#[test]
fn lso_holds_at_ongoing_transactions_and_markers_complete_them() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        two_transactions(&log).await;
        assert_eq!(log.high_watermark(), Offset(6));
        assert_eq!(log.last_stable_offset(), Offset(2));
        assert_eq!(
            log.producer_state(ProducerId(7))
                .and_then(|e| e.current_txn_first_offset),
            Some(2)
        );

        let abort = marker(&log, 7, 0, false, 3).await.expect("abort 7");
        assert_eq!(abort, Offset(6));
        // Producer 8's transaction (from 4) still holds the LSO.
        assert_eq!(log.last_stable_offset(), Offset(4));
        let entry = AbortedTxn {
            producer_id: 7,
            first_offset: 2,
            last_offset: 6,
            last_stable_offset: 4,
        };
        assert_eq!(log.aborted_transactions(Offset(0), Offset(7)), vec![entry]);
        assert!(log.aborted_transactions(Offset(7), Offset(20)).is_empty());

        let commit = marker(&log, 8, 0, true, 3).await.expect("commit 8");
        assert_eq!(commit, Offset(7));
        assert_eq!(log.last_stable_offset(), Offset(8));
        assert_eq!(
            log.all_aborted_transactions(),
            vec![entry],
            "a commit is not indexed"
        );

        // Fencing: an older coordinator epoch, an older producer epoch.
        assert!(matches!(
            marker(&log, 7, 0, true, 2).await,
            Err(StorageError::CoordinatorFenced {
                current: 3,
                received: 2,
                ..
            })
        ));
        log.append(txn_batch(9, 2, 0, 1), opts(Acks::All, 0))
            .await
            .expect("txn 9");
        assert!(matches!(
            marker(&log, 9, 1, false, 0).await,
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
        // A non-transactional batch while the producer's transaction is ongoing.
        let plain = Bytes::from(encode_batch(&[1], 10, (9, 2, 1)));
        assert!(matches!(
            log.append(plain, opts(Acks::All, 0)).await,
            Err(StorageError::InvalidTxnState { .. })
        ));

        manager.shutdown().await;
    });
}

#[test]
fn read_committed_slices_stop_at_the_lso_with_the_aborted_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let manager =
            super::manager::LogManager::new(crate::model::ShardId(0), broker_config(&path));
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        two_transactions(&log).await;
        marker(&log, 7, 0, false, 0).await.expect("abort 7");
        let entry = log.all_aborted_transactions()[0];
        assert_eq!(log.last_stable_offset(), Offset(4));
        let slice = log
            .read_slice_committed(Offset(0), 1 << 20, true)
            .await
            .expect("read");
        assert_eq!(slice.aborted, vec![entry]);
        assert_eq!(slice.last_stable_offset, Offset(4));
        let all = log
            .read_slice(Offset(0), 1 << 20, true)
            .await
            .expect("read");
        assert!(slice.len < all.len, "stops before producer 8's transaction");
        let bytes = std::fs::read(path.join("t-0/00000000000000000000.log")).expect("log");
        let served = &bytes[slice.position as usize..slice.position as usize + slice.len];
        let batches = super::batch::split_batches(served).expect("whole batches");
        let last = batches.last().map(|(_, h)| h.last_offset());
        assert_eq!(last, Some(3), "every batch below the LSO, none above");
        let empty = log
            .read_slice_committed(Offset(4), 1 << 20, true)
            .await
            .expect("read");
        assert!(
            empty.file.is_none(),
            "between the LSO and the high watermark: nothing yet"
        );
        marker(&log, 8, 0, true, 0).await.expect("commit 8");
        let rest = log
            .read_slice_committed(Offset(4), 1 << 20, true)
            .await
            .expect("read");
        assert!(rest.file.is_some());
        let bytes = std::fs::read(path.join("t-0/00000000000000000000.log")).expect("log");
        let served = &bytes[rest.position as usize..rest.position as usize + rest.len];
        let bases: Vec<i64> = super::batch::split_batches(served)
            .expect("whole batches")
            .iter()
            .map(|(_, h)| h.base_offset)
            .collect();
        assert_eq!(bases, vec![4, 6, 7], "producer 8's batch and both markers");
        assert_eq!(rest.aborted, vec![entry], "its marker (6) is in the range");
        manager.shutdown().await;
    });
}

#[test]
fn clean_reopen_loads_the_txn_index_and_unclean_rebuilds_it() {
    run(|| async {
        let io = FaultyIo::new();
        let cfg = LogConfig {
            flush_messages: Some(1_000_000),
            ..small_config()
        };
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("open");
        two_transactions(&log).await;
        marker(&log, 7, 0, false, 1).await.expect("abort 7");
        manager.shutdown().await;
        let bytes = io.file_bytes(&txn_index_path(0)).expect("txnindex written");
        assert_eq!(bytes.len(), ABORTED_TXN_ENTRY_BYTES);

        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg.clone())
            .await
            .expect("clean reopen");
        assert_eq!(log.all_aborted_transactions().len(), 1);
        assert_eq!(
            log.last_stable_offset(),
            Offset(4),
            "producer 8 still ongoing"
        );
        // More after the clean open, then a crash after an fsync: recovery replays from the
        // recovery point, markers included.
        log.append(txn_batch(10, 0, 0, 1), opts(Acks::All, 0))
            .await
            .expect("txn 10");
        marker(&log, 10, 0, false, 1).await.expect("abort 10");
        marker(&log, 8, 0, true, 1).await.expect("commit 8");
        log.flush(true).await.expect("fsync");
        io.crash();
        drop(log);
        io.set_file_bytes(&txn_index_path(0), Vec::new());
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), cfg)
            .await
            .expect("recover");
        let aborted: Vec<i64> = log
            .all_aborted_transactions()
            .iter()
            .map(|t| t.producer_id)
            .collect();
        assert!(
            aborted.contains(&10),
            "rebuilt from the scanned marker: {aborted:?}"
        );
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert_eq!(
            log.producer_state(ProducerId(8))
                .and_then(|e| e.current_txn_first_offset),
            None
        );
        manager.shutdown().await;
    });
}

#[test]
fn truncation_below_a_marker_reopens_the_transaction() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        two_transactions(&log).await;
        let abort = marker(&log, 7, 0, false, 1).await.expect("abort 7");
        marker(&log, 8, 0, false, 1).await.expect("abort 8");
        assert_eq!(log.all_aborted_transactions().len(), 2);
        assert_eq!(log.last_stable_offset(), Offset(8));
        log.truncate_to(abort).await.expect("truncate");
        assert_eq!(log.log_end_offset(), abort);
        assert!(log.all_aborted_transactions().is_empty());
        assert_eq!(
            log.producer_state(ProducerId(7))
                .and_then(|e| e.current_txn_first_offset),
            Some(2)
        );
        assert_eq!(log.last_stable_offset(), Offset(2));
        let bytes = io.file_bytes(&txn_index_path(0)).unwrap_or_default();
        assert!(bytes.is_empty(), "the index file holds no removed entry");
        // The same marker again completes it again.
        assert_eq!(
            marker(&log, 7, 0, false, 1).await.expect("abort again"),
            abort
        );
        assert_eq!(log.last_stable_offset(), Offset(4));
        manager.shutdown().await;
    });
}

#[test]
fn retention_and_delete_records_stop_at_the_first_unstable_offset() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        two_transactions(&log).await;
        assert!(matches!(
            log.delete_records_before(Offset(3)).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            log.delete_records_before(Offset(2))
                .await
                .expect("to the LSO"),
            Offset(2)
        );
        manager.shutdown().await;
    });
}

#[test]
fn a_damaged_snapshot_rebuilds_transactions_from_the_whole_log() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        two_transactions(&log).await;
        marker(&log, 7, 0, false, 1).await.expect("abort 7");
        // Enough after it for index entries: a clean open scans only the tail.
        for i in 0..30 {
            log.append(batch_at(i, 1, 100), opts(Acks::All, 0))
                .await
                .expect("plain");
        }
        manager.shutdown().await;
        let snapshot = offset_file_path(&data_dir().join("t-0"), Offset(37), ".snapshot");
        assert!(
            io.exists(&snapshot),
            "the clean close wrote the snapshot at the log end"
        );
        io.set_file_bytes(&snapshot, vec![0xff; 8]);
        io.set_file_bytes(&txn_index_path(0), Vec::new());
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("reopen");
        assert_eq!(
            log.last_stable_offset(),
            Offset(4),
            "producer 8's transaction found"
        );
        assert_eq!(
            log.producer_state(ProducerId(8))
                .and_then(|e| e.current_txn_first_offset),
            Some(4)
        );
        assert_eq!(
            log.all_aborted_transactions(),
            vec![AbortedTxn {
                producer_id: 7,
                first_offset: 2,
                last_offset: 6,
                last_stable_offset: 4,
            }]
        );
        manager.shutdown().await;
    });
}

#[test]
fn the_aborted_list_stops_at_the_first_indexed_batch_after_the_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let manager =
            super::manager::LogManager::new(crate::model::ShardId(0), broker_config(&path));
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        log.append(txn_batch(7, 0, 0, 1), opts(Acks::All, 0))
            .await
            .expect("txn 7");
        marker(&log, 7, 0, false, 0).await.expect("abort 7");
        for i in 0..20 {
            log.append(batch_at(i, 1, 100), opts(Acks::All, 0))
                .await
                .expect("plain");
        }
        log.append(txn_batch(8, 0, 0, 1), opts(Acks::All, 0))
            .await
            .expect("txn 8");
        marker(&log, 8, 0, false, 0).await.expect("abort 8");
        assert_eq!(log.all_aborted_transactions().len(), 2);
        // One batch from 0: producer 8's transaction (at 22) is far past the range.
        let slice = log
            .read_slice_committed(Offset(0), 1, true)
            .await
            .expect("read");
        let aborted: Vec<i64> = slice.aborted.iter().map(|t| t.producer_id).collect();
        assert_eq!(aborted, vec![7]);
        let all = log
            .read_slice_committed(Offset(0), 1 << 20, true)
            .await
            .expect("read");
        assert_eq!(all.aborted.len(), 2);
        manager.shutdown().await;
    });
}

#[test]
fn a_follower_builds_the_same_transaction_state_from_the_leaders_bytes() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let leader = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open leader");
        two_transactions(&leader).await;
        marker(&leader, 7, 0, false, 2).await.expect("abort 7");
        let follower_tp = crate::model::TopicPartition::new("t", 1);
        let follower = manager
            .open_partition(&follower_tp, uuid::Uuid::nil(), small_config())
            .await
            .expect("open follower");
        let read = leader.read(Offset(0), 1 << 20, true).await.expect("read");
        follower
            .append_as_follower(read.records, 0)
            .await
            .expect("follower append");
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
        assert_eq!(
            follower.all_aborted_transactions(),
            leader.all_aborted_transactions()
        );
        assert_eq!(follower.producers(), leader.producers());
        manager.shutdown().await;
    });
}

#[test]
fn a_reopened_replicated_log_counts_its_last_markers_only_below_the_high_watermark() {
    run(|| async {
        let io = FaultyIo::new();
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("open");
        two_transactions(&log).await;
        marker(&log, 7, 0, true, 0).await.expect("commit 7");
        marker(&log, 8, 0, true, 0).await.expect("commit 8");
        manager.shutdown().await;
        let manager = fake_manager(&io, &data_dir());
        let log = manager
            .open_partition(&tp(), uuid::Uuid::nil(), small_config())
            .await
            .expect("reopen");
        log.start_replicated_from_log_start();
        assert_eq!(log.last_stable_offset(), Offset(0));
        // Both last markers (6, 7) hold the LSO until the high watermark passes them.
        assert_eq!(
            log.unreplicated_txns
                .borrow()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![(2, 6), (4, 7)]
        );
        log.set_hw_bound(8);
        assert_eq!(log.high_watermark(), Offset(8));
        assert_eq!(log.last_stable_offset(), Offset(8));
        assert!(log.unreplicated_txns.borrow().is_empty());
        manager.shutdown().await;
    });
}
