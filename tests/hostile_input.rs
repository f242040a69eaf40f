//! Hostile lengths and counts against the real broker binary (issue 9): one request per field
//! kind whose length or count claims far more than the frame holds. Each must close the
//! connection (Kafka closes on a request it cannot parse) without the broker allocating by
//! the claim: the process lives, its peak RSS stays bounded, and it goes on serving clients.
//!
//! Record counts and record varint lengths inside a Produce batch are checked by the Produce
//! validation tests, not here.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rdkafka::producer::FutureRecord;

use common::{unique_topic, Broker, BrokerOpts};

/// Bound on the broker's peak resident memory (VmHWM) across all the hostile requests. The
/// claims below are 2 GiB to 150 GiB; an idle one-core broker stays far below this.
const BROKER_PEAK_RSS_MAX_BYTES: u64 = 1 << 30;
/// How long the broker may take to close a connection after a malformed request.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The 19 bytes of issue 9: Metadata v0, correlation id 1, client id "x", and a topics
/// array that claims 2^31 - 1 entries. It once aborted the process (an allocation of
/// ~150 GB in the decoder).
const METADATA_V0_2_POW_31_TOPICS: [u8; 19] = [
    0x00, 0x00, 0x00, 0x0f, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x78, 0x7f,
    0xff, 0xff, 0xff,
];

/// An unsigned varint of u32::MAX: as a compact length or count it claims 2^32 - 2 items.
const VARINT_U32_MAX: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
/// Five varint bytes whose last one still has the continuation bit set (Kafka rejects it).
const VARINT_TOO_LONG: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x8f];

#[test]
fn metadata_v0_claiming_2_pow_31_topics_closes_the_connection_only() {
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    assert_closed(
        &broker,
        "Metadata v0, 2^31 topics",
        &METADATA_V0_2_POW_31_TOPICS,
    );
    assert_broker_serves(&mut broker, "after Metadata v0 with 2^31 topics");
    assert_peak_rss_bounded(&broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_kind_with_a_hostile_length_is_refused_and_the_broker_serves_on() {
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    for (name, request) in hostile_requests() {
        assert_closed(&broker, name, &request);
        assert_broker_serves(&mut broker, name);
    }
    assert_peak_rss_bounded(&broker);

    // A real client still produces and reads back.
    let topic = unique_topic("hostile-after");
    broker.create_topic(&topic, 1, &[]).await;
    let producer = broker.producer(&[]);
    let delivery = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).payload(b"still here"),
            Duration::from_secs(10),
        )
        .await;
    let (partition, offset) = match delivery {
        Ok(d) => (d.partition, d.offset),
        Err((e, _)) => panic!(
            "produce after hostile requests: {e}\n{}",
            broker.stderr_tail()
        ),
    };
    let records = broker.read_range(&topic, partition, offset, offset + 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"still here"[..]));
    assert_peak_rss_bounded(&broker);
}

/// OffsetCommit v2 asks to keep the offset for i64::MAX ms: `now + retention` once overflowed
/// (a panic in debug builds, which took the group coordinator's shard with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_with_retention_i64_max_is_answered() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    broker.create_topic("retention-topic", 1, &[]).await;
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(5);
    let topic = OffsetCommitRequestTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("retention-topic")))
        .with_partitions(vec![partition]);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("retention-group")))
        .with_generation_id_or_member_epoch(-1)
        .with_retention_time_ms(i64::MAX)
        .with_topics(vec![topic]);
    let mut body = header(8, 2, 77, false);
    request.encode(&mut body, 2).expect("encode OffsetCommit");
    let mut stream = connect(&broker);
    stream.write_all(&frame(&body)).expect("send OffsetCommit");
    let mut prefix = [0u8; 8];
    stream
        .read_exact(&mut prefix)
        .unwrap_or_else(|e| panic!("no OffsetCommit answer: {e}\n{}", broker.stderr_tail()));
    let correlation_id = i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    assert_eq!(correlation_id, 77);
    // The rest of the answer: throttle time (v3+ only), one topic, one partition, its code.
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let mut answer = vec![0u8; size - 4];
    stream
        .read_exact(&mut answer)
        .expect("read OffsetCommit answer");
    let error_code = i16::from_be_bytes([answer[answer.len() - 2], answer[answer.len() - 1]]);
    assert_eq!(
        error_code,
        0,
        "OffsetCommit error code\n{}",
        broker.stderr_tail()
    );
    assert_broker_serves(&mut broker, "OffsetCommit with retention i64::MAX");
}

