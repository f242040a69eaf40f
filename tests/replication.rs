//! Replicated partitions across real `sluice` processes on 127.0.0.1: followers fetch from
//! leaders, acks=all waits for every in-sync replica, a killed leader is replaced by an ISR
//! member holding every acknowledged record, a returning broker catches up and rejoins the
//! ISR, a paused follower leaves it, and min.insync.replicas refuses writes it cannot keep.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{metadata, Cluster, PartitionView, View, QUORUM_TIMEOUT};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Short sessions and lag bound, so fencing and ISR changes are seen within seconds.
const FAST: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "3000"),
    ("replica.fetch.backoff.ms", "200"),
];

fn view(c: &Cluster, id: i32) -> Option<View> {
    let port = c.ports.iter().find(|p| p.node_id == id)?.kafka_port;
    metadata(port).ok()
}

fn partition(c: &Cluster, via: i32, topic: &str, p: usize) -> Option<PartitionView> {
    view(c, via)?.topics.get(topic)?.get(p).cloned()
}

async fn create(c: &Cluster, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    c.create_replicated(topic, partitions, configs).await
}

fn producer(c: &Cluster, idempotent: bool) -> FutureProducer {
    c.client_config()
        .set("acks", "all")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "100")
        .create()
        .expect("producer")
}

/// Sends `values` to partition `p` one at a time; returns each acknowledged offset.
async fn send_all(
    c: &Cluster,
    producer: &FutureProducer,
    topic: &str,
    p: i32,
    values: &[String],
) -> Vec<i64> {
    let mut offsets = Vec::new();
    for v in values {
        let delivery = producer
            .send(
                FutureRecord::to(topic).key("k").payload(v).partition(p),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {v}: {e}\n{}", c.tails()));
        offsets.push(delivery.offset);
    }
    offsets
}

/// Every record of partition `p` from the beginning, up to `expect` records (or the timeout).
fn read_all(c: &Cluster, topic: &str, p: i32, expect: usize) -> BTreeMap<i64, String> {
    let reader: BaseConsumer = c
        .client_config()
        .set("group.id", "replication-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
        .expect("tpl");
    reader.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    while out.len() < expect && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(500)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.insert(m.offset(), v);
        }
    }
    out
}

