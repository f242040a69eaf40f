//! Pending transactional offsets over a real offsets log: TxnOffsetCommit's batch, markers
//! (appended by the coordinator, or by someone else and then applied), replay after a restart
//! of the coordinator, and snapshots that keep pending offsets.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    GroupId, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::coordinator::GroupCoordinator;
use super::records::{encode_marker_batch, ControlType};
use super::request::{GroupRequest, GroupResponse};
use super::OFFSETS_TOPIC;
use crate::config::BrokerConfig;
use crate::model::{Offset, ShardId, TopicPartition};
use crate::storage::{Acks, AppendOptions, LogConfig, LogManager, PartitionLog};

const GROUP: &str = "txn-group";
const PRODUCER: i64 = 1000;

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .ring_depth(128)
        .spawn(f)
        .expect("executor starts");
    handle.join().expect("test body does not panic");
}

struct Fixture {
    logs: Rc<LogManager>,
    log: Rc<PartitionLog>,
    broker: Arc<BrokerConfig>,
}

impl Fixture {
    /// One offsets partition (every group lives in partition 0); `segment_bytes` is
    /// `offsets.topic.segment.bytes`, the snapshot threshold.
    async fn open(dir: &std::path::Path, snapshot_bytes: u64) -> Fixture {
        let overrides = vec![
            ("offsets.topic.num.partitions".to_string(), "1".to_string()),
            (
                "offsets.topic.segment.bytes".to_string(),
                snapshot_bytes.to_string(),
            ),
            // No transaction coordinator here: the group side alone (KIP-890 off).
            (
                "transaction.partition.verification.enable".to_string(),
                "false".to_string(),
            ),
        ];
        let broker = Arc::new(BrokerConfig::build(None, &[], &overrides, Some(1)).expect("config"));
        let logs = LogManager::new(ShardId(0), crate::storage::StorageBrokerConfig::new(dir));
        logs.start_background();
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            segment_index_bytes: 4096,
            index_interval_bytes: 512,
            file_delete_delay_ms: 0,
            ..LogConfig::default()
        };
        let log = logs
            .open_partition(
                &TopicPartition::new(OFFSETS_TOPIC, 0),
                uuid::Uuid::new_v4(),
                cfg,
            )
            .await
            .expect("open the offsets partition");
        Fixture { logs, log, broker }
    }

    /// A coordinator that has not loaded anything yet (as after a restart).
    async fn coordinator(&self) -> Rc<GroupCoordinator> {
        let c = GroupCoordinator::new(ShardId(0), self.broker.clone(), self.logs.clone());
        c.ensure_loaded(0).await.expect("replay");
        c
    }

    /// A marker appended by someone else (the WriteTxnMarkers handler's path).
    async fn append_marker(&self, producer_id: i64, control: ControlType) {
        let batch = encode_marker_batch(producer_id, 0, 0, control, 1).expect("marker");
        let opts = AppendOptions {
            acks: Acks::All,
            leader_epoch: self.log.leader_epoch(),
            now_ms: 1,
        };
        self.log.append(batch, opts).await.expect("marker append");
    }
}

fn txn_request(
    producer_id: i64,
    epoch: i16,
    offsets: &[(&str, i32, i64)],
) -> TxnOffsetCommitRequest {
    let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let p = TxnOffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(StrBytes::from_static_str("m")));
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![p]),
            ),
        }
    }
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_topics(topics)
}