/// One request per field kind, each a complete frame (size prefix included).
fn hostile_requests() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = Vec::new();

    // INT32 array: Fetch v4 whose topics array claims i32::MAX entries.
    let mut body = header(1, 4, 10, false);
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    body.extend_from_slice(&500i32.to_be_bytes()); // max wait
    body.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    body.extend_from_slice(&(1i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // isolation level
    body.extend_from_slice(&i32::MAX.to_be_bytes()); // topics
    body.extend_from_slice(&[0; 16]);
    cases.push(("INT32 array: Fetch v4 with i32::MAX topics", frame(&body)));

    // Compact array: Metadata v12 (flexible) whose topics claim 2^32 - 2 entries.
    let mut body = header(3, 12, 11, true);
    body.extend_from_slice(&VARINT_U32_MAX);
    body.extend_from_slice(&[0; 16]);
    cases.push((
        "compact array: Metadata v12 with 2^32-2 topics",
        frame(&body),
    ));

    // String: Metadata v1 with one topic whose name claims i16::MAX bytes.
    let mut body = header(3, 1, 12, false);
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&i16::MAX.to_be_bytes());
    body.extend_from_slice(b"abc");
    cases.push((
        "string: Metadata v1 topic name of 32767 bytes",
        frame(&body),
    ));

    // Compact string: Metadata v12 with one topic whose name claims 4 GiB.
    let mut body = header(3, 12, 13, true);
    body.push(2); // one topic
    body.extend_from_slice(&[0; 16]); // topic id
    body.extend_from_slice(&VARINT_U32_MAX);
    body.extend_from_slice(b"abc");
    cases.push((
        "compact string: Metadata v12 topic name of 4 GiB",
        frame(&body),
    ));

    // Compact string length as a 5-byte varint with the continuation bit still set.
    let mut body = header(3, 12, 14, true);
    body.push(2);
    body.extend_from_slice(&[0; 16]);
    body.extend_from_slice(&VARINT_TOO_LONG);
    body.extend_from_slice(&[0; 8]);
    cases.push(("varint longer than 5 bytes: Metadata v12", frame(&body)));

    // Bytes: Produce v3 whose one partition's records claim i32::MAX bytes.
    let mut body = header(0, 3, 15, false);
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    push_string(&mut body, "t");
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes()); // index
    body.extend_from_slice(&i32::MAX.to_be_bytes()); // records
    body.extend_from_slice(&[0; 61]);
    cases.push(("bytes: Produce v3 records of 2 GiB", frame(&body)));

    // Compact bytes: Produce v9 (flexible) whose records claim 4 GiB.
    let mut body = header(0, 9, 16, true);
    body.push(0); // transactional id: null compact string
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.push(2); // one topic
    body.extend_from_slice(&[2, b't']);
    body.push(2); // one partition
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&VARINT_U32_MAX);
    body.extend_from_slice(&[0; 61]);
    cases.push(("compact bytes: Produce v9 records of 4 GiB", frame(&body)));

    // Tagged fields: ApiVersions v3 whose header claims one tagged field of 2 GiB.
    let mut body = header_without_tags(18, 3, 17);
    body.push(1); // one tagged field
    body.push(99); // tag (unknown)
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // size: i32::MAX
    body.extend_from_slice(&[0; 8]);
    cases.push(("tagged field of 2 GiB: ApiVersions v3 header", frame(&body)));

    // Tagged fields: a count of u32::MAX tagged fields in a Metadata v12 body.
    let mut body = header(3, 12, 18, true);
    body.push(1); // empty topics array
    body.push(0); // allow auto topic creation
    body.push(0); // include topic authorized operations
    body.extend_from_slice(&VARINT_U32_MAX); // tagged field count
    body.extend_from_slice(&[5, 0x80]);
    cases.push((
        "tagged field count u32::MAX: Metadata v12 body",
        frame(&body),
    ));

    cases
}

/// A request header: v1 (client id), or v2 (client id and no tagged fields) when `flexible`.
fn header(api_key: i16, version: i16, correlation_id: i32, flexible: bool) -> Vec<u8> {
    let mut h = header_without_tags(api_key, version, correlation_id);
    if flexible {
        h.push(0);
    }
    h
}

fn header_without_tags(api_key: i16, version: i16, correlation_id: i32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api_key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&correlation_id.to_be_bytes());
    push_string(&mut h, "hostile");
    h
}

fn push_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as i16).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(broker.bootstrap())
        .unwrap_or_else(|e| panic!("connect to {}: {e}", broker.bootstrap()));
    stream
        .set_read_timeout(Some(CLOSE_TIMEOUT))
        .expect("set read timeout");
    stream
}

/// Sends `request` on a new connection and asserts that the broker closes it without
/// sending anything back.
fn assert_closed(broker: &Broker, name: &str, request: &[u8]) {
    let mut stream = connect(broker);
    stream.write_all(request).expect("send hostile request");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "{name}: connection not closed within {CLOSE_TIMEOUT:?} ({e}); read {} bytes\n{}",
            answer.len(),
            broker.stderr_tail()
        ),
    }
    assert!(
        answer.is_empty(),
        "{name}: expected the connection closed, got {} bytes back",
        answer.len()
    );
}

/// The process is alive and answers a well-formed Metadata v1 request on a new connection.
fn assert_broker_serves(broker: &mut Broker, after: &str) {
    assert!(
        broker.is_running(),
        "broker died after {after}\n{}",
        broker.stderr_tail()
    );
    let mut body = header(3, 1, 4242, false);
    body.extend_from_slice(&(-1i32).to_be_bytes()); // all topics
    let mut stream = connect(broker);
    stream.write_all(&frame(&body)).expect("send Metadata");
    let mut prefix = [0u8; 8];
    stream.read_exact(&mut prefix).unwrap_or_else(|e| {
        panic!(
            "no Metadata answer after {after}: {e}\n{}",
            broker.stderr_tail()
        )
    });
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let correlation_id = i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    assert_eq!(correlation_id, 4242, "Metadata answer after {after}");
    assert!(size > 4, "Metadata answer of {size} bytes after {after}");
}

/// VmHWM (peak resident set) of the broker, from /proc.
fn assert_peak_rss_bounded(broker: &Broker) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.pid()))
        .expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    let bytes = kib * 1024;
    eprintln!("broker peak RSS (VmHWM): {} MiB", bytes >> 20);
    assert!(
        bytes < BROKER_PEAK_RSS_MAX_BYTES,
        "broker peak RSS {bytes} bytes exceeds {BROKER_PEAK_RSS_MAX_BYTES}"
    );
}
