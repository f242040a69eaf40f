//! Log compaction (issue 14) against the real broker binary: the topic configs with Kafka's
//! names, KIP-467 record errors for keyless records on compacted topics (librdkafka's test 0011
//! `produce_batch`, reproduced with the rdkafka crate), and the cleaner as a consumer sees it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use common::{unique_topic, wire, Broker, BrokerOpts};

/// Kafka's `AlterConfigOp.OpType`.
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// IncrementalAlterConfigs (v1) of one topic key over a plain socket (the rdkafka crate has no
/// binding for it); returns the resource's error code.
fn alter_topic_config(broker: &Broker, topic: &str, key: &str, op: i8, value: &str) -> i16 {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_config_operation(op)
                .with_value(Some(StrBytes::from_string(value.to_string())))]),
    ]);
    let resp: IncrementalAlterConfigsResponse =
        wire::call(broker.bootstrap(), ApiKey::IncrementalAlterConfigs, 1, &req)
            .unwrap_or_else(|e| panic!("IncrementalAlterConfigs: {e}\n{}", broker.stderr_tail()));
    resp.responses[0].error_code
}

/// Sends every record, then awaits all deliveries; returns each record's outcome in send order.
async fn deliveries(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Vec<Result<i64, RDKafkaErrorCode>> {
    let futures: Vec<DeliveryFuture> = records
        .into_iter()
        .map(|r| {
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    let mut out = Vec::new();
    for f in futures {
        out.push(match f.await.expect("delivery future cancelled") {
            Ok(delivery) => Ok(delivery.offset),
            Err((KafkaError::MessageProduction(code), _)) => Err(code),
            Err((e, _)) => panic!("unexpected delivery error {e}"),
        });
    }
    out
}

/// librdkafka's 0011 `test_message_single_partition_record_fail`: the policy is APPENDed
/// (`delete` → `delete,compact`), 100 records of which every tenth has no key are produced;
/// in one batch the keyless ones fail with INVALID_RECORD and the others with
/// _INVALID_DIFFERENT_RECORD; one record per batch, only the keyless ones fail. Then SUBTRACT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_on_a_compacted_topic_fail_alone_with_record_errors() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    for variation in 0..2 {
        let topic = unique_topic("record-fail");
        broker.create_topic(&topic, 1, &[]).await;
        assert_eq!(
            alter_topic_config(&broker, &topic, "cleanup.policy", OP_APPEND, "compact"),
            0
        );
        let configs = broker.topic_configs(&topic).await;
        assert_eq!(configs["cleanup.policy"].as_deref(), Some("delete,compact"));
        let extra: &[(&str, &str)] = if variation == 1 {
            &[("batch.size", "1")]
        } else {
            &[("linger.ms", "200")]
        };
        let producer = broker.producer(extra);
        let messages: Vec<(Option<String>, String)> = (0..100)
            .map(|i| {
                let m = format!("test message #{i}");
                (if i % 10 == 0 { None } else { Some(m.clone()) }, m)
            })
            .collect();
        let records = messages
            .iter()
            .map(|(k, v)| {
                let r = FutureRecord::to(&topic).partition(0).payload(v.as_bytes());
                match k {
                    Some(k) => r.key(k.as_bytes()),
                    None => r,
                }
            })
            .collect();
        let outcomes = deliveries(&producer, records).await;
        let count = |want: &dyn Fn(&Result<i64, RDKafkaErrorCode>) -> bool| {
            outcomes.iter().filter(|o| want(o)).count()
        };
        let invalid = count(&|o| *o == Err(RDKafkaErrorCode::InvalidRecord));
        let different = count(&|o| *o == Err(RDKafkaErrorCode::InvalidDifferentRecord));
        let ok = count(&|o| o.is_ok());
        assert_eq!(invalid, 10, "variation {variation}: {outcomes:?}");
        for (i, o) in outcomes.iter().enumerate() {
            if i % 10 == 0 {
                assert_eq!(*o, Err(RDKafkaErrorCode::InvalidRecord), "record {i}");
            }
        }
        if variation == 0 {
            assert_eq!((different, ok), (90, 0), "{outcomes:?}");
        } else {
            assert_eq!((different, ok), (0, 90), "{outcomes:?}");
            let records = broker.read_partition(&topic, 0);
            assert_eq!(records.len(), 90);
            assert!(records.iter().all(|r| r.key.is_some()));
        }
        assert_eq!(
            alter_topic_config(&broker, &topic, "cleanup.policy", OP_SUBTRACT, "compact"),
            0
        );
        let configs = broker.topic_configs(&topic).await;
        assert_eq!(configs["cleanup.policy"].as_deref(), Some("delete"));
        // Back to delete only: keyless records are accepted again.
        let outcomes = deliveries(
            &producer,
            vec![FutureRecord::to(&topic)
                .partition(0)
                .payload(&b"no key"[..])],
        )
        .await;
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
    }
}

/// Every compaction key is accepted with Kafka's names at creation and described back; bad
/// values and min.compaction.lag.ms > max.compaction.lag.ms are INVALID_CONFIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_configs_are_accepted_with_kafka_names() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let topic = unique_topic("compact-configs");
    let set = [
        ("cleanup.policy", "compact"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("min.compaction.lag.ms", "10"),
        ("max.compaction.lag.ms", "60000"),
        ("delete.retention.ms", "100"),
    ];
    broker.create_topic(&topic, 1, &set).await;
    let configs: HashMap<String, Option<String>> = broker.topic_configs(&topic).await;
    for (k, v) in set {
        assert_eq!(configs[k].as_deref(), Some(v), "{k}");
    }
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for bad in [
        [("cleanup.policy", "compacted"), ("segment.ms", "1000")],
        [("min.cleanable.dirty.ratio", "2"), ("segment.ms", "1000")],
        [
            ("min.compaction.lag.ms", "5000"),
            ("max.compaction.lag.ms", "1000"),
        ],
    ] {
        let name = unique_topic("bad-compact");
        let mut t = NewTopic::new(&name, 1, TopicReplication::Fixed(1));
        for (k, v) in bad {
            t = t.set(k, v);
        }
        let result = broker
            .admin()
            .create_topics([&t], &options)
            .await
            .expect("CreateTopics");
        assert!(
            matches!(result[0], Err((_, RDKafkaErrorCode::InvalidConfig))),
            "{bad:?}: {result:?}"
        );
    }
}

/// Broker options for cleaning tests: a cleaner that wakes every 100 ms, one core.
fn cleaning_broker() -> Broker {
    Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("log.cleaner.backoff.ms", "100"),
    )
}

