//! A seeded nemesis against a 3-node cluster of real `sluice` processes on 127.0.0.1 (one core
//! each): two acks=all producers (one idempotent, one not) and a reader run the whole time while
//! the nemesis, in a seeded random order, kills -9 a random broker, kills -9 a partition's
//! leader, kills -9 every broker at once, and SIGSTOPs a broker for longer than
//! `replica.lag.time.max.ms` (it must leave every ISR, as Metadata shows, and rejoin after
//! SIGCONT). Each fault is healed (every partition led, with its full ISR, on every node) before
//! the next. Then: every acknowledged record is at its acknowledged offset, the idempotent
//! producer's records appear once each, each producer's acknowledged offsets rise in its send
//! order, nothing the reader read vanished or changed, and the replicas' log files are byte for
//! byte the same.
//!
//! - `SLUICE_NEMESIS_SEED=<u64>` picks the fault order and targets (the seed is printed; the
//!   default is fixed, so CI runs one known schedule).
//! - `SLUICE_NEMESIS_ROUNDS=<n>` is the opt-in long version: `n` rounds of about six faults each
//!   (default 1, which fits CI: about two minutes on 2 cores), e.g.
//!   `SLUICE_NEMESIS_ROUNDS=20 SLUICE_NEMESIS_SEED=$RANDOM cargo test --test nemesis`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{metadata, Cluster, View, QUORUM_TIMEOUT};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

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
/// `replica.lag.time.max.ms` above.
const LAG_BOUND: Duration = Duration::from_millis(3000);
const TOPIC: &str = "nemesis";
const PARTITIONS: i32 = 3;
const NODES: i32 = 3;
/// The fixed schedule CI runs when `SLUICE_NEMESIS_SEED` is not set.
const DEFAULT_SEED: u64 = 20261201;
/// Records each producer has in flight at once (then it waits for all their acknowledgements).
const PRODUCER_WINDOW: u64 = 10;
/// Pause between a producer's windows, to leave the two cores to the brokers.
const PRODUCER_PAUSE: Duration = Duration::from_millis(20);
/// How long producers run on a healed cluster between faults.
const CALM: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillRandomBroker,
    KillLeader,
    KillAllBrokers,
    PauseBroker,
}

const FAULTS: [Fault; 4] = [
    Fault::KillRandomBroker,
    Fault::KillLeader,
    Fault::KillAllBrokers,
    Fault::PauseBroker,
];

/// One acknowledged record.
#[derive(Clone, Debug)]
struct Ack {
    producer: &'static str,
    seq: u64,
    partition: i32,
    offset: i64,
    value: String,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v}: {e}")),
        Err(_) => default,
    }
}

/// Each round: every kind of fault once plus two more drawn at random, shuffled.
fn schedule(rng: &mut StdRng, rounds: u64) -> Vec<Fault> {
    let mut all = Vec::new();
    for _ in 0..rounds {
        let mut round = FAULTS.to_vec();
        for _ in 0..2 {
            round.push(FAULTS[rng.gen_range(0..FAULTS.len())]);
        }
        round.shuffle(rng);
        all.extend(round);
    }
    all
}

fn client(c: &Cluster) -> ClientConfig {
    let mut config = c.client_config();
    config
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000");
    config
}

fn view(c: &Cluster, id: i32) -> Option<View> {
    let port = c.ports.iter().find(|p| p.node_id == id)?.kafka_port;
    metadata(port).ok()
}

/// Every partition of the topic led and with all three replicas in its ISR, as node `id` says.
fn healed_on(c: &Cluster, id: i32) -> bool {
    view(c, id).is_some_and(|v| {
        v.topics.get(TOPIC).is_some_and(|ps| {
            ps.len() == PARTITIONS as usize
                && ps
                    .iter()
                    .all(|p| p.leader >= 0 && p.isr.len() == NODES as usize)
        })
    })
}

fn wait_healed(c: &Cluster, what: &str) {
    for id in 1..=NODES {
        c.wait(&format!("{what}: node {id} sees every ISR full"), || {
            healed_on(c, id)
        });
    }
}