async fn txn_commit(c: &Rc<GroupCoordinator>, req: TxnOffsetCommitRequest) -> Vec<i16> {
    match c.handle(GroupRequest::TxnOffsetCommit(4, req)).await {
        GroupResponse::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// OffsetFetch v8 of `topic`/`partition`: (error code, committed offset).
async fn fetch(
    c: &Rc<GroupCoordinator>,
    topic: &str,
    partition: i32,
    require_stable: bool,
) -> (i16, i64) {
    let g = OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_epoch(-1)
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes(vec![partition])]));
    match c
        .handle(GroupRequest::OffsetFetch(8, g, require_stable))
        .await
    {
        GroupResponse::OffsetFetch(r) => {
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.committed_offset)
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

const UNSTABLE: i16 = 88;

#[test]
fn pending_offsets_commit_abort_and_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let f = Fixture::open(&path, 100 << 20).await;
        let c = f.coordinator().await;
        // Producer A commits t-0 and t-1 in its transaction; producer B t-2.
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER, 0, &[("t", 0, 10), ("t", 1, 11)])).await,
            vec![0, 0]
        );
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER + 1, 0, &[("t", 2, 12)])).await,
            vec![0]
        );
        // Invisible until committed; unstable for require_stable.
        assert_eq!(fetch(&c, "t", 0, false).await, (0, -1));
        assert_eq!(fetch(&c, "t", 0, true).await, (UNSTABLE, -1));
        // One transactional batch per request, with the request's producer.
        let first = f.log.read(Offset(0), 1 << 20, true).await.expect("read");
        let header = crate::storage::batch::parse_header(&first.records).expect("header");
        assert!(header.is_transactional());
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.record_count
            ),
            (PRODUCER, 0, 2)
        );

        // A zombie (older epoch) of an open transaction is refused.
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER, 1, &[("t", 0, 13)])).await,
            vec![0]
        );
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER, 0, &[("t", 0, 14)])).await,
            vec![ResponseError::InvalidProducerEpoch.code()]
        );

        // Restart before any marker: still pending.
        let c = f.coordinator().await;
        assert_eq!(fetch(&c, "t", 0, false).await, (0, -1));
        assert_eq!(fetch(&c, "t", 1, true).await, (UNSTABLE, -1));

        // A's commit marker, appended by someone else, then applied by the hook.
        f.append_marker(PRODUCER, ControlType::Commit).await;
        assert_eq!(c.marker_written(0, PRODUCER, true), 2);
        assert_eq!(fetch(&c, "t", 0, true).await, (0, 13));
        assert_eq!(fetch(&c, "t", 1, true).await, (0, 11));
        // B aborts, through the coordinator's own marker path.
        assert_eq!(
            c.complete_transaction(0, PRODUCER + 1, 0, 0, false)
                .await
                .expect("marker"),
            0
        );
        assert_eq!(fetch(&c, "t", 2, true).await, (0, -1));

        // Replay reads the markers: the same state.
        let c = f.coordinator().await;
        assert_eq!(fetch(&c, "t", 0, true).await, (0, 13));
        assert_eq!(fetch(&c, "t", 1, true).await, (0, 11));
        assert_eq!(fetch(&c, "t", 2, true).await, (0, -1));
        f.logs.shutdown().await;
    });
}

#[test]
fn a_later_plain_commit_wins_over_a_transaction_committed_after_it() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::OffsetCommitRequest;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let f = Fixture::open(&path, 100 << 20).await;
        let c = f.coordinator().await;
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER, 0, &[("t", 0, 10), ("t", 1, 11)])).await,
            vec![0, 0]
        );
        let plain = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(50)])]);
        assert!(matches!(
            c.handle(GroupRequest::OffsetCommit(8, plain)).await,
            GroupResponse::OffsetCommit(_)
        ));
        assert_eq!(fetch(&c, "t", 0, false).await, (0, 50));
        // Still unstable: the transaction is open.
        assert_eq!(fetch(&c, "t", 0, true).await, (UNSTABLE, -1));
        // Through the shard message WriteTxnMarkers sends (txn_hook::complete_transaction).
        let marker = GroupRequest::CompleteTransaction {
            partition: 0,
            producer_id: PRODUCER,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: true,
        };
        match c.handle(marker).await {
            GroupResponse::CompleteTransaction(done) => assert_eq!(done.expect("marker"), 1),
            other => panic!("unexpected answer {other:?}"),
        }
        assert_eq!(fetch(&c, "t", 0, true).await, (0, 50));
        assert_eq!(fetch(&c, "t", 1, true).await, (0, 11));
        let c = f.coordinator().await;
        assert_eq!(fetch(&c, "t", 0, true).await, (0, 50));
        assert_eq!(fetch(&c, "t", 1, true).await, (0, 11));
        f.logs.shutdown().await;
    });
}

