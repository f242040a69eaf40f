//! A Sluice cluster of several real processes on 127.0.0.1: the metadata quorum forms and
//! agrees, changes go through any node, a killed node (the Raft leader once) is fenced out of
//! Metadata and comes back with every change it missed, a partition leader's kill -9 moves
//! leadership to an in-sync follower with every acknowledged record, a minority refuses changes but still
//! answers Metadata, a full kill -9 loses nothing committed, and a node holding another
//! cluster's data is refused.
//!
//! Each node: one core, Kafka's KRaft server.properties (tests/common/cluster.rs), a short
//! broker session so that fencing is seen within seconds.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{
    create_topic, metadata, Cluster, View, FAST_SESSIONS as FAST, QUORUM_TIMEOUT,
};

/// One cluster at a time: each test runs 3-5 brokers, and the suite shares 2 CPUs with
/// whatever else runs; several clusters at once would make elections and sessions a race
/// against the scheduler rather than a test of the quorum.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kafka's error codes a refused change may carry while there is no quorum (all retriable).
const RETRIABLE_NO_QUORUM: &[i16] = &[7 /* REQUEST_TIMED_OUT */, 41 /* NOT_CONTROLLER */];

fn view(c: &Cluster, id: i32) -> Option<View> {
    let port = c.ports.iter().find(|p| p.node_id == id)?.kafka_port;
    metadata(port).ok()
}

fn port(c: &Cluster, id: i32) -> u16 {
    c.ports
        .iter()
        .find(|p| p.node_id == id)
        .map(|p| p.kafka_port)
        .unwrap_or_else(|| panic!("no node {id}"))
}

/// Waits until every node in `ids` answers Metadata with exactly `brokers`, one controller
/// among them, and the same cluster id; returns that controller.
fn wait_agreement(c: &Cluster, ids: &[i32], brokers: &[i32]) -> i32 {
    let want: BTreeSet<i32> = brokers.iter().copied().collect();
    let mut controller = -1;
    c.wait(
        &format!("nodes {ids:?} to agree on brokers {brokers:?}"),
        || {
            let views: Vec<Option<View>> = ids.iter().map(|id| view(c, *id)).collect();
            let Some(Some(first)) = views.first().cloned() else {
                return false;
            };
            let agree = views.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    v.brokers.keys().copied().collect::<BTreeSet<_>>() == want
                        && v.controller == first.controller
                        && v.cluster_id == first.cluster_id
                })
            });
            controller = first.controller;
            let ok = agree && want.contains(&first.controller) && first.cluster_id.is_some();
            if !ok {
                let seen: Vec<_> = views
                    .iter()
                    .map(|v| {
                        v.as_ref()
                            .map(|v| (v.controller, v.brokers.keys().copied().collect::<Vec<_>>()))
                    })
                    .collect();
                eprintln!("nodes {ids:?} not yet agreed: {seen:?}");
            }
            ok
        },
    );
    controller
}

/// DescribeQuorum v2 for `__cluster_metadata-0`: (error code, leader id, voter ids).
fn describe_quorum(kafka_port: u16) -> std::io::Result<(i16, i32, Vec<i32>)> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{
        ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let resp: DescribeQuorumResponse = common::wire::call(
        &format!("127.0.0.1:{kafka_port}"),
        ApiKey::DescribeQuorum,
        2,
        &req,
    )?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| std::io::Error::other("no partition in DescribeQuorum"))?;
    let mut voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
    voters.sort();
    Ok((p.error_code, p.leader_id.0, voters))
}

