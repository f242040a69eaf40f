//! Leader election in real clusters, over the wire:
//! - three nodes: the preferred leader's broker killed (-9), another in-sync replica leads at a
//!   new epoch; ElectLeaders (API 43, v0 and v2) answers Kafka's per-partition errors; once the
//!   restarted replica has caught up (back in the ISR), ElectLeaders PREFERRED, or the automatic
//!   rebalance (`auto.leader.rebalance.enable`), hands leadership back and Metadata shows it;
//!   Kafka 4.1.2's `kafka-leader-election` tool works against the cluster;
//! - five nodes (two may be down with the quorum intact): a partition whose only in-sync
//!   replica died stays offline by default, gets a leader outside the ISR from ElectLeaders
//!   UNCLEAN, or by itself with the broker default `unclean.leader.election.enable=true` (a
//!   topic override of false keeps it offline).
//!
//! Each node: one core, Kafka's KRaft server.properties (tests/common/cluster.rs), short broker
//! sessions so a killed node is fenced within seconds.

mod common;

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, ElectLeadersRequest,
    ElectLeadersResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use common::cluster::{metadata, Cluster, PartitionView, View, FAST_SESSIONS, QUORUM_TIMEOUT};

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
const ELECTION_NOT_NEEDED: i16 = 84;
const INVALID_REQUEST: i16 = 42;
/// `sluice::limits::ELECT_LEADERS_PARTITIONS_MAX`.
const ELECT_LEADERS_PARTITIONS_MAX: i32 = sluice::limits::ELECT_LEADERS_PARTITIONS_MAX as i32;
/// Retriable answers while the quorum elects (REQUEST_TIMED_OUT, NOT_CONTROLLER).
const RETRIABLE_NO_QUORUM: &[i16] = &[7, 41];
/// Bound on a restarted replica rejoining the ISR (follower replication catching up an
/// almost empty partition).
const ISR_REJOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One cluster at a time: three brokers each, on a machine shared with other builds.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn port(c: &Cluster, id: i32) -> u16 {
    c.ports
        .iter()
        .find(|p| p.node_id == id)
        .map(|p| p.kafka_port)
        .unwrap_or_else(|| panic!("no node {id}"))
}

fn view(c: &Cluster, id: i32) -> Option<View> {
    metadata(port(c, id)).ok()
}

fn partition(c: &Cluster, id: i32, topic: &str, index: usize) -> Option<PartitionView> {
    view(c, id)?.topics.get(topic)?.get(index).cloned()
}

