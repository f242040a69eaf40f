//! What survives a restart: clean stop (SIGTERM), kill -9 at random moments under load, and
//! torn or garbage bytes at the end of the active segment.
//!
//! The promise checked: a record the broker acknowledged (acks=all) is served at the offset it
//! was acknowledged with, after any number of crashes of the process (not of the machine: page
//! cache survives SIGKILL). Unacknowledged records may or may not survive; every record that is
//! served must be one the test produced, intact, at dense offsets.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rdkafka::admin::AdminOptions;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use common::{active_segment, unique_topic, wait_until, Broker, Record, WAIT_TIMEOUT};

/// One acknowledged record: where the broker said it put it, and what it was.
#[derive(Clone, Debug)]
struct Acked {
    partition: i32,
    offset: i64,
    value: Vec<u8>,
}

/// Records every successful delivery report.
#[derive(Clone, Default)]
struct AckRecorder {
    acked: Arc<Mutex<Vec<Acked>>>,
    /// Delivery errors, for failure messages (expected after a kill; a bug otherwise).
    errors: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for AckRecorder {}

impl ProducerContext for AckRecorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => self.acked.lock().expect("lock").push(Acked {
                partition: message.partition(),
                offset: message.offset(),
                value: message.payload().unwrap_or_default().to_vec(),
            }),
            Err((e, message)) => self
                .errors
                .lock()
                .expect("lock")
                .push(format!("p{}: {e}", message.partition())),
        }
    }
}