/// CreateTopics through node `via`, retried while the quorum elects; panics unless it succeeds.
fn create_through(c: &Cluster, via: i32, name: &str, partitions: i32, rf: i16) {
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    loop {
        match create_topic(port(c, via), name, partitions, rf) {
            Ok((0, _)) => return,
            Ok((code, msg)) if RETRIABLE_NO_QUORUM.contains(&code) && Instant::now() < deadline => {
                eprintln!("create {name} via {via}: {code} {msg:?}; retrying");
            }
            Err(e) if Instant::now() < deadline => eprintln!("create {name} via {via}: {e}"),
            other => panic!("create {name} via node {via}: {other:?}\n{}", c.tails()),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until node `id` shows `topic` with `partitions` partitions, each with a live leader.
fn wait_topic(c: &Cluster, id: i32, topic: &str, partitions: usize) {
    c.wait(&format!("node {id} to show {topic}"), || {
        view(c, id).is_some_and(|v| {
            v.topics.get(topic).is_some_and(|p| {
                p.len() == partitions && p.iter().all(|p| p.error == 0 && p.leader >= 0)
            })
        })
    });
}

#[test]
fn three_nodes_agree_and_survive_a_kill_9_of_each_node_in_turn() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    let all = [1, 2, 3];
    let controller = wait_agreement(&c, &all, &all);
    // Topic creation through every node; replicas on all three, leaders spread over them.
    for via in all {
        create_through(&c, via, &format!("through-{via}"), 3, 3);
    }
    for id in all {
        for via in all {
            wait_topic(&c, id, &format!("through-{via}"), 3);
        }
    }
    let v = view(&c, 1).expect("metadata");
    let t = &v.topics["through-1"];
    let leaders: BTreeSet<i32> = t.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3, "leaders not spread: {t:?}");
    for p in t {
        assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{p:?}");
        // Every replica starts in the ISR (all hold the same empty log), the leader first.
        assert_eq!(p.isr, p.replicas, "{p:?}");
        assert_eq!(p.leader, p.replicas[0], "{p:?}");
    }

    // DescribeQuorum, from any node: the leader, its epoch, and the three voters.
    for id in all {
        let q = describe_quorum(port(&c, id)).expect("DescribeQuorum");
        assert_eq!(q.0, 0, "error code");
        assert!(all.contains(&q.1), "leader {} not a voter", q.1);
        assert_eq!(q.2, vec![1, 2, 3], "voters");
    }

    // Kill -9 each node in turn, the Raft leader first.
    let mut order = vec![controller];
    order.extend(all.iter().copied().filter(|id| *id != controller));
    for killed in order {
        c.node(killed).kill9();
        let survivors: Vec<i32> = all.iter().copied().filter(|id| *id != killed).collect();
        // Changes keep going through the survivors.
        let name = format!("while-{killed}-down");
        create_through(&c, survivors[0], &name, 2, 2);
        // The killed node is fenced out of Metadata, and leads nothing any more.
        wait_agreement(&c, &survivors, &survivors);
        c.wait(&format!("leadership to leave node {killed}"), || {
            view(&c, survivors[1]).is_some_and(|v| {
                let stuck: Vec<_> = v
                    .topics
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t, p)))
                    // Kafka keeps the last ISR member when it is fenced: such a partition
                    // is offline (no leader) until that broker returns.
                    .filter(|(_, p)| {
                        p.leader == killed || (p.isr.contains(&killed) && p.isr != [killed])
                    })
                    .collect();
                if !stuck.is_empty() {
                    eprintln!("still on node {killed}: {stuck:?}");
                }
                stuck.is_empty()
            })
        });
        // Back after a restart, with every change it missed.
        c.node(killed).start_again();
        wait_agreement(&c, &all, &all);
        wait_topic(&c, killed, &name, 2);
        for via in all {
            wait_topic(&c, killed, &format!("through-{via}"), 3);
        }
    }
    for node in &mut c.nodes {
        node.stop();
    }
}

#[test]
fn a_minority_refuses_changes_and_still_answers_metadata() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    wait_agreement(&c, &[1, 2, 3], &[1, 2, 3]);
    create_through(&c, 1, "before", 1, 3);
    wait_topic(&c, 3, "before", 1);
    c.node(1).kill9();
    c.node(2).kill9();
    // Node 3 alone cannot commit: the change is refused with a retriable error, in bounded time.
    let started = Instant::now();
    let (code, msg) = create_topic(port(&c, 3), "refused", 1, 1).expect("an answer");
    assert!(
        RETRIABLE_NO_QUORUM.contains(&code),
        "want a retriable refusal, got {code} {msg:?}\n{}",
        c.tails()
    );
    assert!(
        started.elapsed() < QUORUM_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    // It still serves Metadata from its image.
    let v = view(&c, 3).expect("metadata from the survivor");
    assert!(v.topics.contains_key("before"), "{v:?}");
    assert!(!v.topics.contains_key("refused"), "{v:?}");
    // Once a majority is back, the change goes through.
    c.node(1).start_again();
    create_through(&c, 3, "after", 1, 2);
    wait_topic(&c, 1, "after", 1);
    c.node(2).start_again();
    for node in &mut c.nodes {
        node.stop();
    }
}

#[test]
fn everything_committed_survives_kill_9_of_every_node() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    wait_agreement(&c, &[1, 2, 3], &[1, 2, 3]);
    for i in 0..5 {
        create_through(&c, 1 + i % 3, &format!("kept-{i}"), 2, 3);
    }
    for node in &mut c.nodes {
        node.kill9();
    }
    for node in &mut c.nodes {
        node.start_again();
    }
    wait_agreement(&c, &[1, 2, 3], &[1, 2, 3]);
    for id in [1, 2, 3] {
        for i in 0..5 {
            wait_topic(&c, id, &format!("kept-{i}"), 2);
        }
    }
    for node in &mut c.nodes {
        node.stop();
    }
}

