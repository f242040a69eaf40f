//! librdkafka (through the rdkafka crate) against the real broker binary: produce, fetch,
//! compression, headers, timestamps, size limits, ListOffsets and DeleteRecords.
//!
//! Consumers use `assign()` with explicit offsets, never group subscribe: these tests do not
//! depend on the group coordinator.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminOptions, AlterConfig, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use common::{unique_topic, Broker, BrokerOpts, Record};

/// Sends every record without waiting in between, then awaits all deliveries in send order.
/// Returns (partition, offset) per record; panics on any delivery error.
async fn produce_all(
    broker: &Broker,
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Vec<(i32, i64)> {
    let mut futures: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
    for mut record in records {
        loop {
            match producer.send_result(record) {
                Ok(future) => {
                    futures.push(future);
                    break;
                }
                Err((e, returned))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                {
                    record = returned;
                    // The local queue is full: wait for the oldest outstanding delivery.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err((e, _)) => panic!("enqueue failed: {e}"),
            }
        }
    }
    let mut placed = Vec::with_capacity(futures.len());
    for (i, future) in futures.into_iter().enumerate() {
        match future.await.expect("delivery future cancelled") {
            Ok(delivery) => placed.push((delivery.partition, delivery.offset)),
            Err((e, _)) => panic!("record {i} not delivered: {e}\n{}", broker.stderr_tail()),
        }
    }
    placed
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_over_eight_partitions_round_trip_in_order() {
    const RECORDS: usize = 100_000;
    const PARTITIONS: i32 = 8;
    const KEYS: usize = 5_000;
    let broker = Broker::start();
    let topic = unique_topic("keyed");
    broker.create_topic(&topic, PARTITIONS, &[]).await;

    let mut rng = StdRng::seed_from_u64(0x5109CE);
    let sent: Vec<(Vec<u8>, Vec<u8>)> = (0..RECORDS)
        .map(|i| {
            let key = format!("key-{}", i % KEYS).into_bytes();
            let len = rng.gen_range(0..300);
            let mut value = format!("value-{i}-").into_bytes();
            value.extend((0..len).map(|_| rng.gen::<u8>()));
            (key, value)
        })
        .collect();
    let producer = broker.producer(&[
        ("acks", "all"),
        ("queue.buffering.max.messages", "200000"),
        ("enable.idempotence", "false"),
        ("max.in.flight.requests.per.connection", "1"),
    ]);
    let records = sent
        .iter()
        .map(|(key, value)| {
            FutureRecord::to(&topic)
                .key(key.as_slice())
                .payload(value.as_slice())
        })
        .collect();
    let placed = produce_all(&broker, &producer, records).await;

    // Expected content of each partition, by offset, and the same-key-same-partition rule.
    let mut expected: HashMap<i32, Vec<(i64, usize)>> = HashMap::new();
    let mut partition_of_key: HashMap<&[u8], i32> = HashMap::new();
    for (i, &(partition, offset)) in placed.iter().enumerate() {
        let key = sent[i].0.as_slice();
        let first = *partition_of_key.entry(key).or_insert(partition);
        assert_eq!(
            first,
            partition,
            "key {:?} went to two partitions",
            String::from_utf8_lossy(key)
        );
        expected.entry(partition).or_default().push((offset, i));
    }
    assert_eq!(
        expected.len(),
        PARTITIONS as usize,
        "records did not spread over every partition"
    );
    for partition in 0..PARTITIONS {
        let mut slots = expected.remove(&partition).unwrap_or_default();
        // Send order within a partition must be offset order (one in-flight request).
        let offsets: Vec<i64> = slots.iter().map(|s| s.0).collect();
        let dense: Vec<i64> = (0..slots.len() as i64).collect();
        assert_eq!(
            offsets, dense,
            "partition {partition}: acknowledged offsets not 0..n in send order"
        );
        slots.sort();
        assert_eq!(
            broker.watermarks(&topic, partition),
            (0, slots.len() as i64)
        );
        let got = broker.read_range(&topic, partition, 0, slots.len() as i64);
        assert_eq!(
            got.len(),
            slots.len(),
            "partition {partition}: record count"
        );
        for (record, &(offset, i)) in got.iter().zip(&slots) {
            assert_eq!(
                record.offset, offset,
                "partition {partition}: offsets out of order"
            );
            assert_eq!(
                record.key.as_deref(),
                Some(sent[i].0.as_slice()),
                "partition {partition} offset {offset}: key"
            );
            assert_eq!(
                record.value.as_deref(),
                Some(sent[i].1.as_slice()),
                "partition {partition} offset {offset}: value"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    let broker = Broker::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("codec-{codec}"));
        broker.create_topic(&topic, 1, &[]).await;
        let producer = broker.producer(&[("compression.type", codec), ("linger.ms", "20")]);
        let values: Vec<Vec<u8>> = (0..2_000)
            .map(|i| {
                format!("{codec} record {i} {}", "compressible text ".repeat(i % 20)).into_bytes()
            })
            .collect();
        let records = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                FutureRecord::to(&topic)
                    .partition(0)
                    .key(&b"k"[..])
                    .payload(v.as_slice())
                    .timestamp(1_000 + i as i64)
            })
            .collect();
        let placed = produce_all(&broker, &producer, records).await;
        let offsets: Vec<i64> = placed.iter().map(|p| p.1).collect();
        assert_eq!(
            offsets,
            (0..values.len() as i64).collect::<Vec<_>>(),
            "{codec}: offsets"
        );
        let got = broker.read_range(&topic, 0, 0, values.len() as i64);
        assert_eq!(got.len(), values.len(), "{codec}: count");
        for (i, record) in got.iter().enumerate() {
            assert_eq!(record.offset, i as i64, "{codec}: offset");
            assert_eq!(
                record.value.as_deref(),
                Some(values[i].as_slice()),
                "{codec}: value at {i}"
            );
            assert_eq!(
                record.timestamp,
                Timestamp::CreateTime(1_000 + i as i64),
                "{codec}: timestamp at {i}"
            );
        }
        // A consumer reading from the middle of a compressed batch gets exactly from there.
        let middle = broker.read_range(&topic, 0, 1_234, 1_240);
        assert_eq!(
            middle.iter().map(|r| r.offset).collect::<Vec<_>>(),
            (1_234..1_240).collect::<Vec<_>>(),
            "{codec}: mid-batch read"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_round_trip() {
    let broker = Broker::start();
    let topic = unique_topic("headers");
    broker.create_topic(&topic, 1, &[]).await;
    let producer = broker.producer(&[]);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace-id",
            value: Some(&b"abc-123"[..]),
        })
        .insert(Header {
            key: "binary",
            value: Some(&[0u8, 255, 1, 254][..]),
        })
        .insert(Header {
            key: "empty",
            value: Some(&b""[..]),
        })
        .insert(Header::<&[u8]> {
            key: "null",
            value: None,
        })
        .insert(Header {
            key: "dup",
            value: Some(&b"first"[..]),
        })
        .insert(Header {
            key: "dup",
            value: Some(&b"second"[..]),
        })
        .insert(Header {
            key: "ünïcødé",
            value: Some("välue".as_bytes()),
        });
    let records = vec![
        FutureRecord::to(&topic)
            .partition(0)
            .key(&b"with-headers"[..])
            .payload(&b"v1"[..])
            .headers(headers),
        FutureRecord::to(&topic)
            .partition(0)
            .key(&b"no-headers"[..])
            .payload(&b"v2"[..]),
    ];
    produce_all(&broker, &producer, records).await;
    let got = broker.read_range(&topic, 0, 0, 2);
    let bytes = |s: &[u8]| Some(s.to_vec());
    assert_eq!(
        got[0].headers,
        vec![
            ("trace-id".to_string(), bytes(b"abc-123")),
            ("binary".to_string(), bytes(&[0, 255, 1, 254])),
            ("empty".to_string(), bytes(b"")),
            ("null".to_string(), None),
            ("dup".to_string(), bytes(b"first")),
            ("dup".to_string(), bytes(b"second")),
            ("ünïcødé".to_string(), bytes("välue".as_bytes())),
        ]
    );
    assert!(
        got[1].headers.is_empty(),
        "record without headers got {:?}",
        got[1].headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_time_preserved_and_log_append_time_stamped_by_broker() {
    let broker = Broker::start();
    let create_topic = unique_topic("create-time");
    let append_topic = unique_topic("append-time");
    broker.create_topic(&create_topic, 1, &[]).await;
    broker
        .create_topic(
            &append_topic,
            1,
            &[("message.timestamp.type", "LogAppendTime")],
        )
        .await;
    let producer = broker.producer(&[]);
    let old = 1_500_000_000_000_i64;
    let before = now_ms();
    for topic in [&create_topic, &append_topic] {
        let records = (0..10)
            .map(|i| {
                FutureRecord::to(topic.as_str())
                    .partition(0)
                    .payload(&b"x"[..])
                    .timestamp(old + i)
            })
            .collect();
        produce_all(&broker, &producer, records).await;
    }
    let after = now_ms();

    let got = broker.read_range(&create_topic, 0, 0, 10);
    for (i, record) in got.iter().enumerate() {
        assert_eq!(
            record.timestamp,
            Timestamp::CreateTime(old + i as i64),
            "CreateTime record {i}"
        );
    }
    let got = broker.read_range(&append_topic, 0, 0, 10);
    // Clock slack: the broker's clock is this machine's clock; allow a little either side.
    let slack = 5_000;
    for (i, record) in got.iter().enumerate() {
        match record.timestamp {
            Timestamp::LogAppendTime(t) => assert!(
                (before - slack..=after + slack).contains(&t),
                "LogAppendTime record {i}: {t} not within [{before}, {after}] ± {slack} ms"
            ),
            other => panic!("record {i} on a LogAppendTime topic has timestamp {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_rejected_with_message_too_large() {
    // Broker-wide limit lowered, plus a topic with a still lower max.message.bytes.
    let broker = Broker::start_with(BrokerOpts::default().with("message.max.bytes", "100000"));
    let default_topic = unique_topic("size-default");
    let small_topic = unique_topic("size-small");
    broker.create_topic(&default_topic, 1, &[]).await;
    broker
        .create_topic(&small_topic, 1, &[("max.message.bytes", "10000")])
        .await;
    // Raise the client's own limit so the broker, not librdkafka, makes the decision.
    let producer = broker.producer(&[
        ("message.max.bytes", "5000000"),
        ("compression.type", "none"),
        ("retries", "0"),
    ]);
    let cases = [
        (&default_topic, 200_000usize, 50_000usize),
        (&small_topic, 20_000, 5_000),
    ];
    for (topic, too_big, fits) in cases {
        let big = vec![b'x'; too_big];
        let result = producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(0)
                    .payload(&big[..]),
                Duration::from_secs(10),
            )
            .await;
        match result {
            Err((e, _)) => assert_eq!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::MessageSizeTooLarge),
                "{topic}: {too_big}-byte record failed with {e}, want MSG_SIZE_TOO_LARGE"
            ),
            Ok(delivery) => panic!("{topic}: {too_big}-byte record accepted at {delivery:?}"),
        }
        // The rejection consumed no offset and the partition keeps working.
        let fine = vec![b'y'; fits];
        let delivery = producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(0)
                    .payload(&fine[..]),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{topic}: {fits}-byte record failed: {e}"));
        assert_eq!(
            delivery.offset, 0,
            "{topic}: first accepted record's offset"
        );
        let got = broker.read_range(topic, 0, 0, 1);
        assert_eq!(got[0].value.as_deref(), Some(&fine[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_latest_and_by_time() {
    let broker = Broker::start();
    let topic = unique_topic("list-offsets");
    broker.create_topic(&topic, 2, &[]).await;
    let producer = broker.producer(&[
        ("linger.ms", "0"),
        ("max.in.flight.requests.per.connection", "1"),
    ]);
    let base = 1_700_000_000_000_i64;
    // Several batches so lookups must cross batch boundaries: one send at a time.
    for i in 0..10_i64 {
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(0)
                    .payload(value.as_bytes())
                    .timestamp(base + i * 1_000),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
    }
    assert_eq!(broker.watermarks(&topic, 0), (0, 10));
    assert_eq!(broker.watermarks(&topic, 1), (0, 0), "empty partition");

    let consumer = broker.consumer(&[]);
    let lookups = [
        (base - 5_000, Offset::Offset(0)),
        (base, Offset::Offset(0)),
        (base + 2_500, Offset::Offset(3)),
        (base + 3_000, Offset::Offset(3)),
        (base + 9_000, Offset::Offset(9)),
        // Past the last timestamp: Kafka answers offset -1, which librdkafka shows as End.
        (base + 9_001, Offset::End),
    ];
    for (timestamp, want) in lookups {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(&topic, 0, Offset::Offset(timestamp))
            .expect("tpl");
        let answer = consumer
            .offsets_for_times(query, Duration::from_secs(10))
            .unwrap_or_else(|e| {
                panic!(
                    "offsets_for_times {timestamp}: {e}\n{}",
                    broker.stderr_tail()
                )
            });
        let element = answer
            .find_partition(&topic, 0)
            .expect("partition in answer");
        assert_eq!(element.error(), Ok(()), "offsets_for_times {timestamp}");
        assert_eq!(
            element.offset(),
            want,
            "offsets_for_times at base{:+} ms",
            timestamp - base
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_log_start_offset() {
    let broker = Broker::start();
    let topic = unique_topic("delete-records");
    broker.create_topic(&topic, 1, &[]).await;
    let producer = broker.producer(&[]);
    let values: Vec<Vec<u8>> = (0..100).map(|i| format!("r{i}").into_bytes()).collect();
    let records = values
        .iter()
        .map(|v| FutureRecord::to(&topic).partition(0).payload(v.as_slice()))
        .collect();
    produce_all(&broker, &producer, records).await;

    let mut request = TopicPartitionList::new();
    request
        .add_partition_offset(&topic, 0, Offset::Offset(40))
        .expect("tpl");
    let answer = broker
        .admin()
        .delete_records(
            &request,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap_or_else(|e| panic!("DeleteRecords: {e}\n{}", broker.stderr_tail()));
    let element = answer
        .find_partition(&topic, 0)
        .expect("partition in answer");
    assert_eq!(element.error(), Ok(()), "DeleteRecords partition error");
    assert_eq!(
        element.offset(),
        Offset::Offset(40),
        "DeleteRecords low watermark"
    );
    assert_eq!(broker.watermarks(&topic, 0), (40, 100));
    let got: Vec<Record> = broker.read_partition(&topic, 0);
    assert_eq!(
        got.first().map(|r| r.offset),
        Some(40),
        "first served offset after DeleteRecords"
    );
    assert_eq!(got.len(), 60);
    for record in &got {
        assert_eq!(
            record.value.as_deref(),
            Some(values[record.offset as usize].as_slice())
        );
    }
    // Deleting below the current log start offset changes nothing; beyond the high watermark
    // is OFFSET_OUT_OF_RANGE.
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset(&topic, 0, Offset::Offset(101))
        .expect("tpl");
    let answer = broker
        .admin()
        .delete_records(&beyond, &AdminOptions::new())
        .await
        .expect("DeleteRecords");
    let element = answer
        .find_partition(&topic, 0)
        .expect("partition in answer");
    assert_eq!(
        element.error().err().and_then(|e| e.rdkafka_error_code()),
        Some(RDKafkaErrorCode::OffsetOutOfRange),
        "DeleteRecords past the high watermark"
    );
    assert_eq!(broker.watermarks(&topic, 0), (40, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_topic_recreated_under_same_name_starts_empty() {
    let broker = Broker::start();
    let topic = unique_topic("recreate");
    broker.create_topic(&topic, 2, &[]).await;
    let producer = broker.producer(&[]);
    let values: Vec<Vec<u8>> = (0..50).map(|i| format!("old-{i}").into_bytes()).collect();
    let records = values
        .iter()
        .map(|v| FutureRecord::to(&topic).partition(1).payload(v.as_slice()))
        .collect();
    produce_all(&broker, &producer, records).await;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = broker
        .admin()
        .delete_topics(&[topic.as_str()], &options)
        .await
        .expect("DeleteTopics");
    assert!(
        results.iter().all(|r| r.is_ok()),
        "DeleteTopics: {results:?}"
    );
    common::wait_until(
        "deleted topic to leave metadata",
        common::WAIT_TIMEOUT,
        || !broker.list_topics().contains_key(&topic),
    );
    let partition_dir = broker.data_dir().join(format!("{topic}-1"));
    assert!(
        common::wait_for_absence(&partition_dir),
        "partition directory {} of a deleted topic still present",
        partition_dir.display()
    );
    broker.create_topic(&topic, 2, &[]).await;
    assert_eq!(
        broker.watermarks(&topic, 1),
        (0, 0),
        "recreated topic serves old data"
    );
    let fresh = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(1)
                .payload(&b"new"[..]),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to recreated topic: {e}"));
    assert_eq!(fresh.offset, 0);
    let got = broker.read_range(&topic, 1, 0, 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"new"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_and_alter_configs() {
    let broker = Broker::start();
    let topic = unique_topic("admin");
    broker
        .create_topic(&topic, 2, &[("retention.ms", "600000")])
        .await;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));

    let results = broker
        .admin()
        .create_partitions([&NewPartitions::new(&topic, 5)], &options)
        .await
        .expect("CreatePartitions");
    assert!(
        results.iter().all(|r| r.is_ok()),
        "CreatePartitions: {results:?}"
    );
    broker.wait_for_topic(&topic, 5);
    let producer = broker.producer(&[]);
    let delivery = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(4)
                .payload(&b"p4"[..]),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to new partition: {e}"));
    assert_eq!((delivery.partition, delivery.offset), (4, 0));

    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic))
        .set("retention.ms", "1200000")
        .set("max.message.bytes", "300000");
    let results = broker
        .admin()
        .alter_configs([&alter], &options)
        .await
        .expect("AlterConfigs");
    assert!(
        results.iter().all(|r| r.is_ok()),
        "AlterConfigs: {results:?}"
    );
    let configs = broker.topic_configs(&topic).await;
    assert_eq!(
        configs.get("retention.ms").cloned().flatten().as_deref(),
        Some("1200000")
    );
    assert_eq!(
        configs
            .get("max.message.bytes")
            .cloned()
            .flatten()
            .as_deref(),
        Some("300000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_follows_broker_config() {
    let on = Broker::start_with(BrokerOpts::default().with("num.partitions", "3"));
    let topic = unique_topic("auto");
    let producer = on.producer(&[]);
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).payload(&b"x"[..]),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce with auto-create on: {e}"));
    on.wait_for_topic(&topic, 3);

    let off = Broker::start_with(BrokerOpts::default().with("auto.create.topics.enable", "false"));
    let producer = off.producer(&[("message.timeout.ms", "5000")]);
    let result = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).payload(&b"x"[..]),
            Duration::from_secs(10),
        )
        .await;
    match result {
        Err((e, _)) => assert!(
            matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                    | Some(RDKafkaErrorCode::UnknownTopic)
                    | Some(RDKafkaErrorCode::MessageTimedOut)
            ),
            "produce with auto-create off failed with {e}"
        ),
        Ok(delivery) => panic!("produce to a missing topic with auto-create off: {delivery:?}"),
    }
    assert!(
        !off.list_topics().contains_key(&topic),
        "topic created with auto.create.topics.enable=false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_retention_deletes_old_segments() {
    let mut broker =
        Broker::start_with(BrokerOpts::default().with("log.retention.check.interval.ms", "200"));
    let topic = unique_topic("retention");
    broker
        .create_topic(
            &topic,
            1,
            &[
                ("segment.bytes", "65536"),
                ("retention.ms", "60000"),
                // Files of deleted segments go at once (Kafka's default waits 60 s).
                ("file.delete.delay.ms", "0"),
            ],
        )
        .await;
    // Records stamped an hour ago fill several segments, all past retention. Then, once they
    // are all acknowledged, a few records carry the current time: they land in the active
    // segment, which is then not past retention, while every closed segment holds only old
    // records. The log start offset must settle at the active segment's base offset.
    let producer = broker.producer(&[("batch.size", "16384")]);
    let old = now_ms() - 3_600_000;
    let value = vec![b'r'; 500];
    let records = (0..990)
        .map(|i| {
            FutureRecord::to(&topic)
                .partition(0)
                .payload(value.as_slice())
                .timestamp(old + i)
        })
        .collect();
    produce_all(&broker, &producer, records).await;
    let records = (0..10)
        .map(|_| {
            FutureRecord::to(&topic)
                .partition(0)
                .payload(value.as_slice())
                .timestamp(now_ms())
        })
        .collect();
    produce_all(&broker, &producer, records).await;
    let active = common::active_segment(&broker.data_dir(), &topic, 0);
    let active_base: i64 = active
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .unwrap_or_else(|| panic!("segment file name {}", active.display()));
    assert!(active_base > 0, "no segment rolled; cannot test retention");
    let deadline = std::time::Instant::now() + common::WAIT_TIMEOUT;
    loop {
        let (low, high) = broker.watermarks(&topic, 0);
        if low == active_base {
            break;
        }
        if std::time::Instant::now() > deadline {
            let files = list_dir(&active);
            panic!(
                "retention did not settle on the active segment's base offset {active_base} within \
                 {:?}: watermarks ({low}, {high}); files {files:?}\n{}",
                common::WAIT_TIMEOUT,
                broker.stderr_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(broker.watermarks(&topic, 0), (active_base, 1_000));
    let served = broker.read_range(&topic, 0, active_base, 1_000);
    assert_eq!(served.first().map(|r| r.offset), Some(active_base));
    // With file.delete.delay.ms=0 the expired segments' files go promptly.
    let live_logs = || -> Vec<String> {
        list_dir(&active)
            .into_iter()
            .filter(|name| name.ends_with(".log"))
            .collect()
    };
    let deadline = std::time::Instant::now() + common::WAIT_TIMEOUT;
    while live_logs().len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "expired segment files still on disk {:?} after {:?}: {:?}",
            common::WAIT_TIMEOUT,
            live_logs(),
            list_dir(&active)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The moved log start offset survives a crash.
    broker.kill9();
    broker.start_again();
    assert_eq!(
        broker.watermarks(&topic, 0),
        (active_base, 1_000),
        "watermarks after kill -9 and restart"
    );
    assert_eq!(
        broker.read_range(&topic, 0, active_base, 1_000).len(),
        1_000 - active_base as usize
    );
}

/// Sorted file names in the directory holding `file`.
fn list_dir(file: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(file.parent().expect("parent dir"))
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