/// `sluice-test r<round> p<partition> s<seq> <filler> #<checksum>`: self-checking values, so a
/// served record that is not one of ours, or is damaged, is caught even if it was never acked.
fn make_value(round: u32, partition: i32, seq: u64) -> Vec<u8> {
    let filler = "abcdefghij".repeat((seq % 12) as usize);
    let body = format!("sluice-test r{round} p{partition} s{seq} {filler}");
    format!("{body} #{:016x}", checksum(body.as_bytes())).into_bytes()
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Panics unless `value` is a well-formed test value for `partition`.
fn check_value(partition: i32, offset: i64, value: &[u8]) {
    let text = std::str::from_utf8(value)
        .unwrap_or_else(|_| panic!("p{partition} offset {offset}: value is not UTF-8: {value:?}"));
    let (body, sum) = text
        .rsplit_once(" #")
        .unwrap_or_else(|| panic!("p{partition} offset {offset}: malformed value {text:?}"));
    assert_eq!(
        format!("{:016x}", checksum(body.as_bytes())),
        sum,
        "p{partition} offset {offset}: checksum mismatch in {text:?}"
    );
    let fields: Vec<&str> = body.split(' ').collect();
    assert_eq!(
        fields[0], "sluice-test",
        "p{partition} offset {offset}: {text:?}"
    );
    assert_eq!(
        fields[2],
        format!("p{partition}"),
        "p{partition} offset {offset}: record of another partition served: {text:?}"
    );
}

fn crash_producer(
    broker: &Broker,
    recorder: &AckRecorder,
    idempotent: bool,
) -> ThreadedProducer<AckRecorder> {
    broker
        .client_config()
        .set("acks", "all")
        .set("linger.ms", "2")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("message.timeout.ms", "10000")
        .set("queue.buffering.max.messages", "20000")
        // Batches must fit the torn test's 64 KiB segments (Kafka: RECORD_BATCH_TOO_LARGE).
        .set("batch.size", "16384")
        // The idempotent variant also sends compressed batches through recovery.
        .set("compression.type", if idempotent { "lz4" } else { "none" })
        .create_with_context::<_, ThreadedProducer<AckRecorder>>(recorder.clone())
        .expect("create producer")
}

/// Reads every partition in full and checks it against everything acknowledged so far.
/// Returns the high watermark of each partition.
fn verify(broker: &Broker, topic: &str, partitions: i32, acked: &[Acked]) -> Vec<i64> {
    let mut by_partition: HashMap<i32, BTreeMap<i64, &[u8]>> = HashMap::new();
    for ack in acked {
        let previous = by_partition
            .entry(ack.partition)
            .or_default()
            .insert(ack.offset, &ack.value);
        assert!(
            previous.is_none(),
            "broker acknowledged two records at p{} offset {}",
            ack.partition,
            ack.offset
        );
    }
    let mut high_watermarks = Vec::new();
    for partition in 0..partitions {
        let expected = by_partition.remove(&partition).unwrap_or_default();
        let (low, high) = broker.watermarks(topic, partition);
        assert_eq!(low, 0, "p{partition}: log start offset moved");
        if let Some((&last, _)) = expected.last_key_value() {
            assert!(
                high > last,
                "p{partition}: high watermark {high} but offset {last} was acknowledged\n{}",
                broker.stderr_tail()
            );
        }
        let served: Vec<Record> = broker.read_range(topic, partition, 0, high);
        for (i, record) in served.iter().enumerate() {
            assert_eq!(
                record.offset, i as i64,
                "p{partition}: served offsets are not dense"
            );
            let value = record.value.as_deref().unwrap_or_default();
            check_value(partition, record.offset, value);
        }
        for (&offset, &value) in &expected {
            let record = &served[offset as usize];
            assert_eq!(
                record.value.as_deref(),
                Some(value),
                "p{partition} offset {offset}: acknowledged value lost or changed"
            );
        }
        high_watermarks.push(high);
    }
    high_watermarks
}

fn crash_rounds(idempotent: bool) {
    const PARTITIONS: i32 = 3;
    const ROUNDS: u32 = 8;
    // At most ~20k records/s (PACE_SLEEP per PACE_EVERY records), so the 0.2-1.5 s window
    // never reaches the per-round bound: the kill always lands while records are in flight.
    const RECORDS_PER_ROUND_MAX: u64 = 60_000;
    const PACE_EVERY: u64 = 100;
    const PACE_SLEEP: Duration = Duration::from_millis(5);
    let seed: u64 = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("crash test seed {seed} (set SLUICE_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut broker = Broker::start();
    let topic = unique_topic(if idempotent {
        "crash-idempotent"
    } else {
        "crash"
    });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // 256 KiB segments: kills land around segment rolls too, and recovery walks many segments.
    runtime.block_on(broker.create_topic(&topic, PARTITIONS, &[("segment.bytes", "262144")]));

    let mut all_acked: Vec<Acked> = Vec::new();
    let mut rounds_killed_mid_stream = 0;
    for round in 0..ROUNDS {
        let recorder = AckRecorder::default();
        let producer = crash_producer(&broker, &recorder, idempotent);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (topic, stop) = (topic.clone(), stop.clone());
            thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if seq >= RECORDS_PER_ROUND_MAX {
                        // Bounded work per round; keep the connection idle until the kill.
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    if seq % PACE_EVERY == PACE_EVERY - 1 {
                        // Paced, so the kill lands while records are in flight.
                        thread::sleep(PACE_SLEEP);
                    }
                    let partition = (seq % PARTITIONS as u64) as i32;
                    let value = make_value(round, partition, seq);
                    let record = BaseRecord::<[u8], [u8]>::to(&topic)
                        .partition(partition)
                        .payload(&value[..]);
                    match producer.send(record) {
                        Ok(()) => seq += 1,
                        Err((e, _))
                            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                        {
                            thread::sleep(Duration::from_millis(2))
                        }
                        Err((e, _)) => panic!("enqueue: {e}"),
                    }
                }
                // Dropping the producer purges whatever was not acknowledged.
                drop(producer);
                seq
            })
        };
        let acked = recorder.acked.clone();
        wait_until(
            "the first acknowledgement of the round",
            WAIT_TIMEOUT,
            || !acked.lock().expect("lock").is_empty(),
        );
        thread::sleep(Duration::from_millis(rng.gen_range(200..1500)));
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        let enqueued = writer.join().expect("producer thread");
        let round_acked = std::mem::take(&mut *recorder.acked.lock().expect("lock"));
        eprintln!(
            "round {round}: {} of {enqueued} enqueued acknowledged before SIGKILL",
            round_acked.len()
        );
        if (round_acked.len() as u64) < enqueued {
            rounds_killed_mid_stream += 1;
        }
        all_acked.extend(round_acked);

        broker.start_again();
        let high = verify(&broker, &topic, PARTITIONS, &all_acked);
        eprintln!("round {round}: after restart high watermarks {high:?}");
    }
    // The test means something only if some kills hit records in flight.
    assert!(
        rounds_killed_mid_stream > 0,
        "no round was killed with records in flight: the producer finished before every kill"
    );
}

#[test]
fn acknowledged_records_survive_repeated_kill9() {
    crash_rounds(false);
}

#[test]
fn acknowledged_records_survive_repeated_kill9_idempotent_producer() {
    crash_rounds(true);
}