#[test]
fn snapshots_keep_pending_offsets_and_their_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        // A snapshot once 1 KiB was appended since the last one (and twice its size).
        let f = Fixture::open(&path, 1024).await;
        let c = f.coordinator().await;
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER, 0, &[("t", 0, 10)])).await,
            vec![0]
        );
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER + 1, 0, &[("t", 1, 20)])).await,
            vec![0]
        );
        // Enough plain commits of other partitions for several snapshots.
        for i in 0..60 {
            assert_eq!(
                txn_commit(&c, txn_request(PRODUCER + 2 + i, 0, &[("u", 0, i)])).await,
                vec![0]
            );
            c.complete_transaction(0, PRODUCER + 2 + i, 0, 0, true)
                .await
                .expect("marker");
        }
        assert!(
            f.log.log_start_offset() > Offset(0),
            "snapshots let the old records go"
        );
        assert_eq!(fetch(&c, "u", 0, true).await, (0, 59));
        // The open transactions' batches are gone from the log; replay has them from the
        // snapshot.
        let c = f.coordinator().await;
        assert_eq!(fetch(&c, "t", 0, true).await, (UNSTABLE, -1));
        assert_eq!(fetch(&c, "t", 1, false).await, (0, -1));
        assert_eq!(fetch(&c, "u", 0, true).await, (0, 59));
        f.append_marker(PRODUCER, ControlType::Commit).await;
        f.append_marker(PRODUCER + 1, ControlType::Abort).await;
        // Replay of the markers (the hook not called: a restart right after the appends).
        let c = f.coordinator().await;
        assert_eq!(fetch(&c, "t", 0, true).await, (0, 10));
        assert_eq!(fetch(&c, "t", 1, true).await, (0, -1));
        f.logs.shutdown().await;
    });
}

/// A crash after a snapshot was appended but before the records it supersedes were dropped:
/// replay reads the old records and then the snapshot; the state is the same.
#[test]
fn a_snapshot_replayed_after_the_records_it_restates_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let f = Fixture::open(&path, 100 << 20).await;
        let c = f.coordinator().await;
        // t-0: a transaction's offset superseded by one written later and committed first;
        // t-1: pending only;
        // t-2: two transactions, the later-written one (PRODUCER + 2) to win.
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER, 0, &[("t", 0, 10), ("t", 1, 11)])).await,
            vec![0, 0]
        );
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER + 1, 0, &[("t", 2, 100)])).await,
            vec![0]
        );
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER + 2, 0, &[("t", 2, 200)])).await,
            vec![0]
        );
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER + 9, 0, &[("t", 0, 50)])).await,
            vec![0]
        );
        c.complete_transaction(0, PRODUCER + 9, 0, 0, true)
            .await
            .expect("marker");
        let records = c.live_records(0);
        let batch = super::snapshot::encode_snapshot(records, 1).expect("snapshot batch");
        let opts = AppendOptions {
            acks: Acks::All,
            leader_epoch: f.log.leader_epoch(),
            now_ms: 1,
        };
        f.log.append(batch, opts).await.expect("snapshot append");
        let c = f.coordinator().await;
        assert_eq!(fetch(&c, "t", 0, false).await, (0, 50));
        assert_eq!(fetch(&c, "t", 0, true).await, (UNSTABLE, -1));
        assert_eq!(fetch(&c, "t", 1, true).await, (UNSTABLE, -1));
        assert_eq!(
            c.complete_transaction(0, PRODUCER + 2, 0, 0, true)
                .await
                .expect("marker"),
            1
        );
        assert_eq!(
            c.complete_transaction(0, PRODUCER + 1, 0, 0, true)
                .await
                .expect("marker"),
            0
        );
        assert_eq!(
            c.complete_transaction(0, PRODUCER, 0, 0, true)
                .await
                .expect("marker"),
            1
        );
        assert_eq!(
            fetch(&c, "t", 0, true).await,
            (0, 50),
            "superseded by the later transaction"
        );
        assert_eq!(fetch(&c, "t", 1, true).await, (0, 11));
        assert_eq!(
            fetch(&c, "t", 2, true).await,
            (0, 200),
            "the later-written transaction"
        );
        f.logs.shutdown().await;
    });
}