fn check_all_there(c: &Cluster, topic: &str, acked: &[(i64, String)]) {
    let got = read_all(c, topic, 0, acked.len());
    for (offset, value) in acked {
        assert_eq!(
            got.get(offset),
            Some(value),
            "acknowledged record at {offset} missing or different (read {} records)\n{}",
            got.len(),
            c.tails()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn acknowledged_records_survive_kill_9_of_leaders_and_returning_brokers_rejoin_the_isr() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    c.wait_ready_for_groups();
    let topic = "replicated";
    create(&c, topic, 1, &[("min.insync.replicas", "2")]).await;
    let producer = producer(&c, true);
    let mut acked: Vec<(i64, String)> = Vec::new();
    let batch: Vec<String> = (0..200).map(|i| format!("a{i}")).collect();
    let offsets = send_all(&c, &producer, topic, 0, &batch).await;
    acked.extend(offsets.into_iter().zip(batch));

    // kill -9 of the leader: an ISR member takes over with every acknowledged record.
    let first = partition(&c, 1, topic, 0).expect("partition").leader;
    c.node(first).kill9();
    let survivor = (1..=3).find(|id| *id != first).unwrap_or(1);
    c.wait("a new leader from the ISR", || {
        partition(&c, survivor, topic, 0).is_some_and(|p| p.leader >= 0 && p.leader != first)
    });
    check_all_there(&c, topic, &acked);
    // With two of three in the ISR, min.insync.replicas=2 still takes acks=all writes.
    let batch: Vec<String> = (0..100).map(|i| format!("b{i}")).collect();
    let offsets = send_all(&c, &producer, topic, 0, &batch).await;
    acked.extend(offsets.into_iter().zip(batch));

    // The killed broker comes back, catches up and rejoins the ISR.
    c.node(first).start_again();
    c.wait("the returning broker back in the ISR", || {
        partition(&c, survivor, topic, 0)
            .is_some_and(|p| p.isr.contains(&first) && p.isr.len() == 3)
    });
    // kill -9 of the second leader: the returned broker may lead now; nothing is lost.
    let second = partition(&c, survivor, topic, 0).expect("partition").leader;
    c.node(second).kill9();
    let third = (1..=3).find(|id| *id != second).unwrap_or(1);
    c.wait("a third leader", || {
        partition(&c, third, topic, 0).is_some_and(|p| p.leader >= 0 && p.leader != second)
    });
    let batch: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let offsets = send_all(&c, &producer, topic, 0, &batch).await;
    acked.extend(offsets.into_iter().zip(batch));
    check_all_there(&c, topic, &acked);
    // Offsets are dense and in order: an idempotent producer's retries left no duplicate.
    let got = read_all(&c, topic, 0, acked.len());
    let values: Vec<&String> = got.values().collect();
    let want: Vec<&String> = acked.iter().map(|(_, v)| v).collect();
    assert_eq!(
        values, want,
        "the log holds exactly the acknowledged records, in order"
    );
    c.node(second).start_again();
    for node in &mut c.nodes {
        node.stop();
    }
}

/// Waits until every replica's log of the partition is byte for byte the same (followers
/// store the leader's batches as they are).
fn wait_identical_logs(c: &Cluster, topic: &str, p: i32) {
    c.wait(
        &format!("identical logs of {topic}-{p} on every node"),
        || {
            let logs: Vec<Vec<u8>> = (1..=3).map(|id| c.log_bytes(id, topic, p)).collect();
            !logs[0].is_empty() && logs.iter().all(|l| *l == logs[0])
        },
    );
}

fn signal(c: &mut Cluster, id: i32, sig: &str) {
    let pid = c.node(id).pid();
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_paused_follower_leaves_the_isr_and_rejoins_with_an_identical_log() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    c.wait_ready_for_groups();
    let topic = "paused";
    create(&c, topic, 1, &[("min.insync.replicas", "2")]).await;
    let producer = producer(&c, true);
    let mut acked: Vec<(i64, String)> = Vec::new();
    let batch: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    acked.extend(
        send_all(&c, &producer, topic, 0, &batch)
            .await
            .into_iter()
            .zip(batch),
    );
    let p = partition(&c, 1, topic, 0).expect("partition");
    let paused = p
        .replicas
        .iter()
        .copied()
        .find(|r| *r != p.leader)
        .expect("a follower");
    let other = (1..=3).find(|id| *id != paused).unwrap_or(1);
    signal(&mut c, paused, "-STOP");
    // acks=all keeps working once the paused follower is out of the ISR (2 >= min.insync).
    let batch: Vec<String> = (0..50).map(|i| format!("b{i}")).collect();
    acked.extend(
        send_all(&c, &producer, topic, 0, &batch)
            .await
            .into_iter()
            .zip(batch),
    );
    c.wait("the paused follower out of the ISR", || {
        partition(&c, other, topic, 0).is_some_and(|p| !p.isr.contains(&paused))
    });
    signal(&mut c, paused, "-CONT");
    c.wait("the paused follower back in the ISR", || {
        partition(&c, other, topic, 0).is_some_and(|p| p.isr.contains(&paused) && p.isr.len() == 3)
    });
    wait_identical_logs(&c, topic, 0);
    check_all_there(&c, topic, &acked);
    for node in &mut c.nodes {
        node.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn min_insync_replicas_refuses_acks_all_but_not_acks_1_and_a_diverged_tail_is_truncated() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    c.wait_ready_for_groups();
    let topic = "strict";
    create(&c, topic, 1, &[("min.insync.replicas", "3")]).await;
    let first = producer(&c, false);
    let batch: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    send_all(&c, &first, topic, 0, &batch).await;
    let p = partition(&c, 1, topic, 0).expect("partition");
    let follower = p
        .replicas
        .iter()
        .copied()
        .find(|r| *r != p.leader)
        .expect("a follower");
    let leader = p.leader;
    c.node(follower).kill9();
    c.wait("the killed follower out of the ISR", || {
        partition(&c, leader, topic, 0).is_some_and(|p| p.isr.len() == 2)
    });
    // acks=all: the ISR (2) is below min.insync.replicas (3): NOT_ENOUGH_REPLICAS, no retry.
    let strict: FutureProducer = c
        .client_config()
        .set("acks", "all")
        .set("retries", "0")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let refused = strict
        .send(
            FutureRecord::to(topic)
                .key("k")
                .payload("refused")
                .partition(0),
            Duration::from_secs(30),
        )
        .await;
    match refused {
        Err((e, _)) => assert_eq!(
            common::error_code(&e),
            Some(rdkafka::types::RDKafkaErrorCode::NotEnoughReplicas),
            "{e}"
        ),
        Ok(d) => panic!(
            "acks=all accepted at offset {} with the ISR below min.insync",
            d.offset
        ),
    }
    // acks=1 is not bound by min.insync.replicas.
    let relaxed: FutureProducer = c
        .client_config()
        .set("acks", "1")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    relaxed
        .send(
            FutureRecord::to(topic).key("k").payload("one").partition(0),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("acks=1: {e}\n{}", c.tails()));
    // The follower comes back, truncates nothing it should keep, catches up and rejoins.
    c.node(follower).start_again();
    c.wait("the follower back in the ISR", || {
        partition(&c, leader, topic, 0).is_some_and(|p| p.isr.len() == 3)
    });
    wait_identical_logs(&c, topic, 0);

    // A diverged tail: both followers paused, the leader takes acks=1 records they never
    // copy, then dies; a follower leads a new epoch with other records; the old leader
    // returns, truncates its tail and ends with the new leader's log, byte for byte.
    let others: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
    for id in &others {
        signal(&mut c, *id, "-STOP");
    }
    for i in 0..5 {
        relaxed
            .send(
                FutureRecord::to(topic)
                    .key("k")
                    .payload(&format!("lost{i}"))
                    .partition(0),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("acks=1 to the lone leader: {e}\n{}", c.tails()));
    }
    c.node(leader).kill9();
    for id in &others {
        signal(&mut c, *id, "-CONT");
    }
    c.wait("a new leader among the followers", || {
        partition(&c, others[0], topic, 0).is_some_and(|p| p.leader >= 0 && p.leader != leader)
    });
    // acks=1: the topic's min.insync.replicas (3) is above the two brokers now up.
    let batch: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    send_all(&c, &relaxed, topic, 0, &batch).await;
    c.node(leader).start_again();
    wait_identical_logs(&c, topic, 0);
    let reader: BaseConsumer = c.client_config().create().expect("reader");
    let (_, end) = reader
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .expect("watermarks");
    let got = read_all(&c, topic, 0, end as usize);
    // A fetch answer already on its way when the followers were paused may have carried the
    // first of those records (then kept, by the new leader too); the rest existed on the old
    // leader alone and are gone from it as from every replica.
    let lost = got.values().filter(|v| v.starts_with("lost")).count();
    assert!(
        lost < 5,
        "the old leader's unreplicated tail must be truncated: {got:?}"
    );
    for i in 0..10 {
        assert!(
            got.values().any(|v| *v == format!("n{i}")),
            "n{i} of the new leader's epoch missing: {got:?}"
        );
    }
    for node in &mut c.nodes {
        node.stop();
    }
}

/// One Fetch v11 of `topic`-0 from offset 0 with the consumer's `rack`, sent to `port`:
/// (error code, preferred read replica, bytes of records).
fn fetch_with_rack(port: u16, topic_name: &str, rack: &str) -> (i16, i32, usize) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_rack_id(StrBytes::from_string(rack.to_string()))
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic_name.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse =
        common::wire::call(&format!("127.0.0.1:{port}"), ApiKey::Fetch, 11, &req).expect("fetch");
    let p = &resp.responses[0].partitions[0];
    (
        p.error_code,
        p.preferred_read_replica.0,
        p.records.as_ref().map_or(0, |r| r.len()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_consumer_reads_from_the_follower_in_its_rack() {
    let _serial = serial();
    let mut extra = FAST.to_vec();
    extra.push(("broker.rack", "rack-{node}"));
    extra.push((
        "replica.selector.class",
        "org.apache.kafka.common.replica.RackAwareReplicaSelector",
    ));
    let mut c = Cluster::start(3, &extra);
    c.wait_ready_for_groups();
    let topic = "racks";
    create(&c, topic, 1, &[]).await;
    let producer = producer(&c, true);
    let batch: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let acked: Vec<(i64, String)> = send_all(&c, &producer, topic, 0, &batch)
        .await
        .into_iter()
        .zip(batch)
        .collect();
    let p = partition(&c, 1, topic, 0).expect("partition");
    let follower = p
        .replicas
        .iter()
        .copied()
        .find(|r| *r != p.leader)
        .expect("a follower");
    let port = |id: i32| {
        c.ports
            .iter()
            .find(|x| x.node_id == id)
            .expect("node")
            .kafka_port
    };
    // The leader names the follower in the consumer's rack and sends no records itself.
    let (code, preferred, bytes) =
        fetch_with_rack(port(p.leader), topic, &format!("rack-{follower}"));
    assert_eq!(
        (code, preferred, bytes),
        (0, follower, 0),
        "leader's answer"
    );
    // A consumer in the leader's own rack stays on the leader.
    let (code, preferred, bytes) =
        fetch_with_rack(port(p.leader), topic, &format!("rack-{}", p.leader));
    assert_eq!(
        (code, preferred),
        (0, -1),
        "leader's answer to its own rack"
    );
    assert!(bytes > 0);
    // The follower serves the consumer, up to its high watermark.
    c.wait("the follower to serve the records", || {
        let (code, _, bytes) = fetch_with_rack(port(follower), topic, &format!("rack-{follower}"));
        code == 0 && bytes > 0
    });
    // librdkafka with client.rack follows the preferred replica and reads everything.
    let reader: BaseConsumer = c
        .client_config()
        .set("group.id", "rack-reader")
        .set("client.rack", format!("rack-{follower}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    reader.assign(&tpl).expect("assign");
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    while got.len() < acked.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(500)) {
            got.insert(
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
            );
        }
    }
    let want: BTreeMap<i64, String> = acked.into_iter().collect();
    assert_eq!(got, want, "records read with client.rack\n{}", c.tails());
    for node in &mut c.nodes {
        node.stop();
    }
}

/// The coordinator of `group`, as the node on `port` names it (FindCoordinator v3).
fn coordinator(port: u16, group: &str) -> Option<i32> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let resp: FindCoordinatorResponse = common::wire::call(
        &format!("127.0.0.1:{port}"),
        ApiKey::FindCoordinator,
        3,
        &req,
    )
    .ok()?;
    (resp.error_code == 0 && resp.node_id.0 >= 0).then_some(resp.node_id.0)
}

/// Polls `consumer` until `n` records came or the timeout; returns (offset, value) in order.
fn consume_n(c: &Cluster, consumer: &BaseConsumer, n: usize) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {n}\n{}",
            out.len(),
            c.tails()
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
            )),
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn the_group_coordinator_fails_over_and_committed_offsets_survive() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    c.wait_ready_for_groups();
    let topic = "grouped";
    create(&c, topic, 1, &[("min.insync.replicas", "2")]).await;
    let producer = producer(&c, true);
    let batch: Vec<String> = (0..60).map(|i| format!("g{i}")).collect();
    send_all(&c, &producer, topic, 0, &batch).await;
    let group = "failover-group";
    let consumer: BaseConsumer = c
        .client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let first = consume_n(&c, &consumer, 20);
    assert_eq!(first[0], (0, "g0".to_string()));
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit: {e}\n{}", c.tails()));
    // kill -9 of the group's coordinator (the leader of its __consumer_offsets partition).
    let port0 = c.ports[0].kafka_port;
    let old = coordinator(port0, group).expect("a coordinator");
    c.node(old).kill9();
    let survivor = (1..=3).find(|id| *id != old).unwrap_or(1);
    let survivor_port = c
        .ports
        .iter()
        .find(|p| p.node_id == survivor)
        .expect("node")
        .kafka_port;
    c.wait("a new coordinator", || {
        coordinator(survivor_port, group).is_some_and(|n| n != old)
    });
    // The running member goes on: it reads on and commits through the new coordinator.
    let second = consume_n(&c, &consumer, 20);
    assert!(
        second.iter().all(|(o, _)| *o >= 20),
        "no record before the commit again: {second:?}"
    );
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    loop {
        match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("commit after the failover: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("commit after the failover: {e}\n{}", c.tails()),
        }
    }
    let committed_at = second.last().map(|(o, _)| o + 1).expect("records");
    drop(consumer);
    c.node(old).start_again();
    // A new member of the group resumes exactly at the committed offset.
    let resumed: BaseConsumer = c
        .client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    resumed.subscribe(&[topic]).expect("subscribe");
    let third = consume_n(&c, &resumed, 1);
    assert_eq!(
        third[0].0,
        committed_at,
        "the group resumed at {} instead of its committed offset {committed_at}\n{}",
        third[0].0,
        c.tails()
    );
    for node in &mut c.nodes {
        node.stop();
    }
}