/// Produces `count` records one partition-0 batch at a time and returns them as acknowledged.
fn produce_acked(
    broker: &Broker,
    topic: &str,
    round: u32,
    first_seq: u64,
    count: u64,
) -> Vec<Acked> {
    let recorder = AckRecorder::default();
    let producer = crash_producer(broker, &recorder, false);
    for seq in first_seq..first_seq + count {
        let value = make_value(round, 0, seq);
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .partition(0)
                    .payload(&value[..]),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(20)).expect("flush");
    let acked = std::mem::take(&mut *recorder.acked.lock().expect("lock"));
    let errors = recorder.errors.lock().expect("lock");
    assert_eq!(
        acked.len() as u64,
        count,
        "not every record acknowledged; {} delivery errors, first: {:?}\n{}",
        errors.len(),
        errors.first(),
        broker.stderr_tail()
    );
    acked
}

/// Byte position just past the last complete-looking record batch: walks
/// `baseOffset:i64 batchLength:i32` headers. This is where a torn write would land, whether or
/// not the broker preallocates the file.
fn logical_end(segment: &[u8]) -> usize {
    let mut position = 0usize;
    while position + 12 <= segment.len() {
        let length = i32::from_be_bytes(
            segment[position + 8..position + 12]
                .try_into()
                .expect("4 bytes"),
        );
        let end = position + 12 + length.max(0) as usize;
        if length <= 0 || end > segment.len() {
            break;
        }
        position = end;
    }
    position
}

