//! Transactions on the partition side, against the real binary over raw Kafka requests (no
//! transaction coordinator needed): transactional batches from a producer id of
//! InitProducerId, WriteTxnMarkers to commit or abort, then Fetch read_committed and
//! read_uncommitted (LSO, aborted_transactions, records), ListOffsets by isolation level,
//! DescribeProducers, fencing errors; kill -9 mid-transaction and after an abort.

mod common;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeProducersRequest, DescribeProducersResponse, FetchRequest,
    FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName, TransactionalId,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use common::wire::call;
use common::{unique_topic, Broker, BrokerOpts};

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A v2 batch of `n` records from (`pid`, `epoch`) at sequence `seq`, transactional or not.
fn batch(pid: i64, epoch: i16, seq: i32, n: i32, transactional: bool) -> Bytes {
    // Now: a marker (stamped now) must not roll the segment by segment.ms.
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut records = Vec::new();
    for i in 0..n {
        let mut body = vec![0u8];
        put_varint(&mut body, i64::from(i));
        put_varint(&mut body, i64::from(i));
        put_varint(&mut body, -1);
        let value = format!("value-{pid}-{seq}-{i}");
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value.as_bytes());
        put_varint(&mut body, 0);
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let attributes: i16 = if transactional { 1 << 4 } else { 0 };
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&(ts + i64::from(n) - 1).to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// (base offset, last offset, producer id, control) of each whole batch in `records`.
fn batches(records: &[u8]) -> Vec<(i64, i64, i64, bool)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 61 <= records.len() {
        let r = &records[at..];
        let i64_at = |p: usize| i64::from_be_bytes(r[p..p + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(r[8..12].try_into().expect("4 bytes")) as usize;
        if at + 12 + len > records.len() {
            break;
        }
        let delta = i32::from_be_bytes(r[23..27].try_into().expect("4 bytes"));
        let attributes = i16::from_be_bytes([r[21], r[22]]);
        out.push((
            i64_at(0),
            i64_at(0) + i64::from(delta),
            i64_at(43),
            attributes & (1 << 5) != 0,
        ));
        at += 12 + len;
    }
    out
}

struct Client<'a> {
    addr: &'a str,
    topic: String,
}

impl Client<'_> {
    fn init_producer_id(&self) -> (i64, i16) {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp: InitProducerIdResponse =
            call(self.addr, ApiKey::InitProducerId, 4, &req).expect("InitProducerId");
        assert_eq!(resp.error_code, NONE);
        (resp.producer_id.0, resp.producer_epoch)
    }

    /// Produce (v7, acks=all) of one batch; returns (error code, base offset).
    fn produce(&self, txn_id: Option<&str>, records: Bytes) -> (i16, i64) {
        let req = ProduceRequest::default()
            .with_transactional_id(txn_id.map(|t| TransactionalId(StrBytes::from_string(t.into()))))
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let resp: ProduceResponse = call(self.addr, ApiKey::Produce, 7, &req).expect("Produce");
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// WriteTxnMarkers v1 for partition 0; returns its error code.
    fn marker(&self, pid: i64, epoch: i16, commit: bool, coordinator_epoch: i32) -> i16 {
        self.marker_on(&self.topic, pid, epoch, commit, coordinator_epoch)
    }

    fn marker_on(&self, topic: &str, pid: i64, epoch: i16, commit: bool, ce: i32) -> i16 {
        let req =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(ce)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partition_indexes(vec![0])])]);
        let resp: WriteTxnMarkersResponse =
            call(self.addr, ApiKey::WriteTxnMarkers, 1, &req).expect("WriteTxnMarkers");
        assert_eq!(resp.markers[0].producer_id.0, pid);
        resp.markers[0].topics[0].partitions[0].error_code
    }

    /// Fetch v11 of partition 0 from `offset`: (error, HW, LSO, aborted (pid, first), batches).
    #[allow(clippy::type_complexity)]
    fn fetch(
        &self,
        offset: i64,
        isolation: i8,
    ) -> (i16, i64, i64, Vec<(i64, i64)>, Vec<(i64, i64, i64, bool)>) {
        self.fetch_waiting(offset, isolation, 0)
    }

    /// [`fetch`](Self::fetch) as a long poll: min_bytes 1, up to `wait_ms`.
    #[allow(clippy::type_complexity)]
    fn fetch_waiting(
        &self,
        offset: i64,
        isolation: i8,
        wait_ms: i32,
    ) -> (i16, i64, i64, Vec<(i64, i64)>, Vec<(i64, i64, i64, bool)>) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(i32::from(wait_ms > 0))
            .with_max_bytes(1 << 20)
            .with_isolation_level(isolation)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp: FetchResponse = call(self.addr, ApiKey::Fetch, 11, &req).expect("Fetch");
        let p = &resp.responses[0].partitions[0];
        let aborted = p
            .aborted_transactions
            .as_ref()
            .map(|a| {
                a.iter()
                    .map(|t| (t.producer_id.0, t.first_offset))
                    .collect()
            })
            .unwrap_or_default();
        let records = p.records.as_ref().map(|r| batches(r)).unwrap_or_default();
        (
            p.error_code,
            p.high_watermark,
            p.last_stable_offset,
            aborted,
            records,
        )
    }

    /// ListOffsets v5 latest (-1) of partition 0 at `isolation`.
    fn latest(&self, isolation: i8) -> i64 {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let resp: ListOffsetsResponse =
            call(self.addr, ApiKey::ListOffsets, 5, &req).expect("ListOffsets");
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, NONE);
        p.offset
    }

    /// DescribeProducers v0 of partition 0: (pid, epoch, coordinator epoch, txn start).
    fn producers(&self) -> Vec<(i64, i32, i32, i64)> {
        let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
            .with_partition_indexes(vec![0])]);
        let resp: DescribeProducersResponse =
            call(self.addr, ApiKey::DescribeProducers, 0, &req).expect("DescribeProducers");
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, NONE);
        let mut out: Vec<_> = p
            .active_producers
            .iter()
            .map(|s| {
                (
                    s.producer_id.0,
                    s.producer_epoch,
                    s.coordinator_epoch,
                    s.current_txn_start_offset,
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// One shard; KIP-890 verification off (Kafka's `transaction.partition.verification.enable`):
/// these tests play the coordinator themselves with raw WriteTxnMarkers, so there is no
/// coordinator state for the partition leader to verify against.
fn one_core() -> BrokerOpts {
    BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    }
    .with("transaction.partition.verification.enable", "false")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_abort_commit_and_read_committed() {
    let broker = Broker::start_with(one_core());
    let topic = unique_topic("txn-log");
    broker.create_topic(&topic, 1, &[]).await;
    let c = Client {
        addr: broker.bootstrap(),
        topic,
    };
    let (pid, epoch) = c.init_producer_id();
    let (other, other_epoch) = c.init_producer_id();
    let tx = Some("tx-log-1");

    // A transactional batch needs the request's transactional id (Kafka's answer).
    assert_eq!(
        c.produce(None, batch(pid, epoch, 0, 1, true)).0,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    assert_eq!(
        c.produce(None, batch(other, other_epoch, 0, 2, false)),
        (NONE, 0)
    );
    // Transaction 1 (3 records) from offset 2, aborted.
    assert_eq!(c.produce(tx, batch(pid, epoch, 0, 3, true)), (NONE, 2));
    let (e, hw, lso, aborted, read) = c.fetch(0, READ_COMMITTED);
    assert_eq!(
        (e, hw, lso),
        (NONE, 5, 2),
        "the ongoing transaction holds the LSO"
    );
    assert!(aborted.is_empty());
    assert_eq!(
        read.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![0],
        "only below the LSO"
    );
    assert_eq!(
        c.fetch(0, READ_UNCOMMITTED).4.len(),
        2,
        "read_uncommitted sees it"
    );
    assert_eq!(c.latest(READ_COMMITTED), 2);
    assert_eq!(c.latest(READ_UNCOMMITTED), 5);
    assert!(c.producers().contains(&(pid, i32::from(epoch), -1, 2)));

    assert_eq!(c.marker(pid, epoch, false, 0), NONE);
    let (_, hw, lso, aborted, read) = c.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso), (6, 6));
    assert_eq!(
        aborted,
        vec![(pid, 2)],
        "the client drops the aborted records itself"
    );
    assert_eq!(
        read.last().map(|b| (b.0, b.3)),
        Some((5, true)),
        "the abort marker"
    );

    // Transaction 2 (2 records) from offset 6, committed.
    assert_eq!(c.produce(tx, batch(pid, epoch, 3, 2, true)), (NONE, 6));
    assert_eq!(c.fetch(6, READ_COMMITTED).2, 6);
    assert_eq!(c.marker(pid, epoch, true, 0), NONE);
    let (_, hw, lso, aborted, read) = c.fetch(6, READ_COMMITTED);
    assert_eq!((hw, lso), (9, 9));
    assert!(aborted.is_empty(), "nothing aborted in [6, 9)");
    assert_eq!(read.iter().map(|b| b.0).collect::<Vec<_>>(), vec![6, 8]);
    assert_eq!(c.latest(READ_COMMITTED), 9);
    assert!(c.producers().contains(&(pid, i32::from(epoch), 0, -1)));

    // Transaction 3, committed again.
    assert_eq!(c.produce(tx, batch(pid, epoch, 5, 1, true)), (NONE, 9));
    assert_eq!(c.marker(pid, epoch, true, 1), NONE);
    assert_eq!(c.fetch(0, READ_COMMITTED).2, 11);

    // Fencing: an older coordinator epoch, an older producer epoch, an unknown partition.
    assert_eq!(
        c.marker(pid, epoch, true, 0),
        TRANSACTION_COORDINATOR_FENCED
    );
    assert_eq!(c.produce(tx, batch(pid, epoch + 1, 0, 1, true)), (NONE, 11));
    assert_eq!(c.marker(pid, epoch, false, 1), INVALID_PRODUCER_EPOCH);
    assert_eq!(
        c.marker_on("no-such-topic", pid, epoch + 1, false, 1),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(c.marker(pid, epoch + 1, false, 1), NONE);
    let (_, hw, lso, aborted, _) = c.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso), (13, 13));
    assert_eq!(aborted, vec![(pid, 2), (pid, 11)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_transaction_and_after_an_abort_recovers_lso_and_txnindex() {
    let mut broker = Broker::start_with(one_core());
    let topic = unique_topic("txn-crash");
    broker.create_topic(&topic, 1, &[]).await;
    let addr = broker.bootstrap().to_string();
    let c = Client {
        addr: &addr,
        topic: topic.clone(),
    };
    let (a, a_epoch) = c.init_producer_id();
    let (b, b_epoch) = c.init_producer_id();
    assert_eq!(
        c.produce(Some("tx-a"), batch(a, a_epoch, 0, 2, true)),
        (NONE, 0)
    );
    assert_eq!(
        c.produce(Some("tx-b"), batch(b, b_epoch, 0, 3, true)),
        (NONE, 2)
    );
    assert_eq!(c.marker(a, a_epoch, false, 0), NONE);
    // a aborted (marker at 5), b ongoing from 2.
    let before = c.fetch(0, READ_COMMITTED);
    assert_eq!((before.1, before.2), (6, 2));

    broker.kill9();
    broker.start_again();
    let addr = broker.bootstrap().to_string();
    let c = Client { addr: &addr, topic };
    common::wait_until("partition served again", Duration::from_secs(30), || {
        std::panic::catch_unwind(|| c.fetch(0, READ_UNCOMMITTED).0 == NONE).unwrap_or(false)
    });
    let (_, hw, lso, aborted, _) = c.fetch(0, READ_COMMITTED);
    assert_eq!(
        (hw, lso),
        (6, 2),
        "the open transaction still holds the LSO"
    );
    assert_eq!(
        aborted,
        vec![(a, 0)],
        "a's aborted records start below the LSO"
    );
    assert!(c.producers().contains(&(b, i32::from(b_epoch), -1, 2)));
    assert_eq!(c.marker(b, b_epoch, true, 0), NONE);
    let (_, hw, lso, aborted, read) = c.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso), (7, 7));
    assert_eq!(
        aborted,
        vec![(a, 0)],
        "recovered from the .txnindex or rebuilt"
    );
    assert_eq!(read.len(), 4, "two data batches and two markers");

    // A clean restart keeps the index too.
    broker.restart();
    let addr = broker.bootstrap().to_string();
    let c = Client {
        addr: &addr,
        topic: c.topic.clone(),
    };
    common::wait_until("partition served again", Duration::from_secs(30), || {
        std::panic::catch_unwind(|| c.fetch(0, READ_UNCOMMITTED).0 == NONE).unwrap_or(false)
    });
    let (_, hw, lso, aborted, _) = c.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso, aborted), (7, 7, vec![(a, 0)]));
    let dir = broker.data_dir().join(format!("{}-0", c.topic));
    let index = std::fs::read(dir.join("00000000000000000000.txnindex")).expect(".txnindex");
    assert_eq!(
        index.len(),
        34,
        "one aborted transaction, Kafka's entry size"
    );
}