async fn create_topic(c: &Cluster) {
    let admin: AdminClient<DefaultClientContext> = client(c).create().expect("admin");
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    loop {
        let r = match admin.create_topics([&topic], &opts).await {
            Ok(r) => r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("create {TOPIC}: {e}; retrying");
                continue;
            }
            Err(e) => panic!("create {TOPIC}: {e}\n{}", c.tails()),
        };
        match &r[0] {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => break,
            Err((_, e)) if Instant::now() < deadline => {
                eprintln!("create {TOPIC}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err((_, e)) => panic!("create {TOPIC}: {e}\n{}", c.tails()),
        }
    }
    wait_healed(c, "topic created");
}

fn producer(c: &Cluster, idempotent: bool) -> FutureProducer {
    let mut config = client(c);
    config
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .set("request.timeout.ms", "10000")
        .set("retry.backoff.ms", "100")
        .set("linger.ms", "2");
    if idempotent {
        config.set("enable.idempotence", "true");
    } else {
        // One request in flight: retries cannot reorder what the producer sent.
        config
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1");
    }
    config.create().expect("producer")
}

/// Sends `"{name}-{seq}"` to partition `seq % PARTITIONS`, a window at a time, until `stop`;
/// records every acknowledged record in `acks` and counts failed sends.
async fn produce(
    producer: FutureProducer,
    name: &'static str,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) -> u64 {
    let mut seq = 0u64;
    let mut failed = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut window = Vec::new();
        for _ in 0..PRODUCER_WINDOW {
            let value = format!("{name}-{seq:08}");
            let partition = (seq % PARTITIONS as u64) as i32;
            let record = FutureRecord::to(TOPIC)
                .key(name)
                .payload(&value)
                .partition(partition);
            // Enqueued now (a window fits librdkafka's queue many times over); the delivery
            // future owns nothing of `value`.
            let delivery = producer
                .send_result(record)
                .unwrap_or_else(|(e, _)| panic!("producer {name}: enqueue {value}: {e}"));
            window.push((seq, value.clone(), delivery));
            seq += 1;
        }
        for (seq, value, delivery) in window {
            match delivery.await.expect("delivery future cancelled") {
                Ok(d) => acks.lock().unwrap_or_else(|p| p.into_inner()).push(Ack {
                    producer: name,
                    seq,
                    partition: d.partition,
                    offset: d.offset,
                    value,
                }),
                Err((e, _)) => {
                    failed += 1;
                    eprintln!("producer {name}: {value} not acknowledged: {e}");
                }
            }
        }
        tokio::time::sleep(PRODUCER_PAUSE).await;
    }
    failed
}

/// Reads every partition from the beginning until `stop`, recording (partition, offset) ->
/// value; a second, different value at an offset already read is a violation, kept in `changed`.
fn read_along(
    bootstrap: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<(i32, i64), String>>>,
    changed: Arc<Mutex<Vec<String>>>,
) {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", "nemesis-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "200")
        .set("check.crcs", "true")
        .create()
        .expect("reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning)
            .expect("tpl");
    }
    reader.assign(&tpl).expect("assign");
    // Broker errors while brokers die are expected; the consumer retries by itself.
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
        let key = (m.partition(), m.offset());
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = seen.insert(key, v.clone()) {
            if old != v {
                changed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{key:?}: read {old:?}, later {v:?}"));
            }
        }
    }
}

/// Every record of partition `p`, from the beginning to its high watermark, as offset -> value.
fn read_partition(c: &Cluster, p: i32) -> BTreeMap<i64, String> {
    let reader: BaseConsumer = client(c)
        .set("group.id", "nemesis-final")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("reader");
    let (_, end) = reader
        .fetch_watermarks(TOPIC, p, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("watermarks of {TOPIC}-{p}: {e}\n{}", c.tails()));
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning)
        .expect("tpl");
    reader.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + QUORUM_TIMEOUT;
    while out.keys().next_back().is_none_or(|o| *o < end - 1) && end > 0 {
        assert!(
            Instant::now() < deadline,
            "read of {TOPIC}-{p} reached {:?} of high watermark {end}\n{}",
            out.keys().next_back(),
            c.tails()
        );
        match reader.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                out.insert(m.offset(), v);
            }
            Some(Err(e)) => eprintln!("final read of {TOPIC}-{p}: {e}"),
            None => {}
        }
    }
    out
}

