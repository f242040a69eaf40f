//! Partition reassignment (KIP-455) across real `sluice` processes on 127.0.0.1: under acks=all
//! load, AlterPartitionReassignments replaces one replica of each partition by a fourth node (the
//! leader of one, a follower of the other); the new replica catches up, joins the ISR, and the
//! reassignment completes: the leadership moves off the removed leader, every acknowledged record
//! stays readable, the new replica's log is the leader's byte for byte, and the removed node
//! deletes its copy. Refusals (unknown partition, duplicate or unknown brokers, a cancel of no
//! reassignment) come back per partition over the wire. Kafka's own `kafka-reassign-partitions`
//! (the 4.1 jars, as tests/kafka_tools.rs runs them) executes and verifies a reassignment too.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{metadata, Cluster, PartitionView, QUORUM_TIMEOUT};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

/// Short sessions and lag bound, so ISR changes are seen within seconds (tests/replication.rs).
const FAST: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "3000"),
    ("replica.fetch.backoff.ms", "200"),
];

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bound on fetching Kafka's jars (scripts/kafka-jars.sh; offline when cached).
const JARS_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on one run of a Kafka tool (a JVM start and a few requests).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Records one background writer sends at most (the load loop's bound).
const SENDS_PER_WRITER_MAX: usize = 100_000;
/// Concurrent acks=all writers per partition.
const WRITERS_PER_PARTITION: usize = 2;
/// Records acknowledged before the reassignment starts, and again after it completed.
const ACKED_PER_PHASE: usize = 300;

const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;

fn port(c: &Cluster, id: i32) -> u16 {
    c.ports
        .iter()
        .find(|p| p.node_id == id)
        .map(|p| p.kafka_port)
        .expect("node")
}

fn addr(c: &Cluster, id: i32) -> String {
    format!("127.0.0.1:{}", port(c, id))
}

fn partition(c: &Cluster, via: i32, topic: &str, p: usize) -> Option<PartitionView> {
    metadata(port(c, via))
        .ok()?
        .topics
        .get(topic)?
        .get(p)
        .cloned()
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// CreateTopics v7 with a manual assignment (index = partition), retried until the quorum takes it.
fn create_assigned(c: &Cluster, topic: &str, assignment: &[Vec<i32>]) {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic,
    };
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let assignments = (0..)
        .zip(assignment)
        .map(|(i, replicas)| {
            CreatableReplicaAssignment::default()
                .with_partition_index(i)
                .with_broker_ids(replicas.iter().copied().map(BrokerId).collect())
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(assignments)]);
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    loop {
        let resp: std::io::Result<CreateTopicsResponse> =
            common::wire::call(&addr(c, 1), ApiKey::CreateTopics, 7, &req);
        let outcome = resp.map(|r| {
            r.topics.first().map(|t| {
                (
                    t.error_code,
                    t.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        });
        match outcome {
            Ok(Some((0 | 36, _))) => return,
            other if Instant::now() < deadline => {
                eprintln!("create {topic}: {other:?}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            other => panic!("create {topic}: {other:?}\n{}", c.tails()),
        }
    }
}

/// AlterPartitionReassignments v1 sent to node `via`: the top-level code and each partition's
/// (topic, partition, code), in request order.
fn reassign(
    c: &Cluster,
    via: i32,
    targets: &[(&str, i32, Option<Vec<i32>>)],
) -> (i16, Vec<(String, i32, i16)>) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    };
    let topics = targets
        .iter()
        .map(|(topic, p, target)| {
            ReassignableTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(*p)
                    .with_replicas(
                        target
                            .as_ref()
                            .map(|t| t.iter().copied().map(BrokerId).collect()),
                    )])
        })
        .collect();
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_allow_replication_factor_change(true)
        .with_topics(topics);
    let resp: AlterPartitionReassignmentsResponse =
        common::wire::call(&addr(c, via), ApiKey::AlterPartitionReassignments, 1, &req)
            .unwrap_or_else(|e| panic!("AlterPartitionReassignments: {e}\n{}", c.tails()));
    let partitions = resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    (resp.error_code, partitions)
}

/// One reassignment in progress: (replicas, adding, removing).
type Ongoing = (Vec<i32>, Vec<i32>, Vec<i32>);

/// ListPartitionReassignments v0 (every topic) from node `via`, by (topic, partition).
fn ongoing(c: &Cluster, via: i32) -> BTreeMap<(String, i32), Ongoing> {
    use kafka_protocol::messages::{
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    let req = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(None);
    let resp: ListPartitionReassignmentsResponse =
        common::wire::call(&addr(c, via), ApiKey::ListPartitionReassignments, 0, &req)
            .unwrap_or_else(|e| panic!("ListPartitionReassignments: {e}\n{}", c.tails()));
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    (t.name.to_string(), p.partition_index),
                    (
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas),
                    ),
                )
            })
        })
        .collect()
}