/// The topic configs of a small compacted topic that the cleaner picks up at once.
const COMPACTED: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.bytes", "4096"),
    ("min.cleanable.dirty.ratio", "0.01"),
    ("delete.retention.ms", "1500"),
    ("file.delete.delay.ms", "0"),
];

/// What the log must converge to: key → (offset, value) of its latest record.
type Latest = std::collections::BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)>;

/// Produces `updates` rounds over `keys` keys (every fifth key of the last round a tombstone),
/// then `fillers` records with keys of their own; returns the latest record per key.
async fn write_updates(
    producer: &FutureProducer,
    topic: &str,
    round_base: usize,
    rounds: usize,
    keys: usize,
    tombstones: bool,
    latest: &mut Latest,
) {
    let mut sent: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for round in round_base..round_base + rounds {
        for k in 0..keys {
            let key = format!("key-{k:04}").into_bytes();
            let tombstone = tombstones && round == round_base + rounds - 1 && k % 5 == 0;
            let value = (!tombstone)
                .then(|| format!("value-{k}-round-{round}-{}", "x".repeat(k % 40)).into_bytes());
            sent.push((key, value));
        }
    }
    let records = sent
        .iter()
        .map(|(k, v)| {
            let r = FutureRecord::to(topic).partition(0).key(&k[..]);
            match v {
                Some(v) => r.payload(&v[..]),
                None => r,
            }
        })
        .collect();
    let outcomes = deliveries(producer, records).await;
    for ((k, v), o) in sent.into_iter().zip(outcomes) {
        let offset = o.unwrap_or_else(|e| panic!("delivery failed: {e:?}"));
        latest.insert(k, (offset, v));
    }
}

