//! Records the seed corpus of the fuzz targets (`fuzz/corpus/`) from real client traffic:
//! librdkafka (rdkafka crate) talks to the broker through a recording TCP proxy, which keeps
//! every request frame it forwards. Not part of the suite (it rewrites files in the repo):
//!
//! ```text
//! cargo test --test fuzz_corpus -- --ignored
//! ```
//!
//! `decode_request/` gets request frames without their size prefix (what
//! `frame::decode_request` takes); `produce_validate/` gets each partition's `records` field of
//! the Produce requests (what `records::validate_produce` takes), one per compression codec.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::RequestKind;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice::protocol::frame::{decode_request, Decoded};

use common::{Broker, BrokerOpts, WAIT_TIMEOUT};

/// At most this many frames of one (api key, version) are kept: Fetch and Heartbeat repeat.
const FRAMES_PER_API_VERSION_MAX: usize = 6;

type Frames = Arc<Mutex<Vec<Vec<u8>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites fuzz/corpus; run by hand to refresh the seed corpus"]
async fn record_seed_corpus_from_librdkafka() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let proxy = listener.local_addr().expect("proxy address").to_string();
    // Clients must come back through the proxy after Metadata, so the broker advertises it.
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("advertised.listeners", &format!("PLAINTEXT://{proxy}")),
    );
    let frames: Frames = Arc::default();
    {
        let frames = frames.clone();
        let upstream = broker.bootstrap().to_string();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let frames = frames.clone();
                let upstream = upstream.clone();
                thread::spawn(move || proxy_connection(client, &upstream, frames));
            }
        });
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &proxy)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");

    client_workload(&broker, &config).await;
    write_corpus(&frames.lock().expect("frames").clone());
}

async fn client_workload(broker: &Broker, config: &ClientConfig) {
    let topic = "corpus-topic";
    let mut admin_config = config.clone();
    admin_config.set("client.id", "corpus-admin");
    let admin: rdkafka::admin::AdminClient<_> = admin_config.create().expect("admin");
    let options = rdkafka::admin::AdminOptions::new();
    let new_topic =
        rdkafka::admin::NewTopic::new(topic, 2, rdkafka::admin::TopicReplication::Fixed(1))
            .set("retention.ms", "86400000");
    let _ = admin.create_topics([&new_topic], &options).await;
    broker.wait_for_topic(topic, 2);
    let _ = admin
        .describe_configs([&rdkafka::admin::ResourceSpecifier::Topic(topic)], &options)
        .await;

    for (codec, idempotent) in [
        ("none", "false"),
        ("gzip", "false"),
        ("snappy", "false"),
        ("lz4", "false"),
        ("zstd", "false"),
        ("none", "true"),
    ] {
        let mut c = config.clone();
        c.set("compression.type", codec)
            .set("enable.idempotence", idempotent)
            .set("acks", "all")
            .set("linger.ms", "5");
        let producer: FutureProducer = c.create().expect("producer");
        // Sent without waiting in between, so batches hold several records and the codec
        // has something to compress.
        let mut deliveries = Vec::new();
        for i in 0..20 {
            let value = format!("{codec} value {i} {}", "x".repeat(i * 7));
            let key = format!("key-{i}");
            let headers = OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(codec),
            });
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => panic!("enqueue {codec}: {e}"),
            }
        }
        for delivery in deliveries {
            if let Err((e, _)) = delivery.await.expect("delivery future") {
                panic!("produce {codec}: {e}");
            }
        }
    }

    // Fetch and ListOffsets through assign().
    let mut c = config.clone();
    c.set("group.id", "corpus-assign")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().expect("consumer");
    let _ = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("offset");
    consumer.assign(&assignment).expect("assign");
    poll_some(&consumer, 10);

    // A group member: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit,
    // OffsetFetch, LeaveGroup.
    let mut c = config.clone();
    c.set("group.id", "corpus-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    let member: BaseConsumer = c.create().expect("group consumer");
    member.subscribe(&[topic]).expect("subscribe");
    poll_some(&member, 10);
    let _ = member.commit_consumer_state(CommitMode::Sync);
    let _ = member.committed(Duration::from_secs(5));
    member.unsubscribe();
    let _ = member.fetch_metadata(None, Duration::from_secs(5));
}

/// Polls until `count` messages arrived or the bound passed.
fn poll_some(consumer: &BaseConsumer, count: usize) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let mut seen = 0;
    while seen < count && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
            seen += 1;
        }
    }
    assert!(
        seen >= count,
        "only {seen} of {count} messages within {WAIT_TIMEOUT:?}"
    );
}

/// Forwards one client connection to the broker, keeping each request frame.
fn proxy_connection(mut client: TcpStream, upstream: &str, frames: Frames) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut server_read), Ok(mut client_write)) = (server.try_clone(), client.try_clone())
    else {
        return;
    };
    thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Both);
    });
    loop {
        let mut prefix = [0u8; 4];
        if client.read_exact(&mut prefix).is_err() {
            break;
        }
        let size = i32::from_be_bytes(prefix).max(0) as usize;
        let mut body = vec![0u8; size];
        if client.read_exact(&mut body).is_err() {
            break;
        }
        if server.write_all(&prefix).is_err() || server.write_all(&body).is_err() {
            break;
        }
        frames.lock().expect("frames").push(body);
    }
    let _ = server.shutdown(Shutdown::Both);
}

fn write_corpus(frames: &[Vec<u8>]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let requests = root.join("decode_request");
    let batches = root.join("produce_validate");
    std::fs::create_dir_all(&requests).expect("create corpus dir");
    std::fs::create_dir_all(&batches).expect("create corpus dir");
    // Kept per (api key, version, codec of the first Produce batch or 9).
    let mut kept: BTreeMap<(i16, i16, u8), usize> = BTreeMap::new();
    let mut batches_kept: BTreeMap<u8, usize> = BTreeMap::new();
    for frame in frames {
        if frame.len() < 4 {
            continue;
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let records = produced_records(frame);
        let codec = records.first().map_or(9, codec_of);
        let count = kept.entry((key, version, codec)).or_default();
        if *count < FRAMES_PER_API_VERSION_MAX {
            *count += 1;
            let name = format!("api{key}-v{version}-{:016x}", hash(frame));
            std::fs::write(requests.join(name), frame).expect("write corpus file");
        }
        for records in records {
            let codec = codec_of(&records);
            let count = batches_kept.entry(codec).or_default();
            if *count < FRAMES_PER_API_VERSION_MAX {
                *count += 1;
                let name = format!("codec{codec}-{:016x}", hash(&records));
                std::fs::write(batches.join(name), &records).expect("write corpus file");
            }
        }
    }
    eprintln!("frames kept per (api key, version, codec): {kept:?}; batches: {batches_kept:?}");
}

/// Every partition's `records` of a Produce request frame; empty for other requests.
fn produced_records(frame: &[u8]) -> Vec<Bytes> {
    let Ok(Decoded::Request(_, request)) = decode_request(Bytes::copy_from_slice(frame)) else {
        return Vec::new();
    };
    let RequestKind::Produce(produce) = *request else {
        return Vec::new();
    };
    produce
        .topic_data
        .into_iter()
        .flat_map(|t| t.partition_data)
        .filter_map(|p| p.records)
        .collect()
}

/// The compression codec of a v2 batch: the low 3 bits of its INT16 attributes at byte 21.
fn codec_of(batch: &Bytes) -> u8 {
    batch.get(22).map_or(9, |a| a & 0x07)
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