/// Writes `garbage` at the logical end of the active segment of `<topic>-0`.
fn tear_segment(broker: &Broker, topic: &str, garbage: &[u8]) {
    let path = active_segment(&broker.data_dir(), topic, 0);
    let segments = std::fs::read_dir(path.parent().expect("partition dir"))
        .expect("read partition dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count();
    eprintln!("{} .log segments; tearing {}", segments, path.display());
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open segment");
    let mut contents = Vec::new();
    file.read_to_end(&mut contents).expect("read segment");
    let end = logical_end(&contents);
    assert!(end > 0, "{}: no record batch found", path.display());
    file.seek(SeekFrom::Start(end as u64)).expect("seek");
    file.write_all(garbage).expect("write garbage");
    file.sync_all().expect("sync");
    eprintln!(
        "wrote {} garbage bytes at {} of {}",
        garbage.len(),
        end,
        path.display()
    );
}

/// The first `keep` bytes of the last batch of the segment, re-based to `next_offset`: what a
/// write cut short by a crash leaves behind. `usize::MAX` keeps the whole batch.
fn torn_copy_of_last_batch(broker: &Broker, topic: &str, next_offset: i64, keep: usize) -> Vec<u8> {
    let path = active_segment(&broker.data_dir(), topic, 0);
    let contents = std::fs::read(&path).expect("read segment");
    let end = logical_end(&contents);
    let mut position = 0;
    let mut last = 0;
    while position < end {
        last = position;
        let length = i32::from_be_bytes(
            contents[position + 8..position + 12]
                .try_into()
                .expect("4 bytes"),
        );
        position += 12 + length as usize;
    }
    let mut torn = contents[last..end].to_vec();
    torn[0..8].copy_from_slice(&next_offset.to_be_bytes());
    torn.truncate(keep);
    torn
}

/// Builds the bytes to write at the end of the segment, given the broker and the next offset.
type GarbageMaker<'a> = Box<dyn Fn(&Broker, i64) -> Vec<u8> + 'a>;

#[test]
fn torn_and_garbage_tail_of_active_segment_is_discarded_on_recovery() {
    let mut broker = Broker::start();
    let topic = unique_topic("torn");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Small segments: recovery must cope with several closed segments and a torn active one.
    runtime.block_on(broker.create_topic(&topic, 1, &[("segment.bytes", "65536")]));
    let mut acked = produce_acked(&broker, &topic, 0, 0, 2_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);

    let cases: Vec<(&str, GarbageMaker)> = vec![
        (
            "random bytes",
            Box::new(|_, _| (0..97).map(|i| (i * 37 + 11) as u8).collect()),
        ),
        (
            "torn copy of the last batch",
            Box::new(|b, next| torn_copy_of_last_batch(b, &topic, next, 40)),
        ),
        (
            "batch header claiming more bytes than exist",
            Box::new(|b, next| {
                let mut torn = torn_copy_of_last_batch(b, &topic, next, 1 << 20);
                let claimed = (torn.len() as i32) * 4;
                torn[8..12].copy_from_slice(&claimed.to_be_bytes());
                torn
            }),
        ),
        (
            "whole batch copy with one byte flipped (CRC mismatch)",
            Box::new(|b, next| {
                let mut torn = torn_copy_of_last_batch(b, &topic, next, usize::MAX);
                let last = torn.len() - 1;
                torn[last] ^= 0xff;
                torn
            }),
        ),
        ("zeros", Box::new(|_, _| vec![0u8; 4096])),
    ];
    for (round, (name, garbage)) in cases.iter().enumerate() {
        let round = round as u32 + 1;
        eprintln!("case: {name}");
        broker.kill9();
        let next_offset = acked.len() as i64;
        tear_segment(&broker, &topic, &garbage(&broker, next_offset));
        broker.start_again();
        let high = verify(&broker, &topic, 1, &acked);
        assert_eq!(
            high[0], next_offset,
            "{name}: high watermark after recovery"
        );
        // New records continue right after the last acknowledged one.
        let count = rng.gen_range(1..50);
        let more = produce_acked(&broker, &topic, round, 10_000 * round as u64, count);
        let offsets: Vec<i64> = more.iter().map(|a| a.offset).collect();
        let want: Vec<i64> = (next_offset..next_offset + count as i64).collect();
        assert_eq!(
            offsets, want,
            "{name}: offsets of records produced after recovery"
        );
        acked.extend(more);
        verify(&broker, &topic, 1, &acked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_configs_and_data_survive_clean_restart_and_kill9() {
    let mut broker = Broker::start();
    let topics = [
        (unique_topic("restart-a"), 1, vec![]),
        (
            unique_topic("restart-b"),
            4,
            vec![("retention.ms", "86400000"), ("cleanup.policy", "delete")],
        ),
        (
            unique_topic("restart-c"),
            2,
            vec![
                ("segment.bytes", "1048576"),
                ("message.timestamp.type", "LogAppendTime"),
            ],
        ),
    ];
    for (name, partitions, configs) in &topics {
        broker.create_topic(name, *partitions, configs).await;
    }
    let mut acked = HashMap::new();
    for (name, partitions, _) in &topics {
        let mut all = Vec::new();
        for round in 0..2u32 {
            for partition in 0..*partitions {
                let recorder = AckRecorder::default();
                let producer = crash_producer(&broker, &recorder, false);
                for seq in 0..300u64 {
                    let value = make_value(round, partition, seq);
                    producer
                        .send(
                            BaseRecord::<[u8], [u8]>::to(name)
                                .partition(partition)
                                .payload(&value[..]),
                        )
                        .map_err(|(e, _)| e)
                        .expect("enqueue");
                }
                producer.flush(Duration::from_secs(20)).expect("flush");
                all.extend(std::mem::take(&mut *recorder.acked.lock().expect("lock")));
            }
            if round == 0 {
                acked.insert(name.clone(), all.clone());
            }
        }
        acked.insert(name.clone(), all);
    }

    for how in ["SIGTERM", "SIGKILL"] {
        if how == "SIGTERM" {
            broker.stop();
        } else {
            broker.kill9();
        }
        broker.start_again();
        let listed = broker.list_topics();
        for (name, partitions, configs) in &topics {
            assert_eq!(
                listed.get(name),
                Some(&(*partitions as usize)),
                "after {how}: topic {name} in metadata {listed:?}"
            );
            let described = broker.topic_configs(name).await;
            for (key, value) in configs {
                assert_eq!(
                    described.get(*key).cloned().flatten().as_deref(),
                    Some(*value),
                    "after {how}: {name} config {key}"
                );
            }
            verify(&broker, name, *partitions, &acked[name]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_start_offset_survives_clean_restart() {
    let mut broker = Broker::start();
    let topic = unique_topic("restart-log-start");
    broker.create_topic(&topic, 1, &[]).await;
    produce_acked(&broker, &topic, 0, 0, 100);
    let mut request = TopicPartitionList::new();
    request
        .add_partition_offset(&topic, 0, Offset::Offset(30))
        .expect("tpl");
    broker
        .admin()
        .delete_records(&request, &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("DeleteRecords: {e}\n{}", broker.stderr_tail()));
    assert_eq!(broker.watermarks(&topic, 0), (30, 100));
    broker.restart();
    assert_eq!(
        broker.watermarks(&topic, 0),
        (30, 100),
        "log start offset after clean restart"
    );
    let served = broker.read_partition(&topic, 0);
    assert_eq!(served.first().map(|r| r.offset), Some(30));
}