/// The records of the partition as key → list of (offset, value) (from the log start).
fn consumed(broker: &Broker, topic: &str) -> Latest {
    let mut out = Latest::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in broker.read_partition(topic, 0) {
        let key = r
            .key
            .clone()
            .expect("every record of a compacted topic has a key");
        assert!(seen.insert(r.offset), "offset {} served twice", r.offset);
        if out.insert(key.clone(), (r.offset, r.value)).is_some() {
            // A key seen twice: not (yet) compacted; marked so the comparison fails.
            out.insert(key, (-1, None));
        }
    }
    out
}

/// Polls until the partition holds exactly `want` (one record per key, at its original offset).
fn wait_compacted(broker: &Broker, topic: &str, want: &Latest, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got = consumed(broker, topic);
        if &got == want {
            return;
        }
        if std::time::Instant::now() > deadline {
            let differing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(5)
                .collect();
            panic!(
                "{what}: {topic} not compacted to the latest values ({} keys wanted, {} found); e.g. {differing:?}\n{}",
                want.len(),
                got.len(),
                broker.stderr_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Fills the active segment with records of keys used once, so that every update written
/// before is in sealed (cleanable) segments; they join `latest`.
async fn roll_past(producer: &FutureProducer, topic: &str, tag: &str, latest: &mut Latest) {
    // Incompressible values, so that compressed batches fill segments too.
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ tag.len() as u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect()
    };
    let keys: Vec<(Vec<u8>, Vec<u8>)> = (0..60)
        .map(|i| (format!("filler-{tag}-{i:03}").into_bytes(), noise(150)))
        .collect();
    let records = keys
        .iter()
        .map(|(k, v)| {
            FutureRecord::to(topic)
                .partition(0)
                .key(&k[..])
                .payload(&v[..])
        })
        .collect();
    for ((k, v), o) in keys.iter().zip(deliveries(producer, records).await) {
        latest.insert(k.clone(), (o.expect("filler delivered"), Some(v.clone())));
    }
}

/// Many updates per key and tombstones, in every codec: after cleaning a consumer from offset 0
/// sees exactly the latest value of each key at its original offset; tombstones stay for
/// delete.retention.ms after their first cleaning and are then removed; a clean restart and a
/// kill -9 keep the cleaned log as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_latest_value_per_key_in_every_codec() {
    let mut broker = cleaning_broker();
    let mut topics = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("compact-{codec}"));
        broker.create_topic(&topic, 1, COMPACTED).await;
        let producer = broker.producer(&[
            ("compression.type", codec),
            ("linger.ms", "1"),
            ("batch.num.messages", "20"),
        ]);
        let mut latest = Latest::new();
        write_updates(&producer, &topic, 0, 6, 50, true, &mut latest).await;
        roll_past(&producer, &topic, "a", &mut latest).await;
        // First cleaning: the tombstones are kept (their delete horizon is set now).
        wait_compacted(&broker, &topic, &latest, codec);
        // After delete.retention.ms, a later pass (more data makes the log dirty) removes them.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        write_updates(&producer, &topic, 100, 1, 10, false, &mut latest).await;
        roll_past(&producer, &topic, "b", &mut latest).await;
        latest.retain(|k, (_, v)| v.is_some() || !k.starts_with(b"key-"));
        wait_compacted(&broker, &topic, &latest, codec);
        topics.push((topic, latest));
    }
    broker.restart();
    for (topic, latest) in &topics {
        assert_eq!(&consumed(&broker, topic), latest, "after a clean restart");
    }
    broker.kill9();
    broker.start_again();
    for (topic, latest) in &topics {
        assert_eq!(&consumed(&broker, topic), latest, "after kill -9");
    }
}

