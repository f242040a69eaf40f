//! Per-partition order is the arrival order on the connection: a pipelining producer without
//! idempotence (librdkafka's default: `enable.idempotence=false`, up to 1,000,000 requests in
//! flight) gets its records stored in send order, whatever shard owns the partition and however
//! long each request takes to validate; pipelined OffsetCommits land in send order too.
//!
//! Apache Kafka serves a connection's requests one at a time, so with no retries a producer's
//! records land in send order; applications rely on that.

mod common;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use common::{unique_topic, Broker};

/// A producer that pipelines as librdkafka does by default, with no retries, so any reordering
/// on the broker shows up as records out of order.
fn pipelining_producer(broker: &Broker) -> FutureProducer {
    broker.producer(&[
        ("enable.idempotence", "false"),
        ("max.in.flight.requests.per.connection", "1000000"),
        ("retries", "0"),
        ("linger.ms", "0"),
        ("acks", "all"),
        ("message.max.bytes", "1000000"),
    ])
}

/// Sends `count` records of `size` bytes, record i to partition `i % partitions`, key = i,
/// without waiting in between; waits for every delivery.
async fn send_numbered(
    broker: &Broker,
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
    count: usize,
    size: usize,
) {
    let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{i:08}");
        let mut value = vec![b'v'; size];
        value[..key.len()].copy_from_slice(key.as_bytes());
        let partition = (i % partitions as usize) as i32;
        loop {
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(key.as_bytes())
                .payload(&value[..]);
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => panic!("enqueue failed: {e}"),
            }
        }
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        if let Err((e, _)) = d.await.expect("delivery cancelled") {
            panic!("record {i} not delivered: {e}\n{}", broker.stderr_tail());
        }
    }
}

/// Reads every partition back in offset order and checks that each holds its records in send
/// order (keys ascending, none missing). Returns the number of steps out of order.
fn check_send_order(broker: &Broker, topic: &str, partitions: i32, count: usize) {
    for p in 0..partitions {
        let records = broker.read_partition(topic, p);
        let keys: Vec<usize> = records
            .iter()
            .map(|r| {
                let key = r.key.as_deref().expect("key");
                std::str::from_utf8(key)
                    .expect("utf8")
                    .parse()
                    .expect("number")
            })
            .collect();
        let expected: Vec<usize> = (0..count)
            .filter(|i| (i % partitions as usize) as i32 == p)
            .collect();
        let out_of_order = keys.windows(2).filter(|w| w[1] < w[0]).count();
        assert_eq!(
            out_of_order,
            0,
            "partition {p} of {topic}: {out_of_order} of {} steps out of order",
            keys.len()
        );
        assert_eq!(keys, expected, "partition {p} of {topic}: records missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_records_of_every_size_are_stored_in_send_order() {
    let broker = Broker::start();
    let producer = pipelining_producer(&broker);
    // (record bytes, records): the failure grew with the time spent per request.
    for (size, count) in [(100, 3000), (10_000, 600), (50_000, 1000), (500_000, 300)] {
        let topic = unique_topic(&format!("order-{size}"));
        broker.create_topic(&topic, 1, &[]).await;
        send_numbered(&broker, &producer, &topic, 1, count, size).await;
        check_send_order(&broker, &topic, 1, count);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_records_over_partitions_of_both_shards_keep_send_order() {
    let broker = Broker::start();
    let producer = pipelining_producer(&broker);
    // Eight partitions: placement spreads them over both shards, so one connection's requests
    // are appended partly on its own shard and partly across the mesh.
    let partitions = 8;
    for (size, count) in [(100, 4000), (50_000, 800)] {
        let topic = unique_topic(&format!("order-spread-{size}"));
        broker.create_topic(&topic, partitions, &[]).await;
        send_numbered(&broker, &producer, &topic, partitions, count, size).await;
        check_send_order(&broker, &topic, partitions, count);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_offset_commits_land_in_send_order() {
    let broker = Broker::start();
    let topic = unique_topic("order-commit");
    broker.create_topic(&topic, 1, &[]).await;
    let group = unique_topic("order-group");
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("broker.address.family", "v4")
        .set("group.id", &group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().expect("consumer");
    // Pipelined asynchronous commits, then a synchronous one: its answer comes after every
    // earlier one's (answers keep request order), so if any earlier commit had been applied
    // after it, the group would now hold an older offset.
    let commits = 300;
    for offset in 1..=commits {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(offset))
            .expect("offset");
        let mode = if offset < commits {
            CommitMode::Async
        } else {
            CommitMode::Sync
        };
        consumer.commit(&tpl, mode).expect("commit");
    }
    let mut query = TopicPartitionList::new();
    query.add_partition(&topic, 0);
    let committed = consumer
        .committed_offsets(query, Duration::from_secs(10))
        .expect("committed offsets");
    let offset = committed
        .find_partition(&topic, 0)
        .expect("partition")
        .offset();
    assert_eq!(
        offset,
        Offset::Offset(commits),
        "the last commit sent must be the one that stays"
    );
}
