//! Exactly-once on a 3-node cluster: a consume-transform-produce loop (read_committed input,
//! transactional output, offsets sent to the transaction) runs while the transaction
//! coordinator's node and then the output partition's leader are killed -9 and restarted. The
//! output must hold every input record exactly once. Real processes, real faults, librdkafka.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use common::cluster::{metadata, Cluster, FAST_SESSIONS};

const RECORDS: usize = 600;
/// Input records per transaction (at most).
const PER_TXN: usize = 10;
const TXN_ID: &str = "eos-loop";
const GROUP: &str = "eos-group";
const LOOP_TIMEOUT: Duration = Duration::from_secs(240);

fn settings() -> Vec<(&'static str, &'static str)> {
    let mut s = FAST_SESSIONS.to_vec();
    s.extend([
        ("replica.lag.time.max.ms", "3000"),
        ("replica.fetch.backoff.ms", "200"),
        ("transaction.state.log.num.partitions", "3"),
        ("transaction.state.log.replication.factor", "3"),
        ("transaction.state.log.min.isr", "2"),
        ("offsets.topic.num.partitions", "3"),
        ("offsets.topic.replication.factor", "3"),
        ("min.insync.replicas", "2"),
        (
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "500",
        ),
    ]);
    s
}

/// The coordinator of `key` (key type 1 = transactional id) as the node on `port` names it.
fn txn_coordinator(port: u16, key: &str) -> Option<i32> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(key.to_string()))
        .with_key_type(1);
    let resp: FindCoordinatorResponse = common::wire::call(
        &format!("127.0.0.1:{port}"),
        ApiKey::FindCoordinator,
        3,
        &req,
    )
    .ok()?;
    (resp.error_code == 0 && resp.node_id.0 >= 0).then_some(resp.node_id.0)
}

fn any_view_leader(c: &Cluster, topic: &str, p: usize) -> Option<i32> {
    c.ports.iter().find_map(|port| {
        let v = metadata(port.kafka_port).ok()?;
        let leader = v.topics.get(topic)?.get(p)?.leader;
        (leader >= 0).then_some(leader)
    })
}

/// The sum over the input's partitions of the group's committed offsets.
fn committed_input(consumer: &BaseConsumer, input: &str) -> usize {
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition(input, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(list) => list
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) if o > 0 => o as usize,
                _ => 0,
            })
            .sum(),
        Err(_) => 0,
    }
}