/// kill -9 at seeded random points while the (throttled) cleaner runs: after each restart no
/// acknowledged latest value is lost, nothing is duplicated or invented, and reads that start
/// at a kept record's offset (through the rebuilt indexes) start at that record.
/// `SLUICE_COMPACTION_CRASH_ROUNDS` sets the rounds (default 4), `SLUICE_COMPACTION_SEED` the seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_cleaning_loses_no_latest_value() {
    use rand::{Rng, SeedableRng};
    let rounds: usize = std::env::var("SLUICE_COMPACTION_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("SLUICE_COMPACTION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xC1EA_0014);
    eprintln!("seed {seed}, {rounds} rounds");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("log.cleaner.backoff.ms", "50")
        .with("log.cleaner.io.max.bytes.per.second", "100000"),
    );
    let topic = unique_topic("compact-crash");
    broker.create_topic(&topic, 1, COMPACTED).await;
    let mut latest = Latest::new();
    // Every acknowledged (offset → key, value), to check that nothing is invented.
    let mut acked: HashMap<i64, (Vec<u8>, Option<Vec<u8>>)> = HashMap::new();
    let mut total_acked = 0usize;
    for round in 0..rounds {
        let producer = broker.producer(&[("linger.ms", "1"), ("batch.num.messages", "20")]);
        let before = latest.clone();
        write_updates(
            &producer,
            &topic,
            round * 10,
            4,
            40,
            round % 2 == 1,
            &mut latest,
        )
        .await;
        roll_past(&producer, &topic, &format!("r{round}"), &mut latest).await;
        for (k, (o, v)) in &latest {
            if before.get(k) != Some(&(*o, v.clone())) {
                acked.insert(*o, (k.clone(), v.clone()));
            }
        }
        total_acked += 4 * 40 + 60;
        drop(producer);
        let delay = rng.gen_range(0..600u64);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        broker.kill9();
        broker.start_again();
        let records = broker.read_partition(&topic, 0);
        let mut last: Latest = Latest::new();
        let mut previous = -1;
        for r in &records {
            assert!(
                r.offset > previous,
                "round {round}: offsets not increasing at {}",
                r.offset
            );
            previous = r.offset;
            let key = r.key.clone().expect("keyed");
            if let Some((k, v)) = acked.get(&r.offset) {
                assert_eq!(
                    (k, v),
                    (&key, &r.value),
                    "round {round}: record {} changed",
                    r.offset
                );
            }
            last.insert(key, (r.offset, r.value.clone()));
        }
        for (k, want) in &latest {
            assert_eq!(
                last.get(k),
                Some(want),
                "round {round} (kill after {delay} ms): the latest value of {} is lost\n{}",
                String::from_utf8_lossy(k),
                broker.stderr_tail()
            );
        }
        // Reads starting at kept offsets (index lookups in cleaned segments).
        for (k, (offset, _)) in latest
            .iter()
            .filter(|(k, _)| k.starts_with(b"key-"))
            .take(5)
        {
            let got = broker.read_range(&topic, 0, *offset, offset + 1);
            assert_eq!(
                got.first().map(|r| r.offset),
                Some(*offset),
                "read at {offset} ({})",
                String::from_utf8_lossy(k)
            );
        }
        // What the restart found (this start's part of the stderr log).
        let log = std::fs::read_to_string(broker.stderr_path()).unwrap_or_default();
        let this_start = log.rsplit("==== harness: start").next().unwrap_or("");
        let recovered = if this_start.contains("completing an interrupted cleaned-segment swap") {
            "a swap completed"
        } else if this_start.contains("discarding an unfinished cleaned segment") {
            "a cleaned segment discarded"
        } else {
            "no pass interrupted"
        };
        eprintln!(
            "round {round}: killed after {delay} ms ({recovered}); {} records served of {total_acked} acknowledged",
            records.len()
        );
    }
    // The cleaner did run between the crashes.
    wait_compacted(&broker, &topic, &latest, "after the crashes");
}