/// A marker placed in the log before a snapshot but applied (by the hook) after the snapshot read
/// the state: the snapshot is written again, so replay does not bring the ended transaction
/// back as pending.
#[test]
fn a_marker_applied_during_a_snapshot_does_not_leave_the_transaction_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let f = Rc::new(Fixture::open(&path, 100 << 20).await);
        let c = f.coordinator().await;
        assert_eq!(
            txn_commit(&c, txn_request(PRODUCER, 0, &[("t", 0, 10)])).await,
            vec![0]
        );
        let marker = {
            let f = f.clone();
            glommio::spawn_local(
                async move { f.append_marker(PRODUCER, ControlType::Commit).await },
            )
        };
        futures_lite::future::yield_now().await;
        let snapshot = {
            let c = c.clone();
            glommio::spawn_local(async move { c.snapshot(0).await })
        };
        futures_lite::future::yield_now().await;
        marker.await;
        assert_eq!(c.marker_written(0, PRODUCER, true), 1);
        snapshot.await.expect("snapshot");
        assert_eq!(fetch(&c, "t", 0, true).await, (0, 10));
        let c = f.coordinator().await;
        assert_eq!(
            fetch(&c, "t", 0, true).await,
            (0, 10),
            "replay: committed, not pending"
        );
        f.logs.shutdown().await;
    });
}

/// A snapshot of several batches: replay takes it whole; and torn after its first batch (the
/// rest never written), the open transactions are all still there.
#[test]
fn a_snapshot_in_several_batches_keeps_pending_offsets_even_torn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    run(move || async move {
        let f = Fixture::open(&path, 100 << 20).await;
        let c = f.coordinator().await;
        for p in 0..20 {
            assert_eq!(
                txn_commit(
                    &c,
                    txn_request(PRODUCER + i64::from(p), 0, &[("t", p, 100 + i64::from(p))])
                )
                .await,
                vec![0]
            );
            assert_eq!(
                txn_commit(
                    &c,
                    txn_request(PRODUCER + 100, 0, &[("u", p, i64::from(p))])
                )
                .await,
                vec![0]
            );
        }
        c.complete_transaction(0, PRODUCER + 100, 0, 0, true)
            .await
            .expect("marker");
        let records = c.live_records(0);
        let snapshot = super::snapshot::encode_snapshot_in(records, 1, 600).expect("snapshot");
        let batches = crate::storage::batch::split_batches(&snapshot).expect("whole batches");
        assert!(batches.len() > 3, "several batches: {}", batches.len());
        let opts = || AppendOptions {
            acks: Acks::All,
            leader_epoch: f.log.leader_epoch(),
            now_ms: 1,
        };
        // Torn: only the first batch (all the pending offsets) reached the log.
        let (at, first) = batches[0];
        let first_batch = snapshot.slice(at..at + first.size_bytes());
        f.log
            .append(first_batch, opts())
            .await
            .expect("first batch");
        let c = f.coordinator().await;
        for p in 0..20 {
            assert_eq!(fetch(&c, "t", p, true).await, (UNSTABLE, -1));
            assert_eq!(fetch(&c, "u", p, true).await, (0, i64::from(p)));
        }
        // The whole snapshot, and the log before it let go.
        let base = f
            .log
            .append(snapshot, opts())
            .await
            .expect("snapshot")
            .base_offset;
        f.log.delete_records_before(base).await.expect("delete");
        let c = f.coordinator().await;
        for p in 0..20 {
            assert_eq!(fetch(&c, "t", p, true).await, (UNSTABLE, -1));
            assert_eq!(fetch(&c, "u", p, true).await, (0, i64::from(p)));
        }
        for p in 0..20 {
            let commit = p % 2 == 0;
            c.complete_transaction(0, PRODUCER + i64::from(p), 0, 0, commit)
                .await
                .expect("marker");
        }
        let c = f.coordinator().await;
        for p in 0..20 {
            let expected = if p % 2 == 0 { 100 + i64::from(p) } else { -1 };
            assert_eq!(fetch(&c, "t", p, true).await, (0, expected));
        }
        f.logs.shutdown().await;
    });
}