/// One consume-transform-produce pass until the input is consumed or `stop`: returns the
/// number of input records whose transaction committed, or an error to retry from scratch.
fn run_once(
    config: &rdkafka::ClientConfig,
    input: &str,
    output: &str,
    committed: &AtomicUsize,
) -> Result<bool, String> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", GROUP)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[input]).map_err(|e| e.to_string())?;
    let producer: BaseProducer = config
        .clone()
        .set("transactional.id", TXN_ID)
        .set("transaction.timeout.ms", "10000")
        .set("message.timeout.ms", "10000")
        .set("socket.timeout.ms", "10000")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    producer
        .init_transactions(Duration::from_secs(30))
        .map_err(|e| format!("init: {e}"))?;
    let mut idle_since = Instant::now();
    loop {
        let mut batch = Vec::new();
        let poll_until = Instant::now() + Duration::from_millis(300);
        while batch.len() < PER_TXN && Instant::now() < poll_until {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                )),
                Some(Err(e)) => return Err(format!("consume: {e}")),
                None => {}
            }
        }
        if batch.is_empty() {
            // Done once the group's committed offsets cover the whole input (a commit whose
            // answer was lost may have committed: the offsets say).
            if committed_input(&consumer, input) >= RECORDS {
                committed.fetch_max(RECORDS, Ordering::SeqCst);
                return Ok(true);
            }
            if idle_since.elapsed() > Duration::from_secs(20) {
                return Ok(false);
            }
            continue;
        }
        idle_since = Instant::now();
        producer
            .begin_transaction()
            .map_err(|e| format!("begin: {e}"))?;
        for (partition, value) in &batch {
            let out = format!("out:{value}");
            let mut record = BaseRecord::<str, str>::to(output)
                .partition(*partition)
                .payload(&out);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(20));
                        if !matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ) {
                            return Err(format!("send: {e}"));
                        }
                    }
                }
            }
        }
        let positions = consumer.position().map_err(|e| format!("position: {e}"))?;
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| "no group metadata".to_string())?;
        producer
            .send_offsets_to_transaction(&positions, &metadata, Duration::from_secs(30))
            .map_err(|e| format!("send offsets: {e}"))?;
        match producer.commit_transaction(Duration::from_secs(30)) {
            Ok(()) => {
                committed.fetch_add(batch.len(), Ordering::SeqCst);
            }
            Err(e) => {
                let _ = producer.abort_transaction(Duration::from_secs(30));
                return Err(format!("commit: {e}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_loop_survives_kill_9_of_the_coordinator_and_a_leader() {
    let mut c = Cluster::start(3, &settings());
    c.wait_ready_for_groups();
    let input = "eos-in";
    let output = "eos-out";
    c.create_replicated(input, 2, &[]).await;
    c.create_replicated(output, 2, &[]).await;

    // The input, written once (idempotent, acks=all).
    let feeder: BaseProducer = c
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("feeder");
    for i in 0..RECORDS {
        let v = format!("r-{i}");
        let mut record = BaseRecord::<str, str>::to(input)
            .partition((i % 2) as i32)
            .payload(&v);
        loop {
            match feeder.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    feeder.poll(Duration::from_millis(20));
                }
            }
        }
    }
    feeder.flush(Duration::from_secs(60)).expect("feed input");

    let committed = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let worker = {
        let config = c.client_config();
        let committed = committed.clone();
        let finished = finished.clone();
        thread::spawn(move || {
            let start = Instant::now();
            let mut failures = Vec::new();
            while start.elapsed() < LOOP_TIMEOUT {
                match run_once(&config, input, output, &committed) {
                    Ok(true) => break,
                    Ok(false) => failures.push("idle without finishing".to_string()),
                    Err(e) => {
                        eprintln!("loop pass failed: {e}");
                        failures.push(e)
                    }
                }
                thread::sleep(Duration::from_millis(300));
            }
            finished.store(true, Ordering::SeqCst);
            failures
        })
    };

    let wait_progress = |c: &Cluster, at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while committed.load(Ordering::SeqCst) < at_least && !finished.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the loop made no progress to {at_least} (at {})\n{}",
                committed.load(Ordering::SeqCst),
                c.tails()
            );
            thread::sleep(Duration::from_millis(50));
        }
    };

    // Fault 1: kill -9 the transaction coordinator's node mid-stream, restart it.
    wait_progress(&c, 100);
    let at_first = committed.load(Ordering::SeqCst);
    let port = c.ports[0].kafka_port;
    let coordinator = txn_coordinator(port, TXN_ID)
        .or_else(|| txn_coordinator(c.ports[1].kafka_port, TXN_ID))
        .expect("the transaction coordinator");
    eprintln!("kill -9 of node {coordinator} (transaction coordinator) at {at_first} committed");
    c.node(coordinator).kill9();
    thread::sleep(Duration::from_secs(2));
    c.node(coordinator).start_again();

    // Fault 2: kill -9 the output partition 0's leader, restart it.
    let target = committed.load(Ordering::SeqCst) + 100;
    wait_progress(&c, target.min(RECORDS));
    let at_second = committed.load(Ordering::SeqCst);
    if let Some(leader) = any_view_leader(&c, output, 0) {
        eprintln!("kill -9 of node {leader} (leader of {output}-0) at {at_second} committed");
        c.node(leader).kill9();
        thread::sleep(Duration::from_secs(2));
        c.node(leader).start_again();
    }

    let failures = worker.join().expect("worker thread");
    // The faults must have hit the stream, not its end.
    assert!(
        at_first < RECORDS && at_second < RECORDS,
        "the loop finished before the faults ({at_first}, {at_second} of {RECORDS}): make it longer"
    );
    eprintln!("loop restarts: {failures:?}");
    assert!(
        committed.load(Ordering::SeqCst) >= RECORDS,
        "the loop did not finish: {} of {RECORDS} committed; failures {failures:?}\n{}",
        committed.load(Ordering::SeqCst),
        c.tails()
    );

    // The output, read_committed: every input record exactly once.
    let reader: BaseConsumer = c
        .client_config()
        .set("group.id", "eos-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(output, p, Offset::Beginning)
            .expect("offset");
    }
    reader.assign(&tpl).expect("assign");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_new = Instant::now();
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                *seen.entry(v).or_default() += 1;
                last_new = Instant::now();
            }
            Some(Err(e)) => eprintln!("read output: {e}"),
            None if seen.len() >= RECORDS && last_new.elapsed() > Duration::from_secs(2) => break,
            None => {}
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<String> = (0..RECORDS)
        .map(|i| format!("out:r-{i}"))
        .filter(|v| !seen.contains_key(v))
        .collect();
    assert!(
        duplicates.is_empty() && missing.is_empty() && seen.len() == RECORDS,
        "exactly once violated: {} distinct, duplicates {duplicates:?}, missing {missing:?}\n{}",
        seen.len(),
        c.tails()
    );
}