/// KIP-890 part 1 with the real coordinator: a transactional batch for a partition the
/// producer's transaction does not include is refused with INVALID_TXN_STATE (no hanging
/// transaction is opened), and accepted once AddPartitionsToTxn added it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_verifies_a_transactions_first_batch_with_the_coordinator() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
    const INVALID_TXN_STATE: i16 = 48;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 2,
            ..BrokerOpts::default()
        }
        .with("transaction.state.log.num.partitions", "2"),
    );
    let topic = unique_topic("txn-verify");
    broker.create_topic(&topic, 1, &[]).await;
    let c = Client {
        addr: broker.bootstrap(),
        topic: topic.clone(),
    };
    let txn_id = "txn-verify-1";
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(txn_id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (pid, epoch) = loop {
        let resp: InitProducerIdResponse =
            call(c.addr, ApiKey::InitProducerId, 4, &init).expect("InitProducerId");
        if resp.error_code == COORDINATOR_NOT_AVAILABLE && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        assert_eq!(resp.error_code, NONE, "{}", broker.stderr_tail());
        break (resp.producer_id.0, resp.producer_epoch);
    };
    // Not added to the transaction: refused, and nothing was appended.
    assert_eq!(
        c.produce(Some(txn_id), batch(pid, epoch, 0, 2, true)).0,
        INVALID_TXN_STATE
    );
    let (_, hw, lso, _, _) = c.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso), (0, 0));
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(txn_id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(vec![0])]);
    let resp: AddPartitionsToTxnResponse =
        call(c.addr, ApiKey::AddPartitionsToTxn, 3, &add).expect("AddPartitionsToTxn");
    let code = resp.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, NONE);
    assert_eq!(
        c.produce(Some(txn_id), batch(pid, epoch, 0, 2, true)),
        (NONE, 0)
    );
    let (_, hw, lso, _, _) = c.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso), (2, 0), "the verified transaction is open");
}

