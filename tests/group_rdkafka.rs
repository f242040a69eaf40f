//! Consumer groups against the real broker with librdkafka (rdkafka crate; rdkafka-sys 4.10
//! bundles librdkafka 2.12.1, which speaks both the classic protocol and KIP-848's
//! `group.protocol=consumer`).
//!
//! Consumers run on threads and commit every record synchronously after "processing" it, so
//! the only records a group may see twice are those whose commit failed (counted).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::ClientContext;

use common::{unique_topic, wait_until, Broker, BrokerOpts};

/// Bound on every wait for the group to settle or records to arrive.
const GROUP_TIMEOUT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 8;

fn broker() -> Broker {
    // The broker inherits SLUICE_LOG (e.g. `SLUICE_LOG=info,sluice::group=debug`) to show
    // the coordinator's decisions.
    Broker::start_with(BrokerOpts::default().with("group.initial.rebalance.delay.ms", "200"))
}

#[derive(Default)]
struct Counting {
    rebalances: AtomicUsize,
}
impl ClientContext for Counting {}
impl ConsumerContext for Counting {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = r {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Everything the consumers of one test saw.
#[derive(Default)]
struct Seen {
    records: Mutex<Vec<(i32, i64)>>,
    failed_commits: AtomicUsize,
}

impl Seen {
    fn distinct(&self) -> usize {
        self.records
            .lock()
            .unwrap()
            .iter()
            .collect::<HashSet<_>>()
            .len()
    }
    fn duplicates(&self) -> usize {
        let r = self.records.lock().unwrap();
        r.len() - r.iter().collect::<HashSet<_>>().len()
    }
}

struct Worker {
    stop: Arc<AtomicBool>,
    assigned: Arc<Mutex<Vec<i32>>>,
    context_rebalances: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().unwrap().clone()
    }
    /// Closes the consumer (LeaveGroup) and joins its thread.
    fn close(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

fn spawn_consumer(
    broker: &Broker,
    group: &str,
    topic: &str,
    extra: &[(&str, &str)],
    seen: Arc<Seen>,
) -> Worker {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    let classic = !extra
        .iter()
        .any(|(k, v)| *k == "group.protocol" && *v == "consumer");
    if classic {
        config
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
    }
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let assigned = Arc::new(Mutex::new(Vec::new()));
    let rebalances = Arc::new(AtomicUsize::new(0));
    let (stop2, assigned2, rebalances2, topic) = (
        stop.clone(),
        assigned.clone(),
        rebalances.clone(),
        topic.to_owned(),
    );
    let handle = thread::spawn(move || {
        let consumer: BaseConsumer<Counting> = config
            .create_with_context(Counting::default())
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        while !stop2.load(Ordering::SeqCst) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                seen.records
                    .lock()
                    .unwrap()
                    .push((m.partition(), m.offset()));
                if consumer.commit_message(&m, CommitMode::Sync).is_err() {
                    seen.failed_commits.fetch_add(1, Ordering::SeqCst);
                }
            }
            if let Ok(a) = consumer.assignment() {
                let mut ps: Vec<i32> = a.elements().iter().map(|e| e.partition()).collect();
                ps.sort();
                *assigned2.lock().unwrap() = ps;
            }
            rebalances2.store(
                consumer.context().rebalances.load(Ordering::SeqCst),
                Ordering::SeqCst,
            );
        }
        drop(consumer);
    });
    Worker {
        stop,
        assigned,
        context_rebalances: rebalances,
        handle: Some(handle),
    }
}

/// Produces `count` records round-robin over the partitions, starting at `start` for values.
async fn produce(broker: &Broker, topic: &str, start: usize, count: usize) {
    let producer = broker.producer(&[]);
    let futures: Vec<_> = (start..start + count)
        .map(|i| {
            let value = format!("v{i}");
            let partition = (i % PARTITIONS as usize) as i32;
            let producer = producer.clone();
            let topic = topic.to_owned();
            async move {
                producer
                    .send(
                        FutureRecord::<(), _>::to(&topic)
                            .partition(partition)
                            .payload(&value),
                        Duration::from_secs(10),
                    )
                    .await
                    .expect("produce")
            }
        })
        .collect();
    futures::future::join_all(futures).await;
}

/// Waits until the workers together own all partitions, each exactly once, none idle.
fn wait_balanced(broker: &Broker, workers: &[&Worker]) {
    wait_until(
        "group to assign every partition once",
        GROUP_TIMEOUT,
        || {
            let all: Vec<Vec<i32>> = workers.iter().map(|w| w.assigned()).collect();
            let flat: Vec<i32> = all.iter().flatten().copied().collect();
            let distinct: HashSet<i32> = flat.iter().copied().collect();
            flat.len() == PARTITIONS as usize
                && distinct.len() == PARTITIONS as usize
                && all.iter().all(|a| !a.is_empty())
        },
    );
    let _ = broker;
}

fn wait_seen(broker: &Broker, seen: &Seen, n: usize) {
    let what = format!("{n} distinct records");
    wait_until(&what, GROUP_TIMEOUT, || seen.distinct() >= n);
    let _ = broker;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_then_three_consumers_split_partitions_and_survivors_take_over() {
    let broker = broker();
    let topic = unique_topic("group-split");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    produce(&broker, &topic, 0, 400).await;
    let seen = Arc::new(Seen::default());
    let group = unique_topic("g-split");
    let a = spawn_consumer(&broker, &group, &topic, &[], seen.clone());
    let b = spawn_consumer(&broker, &group, &topic, &[], seen.clone());
    wait_balanced(&broker, &[&a, &b]);
    wait_seen(&broker, &seen, 400);

    let c = spawn_consumer(&broker, &group, &topic, &[], seen.clone());
    wait_balanced(&broker, &[&a, &b, &c]);
    produce(&broker, &topic, 400, 400).await;
    wait_seen(&broker, &seen, 800);

    b.close();
    wait_balanced(&broker, &[&a, &c]);
    produce(&broker, &topic, 800, 400).await;
    wait_seen(&broker, &seen, 1200);
    a.close();
    c.close();
    assert_eq!(seen.distinct(), 1200);
    assert!(
        seen.duplicates() <= seen.failed_commits.load(Ordering::SeqCst),
        "{} duplicates but only {} failed commits",
        seen.duplicates(),
        seen.failed_commits.load(Ordering::SeqCst)
    );
}

/// Child-process half of `killed_consumer_partitions_move_to_survivor`: consumes, printing
/// `R <partition> <offset>` when a record arrives (before its commit is sent) and
/// `C <partition> <offset>` once its commit is acknowledged, until killed.
#[test]
#[ignore = "run only as a child of killed_consumer_partitions_move_to_survivor"]
fn child_consumer() {
    let (Ok(bootstrap), Ok(group), Ok(topic)) = (
        std::env::var("SLUICE_CHILD_BOOTSTRAP"),
        std::env::var("SLUICE_CHILD_GROUP"),
        std::env::var("SLUICE_CHILD_TOPIC"),
    ) else {
        return;
    };
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    loop {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            // Printed (one write per line) before the commit goes out: a kill between the
            // broker applying the commit and the child printing `C` cannot hide a record.
            println!("R {} {}", m.partition(), m.offset());
            if consumer.commit_message(&m, CommitMode::Sync).is_ok() {
                println!("C {} {}", m.partition(), m.offset());
            }
        }
        if let Ok(a) = consumer.assignment() {
            println!("A {}", a.count());
        }
        // Slow consumer: leaves work for the survivor after the kill.
        thread::sleep(Duration::from_millis(20));
    }
}

/// What the child consumer reported on stdout.
#[derive(Default)]
struct ChildReport {
    /// Records the child received (`R`); some may be committed without a `C` line.
    received: HashSet<(i32, i64)>,
    /// Records whose commit the broker acknowledged (`C`).
    committed: HashSet<(i32, i64)>,
    /// Size of the child's latest assignment (`A`).
    assigned: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_consumer_partitions_move_to_survivor() {
    let broker = broker();
    let topic = unique_topic("group-kill");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    produce(&broker, &topic, 0, 800).await;
    let group = unique_topic("g-kill");
    // /proc/self/exe, not current_exe(): the path still runs this binary when a concurrent
    // `cargo build` has replaced the file on disk (current_exe() then names a deleted file).
    let mut child = Command::new("/proc/self/exe")
        .args([
            "--ignored",
            "--exact",
            "child_consumer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SLUICE_CHILD_BOOTSTRAP", broker.bootstrap())
        .env("SLUICE_CHILD_GROUP", &group)
        .env("SLUICE_CHILD_TOPIC", &topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child consumer");
    let report: Arc<Mutex<ChildReport>> = Arc::default();
    let stdout = child.stdout.take().unwrap();
    let from_child = report.clone();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let record = |p: &str, o: &str| (p.parse().unwrap(), o.parse().unwrap());
            let mut r = from_child.lock().unwrap();
            match parts.as_slice() {
                ["R", p, o] => {
                    r.received.insert(record(p, o));
                }
                ["C", p, o] => {
                    r.committed.insert(record(p, o));
                }
                ["A", n] => r.assigned = n.parse().unwrap(),
                _ => {}
            }
        }
    });
    let seen = Arc::new(Seen::default());
    let survivor = spawn_consumer(&broker, &group, &topic, &[], seen.clone());
    wait_until("both consumers to own partitions", GROUP_TIMEOUT, || {
        let mine = survivor.assigned().len();
        mine > 0 && mine < PARTITIONS as usize && report.lock().unwrap().assigned > 0
    });
    wait_until("the child to commit some records", GROUP_TIMEOUT, || {
        report.lock().unwrap().committed.len() >= 20
    });
    child.kill().expect("kill -9 the child");
    let _ = child.wait();
    reader.join().unwrap();
    // No LeaveGroup was sent: the survivor gets everything after the session timeout.
    wait_until("the survivor to own every partition", GROUP_TIMEOUT, || {
        survivor.assigned().len() == PARTITIONS as usize
    });
    let report = std::mem::take(&mut *report.lock().unwrap());
    assert!(report.committed.is_subset(&report.received));
    // No record lost: what the child received and what the survivor consumed cover the
    // topic. (A record the child received may have been committed by a request the kill
    // cut short, so the survivor need not see it.)
    wait_until("every record consumed by someone", GROUP_TIMEOUT, || {
        let mine: HashSet<(i32, i64)> = seen.records.lock().unwrap().iter().copied().collect();
        mine.union(&report.received).count() >= 800
    });
    survivor.close();
    let mine: HashSet<(i32, i64)> = seen.records.lock().unwrap().iter().copied().collect();
    assert_eq!(mine.union(&report.received).count(), 800);
    let twice: Vec<_> = mine.intersection(&report.committed).collect();
    assert!(
        twice.is_empty(),
        "records the dead member had committed were consumed again: {twice:?}"
    );
    // Records the child received whose commit was applied but not acknowledged before the
    // kill (0 or 1 per partition); shown with --nocapture.
    let cut_short = report.received.difference(&mine).count() - report.committed.len();
    eprintln!(
        "child: {} received, {} acknowledged commits, {cut_short} committed unacknowledged",
        report.received.len(),
        report.committed.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_resumes_from_committed_offsets() {
    let mut broker = broker();
    let topic = unique_topic("group-restart");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    produce(&broker, &topic, 0, 200).await;
    let group = unique_topic("g-restart");
    let seen = Arc::new(Seen::default());
    let a = spawn_consumer(&broker, &group, &topic, &[], seen.clone());
    wait_seen(&broker, &seen, 200);
    a.close();

    broker.restart();
    produce(&broker, &topic, 200, 80).await;
    let after = Arc::new(Seen::default());
    let b = spawn_consumer(&broker, &group, &topic, &[], after.clone());
    wait_seen(&broker, &after, 80);
    thread::sleep(Duration::from_millis(500));
    b.close();
    // Exactly the new records: each partition resumes at its committed offset (25).
    let by_partition: BTreeMap<i32, Vec<i64>> =
        after
            .records
            .lock()
            .unwrap()
            .iter()
            .fold(BTreeMap::new(), |mut m, (p, o)| {
                m.entry(*p).or_insert_with(Vec::new).push(*o);
                m
            });
    assert_eq!(after.records.lock().unwrap().len(), 80, "{by_partition:?}");
    for (p, offsets) in by_partition {
        assert_eq!(
            offsets.iter().min(),
            Some(&25),
            "partition {p} resumed at {offsets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn static_member_restart_within_session_timeout_does_not_rebalance() {
    let broker = broker();
    let topic = unique_topic("group-static");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    let group = unique_topic("g-static");
    let seen = Arc::new(Seen::default());
    // The restart must land within the static member's session timeout; 30 s leaves a
    // loaded machine room to close one consumer and start the next.
    let static_1 = [
        ("group.instance.id", "static-1"),
        ("session.timeout.ms", "30000"),
    ];
    let dynamic = spawn_consumer(&broker, &group, &topic, &[], seen.clone());
    let s1 = spawn_consumer(&broker, &group, &topic, &static_1, seen.clone());
    wait_balanced(&broker, &[&dynamic, &s1]);
    let before = dynamic.context_rebalances.load(Ordering::SeqCst);
    let static_partitions = s1.assigned();
    // A static member's close sends no LeaveGroup (KIP-345); its seat is kept.
    s1.close();
    let s2 = spawn_consumer(&broker, &group, &topic, &static_1, seen.clone());
    wait_until(
        "the restarted static member to get its partitions back",
        GROUP_TIMEOUT,
        || s2.assigned() == static_partitions,
    );
    produce(&broker, &topic, 0, 80).await;
    wait_seen(&broker, &seen, 80);
    assert_eq!(
        dynamic.context_rebalances.load(Ordering::SeqCst),
        before,
        "the other member was rebalanced"
    );
    s2.close();
    dynamic.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn kip848_consumer_protocol_splits_and_takes_over() {
    let broker = broker();
    let topic = unique_topic("group-848");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    produce(&broker, &topic, 0, 400).await;
    let group = unique_topic("g-848");
    let seen = Arc::new(Seen::default());
    let props = [("group.protocol", "consumer")];
    let a = spawn_consumer(&broker, &group, &topic, &props, seen.clone());
    let b = spawn_consumer(&broker, &group, &topic, &props, seen.clone());
    wait_balanced(&broker, &[&a, &b]);
    wait_seen(&broker, &seen, 400);
    b.close();
    wait_until("the survivor to own every partition", GROUP_TIMEOUT, || {
        a.assigned().len() == PARTITIONS as usize
    });
    produce(&broker, &topic, 400, 400).await;
    wait_seen(&broker, &seen, 800);
    a.close();
    assert!(seen.duplicates() <= seen.failed_commits.load(Ordering::SeqCst));
}

/// Bound on one kcat run (it exits at the end of every assigned partition, `-e`).
const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs kcat as a balanced consumer of `topic` in `group` until the end of every assigned
/// partition; returns (records printed, librdkafka's group/offset debug lines).
fn kcat_consume(broker: &Broker, group: &str, topic: &str) -> (usize, String) {
    let mut child = Command::new("kcat")
        .args(["-b", broker.bootstrap(), "-X", "broker.address.family=v4"])
        .args(["-X", "auto.offset.reset=earliest", "-d", "cgrp,topic"])
        .args(["-G", group, "-e", "-q", "-f", "%p %o\n", topic])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat (apt-get install kcat)");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let records = thread::spawn(move || BufReader::new(stdout).lines().count());
    let log = thread::spawn(move || {
        let keep = [
            "COMMIT",
            "OFFSET",
            "JOIN",
            "SYNC",
            "LEAVE",
            "HEARTBEAT",
            "ASSIGN",
            "REBALANCE",
            "ERROR",
            "FAIL",
            "LOST",
        ];
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter(|l| keep.iter().any(|k| l.to_uppercase().contains(k)))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let deadline = Instant::now() + KCAT_TIMEOUT;
    while child.try_wait().expect("wait for kcat").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kcat did not finish within {KCAT_TIMEOUT:?}\n{}",
                log.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    (records.join().unwrap(), log.join().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_balanced_consumer_commits_and_resumes() {
    let broker = broker();
    let topic = unique_topic("group-kcat");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    produce(&broker, &topic, 0, 64).await;
    let group = unique_topic("g-kcat");
    // kcat commits what it consumed when it closes (enable.auto.commit, commit on unassign).
    let (first, first_log) = kcat_consume(&broker, &group, &topic);
    assert_eq!(first, 64, "first kcat run\n{first_log}");
    produce(&broker, &topic, 64, 16).await;
    let (second, second_log) = kcat_consume(&broker, &group, &topic);
    assert_eq!(
        second, 16,
        "second kcat run must resume from the committed offsets\n\
         ---- first run ----\n{first_log}\n---- second run ----\n{second_log}"
    );
}

/// Kafka's placement of a group in `__consumer_offsets` (Java's `String.hashCode`).
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (if h == i32::MIN { 0 } else { h.abs() }) % partitions
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_log_is_compacted_and_acknowledged_commits_survive_kill9() {
    let mut broker = Broker::start_with(
        BrokerOpts::default()
            .with("group.initial.rebalance.delay.ms", "200")
            .with("offsets.topic.segment.bytes", "16384")
            .with("log.cleaner.backoff.ms", "100"),
    );
    let topic = unique_topic("group-compact");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    produce(&broker, &topic, 0, 800).await;
    let group = unique_topic("g-compact");
    let seen = Arc::new(Seen::default());
    let a = spawn_consumer(&broker, &group, &topic, &[], seen.clone());
    wait_seen(&broker, &seen, 800);
    a.close();
    // 800 one-record commits are far more than 16 KiB: the log cleaner (the topic is
    // cleanup.policy=compact, as Kafka's) keeps the latest commit per key of the sealed segments.
    let p = offsets_partition(&group, 50);
    wait_until("the offsets log to be compacted", GROUP_TIMEOUT, || {
        broker.read_partition("__consumer_offsets", p).len() < 400
    });

    // SIGKILL: every commit the consumer saw acknowledged must be there after recovery.
    broker.kill9();
    broker.start_again();
    let probe = broker.consumer(&[("group.id", &group)]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&topic, p);
    }
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("OffsetFetch");
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            rdkafka::Offset::Offset(100),
            "partition {}",
            e.partition()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cooperative_sticky_members_rebalance_incrementally() {
    let broker = broker();
    let topic = unique_topic("group-coop");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    produce(&broker, &topic, 0, 400).await;
    let group = unique_topic("g-coop");
    let seen = Arc::new(Seen::default());
    let props = [("partition.assignment.strategy", "cooperative-sticky")];
    let a = spawn_consumer(&broker, &group, &topic, &props, seen.clone());
    wait_until("the first member to own everything", GROUP_TIMEOUT, || {
        a.assigned().len() == PARTITIONS as usize
    });
    let b = spawn_consumer(&broker, &group, &topic, &props, seen.clone());
    let c = spawn_consumer(&broker, &group, &topic, &props, seen.clone());
    wait_balanced(&broker, &[&a, &b, &c]);
    wait_seen(&broker, &seen, 400);
    b.close();
    wait_balanced(&broker, &[&a, &c]);
    produce(&broker, &topic, 400, 400).await;
    wait_seen(&broker, &seen, 800);
    a.close();
    c.close();
    assert!(seen.duplicates() <= seen.failed_commits.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_metadata_round_trips_and_unknown_partitions_are_refused() {
    let broker = broker();
    let topic = unique_topic("group-meta");
    broker.create_topic(&topic, 2, &[]).await;
    let group = unique_topic("g-meta");
    let c = broker.consumer(&[("group.id", &group)]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(5))
        .unwrap();
    tpl.find_partition(&topic, 0)
        .unwrap()
        .set_metadata("checkpoint-0");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    let mut ask = rdkafka::TopicPartitionList::new();
    ask.add_partition(&topic, 0);
    let got = c.committed_offsets(ask, Duration::from_secs(10)).unwrap();
    let e = got.find_partition(&topic, 0).unwrap();
    assert_eq!(e.offset(), rdkafka::Offset::Offset(5));
    assert_eq!(e.metadata(), "checkpoint-0");

    let mut bad = rdkafka::TopicPartitionList::new();
    bad.add_partition_offset(&topic, 7, rdkafka::Offset::Offset(1))
        .unwrap();
    bad.add_partition_offset("no-such-topic-for-groups", 0, rdkafka::Offset::Offset(1))
        .unwrap();
    let err = c
        .commit(&bad, CommitMode::Sync)
        .expect_err("commit to unknown partitions");
    assert!(
        format!("{err:?}").contains("UnknownTopicOrPartition"),
        "{err:?}"
    );
}

/// librdkafka's test 0045 (`do_test_subscribe_many_updates`): one consumer moves a window of
/// five topics over 100 topics of 4 partitions, one `subscribe` per step without waiting,
/// unsubscribing every 7th step; every 5th step (and the last) its assignment must become
/// exactly the partitions of its latest subscription (none after an unsubscribe).
fn subscribe_many_updates(protocol: &str) {
    const TOPICS: usize = 100;
    const WINDOW: usize = 5;
    const TOPIC_PARTITIONS: i32 = 4;
    // librdkafka's test gives each check 10 s (its harness scales that up on slow machines).
    const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
    // Two shards (the default): the JoinGroup that librdkafka abandons was seen only when
    // the connection and the group coordinator are on different cores.
    let broker = Broker::start();
    let base = unique_topic("many-updates");
    let topics: Vec<String> = (0..TOPICS).map(|i| format!("{base}-{i}")).collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let new: Vec<rdkafka::admin::NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                rdkafka::admin::NewTopic::new(
                    t,
                    TOPIC_PARTITIONS,
                    rdkafka::admin::TopicReplication::Fixed(1),
                )
            })
            .collect();
        let options =
            rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = broker
            .admin()
            .create_topics(&new, &options)
            .await
            .unwrap_or_else(|e| panic!("CreateTopics: {e}\n{}", broker.stderr_tail()));
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("CreateTopics {t}: {e:?}"));
        }
    });
    for t in &topics {
        broker.wait_for_topic(t, TOPIC_PARTITIONS);
    }
    let mut config = broker.client_config();
    config
        .set("group.id", &topics[0])
        .set("group.protocol", protocol)
        .set("auto.offset.reset", "earliest");
    if protocol == "classic" {
        // librdkafka's test harness value (`test_session_timeout_ms`).
        config.set("session.timeout.ms", "6000");
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut slowest = Duration::ZERO;
    for i in 0..TOPICS {
        let window: Vec<&str> = topics[i..(i + WINDOW).min(TOPICS)]
            .iter()
            .map(String::as_str)
            .collect();
        consumer.subscribe(&window).expect("subscribe");
        let unsubscribe = i % 7 == 0;
        if unsubscribe {
            consumer.unsubscribe();
        }
        // A short poll runs the rdkafka crate's rebalance callback, so JoinGroups go out
        // while the subscription keeps changing (librdkafka's own test, without a callback,
        // assigns on its internal thread). This is what drops in-flight JoinGroup answers.
        let _ = consumer.poll(Duration::from_millis(10));
        if i % 5 != 0 && i != TOPICS - 1 {
            continue;
        }
        let mut expected: Vec<(String, i32)> = if unsubscribe {
            vec![]
        } else {
            window
                .iter()
                .flat_map(|t| (0..TOPIC_PARTITIONS).map(move |p| (t.to_string(), p)))
                .collect()
        };
        expected.sort();
        let started = Instant::now();
        let mut got;
        // As librdkafka's `test_consumer_wait_assignment_topic_partition_list`: look first,
        // then poll (the rdkafka crate's rebalance callback runs inside poll) and look again.
        loop {
            got = consumer
                .assignment()
                .map(|a| {
                    let mut v: Vec<(String, i32)> = a
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_string(), e.partition()))
                        .collect();
                    v.sort();
                    v
                })
                .unwrap_or_default();
            if got == expected || started.elapsed() > CHECK_TIMEOUT {
                break;
            }
            let _ = consumer.poll(Duration::from_millis(100));
        }
        assert_eq!(
            got,
            expected,
            "{protocol}: step {i}: assignment after {:?}\n{}",
            started.elapsed(),
            broker.stderr_tail()
        );
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("{protocol}: slowest assignment check {slowest:?}");
    drop(consumer);
}

#[test]
fn subscribe_many_updates_classic_ends_with_the_last_subscription() {
    subscribe_many_updates("classic");
}

#[test]
fn subscribe_many_updates_consumer_protocol_ends_with_the_last_subscription() {
    subscribe_many_updates("consumer");
}