/// Kafka Connect-style usage of `__consumer_offsets`: a group commits the same partitions many
/// times; the compacted offsets partition shrinks to about one record per key, and the latest
/// commits survive the cleaning, a clean restart and a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_compaction_of_consumer_offsets_and_restarts() {
    use rdkafka::consumer::{CommitMode, Consumer};
    let mut broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("log.cleaner.backoff.ms", "100")
        .with("offsets.topic.num.partitions", "1")
        .with("offsets.topic.segment.bytes", "4096"),
    );
    let topic = unique_topic("connect-offsets");
    broker.create_topic(&topic, 3, &[]).await;
    let configs = broker.topic_configs("__consumer_offsets").await;
    assert_eq!(configs["cleanup.policy"].as_deref(), Some("compact"));
    let group = unique_topic("connect-group");
    const COMMITS: i64 = 300;
    {
        let consumer = broker.consumer(&[("group.id", &group)]);
        for i in 1..=COMMITS {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in 0..3 {
                tpl.add_partition_offset(&topic, p, rdkafka::Offset::Offset(i * (p as i64 + 1)))
                    .expect("offset");
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .unwrap_or_else(|e| panic!("commit {i}: {e}\n{}", broker.stderr_tail()));
        }
    }
    common::wait_until(
        "__consumer_offsets to be compacted",
        Duration::from_secs(60),
        || (broker.read_partition("__consumer_offsets", 0).len() as i64) < COMMITS,
    );
    let check = |broker: &Broker, when: &str| {
        let probe = broker.consumer(&[("group.id", &group)]);
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition(&topic, p);
        }
        let committed = probe
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("OffsetFetch {when}: {e}"));
        for e in committed.elements() {
            assert_eq!(
                e.offset(),
                rdkafka::Offset::Offset(COMMITS * (e.partition() as i64 + 1)),
                "{when}: partition {}",
                e.partition()
            );
        }
    };
    check(&broker, "after compaction");
    broker.restart();
    check(&broker, "after a clean restart");
    broker.kill9();
    broker.start_again();
    check(&broker, "after kill -9");
}

/// `compact,delete` also deletes segments by retention.ms; `compact` alone never does (its
/// retention.ms is ignored, as in Kafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_delete_honours_retention_and_compact_alone_does_not() {
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("log.cleaner.backoff.ms", "100")
        .with("log.retention.check.interval.ms", "200"),
    );
    let both = unique_topic("compact-delete");
    let compact = unique_topic("compact-only");
    let retention = [("retention.ms", "2000")];
    for (topic, policy) in [(&both, "compact,delete"), (&compact, "compact")] {
        let mut configs: Vec<(&str, &str)> = COMPACTED
            .iter()
            .copied()
            .filter(|(k, _)| *k != "cleanup.policy")
            .collect();
        configs.push(("cleanup.policy", policy));
        configs.extend_from_slice(&retention);
        broker.create_topic(topic, 1, &configs).await;
        let producer = broker.producer(&[("linger.ms", "1"), ("batch.num.messages", "20")]);
        let mut latest = Latest::new();
        write_updates(&producer, topic, 0, 3, 40, false, &mut latest).await;
        roll_past(&producer, topic, "a", &mut latest).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // New data rolls the old segments out of the active one; retention then sees them expired.
    for topic in [&both, &compact] {
        let producer = broker.producer(&[("linger.ms", "1"), ("batch.num.messages", "20")]);
        let mut latest = Latest::new();
        roll_past(&producer, topic, "b", &mut latest).await;
    }
    common::wait_until(
        "retention of the compact,delete topic",
        Duration::from_secs(30),
        || broker.watermarks(&both, 0).0 > 0,
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        broker.watermarks(&compact, 0).0,
        0,
        "a compact-only topic lost its head to retention.ms"
    );
    let keys: std::collections::BTreeSet<Vec<u8>> = broker
        .read_partition(&compact, 0)
        .into_iter()
        .filter_map(|r| r.key)
        .filter(|k| k.starts_with(b"key-"))
        .collect();
    assert_eq!(
        keys.len(),
        40,
        "every key of the compact-only topic is still there"
    );
}