/// Short sessions and lag bound, so a killed leader is replaced within seconds.
const FAST: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "3000"),
    ("replica.fetch.backoff.ms", "200"),
    // These tests play the coordinator with raw WriteTxnMarkers (see `one_core`).
    ("transaction.partition.verification.enable", "false"),
];

fn leader_of(c: &common::cluster::Cluster, via: i32, topic: &str) -> Option<(i32, usize)> {
    let port = c.ports.iter().find(|p| p.node_id == via)?.kafka_port;
    let view = common::cluster::metadata(port).ok()?;
    let p = view.topics.get(topic)?.first()?.clone();
    (p.leader >= 0).then_some((p.leader, p.isr.len()))
}

fn kafka_addr(c: &common::cluster::Cluster, id: i32) -> String {
    let port = c
        .ports
        .iter()
        .find(|p| p.node_id == id)
        .map_or(0, |p| p.kafka_port);
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_keeps_the_markers_the_aborted_list_and_the_lso() {
    let mut c = common::cluster::Cluster::start(3, FAST);
    c.wait_ready_for_groups();
    let topic = "txn-failover";
    let port = c.ports[0].kafka_port;
    c.wait("the topic created", || {
        common::cluster::create_topic(port, topic, 1, 3).is_ok_and(|(e, _)| e == NONE || e == 36)
    });
    for id in 1..=3 {
        c.wait(&format!("a full ISR seen by node {id}"), || {
            leader_of(&c, id, topic).is_some_and(|(_, isr)| isr == 3)
        });
    }
    let (leader, _) = leader_of(&c, 1, topic).expect("a leader");
    let addr = kafka_addr(&c, leader);
    let client = Client {
        addr: &addr,
        topic: topic.to_string(),
    };
    let (a, a_epoch) = client.init_producer_id();
    let (b, b_epoch) = client.init_producer_id();
    // The leader opens its log shortly after Metadata shows it.
    c.wait("the first transactional produce", || {
        client.produce(Some("a"), batch(a, a_epoch, 0, 2, true)) == (NONE, 0)
    });
    assert_eq!(
        client.produce(Some("b"), batch(b, b_epoch, 0, 3, true)),
        (NONE, 2)
    );
    assert_eq!(client.marker(a, a_epoch, false, 0), NONE);
    assert_eq!(
        client.produce(Some("a"), batch(a, a_epoch, 2, 1, true)),
        (NONE, 6)
    );
    assert_eq!(client.marker(b, b_epoch, true, 0), NONE);
    // a's second transaction (from 6) is open; its first (0..5) aborted; b committed at 7.
    let (_, hw, lso, aborted, _) = client.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso, aborted), (8, 6, vec![(a, 0)]));

    c.node(leader).kill9();
    let survivor = (1..=3).find(|id| *id != leader).unwrap_or(1);
    c.wait("a new leader from the ISR", || {
        leader_of(&c, survivor, topic).is_some_and(|(l, _)| l != leader)
    });
    let (new_leader, _) = leader_of(&c, survivor, topic).expect("a new leader");
    let addr = kafka_addr(&c, new_leader);
    let client = Client {
        addr: &addr,
        topic: topic.to_string(),
    };
    c.wait("the new leader's high watermark back at 8", || {
        std::panic::catch_unwind(|| client.fetch(0, READ_UNCOMMITTED).1 == 8).unwrap_or(false)
    });
    let (_, hw, lso, aborted, read) = client.fetch(0, READ_COMMITTED);
    assert_eq!(
        (hw, lso),
        (8, 6),
        "a's open transaction holds the LSO on the new leader"
    );
    assert_eq!(
        aborted,
        vec![(a, 0)],
        "the aborted list survived the failover"
    );
    assert_eq!(
        read.iter().filter(|b| b.3).map(|b| b.0).collect::<Vec<_>>(),
        vec![5],
        "the abort marker replicated; below the LSO only"
    );
    assert!(client.producers().contains(&(a, i32::from(a_epoch), 0, 6)));
    // The new leader completes a's open transaction.
    assert_eq!(client.marker(a, a_epoch, false, 0), NONE);
    let (_, hw, lso, aborted, _) = client.fetch(0, READ_COMMITTED);
    assert_eq!((hw, lso), (9, 9));
    assert_eq!(aborted, vec![(a, 0), (a, 6)]);
}