/// Creates `name` through node `via` with this manual assignment and topic configs, retried
/// while the quorum elects; panics unless it succeeds.
fn create(c: &Cluster, via: i32, name: &str, assignment: &[&[i32]], configs: &[(&str, &str)]) {
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(
            (0..)
                .zip(assignment)
                .map(|(i, r)| {
                    CreatableReplicaAssignment::default()
                        .with_partition_index(i)
                        .with_broker_ids(r.iter().map(|b| BrokerId(*b)).collect())
                })
                .collect(),
        )
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![topic]);
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    loop {
        let answer: std::io::Result<CreateTopicsResponse> = common::wire::call(
            &format!("127.0.0.1:{}", port(c, via)),
            ApiKey::CreateTopics,
            7,
            &req,
        );
        match answer.map(|r| {
            r.topics
                .first()
                .map(|t| (t.error_code, t.error_message.clone()))
        }) {
            Ok(Some((0, _))) => return,
            Ok(Some((code, msg))) if RETRIABLE_NO_QUORUM.contains(&code) => {
                eprintln!("create {name}: {code} {msg:?}; retrying")
            }
            Err(e) if Instant::now() < deadline => eprintln!("create {name}: {e}; retrying"),
            other => panic!("create {name} via node {via}: {other:?}\n{}", c.tails()),
        }
        assert!(
            Instant::now() < deadline,
            "create {name}: no quorum\n{}",
            c.tails()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ElectLeaders at `version` through node `via`; returns (top-level error, [(topic, partition,
/// error)]) sorted by topic and partition.
fn elect(
    c: &Cluster,
    via: i32,
    version: i16,
    election_type: i8,
    partitions: Option<&[(&str, i32)]>,
) -> (i16, Vec<(String, i32, i16)>) {
    let topic_partitions = partitions.map(|list| {
        let mut by_topic: Vec<TopicPartitions> = Vec::new();
        for (t, p) in list {
            match by_topic.iter_mut().find(|x| x.topic.0.as_str() == *t) {
                Some(x) => x.partitions.push(*p),
                None => by_topic.push(
                    TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(vec![*p]),
                ),
            }
        }
        by_topic
    });
    let mut req = ElectLeadersRequest::default()
        .with_topic_partitions(topic_partitions)
        .with_timeout_ms(30_000);
    if version >= 1 {
        req = req.with_election_type(election_type);
    }
    let resp: ElectLeadersResponse = common::wire::call(
        &format!("127.0.0.1:{}", port(c, via)),
        ApiKey::ElectLeaders,
        version,
        &req,
    )
    .unwrap_or_else(|e| panic!("ElectLeaders v{version} via node {via}: {e}\n{}", c.tails()));
    let mut rows: Vec<(String, i32, i16)> = resp
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| (t.topic.0.to_string(), p.partition_id, p.error_code))
        })
        .collect();
    rows.sort();
    (resp.error_code, rows)
}

/// ElectLeaders retried while the quorum answers only retriable top-level errors.
fn elect_committed(
    c: &Cluster,
    via: i32,
    election_type: i8,
    partitions: &[(&str, i32)],
) -> Vec<(String, i32, i16)> {
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    loop {
        let (top, rows) = elect(c, via, 2, election_type, Some(partitions));
        if top == NONE {
            return rows;
        }
        assert!(
            RETRIABLE_NO_QUORUM.contains(&top) && Instant::now() < deadline,
            "ElectLeaders via node {via}: error {top}, {rows:?}\n{}",
            c.tails()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rows(list: &[(&str, i32, i16)]) -> Vec<(String, i32, i16)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|(t, p, e)| (t.to_string(), *p, *e))
        .collect();
    v.sort();
    v
}

/// Waits until every node in `ids` lists exactly `brokers` and has a controller.
fn wait_brokers(c: &Cluster, ids: &[i32], brokers: &[i32]) {
    c.wait(
        &format!("nodes {ids:?} to list brokers {brokers:?}"),
        || {
            ids.iter().all(|id| {
                view(c, *id).is_some_and(|v| {
                    v.controller >= 0 && v.brokers.keys().copied().collect::<Vec<_>>() == brokers
                })
            })
        },
    );
}

/// Waits until every node in `ids` shows `topic`'s partition `index` led by `leader`.
fn wait_leader(c: &Cluster, ids: &[i32], topic: &str, index: usize, leader: i32) -> PartitionView {
    c.wait(
        &format!("nodes {ids:?} to show {topic}-{index} led by {leader}"),
        || {
            ids.iter().all(|id| {
                partition(c, *id, topic, index)
                    .is_some_and(|p| p.leader == leader && p.error == NONE)
            })
        },
    );
    partition(c, ids[0], topic, index).unwrap_or_else(|| panic!("{topic}-{index} vanished"))
}

fn cluster() -> Cluster {
    cluster_with(3, &[])
}

/// `n` nodes with `more` in every node's server.properties.
fn cluster_with(n: usize, more: &[(&str, &str)]) -> Cluster {
    let mut extra = FAST_SESSIONS.to_vec();
    // The automatic rebalance stays out of the way of the elections these tests make, unless
    // a test is about it.
    if !more
        .iter()
        .any(|(k, _)| *k == "auto.leader.rebalance.enable")
    {
        extra.push(("auto.leader.rebalance.enable", "false"));
    }
    extra.extend_from_slice(more);
    let c = Cluster::start(n, &extra);
    let all: Vec<i32> = (1..=n as i32).collect();
    wait_brokers(&c, &all, &all);
    c
}

/// A topic to create with [`offline_with_a_replica_outside_the_isr`]: name and topic configs.
type TopicSpec<'a> = (&'a str, &'a [(&'a str, &'a str)]);

/// Five nodes, so that two may be down with the quorum intact. Each topic gets replicas
/// [3, 1]; node 1 is killed (3 alone is left in the ISR), then 3, the only in-sync replica
/// (offline, unless unclean election gives it 1: 1 is down too). Then 1 comes back: a live
/// replica outside the ISR that cannot catch up (its leader is gone), which is what an
/// unclean election is for. Returns each topic's partition 0 as it was before 3 died.
fn offline_with_a_replica_outside_the_isr(
    more: &[(&str, &str)],
    topics: &[TopicSpec],
) -> (Cluster, Vec<PartitionView>) {
    let mut c = cluster_with(5, more);
    for (t, configs) in topics {
        create(&c, 2, t, &[&[3, 1]], configs);
        wait_leader(&c, &[2, 4, 5], t, 0, 3);
    }
    c.node(1).kill9();
    wait_brokers(&c, &[2, 4, 5], &[2, 3, 4, 5]);
    let mut led = Vec::new();
    for (t, _) in topics {
        c.wait(&format!("{t}-0's ISR to shrink to its leader"), || {
            partition(&c, 2, t, 0).is_some_and(|p| p.leader == 3 && p.isr == vec![3])
        });
        led.extend(partition(&c, 2, t, 0));
    }
    c.node(3).kill9();
    wait_brokers(&c, &[2, 4, 5], &[2, 4, 5]);
    c.node(1).start_again();
    wait_brokers(&c, &[1, 2, 4, 5], &[1, 2, 4, 5]);
    (c, led)
}

#[test]
fn a_killed_preferred_leader_is_replaced_and_elect_leaders_answers_kafkas_errors() {
    let _serial = serial();
    let mut c = cluster();
    let t = "failover";
    create(
        &c,
        2,
        t,
        &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]],
        &[("unclean.leader.election.enable", "true")],
    );
    let before = wait_leader(&c, &[1, 2, 3], t, 0, 1);
    wait_leader(&c, &[1, 2, 3], t, 1, 2);
    wait_leader(&c, &[1, 2, 3], t, 2, 3);

    // Every preferred replica leads: nothing to elect; an unknown partition or topic says so.
    let answer = elect_committed(
        &c,
        3,
        PREFERRED,
        &[(t, 0), (t, 1), (t, 2), (t, 9), ("no-such-topic", 0)],
    );
    assert_eq!(
        answer,
        rows(&[
            (t, 0, ELECTION_NOT_NEEDED),
            (t, 1, ELECTION_NOT_NEEDED),
            (t, 2, ELECTION_NOT_NEEDED),
            (t, 9, UNKNOWN_TOPIC_OR_PARTITION),
            ("no-such-topic", 0, UNKNOWN_TOPIC_OR_PARTITION),
        ])
    );
    // An active leader needs no unclean election either.
    assert_eq!(
        elect_committed(&c, 1, UNCLEAN, &[(t, 0)]),
        rows(&[(t, 0, ELECTION_NOT_NEEDED)])
    );
    // v0 has no election type (preferred) and no top-level error code.
    let (_, v0) = elect(&c, 2, 0, PREFERRED, Some(&[(t, 1)]));
    assert_eq!(v0, rows(&[(t, 1, ELECTION_NOT_NEEDED)]));
    // An unknown election type, and more partitions than one election may name, are refused
    // for every partition named (and at the top from v1).
    let (top, bad) = elect(&c, 2, 1, 7, Some(&[(t, 0)]));
    assert_eq!(
        (top, bad),
        (INVALID_REQUEST, rows(&[(t, 0, INVALID_REQUEST)]))
    );
    let many: Vec<(&str, i32)> = (0..=ELECT_LEADERS_PARTITIONS_MAX).map(|p| (t, p)).collect();
    let (top, bad) = elect(&c, 3, 2, PREFERRED, Some(&many));
    assert_eq!(top, INVALID_REQUEST);
    assert_eq!(bad.len(), many.len());
    assert!(bad.iter().all(|r| r.2 == INVALID_REQUEST));
    // All partitions (null): those needing nothing are left out, so nothing is listed.
    let (top, all) = elect(&c, 2, 2, PREFERRED, None);
    assert_eq!((top, all.iter().filter(|r| r.0 == t).count()), (NONE, 0));

    // kill -9 the preferred leader of partition 0: once it is fenced, replica 2 leads (the
    // first active ISR member, or with the ISR gone the first active replica, as the topic
    // allows), with a new leader epoch, and Metadata on the others shows it.
    c.node(1).kill9();
    wait_brokers(&c, &[2, 3], &[2, 3]);
    let moved = wait_leader(&c, &[2, 3], t, 0, 2);
    assert!(
        moved.leader_epoch > before.leader_epoch,
        "{moved:?} vs {before:?}"
    );
    assert_eq!(moved.offline, vec![1], "{moved:?}");
    assert!(
        moved.isr.contains(&2) && !moved.isr.contains(&1),
        "{moved:?}"
    );
    wait_leader(&c, &[2, 3], t, 2, 3);

    // The preferred replica is down: it cannot be elected, and nothing changes.
    assert_eq!(
        elect_committed(&c, 3, PREFERRED, &[(t, 0)]),
        rows(&[(t, 0, PREFERRED_LEADER_NOT_AVAILABLE)])
    );
    assert_eq!(partition(&c, 2, t, 0).map(|p| p.leader), Some(2));

    // Back: listed again, but partition 0 keeps its leader until an election moves it.
    c.node(1).start_again();
    wait_brokers(&c, &[1, 2, 3], &[1, 2, 3]);
    let after = wait_leader(&c, &[1, 2, 3], t, 0, 2);
    assert_eq!(after.leader_epoch, moved.leader_epoch, "{after:?}");
}

#[test]
fn elect_leaders_unclean_gives_an_offline_partition_a_leader() {
    let _serial = serial();
    let (t, solo) = ("offline", "solo");
    let (mut c, led) = offline_with_a_replica_outside_the_isr(&[], &[(t, &[])]);
    // Unclean election is off: 1 is back but not in the ISR, so the partition stays offline.
    let offline = partition(&c, 1, t, 0).unwrap_or_else(|| panic!("{t}-0 vanished"));
    assert_eq!(
        (offline.leader, offline.isr.clone()),
        (-1, vec![3]),
        "{offline:?}"
    );
    // The operator chooses availability: 1 leads, alone in the ISR, at a new epoch.
    assert_eq!(
        elect_committed(&c, 2, UNCLEAN, &[(t, 0)]),
        rows(&[(t, 0, NONE)])
    );
    let elected = wait_leader(&c, &[1, 2, 4, 5], t, 0, 1);
    assert_eq!(elected.isr, vec![1], "{elected:?}");
    assert!(
        elected.leader_epoch > led[0].leader_epoch,
        "{elected:?} vs {led:?}"
    );
    // Now it has an active leader: no further election is needed.
    assert_eq!(
        elect_committed(&c, 4, UNCLEAN, &[(t, 0)]),
        rows(&[(t, 0, ELECTION_NOT_NEEDED)])
    );
    // A partition with no active replica at all stays offline.
    create(&c, 5, solo, &[&[4]], &[]);
    wait_leader(&c, &[1, 2, 4, 5], solo, 0, 4);
    c.node(4).kill9();
    wait_brokers(&c, &[1, 2, 5], &[1, 2, 5]);
    assert_eq!(
        elect_committed(&c, 1, UNCLEAN, &[(solo, 0)]),
        rows(&[(solo, 0, ELIGIBLE_LEADERS_NOT_AVAILABLE)])
    );
}

#[test]
fn the_broker_default_lets_a_replica_outside_the_isr_take_over() {
    let _serial = serial();
    let (t, kept) = ("inherits", "kept");
    // "kept" overrides the default with false.
    let off: &[(&str, &str)] = &[("unclean.leader.election.enable", "false")];
    // Set on every node, so whichever is the active controller records it in the image.
    let (c, led) = offline_with_a_replica_outside_the_isr(
        &[("unclean.leader.election.enable", "true")],
        &[(t, &[]), (kept, off)],
    );
    // When 3 was fenced no other replica was active; 1's return elects it, alone in the ISR
    // at a new epoch, for the topic that takes the broker default; the other stays offline.
    let elected = wait_leader(&c, &[1, 2, 4, 5], t, 0, 1);
    assert_eq!(elected.isr, vec![1], "{elected:?}");
    assert!(
        elected.leader_epoch > led[0].leader_epoch,
        "{elected:?} vs {led:?}"
    );
    let offline = partition(&c, 1, kept, 0).unwrap_or_else(|| panic!("{kept}-0 vanished"));
    assert_eq!(
        (offline.leader, offline.isr.clone()),
        (-1, vec![3]),
        "{offline:?}"
    );
}

/// The full return of a preferred leader: killed, replaced, restarted, caught up (back in the
/// ISR), then elected again by ElectLeaders PREFERRED, and Metadata shows it.
#[test]
fn preferred_election_hands_leadership_back_once_the_replica_is_in_sync() {
    let _serial = serial();
    let mut c = cluster();
    let t = "preferred";
    create(&c, 2, t, &[&[1, 2, 3]], &[]);
    let first = wait_leader(&c, &[1, 2, 3], t, 0, 1);
    c.wait("every replica in the ISR", || {
        partition(&c, 2, t, 0).is_some_and(|p| p.isr.len() == 3)
    });
    c.node(1).kill9();
    wait_brokers(&c, &[2, 3], &[2, 3]);
    let moved = wait_leader(&c, &[2, 3], t, 0, 2);
    c.node(1).start_again();
    wait_brokers(&c, &[1, 2, 3], &[1, 2, 3]);
    let deadline = Instant::now() + ISR_REJOIN_TIMEOUT;
    while !partition(&c, 2, t, 0).is_some_and(|p| p.isr.contains(&1)) {
        assert!(
            Instant::now() < deadline,
            "replica 1 did not rejoin the ISR\n{}",
            c.tails()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        elect_committed(&c, 3, PREFERRED, &[(t, 0)]),
        rows(&[(t, 0, NONE)])
    );
    let back = wait_leader(&c, &[1, 2, 3], t, 0, 1);
    assert!(back.leader_epoch > moved.leader_epoch && moved.leader_epoch > first.leader_epoch);
}

/// Bound on one run of Kafka's tool (a JVM start plus a few requests).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on fetching Kafka's jars when scripts/test.sh has not (a first fetch downloads them).
const JARS_TIMEOUT: Duration = Duration::from_secs(600);

/// `kafka-leader-election.sh` (`org.apache.kafka.tools.LeaderElectionCommand`, Kafka 4.1.2's
/// jars from scripts/kafka-jars.sh): (exit status, stdout and stderr).
fn leader_election_tool(args: &[&str]) -> (std::process::ExitStatus, String) {
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
        .find(|l| l.ends_with("/libs"))
        .unwrap_or_else(|| panic!("scripts/kafka-jars.sh gave no jar directory: {output}"));
    assert!(
        status.success(),
        "scripts/kafka-jars.sh: {status}\n{output}"
    );
    let what = format!("LeaderElectionCommand {}", args.join(" "));
    common::run_bounded(
        &what,
        std::process::Command::new("java")
            .arg("-Xmx512M")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("-cp")
            .arg(format!("{libs}/*"))
            .arg("org.apache.kafka.tools.LeaderElectionCommand")
            .args(args),
        TOOL_TIMEOUT,
    )
}

#[test]
fn kafkas_leader_election_tool_talks_to_the_cluster() {
    let _serial = serial();
    let mut c = cluster();
    let t = "tool";
    create(
        &c,
        1,
        t,
        &[&[1, 2, 3]],
        &[("unclean.leader.election.enable", "true")],
    );
    wait_leader(&c, &[1, 2, 3], t, 0, 1);
    let bootstrap = c.bootstrap();
    let base = ["--bootstrap-server", bootstrap.as_str()];
    let one = ["--topic", t, "--partition", "0"];
    let (status, out) =
        leader_election_tool(&[&base[..], &["--election-type", "preferred"], &one[..]].concat());
    assert!(status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "Valid replica already elected for partitions {t}-0"
        )),
        "{out}"
    );
    let (status, out) = leader_election_tool(
        &[
            &base[..],
            &["--election-type", "preferred", "--all-topic-partitions"],
        ]
        .concat(),
    );
    assert!(status.success(), "{out}");

    // The preferred leader killed: 2 took over, and the tool reports Kafka's error for 1.
    c.node(1).kill9();
    wait_brokers(&c, &[2, 3], &[2, 3]);
    wait_leader(&c, &[2, 3], t, 0, 2);
    let live: String = c
        .ports
        .iter()
        .filter(|p| p.node_id != 1)
        .map(|p| format!("127.0.0.1:{}", p.kafka_port))
        .collect::<Vec<_>>()
        .join(",");
    let (status, out) = leader_election_tool(&[
        "--bootstrap-server",
        &live,
        "--election-type",
        "preferred",
        "--topic",
        t,
        "--partition",
        "0",
    ]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("Error completing leader election (PREFERRED)")
            && out.contains("The preferred leader was not available."),
        "{out}"
    );
    let (status, out) = leader_election_tool(&[
        "--bootstrap-server",
        &live,
        "--election-type",
        "unclean",
        "--topic",
        t,
        "--partition",
        "0",
    ]);
    assert!(status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "Valid replica already elected for partitions {t}-0"
        )),
        "{out}"
    );
}