#[test]
fn five_nodes_agree_and_commit_without_two_of_them() {
    let _serial = serial();
    let mut c = Cluster::start(5, FAST);
    let all = [1, 2, 3, 4, 5];
    let controller = wait_agreement(&c, &all, &all);
    create_through(&c, 5, "five", 5, 3);
    for id in all {
        wait_topic(&c, id, "five", 5);
    }
    // Two down, the Raft leader among them: three still commit.
    let other = all
        .iter()
        .copied()
        .find(|id| *id != controller)
        .unwrap_or(1);
    c.node(controller).kill9();
    c.node(other).kill9();
    let survivors: Vec<i32> = all
        .iter()
        .copied()
        .filter(|id| *id != controller && *id != other)
        .collect();
    create_through(&c, survivors[0], "five-after", 1, 3);
    for id in &survivors {
        wait_topic(&c, *id, "five-after", 1);
    }
    for node in &mut c.nodes {
        if node.is_running() {
            node.stop();
        }
    }
}

#[test]
fn a_node_holding_another_clusters_data_is_refused() {
    let _serial = serial();
    let mut c = Cluster::start(3, FAST);
    wait_agreement(&c, &[1, 2, 3], &[1, 2, 3]);
    c.node(3).stop();
    // Node 3's directory now says it belongs to another cluster.
    let dir = c.node(3).data_dir();
    let meta = std::fs::read_to_string(dir.join("meta.properties")).expect("meta.properties");
    let ours = meta
        .lines()
        .find_map(|l| l.strip_prefix("cluster.id="))
        .expect("cluster.id in meta.properties")
        .to_string();
    let foreign = "AAAAAAAAAAAAAAAAAAAAAA";
    std::fs::write(dir.join("meta.properties"), meta.replace(&ours, foreign)).unwrap();
    // It refuses to join, saying so, and stays out of the others' Metadata.
    let node = c.node(3);
    node.start_again_expecting_exit(QUORUM_TIMEOUT);
    let log = std::fs::read_to_string(node.stderr_path()).unwrap_or_default();
    assert!(
        log.contains(foreign) && log.contains(&ours),
        "the refusal must name both cluster ids\n{}",
        node.stderr_tail()
    );
    wait_agreement(&c, &[1, 2], &[1, 2]);
    for id in [1, 2] {
        c.node(id).stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard only keeps other tests' clusters out; no task of this test waits for it.
#[allow(clippy::await_holding_lock)]
async fn librdkafka_produces_and_a_group_consumes_across_the_cluster() {
    let _serial = serial();
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Message};
    let mut c = Cluster::start(3, FAST);
    wait_agreement(&c, &[1, 2, 3], &[1, 2, 3]);
    create_through(&c, 2, "spread", 3, 3);
    for id in [1, 2, 3] {
        wait_topic(&c, id, "spread", 3);
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", c.bootstrap())
        .set("broker.address.family", "v4");
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    const RECORDS: usize = 30;
    for i in 0..RECORDS {
        let key = format!("k{i}");
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::to("spread")
                    .key(&key)
                    .payload(&value)
                    .partition((i % 3) as i32),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}\n{}", c.tails()));
    }
    let consumer: StreamConsumer = config
        .set("group.id", "across")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&["spread"]).expect("subscribe");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    while seen.len() < RECORDS {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {RECORDS}\n{}",
            seen.len(),
            c.tails()
        );
        match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            Ok(Ok(m)) => {
                seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
            }
            Ok(Err(e)) => eprintln!("consume: {e}"),
            Err(_) => {}
        }
    }
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit: {e}\n{}", c.tails()));
    // The group's coordinator is the leader of its __consumer_offsets partition, which the
    // active controller created with the replication factor capped by the three voters.
    let v = view(&c, 1).expect("metadata");
    let offsets = &v.topics["__consumer_offsets"];
    assert!(offsets.iter().all(|p| p.replicas.len() == 3), "{offsets:?}");
    drop(consumer);

    // kill -9 of partition 0's leader: a follower in its ISR takes over, holding every
    // acknowledged record (acks=all waited for the whole ISR); the old leader comes back.
    let leader = v.topics["spread"][0].leader;
    c.node(leader).kill9();
    let survivor = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap_or(1);
    c.wait("partition 0 to get a new leader", || {
        view(&c, survivor).is_some_and(|v| {
            let p = &v.topics["spread"][0];
            p.leader >= 0 && p.leader != leader
        })
    });
    c.node(leader).start_again();
    let reader: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap())
        .set("broker.address.family", "v4")
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("spread", 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    reader.assign(&tpl).expect("assign");
    let mut kept = BTreeSet::new();
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    while kept.len() < RECORDS / 3 && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(500)) {
            kept.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    let want: BTreeSet<String> = (0..RECORDS).step_by(3).map(|i| format!("v{i}")).collect();
    assert_eq!(
        kept,
        want,
        "records of partition 0 after its leader's kill -9\n{}",
        c.tails()
    );
    for node in &mut c.nodes {
        node.stop();
    }
}