/// Values polled from `consumer` until `want` arrived, then for `settle` more (nothing else
/// may come); panics on a consumer error.
fn poll_values(
    consumer: &rdkafka::consumer::BaseConsumer,
    want: usize,
    settle: Duration,
) -> Vec<String> {
    use rdkafka::Message;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut settled_at: Option<std::time::Instant> = None;
    loop {
        let now = std::time::Instant::now();
        if out.len() >= want {
            let at = *settled_at.get_or_insert(now + settle);
            if now >= at {
                return out;
            }
        } else if now >= deadline {
            panic!("only {out:?} of {want} values within 30 s");
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into())
            }
            Some(Err(e)) => panic!("consumer error after {out:?}: {e}"),
        }
    }
}

fn assigned_consumer(
    broker: &Broker,
    topic: &str,
    isolation: &str,
) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let consumer = broker.consumer(&[("isolation.level", isolation)]);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Offset(0))
        .expect("offset");
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// librdkafka as the judge of the aborted list: its read_committed consumer drops the aborted
/// transaction's records, stops at the open one, and gets it once it is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_read_committed_drops_aborted_records_and_waits_at_the_lso() {
    let broker = Broker::start_with(one_core());
    let topic = unique_topic("txn-rdkafka");
    broker.create_topic(&topic, 1, &[]).await;
    let c = Client {
        addr: broker.bootstrap(),
        topic: topic.clone(),
    };
    let (plain, plain_epoch) = c.init_producer_id();
    let (a, a_epoch) = c.init_producer_id();
    let (b, b_epoch) = c.init_producer_id();
    assert_eq!(
        c.produce(None, batch(plain, plain_epoch, 0, 2, false)).0,
        NONE
    );
    assert_eq!(c.produce(Some("a"), batch(a, a_epoch, 0, 3, true)).0, NONE);
    assert_eq!(c.produce(Some("b"), batch(b, b_epoch, 0, 2, true)).0, NONE);
    assert_eq!(c.marker(a, a_epoch, false, 0), NONE);
    assert_eq!(c.marker(b, b_epoch, true, 0), NONE);
    // a's second transaction stays open for now.
    assert_eq!(c.produce(Some("a"), batch(a, a_epoch, 3, 1, true)).0, NONE);

    let committed = assigned_consumer(&broker, &topic, "read_committed");
    let got = poll_values(&committed, 4, Duration::from_secs(1));
    let expected: Vec<String> = [(plain, 0, 0), (plain, 0, 1), (b, 0, 0), (b, 0, 1)]
        .iter()
        .map(|(p, s, i)| format!("value-{p}-{s}-{i}"))
        .collect();
    assert_eq!(
        got, expected,
        "no aborted record, nothing of the open transaction"
    );
    let uncommitted = assigned_consumer(&broker, &topic, "read_uncommitted");
    assert_eq!(
        poll_values(&uncommitted, 8, Duration::from_millis(500)).len(),
        8
    );

    // The committed consumer is parked at the LSO; the commit lets it through.
    assert_eq!(c.marker(a, a_epoch, true, 0), NONE);
    let got = poll_values(&committed, 1, Duration::from_millis(500));
    assert_eq!(got, vec![format!("value-{a}-3-0")]);
}