/// `auto.leader.rebalance.enable`: the preferred leader, back in the ISR, leads again without
/// any request (checked every second here; Kafka's default is 300 s).
#[test]
fn the_automatic_rebalance_hands_leadership_back_to_the_preferred_replica() {
    let _serial = serial();
    let mut c = cluster_with(
        3,
        &[
            ("auto.leader.rebalance.enable", "true"),
            ("leader.imbalance.check.interval.seconds", "1"),
        ],
    );
    let t = "rebalanced";
    create(&c, 2, t, &[&[1, 2, 3]], &[]);
    wait_leader(&c, &[1, 2, 3], t, 0, 1);
    c.node(1).kill9();
    wait_brokers(&c, &[2, 3], &[2, 3]);
    let moved = wait_leader(&c, &[2, 3], t, 0, 2);
    c.node(1).start_again();
    wait_brokers(&c, &[1, 2, 3], &[1, 2, 3]);
    let deadline = Instant::now() + ISR_REJOIN_TIMEOUT;
    while !partition(&c, 2, t, 0).is_some_and(|p| p.isr.contains(&1)) {
        assert!(
            Instant::now() < deadline,
            "replica 1 did not rejoin the ISR\n{}",
            c.tails()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // One partition, preferred by 1 and led by 2: 100% imbalance for broker 1, above 10%.
    let back = wait_leader(&c, &[1, 2, 3], t, 0, 1);
    assert!(
        back.leader_epoch > moved.leader_epoch,
        "{back:?} vs {moved:?}"
    );
}