fn signal(c: &mut Cluster, id: i32, sig: &str) {
    let pid = c.node(id).pid();
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Sleeps on the test thread (brokers must be started from it, see `common::Broker`), leaving
/// the producers their worker threads.
fn hold(d: Duration) {
    std::thread::sleep(d);
}

/// Runs one fault and heals it; returns what it did, for the log.
fn inject(c: &mut Cluster, rng: &mut StdRng, fault: Fault) -> String {
    match fault {
        Fault::KillRandomBroker => {
            let id = rng.gen_range(1..=NODES);
            c.node(id).kill9();
            hold(Duration::from_millis(rng.gen_range(500..4000)));
            c.node(id).start_again();
            format!("kill -9 of broker {id}, restarted")
        }
        Fault::KillLeader => {
            let p = rng.gen_range(0..PARTITIONS) as usize;
            let leader = view(c, 1)
                .and_then(|v| v.topics.get(TOPIC).and_then(|ps| ps.get(p).cloned()))
                .map(|p| p.leader)
                .expect("a healed cluster's metadata");
            assert!(leader >= 0, "partition {p} has no leader");
            c.node(leader).kill9();
            let survivor = (1..=NODES).find(|id| *id != leader).unwrap_or(1);
            c.wait(
                &format!("a new leader of {TOPIC}-{p} after kill -9 of {leader}"),
                || {
                    view(c, survivor).is_some_and(|v| {
                        v.topics
                            .get(TOPIC)
                            .and_then(|ps| ps.get(p))
                            .is_some_and(|x| x.leader >= 0 && x.leader != leader)
                    })
                },
            );
            c.node(leader).start_again();
            format!("kill -9 of broker {leader}, leader of partition {p}; failed over, restarted")
        }
        Fault::KillAllBrokers => {
            for id in 1..=NODES {
                c.node(id).kill9();
            }
            hold(Duration::from_millis(rng.gen_range(200..2000)));
            for id in 1..=NODES {
                c.node(id).start_again();
            }
            "kill -9 of every broker, restarted".to_string()
        }
        Fault::PauseBroker => {
            let id = rng.gen_range(1..=NODES);
            let others: Vec<i32> = (1..=NODES).filter(|x| *x != id).collect();
            signal(c, id, "-STOP");
            let stopped = Instant::now();
            // Only the running nodes are asked: a stopped one accepts connections but never
            // answers.
            c.wait(&format!("paused broker {id} out of every ISR"), || {
                others.iter().all(|o| {
                    view(c, *o).is_some_and(|v| {
                        v.topics.get(TOPIC).is_some_and(|ps| {
                            ps.iter()
                                .all(|p| !p.isr.contains(&id) && p.leader >= 0 && p.leader != id)
                        })
                    })
                })
            });
            let out_after = stopped.elapsed();
            // Paused beyond the lag bound in any case, and a little longer at random.
            let extra = Duration::from_millis(rng.gen_range(0..2000));
            hold((LAG_BOUND + extra).saturating_sub(out_after));
            signal(c, id, "-CONT");
            format!(
                "SIGSTOP of broker {id} (out of every ISR after {out_after:?}) for {:?}, SIGCONT",
                stopped.elapsed()
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn acknowledged_records_survive_a_seeded_nemesis() {
    let _serial = serial();
    let seed = env_u64("SLUICE_NEMESIS_SEED", DEFAULT_SEED);
    let rounds = env_u64("SLUICE_NEMESIS_ROUNDS", 1);
    let mut rng = StdRng::seed_from_u64(seed);
    let faults = schedule(&mut rng, rounds);
    eprintln!(
        "nemesis seed {seed} (rerun with SLUICE_NEMESIS_SEED={seed}), {rounds} round(s): {faults:?}"
    );
    let started = Instant::now();
    let mut c = Cluster::start(NODES as usize, FAST);
    c.wait_ready_for_groups();
    create_topic(&c).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let producers: Vec<_> = [("i", true), ("n", false)]
        .into_iter()
        .map(|(name, idempotent)| {
            tokio::spawn(produce(
                producer(&c, idempotent),
                name,
                stop.clone(),
                acks.clone(),
            ))
        })
        .collect();
    let seen: Arc<Mutex<BTreeMap<(i32, i64), String>>> = Arc::default();
    let changed: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let (bootstrap, stop, seen, changed) =
            (c.bootstrap(), stop.clone(), seen.clone(), changed.clone());
        std::thread::spawn(move || read_along(bootstrap, stop, seen, changed))
    };

    hold(CALM);
    for (i, fault) in faults.iter().enumerate() {
        let t = Instant::now();
        let acked_before = acks.lock().unwrap_or_else(|p| p.into_inner()).len();
        let what = inject(&mut c, &mut rng, *fault);
        wait_healed(&c, &what);
        hold(CALM);
        let acked_after = acks.lock().unwrap_or_else(|p| p.into_inner()).len();
        eprintln!(
            "fault {}/{}: {what}; healed in {:?}; {} records acknowledged meanwhile",
            i + 1,
            faults.len(),
            t.elapsed(),
            acked_after - acked_before
        );
    }

    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for p in producers {
        failed += p.await.expect("producer task");
    }
    reader.join().expect("reader thread");
    wait_healed(&c, "after the producers stopped");
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    eprintln!(
        "{} records acknowledged, {failed} sends failed, {} records read along, faults done after {:?}",
        acks.len(),
        seen.lock().unwrap_or_else(|p| p.into_inner()).len(),
        started.elapsed()
    );
    assert!(
        acks.iter().any(|a| a.producer == "i") && acks.iter().any(|a| a.producer == "n"),
        "both producers must have had records acknowledged\n{}",
        c.tails()
    );

    let logs: Vec<BTreeMap<i64, String>> = (0..PARTITIONS).map(|p| read_partition(&c, p)).collect();
    check(
        &c,
        &acks,
        &logs,
        &seen.lock().unwrap_or_else(|p| p.into_inner()),
    );
    let changed = changed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        changed.is_empty(),
        "records read along changed under the reader: {changed:?}"
    );
    for p in 0..PARTITIONS {
        c.wait(
            &format!("identical logs of {TOPIC}-{p} on every node"),
            || {
                let logs: Vec<Vec<u8>> = (1..=NODES).map(|id| c.log_bytes(id, TOPIC, p)).collect();
                !logs[0].is_empty() && logs.iter().all(|l| *l == logs[0])
            },
        );
    }
    eprintln!("nemesis seed {seed}: passed in {:?}", started.elapsed());
    for node in &mut c.nodes {
        node.stop();
    }
}

/// The final log against what was acknowledged and what was read along.
fn check(
    c: &Cluster,
    acks: &[Ack],
    logs: &[BTreeMap<i64, String>],
    seen: &BTreeMap<(i32, i64), String>,
) {
    let mut lost = Vec::new();
    for a in acks {
        let got = logs[a.partition as usize].get(&a.offset);
        if got != Some(&a.value) {
            lost.push(format!(
                "{} acknowledged at {}-{} but the log holds {got:?}",
                a.value, a.partition, a.offset
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost or moved, first: {:?}\n{}",
        lost.len(),
        acks.len(),
        &lost[..lost.len().min(20)],
        c.tails()
    );
    // The idempotent producer: each value at most once in the whole topic, and in send order.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for log in logs {
        let mut last: Option<&str> = None;
        for v in log.values().filter(|v| v.starts_with("i-")) {
            *counts.entry(v).or_default() += 1;
            assert!(
                last.is_none_or(|l| l < v.as_str()),
                "idempotent producer's records out of send order: {last:?} before {v}"
            );
            last = Some(v);
        }
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "idempotent producer's records duplicated: {dups:?}"
    );
    // Both producers: acknowledged offsets rise with the send order, per partition.
    for name in ["i", "n"] {
        for p in 0..PARTITIONS {
            let mut mine: Vec<&Ack> = acks
                .iter()
                .filter(|a| a.producer == name && a.partition == p)
                .collect();
            mine.sort_by_key(|a| a.seq);
            for w in mine.windows(2) {
                assert!(
                    w[0].offset < w[1].offset,
                    "producer {name}'s order lost on partition {p}: {} at {} then {} at {}",
                    w[0].value,
                    w[0].offset,
                    w[1].value,
                    w[1].offset
                );
            }
        }
    }
    // What the reader saw never vanished nor changed.
    let vanished: Vec<String> = seen
        .iter()
        .filter(|((p, o), v)| logs[*p as usize].get(o) != Some(*v))
        .map(|((p, o), v)| {
            format!(
                "{v} read at {p}-{o}, log has {:?}",
                logs[*p as usize].get(o)
            )
        })
        .collect();
    assert!(
        vanished.is_empty(),
        "{} records read along vanished, first: {:?}\n{}",
        vanished.len(),
        &vanished[..vanished.len().min(20)],
        c.tails()
    );
}