/// A read_committed long poll parked at the LSO wakes when a marker moves the LSO (not at its
/// max wait), while the high watermark alone moving (more of the open transaction) does not
/// answer it with data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_committed_long_poll_wakes_when_the_lso_advances() {
    let broker = Broker::start_with(one_core());
    let topic = unique_topic("txn-poll");
    broker.create_topic(&topic, 1, &[]).await;
    let addr = broker.bootstrap().to_string();
    let c = Client {
        addr: &addr,
        topic: topic.clone(),
    };
    let (a, a_epoch) = c.init_producer_id();
    assert_eq!(
        c.produce(Some("a"), batch(a, a_epoch, 0, 2, true)),
        (NONE, 0)
    );
    let poll_addr = addr.clone();
    let poll_topic = topic.clone();
    let poll = std::thread::spawn(move || {
        let c = Client {
            addr: &poll_addr,
            topic: poll_topic,
        };
        let started = std::time::Instant::now();
        let answer = c.fetch_waiting(0, READ_COMMITTED, 20_000);
        (started.elapsed(), answer)
    });
    std::thread::sleep(Duration::from_millis(700));
    // More of the open transaction: the high watermark moves, the LSO does not.
    assert_eq!(
        c.produce(Some("a"), batch(a, a_epoch, 2, 1, true)),
        (NONE, 2)
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(!poll.is_finished(), "answered before the LSO moved");
    assert_eq!(c.marker(a, a_epoch, true, 0), NONE);
    let (elapsed, (e, hw, lso, aborted, read)) = poll.join().expect("poll thread");
    assert!(
        elapsed < Duration::from_secs(10),
        "woke at the commit: {elapsed:?}"
    );
    assert_eq!((e, hw, lso), (NONE, 4, 4));
    assert!(aborted.is_empty());
    assert_eq!(read.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 2, 3]);
}