type Acked = Arc<Mutex<Vec<(i64, String)>>>;

/// A background acks=all writer to `topic`-`p`: sends until `stop` (or its bound), keeping each
/// acknowledged (offset, value).
fn spawn_writer(
    producer: FutureProducer,
    topic: String,
    p: i32,
    writer: usize,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut refused = 0;
        for i in 0..SENDS_PER_WRITER_MAX {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let value = format!("p{p}-w{writer}-{i}");
            let sent = producer
                .send(
                    FutureRecord::to(&topic)
                        .key("k")
                        .payload(&value)
                        .partition(p),
                    Duration::from_secs(60),
                )
                .await;
            match sent {
                Ok(d) => acked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((d.offset, value)),
                Err((e, _)) => {
                    refused += 1;
                    eprintln!("{topic}-{p}: {value} not acknowledged: {e}");
                }
            }
        }
        refused
    })
}

fn acked_count(acked: &[Acked]) -> usize {
    acked
        .iter()
        .map(|a| a.lock().unwrap_or_else(|e| e.into_inner()).len())
        .sum()
}

/// Every record of `topic`-`p` from the beginning up to its high watermark.
fn read_all(c: &Cluster, topic: &str, p: i32) -> BTreeMap<i64, String> {
    let reader: BaseConsumer = c
        .client_config()
        .set("group.id", "reassignment-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let (_, end) = reader
        .fetch_watermarks(topic, p, Duration::from_secs(30))
        .expect("watermarks");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
        .expect("tpl");
    reader.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    while (out.len() as i64) < end && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(500)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.insert(m.offset(), v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn replacing_replicas_under_acks_all_load_loses_nothing_and_moves_the_log_byte_for_byte() {
    let _serial = serial();
    let mut c = Cluster::start(4, FAST);
    c.wait_ready_for_groups();
    let topic = "moving";
    // Partition 0 is led by node 1 (its first replica), partition 1 by node 2; node 4 has none.
    create_assigned(&c, topic, &[vec![1, 2, 3], vec![2, 3, 1]]);
    for id in 1..=4 {
        c.wait(&format!("{topic} on node {id} with full ISRs"), || {
            metadata(port(&c, id)).is_ok_and(|v| {
                v.topics.get(topic).is_some_and(|ps| {
                    ps.len() == 2 && ps.iter().all(|p| p.leader >= 0 && p.isr.len() == 3)
                })
            })
        });
    }
    assert_eq!(partition(&c, 1, topic, 0).expect("p0").leader, 1);

    // Refusals, per partition: nothing changes.
    let (top, codes) = reassign(
        &c,
        3,
        &[
            ("nope", 0, Some(vec![1, 2, 3])),
            (topic, 0, Some(vec![1, 1, 2])),
            (topic, 0, Some(vec![1, 2, 9])),
            (topic, 1, None),
        ],
    );
    assert_eq!(top, 0);
    let codes: Vec<i16> = codes.iter().map(|(_, _, code)| *code).collect();
    assert_eq!(
        codes,
        vec![
            UNKNOWN_TOPIC_OR_PARTITION,
            INVALID_REPLICA_ASSIGNMENT,
            INVALID_REPLICA_ASSIGNMENT,
            NO_REASSIGNMENT_IN_PROGRESS
        ]
    );
    assert!(ongoing(&c, 2).is_empty());

    // acks=all load on both partitions.
    let producer: FutureProducer = c
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "100")
        .create()
        .expect("producer");
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Acked> = (0..2).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let writers: Vec<_> = (0..2)
        .flat_map(|p| (0..WRITERS_PER_PARTITION).map(move |w| (p, w)))
        .map(|(p, w)| {
            spawn_writer(
                producer.clone(),
                topic.to_string(),
                p,
                w,
                stop.clone(),
                acked[p as usize].clone(),
            )
        })
        .collect();
    c.wait("acknowledged records before the reassignment", || {
        acked_count(&acked) >= ACKED_PER_PHASE
    });

    // Node 4 replaces the leader of partition 0 and a follower of partition 1.
    let targets = [vec![4, 2, 3], vec![2, 3, 4]];
    let (top, codes) = reassign(
        &c,
        2,
        &[
            (topic, 0, Some(targets[0].clone())),
            (topic, 1, Some(targets[1].clone())),
        ],
    );
    assert_eq!(top, 0);
    assert!(
        codes.iter().all(|(_, _, code)| *code == 0),
        "{codes:?}\n{}",
        c.tails()
    );
    // Listed while in progress (unless it completed already): replicas = target + removed.
    let listed = ongoing(&c, 2);
    if let Some(p0) = listed.get(&(topic.to_string(), 0)) {
        assert_eq!(p0, &(vec![4, 2, 3, 1], vec![4], vec![1]));
    }
    if let Some(p1) = listed.get(&(topic.to_string(), 1)) {
        assert_eq!(p1, &(vec![2, 3, 4, 1], vec![4], vec![1]));
    }
    eprintln!("in progress right after the request: {listed:?}");
    c.wait("no reassignment in progress", || {
        (1..=4).all(|id| ongoing(&c, id).is_empty())
    });
    for id in 1..=4 {
        c.wait(&format!("the new replicas and ISRs on node {id}"), || {
            (0..2).all(|p| {
                partition(&c, id, topic, p).is_some_and(|v| {
                    let mut isr = v.isr.clone();
                    isr.sort_unstable();
                    let mut want = targets[p].clone();
                    want.sort_unstable();
                    v.replicas == targets[p] && isr == want
                })
            })
        });
    }
    let p0 = partition(&c, 2, topic, 0).expect("p0");
    assert_eq!(
        p0.leader, 4,
        "the removed leader hands over to the first target in sync"
    );
    let p1 = partition(&c, 2, topic, 1).expect("p1");
    assert_eq!(p1.leader, 2, "a follower's replacement keeps the leader");

    // The new leader takes writes; then the load stops.
    let before = acked_count(&acked);
    c.wait("acknowledged records after the reassignment", || {
        acked_count(&acked) >= before + ACKED_PER_PHASE
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let refused = w.await.expect("writer");
        eprintln!("writer: {refused} record(s) not acknowledged");
    }

    for p in 0..2 {
        let leader = partition(&c, 2, topic, p as usize)
            .expect("partition")
            .leader;
        // Every target replica ends with the leader's log, byte for byte.
        c.wait(&format!("identical logs of {topic}-{p}"), || {
            let want = c.log_bytes(leader, topic, p);
            !want.is_empty()
                && targets[p as usize]
                    .iter()
                    .all(|id| c.log_bytes(*id, topic, p) == want)
        });
        let got = read_all(&c, topic, p);
        let mine = acked[p as usize].lock().unwrap_or_else(|e| e.into_inner());
        assert!(mine.len() >= ACKED_PER_PHASE / 2, "{}", mine.len());
        for (offset, value) in mine.iter() {
            assert_eq!(
                got.get(offset),
                Some(value),
                "acknowledged record at {topic}-{p}@{offset} missing or different (read {})\n{}",
                got.len(),
                c.tails()
            );
        }
        drop(mine);
        // The removed node deleted its copy.
        let dir = c.node(1).data_dir().join(format!("{topic}-{p}"));
        c.wait(&format!("{} gone from node 1", dir.display()), || {
            !dir.exists()
        });
    }
    for node in &mut c.nodes {
        node.stop();
    }
}

/// The directory of Kafka's jars (scripts/kafka-jars.sh), for a `java -cp "<dir>/*"` run.
fn kafka_libs() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (status, output) = common::run_bounded(
        "scripts/kafka-jars.sh",
        std::process::Command::new("bash")
            .arg(root.join("scripts/kafka-jars.sh"))
            .current_dir(root),
        JARS_TIMEOUT,
    );
    let libs = output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('/') && std::path::Path::new(l).join(".complete").exists())
        .map(std::path::PathBuf::from);
    match libs {
        Some(libs) if status.success() => libs,
        _ => panic!("scripts/kafka-jars.sh exited with {status}\n{output}"),
    }
}

/// `kafka-reassign-partitions.sh` (Kafka's ReassignPartitionsCommand) with `args`: (exit ok,
/// output).
fn reassign_tool(libs: &std::path::Path, args: &[&str]) -> (bool, String) {
    let class = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    let (status, output) = common::run_bounded(
        &format!("{class} {}", args.join(" ")),
        std::process::Command::new("java")
            .arg("-Xmx512M")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .arg(class)
            .args(args),
        TOOL_TIMEOUT,
    );
    (status.success(), output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn kafka_reassign_partitions_executes_and_verifies_a_reassignment() {
    let _serial = serial();
    let libs = kafka_libs();
    let mut c = Cluster::start(4, FAST);
    c.wait_ready_for_groups();
    let topic = "tool-moved";
    create_assigned(&c, topic, &[vec![1, 2, 3]]);
    c.wait("the topic with a full ISR", || {
        partition(&c, 4, topic, 0).is_some_and(|p| p.leader >= 0 && p.isr.len() == 3)
    });
    let producer: FutureProducer = c
        .client_config()
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut acked = Vec::new();
    for i in 0..100 {
        let value = format!("r{i}");
        let d = producer
            .send(
                FutureRecord::to(topic)
                    .key("k")
                    .payload(&value)
                    .partition(0),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {value}: {e}\n{}", c.tails()));
        acked.push((d.offset, value));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("reassignment.json");
    std::fs::write(
        &plan,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"replicas":[2,3,4],"log_dirs":["any","any","any"]}}]}}"#
        ),
    )
    .expect("write the plan");
    let plan = plan.display().to_string();
    let bootstrap = c.bootstrap();
    let (ok, out) = reassign_tool(
        &libs,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--reassignment-json-file",
            &plan,
            "--execute",
        ],
    );
    assert!(
        ok && out.contains("Successfully started partition reassignment"),
        "{out}"
    );
    eprintln!("{out}");
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    loop {
        let (ok, out) = reassign_tool(
            &libs,
            &[
                "--bootstrap-server",
                &bootstrap,
                "--reassignment-json-file",
                &plan,
                "--verify",
                "--preserve-throttles",
            ],
        );
        if ok && out.contains(&format!("Reassignment of partition {topic}-0 is completed")) {
            eprintln!("{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tool never saw the reassignment complete\n{out}\n{}",
            c.tails()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    c.wait("the new replicas on every node", || {
        (1..=4).all(|id| {
            partition(&c, id, topic, 0).is_some_and(|p| {
                let mut isr = p.isr.clone();
                isr.sort_unstable();
                p.replicas == vec![2, 3, 4] && isr == vec![2, 3, 4]
            })
        })
    });
    let leader = partition(&c, 2, topic, 0).expect("partition").leader;
    c.wait("node 4's log identical to the leader's", || {
        let want = c.log_bytes(leader, topic, 0);
        !want.is_empty() && c.log_bytes(4, topic, 0) == want
    });
    let got = read_all(&c, topic, 0);
    for (offset, value) in &acked {
        assert_eq!(got.get(offset), Some(value), "record at {offset}");
    }
    let gone = c.node(1).data_dir().join(format!("{topic}-0"));
    c.wait("node 1's copy removed", || !gone.exists());
    for node in &mut c.nodes {
        node.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_reassignment_to_a_stopped_broker_stays_in_progress_until_cancelled() {
    let _serial = serial();
    let mut c = Cluster::start(4, FAST);
    c.wait_ready_for_groups();
    let topic = "cancelled";
    create_assigned(&c, topic, &[vec![1, 2, 3]]);
    c.wait("the topic with a full ISR", || {
        partition(&c, 1, topic, 0).is_some_and(|p| p.leader >= 0 && p.isr.len() == 3)
    });
    // Node 4 stays registered (fenced once its session ends) but never catches up.
    c.node(4).kill9();
    let (top, codes) = reassign(&c, 2, &[(topic, 0, Some(vec![1, 2, 4]))]);
    assert_eq!((top, codes[0].2), (0, 0), "{codes:?}");
    let want = (vec![1, 2, 4, 3], vec![4], vec![3]);
    for id in 1..=3 {
        c.wait(&format!("the reassignment listed on node {id}"), || {
            ongoing(&c, id).get(&(topic.to_string(), 0)) == Some(&want)
        });
    }
    let p = partition(&c, 1, topic, 0).expect("partition");
    assert_eq!(
        p.replicas,
        vec![1, 2, 4, 3],
        "Metadata shows target + removed"
    );
    assert!(!p.isr.contains(&4), "{p:?}");
    // It does not complete while node 4 is away: still listed once node 4 is fenced.
    c.wait("node 4 fenced", || {
        metadata(port(&c, 1)).is_ok_and(|v| !v.brokers.contains_key(&4))
    });
    assert_eq!(ongoing(&c, 1).get(&(topic.to_string(), 0)), Some(&want));

    let (top, codes) = reassign(&c, 3, &[(topic, 0, None)]);
    assert_eq!((top, codes[0].2), (0, 0), "{codes:?}");
    for id in 1..=3 {
        c.wait(&format!("the original replicas back on node {id}"), || {
            ongoing(&c, id).is_empty()
                && partition(&c, id, topic, 0).is_some_and(|p| {
                    let mut isr = p.isr.clone();
                    isr.sort_unstable();
                    p.replicas == vec![1, 2, 3] && isr == vec![1, 2, 3] && p.leader == 1
                })
        });
    }
    let (_, codes) = reassign(&c, 1, &[(topic, 0, None)]);
    assert_eq!(codes[0].2, NO_REASSIGNMENT_IN_PROGRESS);
    // The replica the cancelled reassignment would have removed keeps its copy.
    let kept = c.node(3).data_dir().join(format!("{topic}-0"));
    assert!(kept.exists(), "{}", kept.display());
    c.node(4).start_again();
    for node in &mut c.nodes {
        node.stop();
    }
}
