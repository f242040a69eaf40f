//! Bounds on what a client can make the broker hold or do, against the real binary:
//! the request-bytes budget (`queued.max.request.bytes`), the idle and read deadlines,
//! the per-IP connection limit, and a long poll that sleeps instead of spinning.
//!
//! Memory and CPU are read from /proc/PID/status (VmRSS) and /proc/PID/stat (utime+stime).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::producer::FutureRecord;

use common::{unique_topic, Broker, BrokerOpts};

/// How long a test waits for the broker to close a connection it should close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// utime + stime of the process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// True when any thread of the process is running or runnable (state R in
/// /proc/PID/task/TID/stat). Unlike CPU time, this does not depend on how busy the
/// machine is: a spinning thread is runnable even while it waits for a core.
fn any_thread_runnable(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 2..];
                rest.chars().next()
            })
            == Some('R')
    })
}

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(broker.bootstrap()).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Encodes one request frame (size prefix included).
fn frame(key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("resource-bounds")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    buf.to_vec()
}

/// Reads one response frame (without its size prefix).
fn read_response(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

/// Sends ApiVersions v0 and expects an answer with the same correlation id.
fn api_versions_round_trip(stream: &mut TcpStream, correlation_id: i32) -> std::io::Result<()> {
    stream.write_all(&frame(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ApiVersionsRequest::default(),
    ))?;
    let mut response = read_response(stream)?;
    assert_eq!(response.get_i32(), correlation_id);
    Ok(())
}

/// Waits (bounded) until the broker closes `stream`; returns how long that took.
fn time_until_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(CLOSE_TIMEOUT))
        .expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(_) => panic!("unexpected bytes from the broker"),
        Err(e) => panic!("connection not closed within {CLOSE_TIMEOUT:?}: {e}"),
    }
    started.elapsed()
}

async fn produce_and_consume(broker: &Broker, topic: &str, records: usize) {
    let producer = broker.producer(&[]);
    for i in 0..records {
        let value = format!("value-{i}");
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(0)
                    .payload(value.as_bytes()),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| {
                panic!("record {i} not delivered: {e}\n{}", broker.stderr_tail())
            });
    }
    let (_, high) = broker.watermarks(topic, 0);
    let read = broker.read_range(topic, 0, high - records as i64, high);
    assert_eq!(read.len(), records);
    assert_eq!(
        read.last().and_then(|r| r.value.clone()),
        Some(format!("value-{}", records - 1).into_bytes())
    );
}

/// Many connections claim big frames and stall: those that send only a size hold no
/// memory; those that send most of a frame are admitted only up to the budget (the
/// rest are not read); RSS stays under the budget plus a margin, and normal clients
/// keep producing and fetching meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frames_stay_within_the_request_budget() {
    const BUDGET: u64 = 32 * 1024 * 1024;
    const HEADER_ONLY: usize = 200;
    const HEADER_ONLY_CLAIM: u32 = 50 * 1024 * 1024;
    const NEARLY_SENT: usize = 24;
    const NEARLY_SENT_CLAIM: usize = 5 * 1024 * 1024;
    // Without the budget the nearly-sent frames alone would be 120 MiB resident.
    const MARGIN: u64 = 24 * 1024 * 1024;
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("queued.max.request.bytes", &BUDGET.to_string())
        .with("socket.request.read.timeout.ms", "120000"),
    );
    let topic = unique_topic("budget");
    broker.create_topic(&topic, 1, &[]).await;
    produce_and_consume(&broker, &topic, 10).await;
    let before = rss_bytes(broker.pid());

    let mut stalled = Vec::new();
    for _ in 0..HEADER_ONLY {
        let mut s = connect(&broker);
        s.write_all(&HEADER_ONLY_CLAIM.to_be_bytes())
            .expect("write size");
        stalled.push(s);
    }
    let mut senders = Vec::new();
    for _ in 0..NEARLY_SENT {
        let mut s = connect(&broker);
        s.set_write_timeout(Some(Duration::from_secs(30)))
            .expect("write timeout");
        stalled.push(s.try_clone().expect("clone stream"));
        senders.push(thread::spawn(move || {
            let mut bytes = (NEARLY_SENT_CLAIM as u32).to_be_bytes().to_vec();
            bytes.resize(4 + NEARLY_SENT_CLAIM - 1, 0xAB);
            // Frames over the budget are not read: their writes block, then time out.
            let _ = s.write_all(&bytes);
        }));
    }
    // Give the broker time to read whatever it will read of the stalled frames.
    thread::sleep(Duration::from_secs(3));
    let during = rss_bytes(broker.pid());
    produce_and_consume(&broker, &topic, 50).await;
    let after = rss_bytes(broker.pid());
    eprintln!("RSS before {before}, with stalled frames {during}, after producing {after}");
    for rss in [during, after] {
        assert!(
            rss < before + BUDGET + MARGIN,
            "RSS grew from {before} to {rss} bytes with {BUDGET} bytes of budget\n{}",
            broker.stderr_tail()
        );
    }
    drop(stalled);
    for t in senders {
        let _ = t.join();
    }
}

#[test]
fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("connections.max.idle.ms", "1000"),
    );
    let mut busy = connect(&broker);
    let mut idle = connect(&broker);
    let started = Instant::now();
    // A request every 300 ms for 2.5 s keeps a connection open past the idle limit.
    let mut id = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        id += 1;
        api_versions_round_trip(&mut busy, id).expect("busy connection answered");
        thread::sleep(Duration::from_millis(300));
    }
    let waited = started.elapsed() + time_until_closed(&mut idle);
    assert!(
        waited >= Duration::from_millis(900),
        "idle connection closed after {waited:?}"
    );
    api_versions_round_trip(&mut busy, id + 1).expect("busy connection still answered");
}

#[test]
fn a_frame_that_stops_arriving_is_closed_after_the_read_timeout() {
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("socket.request.read.timeout.ms", "1000")
        .with("connections.max.idle.ms", "600000"),
    );
    // Only the size.
    let mut header_only = connect(&broker);
    header_only.write_all(&100i32.to_be_bytes()).expect("write");
    // The size and part of the body.
    let mut part = connect(&broker);
    part.write_all(&100i32.to_be_bytes()).expect("write");
    part.write_all(&[0u8; 10]).expect("write");
    for stream in [&mut header_only, &mut part] {
        let waited = time_until_closed(stream);
        assert!(waited < Duration::from_secs(10), "closed after {waited:?}");
    }
    // The broker still serves.
    api_versions_round_trip(&mut connect(&broker), 1).expect("new connection answered");
}

#[test]
fn connections_over_the_per_ip_limit_are_refused() {
    const LIMIT: usize = 3;
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("max.connections.per.ip", &LIMIT.to_string()),
    );
    let mut open: Vec<TcpStream> = (0..LIMIT).map(|_| connect(&broker)).collect();
    for (i, s) in open.iter_mut().enumerate() {
        api_versions_round_trip(s, i as i32).expect("connection within the limit answered");
    }
    let mut extra = connect(&broker);
    // Refused at accept: closed before any request (the write may or may not fail).
    let _ = extra.write_all(&frame(
        ApiKey::ApiVersions,
        0,
        99,
        &ApiVersionsRequest::default(),
    ));
    time_until_closed(&mut extra);
    // A closed connection gives its place back.
    drop(open.pop());
    let mut again = None;
    common::wait_until("a freed per-IP slot", Duration::from_secs(10), || {
        let mut s = connect(&broker);
        let ok = api_versions_round_trip(&mut s, 7).is_ok();
        if ok {
            again = Some(s);
        }
        ok
    });
    drop(again);
    assert!(broker.stderr_tail().contains("max.connections.per.ip"));
}

#[test]
fn per_ip_overrides_apply() {
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("max.connections.per.ip.overrides", "127.0.0.1:1"),
    );
    let mut first = connect(&broker);
    api_versions_round_trip(&mut first, 1).expect("first connection answered");
    let mut second = connect(&broker);
    let _ = second.write_all(&frame(
        ApiKey::ApiVersions,
        0,
        2,
        &ApiVersionsRequest::default(),
    ));
    time_until_closed(&mut second);
}

/// A fetch whose `min_bytes` is above what the partition holds waits `max_wait_ms`, then
/// answers with the data; the broker sleeps meanwhile (no re-read loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_sleeps_until_max_wait() {
    const MAX_WAIT_MS: i32 = 500;
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let topic = unique_topic("long-poll");
    broker.create_topic(&topic, 1, &[]).await;
    produce_and_consume(&broker, &topic, 3).await;

    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1024 * 1024)
        .with_max_bytes(1024 * 1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1024 * 1024)])]);
    let mut stream = connect(&broker);
    let pid = broker.pid();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    stream
        .write_all(&frame(ApiKey::Fetch, 4, 11, &request))
        .expect("send fetch");
    // Sample the broker's thread states while the poll is parked.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        thread::spawn(move || {
            let (mut runnable, mut samples) = (0u32, 0u32);
            thread::sleep(Duration::from_millis(50));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                samples += 1;
                runnable += u32::from(any_thread_runnable(pid));
                thread::sleep(Duration::from_millis(5));
            }
            (runnable, samples)
        })
    };
    let mut body = read_response(&mut stream).expect("fetch answered");
    let waited = started.elapsed();
    let cpu = cpu_seconds(pid) - cpu_before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (runnable, samples) = sampler.join().expect("sampler");
    let header = ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(4))
        .expect("response header");
    assert_eq!(header.correlation_id, 11);
    let response = FetchResponse::decode(&mut body, 4).expect("fetch response");
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(
        partition.records.as_ref().is_some_and(|r| !r.is_empty()),
        "the long poll answered without the data"
    );
    eprintln!(
        "long poll answered after {waited:?}, broker CPU {cpu:.3} s, \
         runnable in {runnable} of {samples} samples"
    );
    assert!(
        waited >= Duration::from_millis(MAX_WAIT_MS as u64 - 50),
        "answered after {waited:?}, before max_wait_ms"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    // A re-read loop keeps a thread runnable (and burns CPU) for the whole wait; a
    // sleeping one is runnable only for the odd background task. Generous bounds: CPU
    // time shrinks on a loaded machine, the runnable share does not.
    assert!(samples >= 10, "only {samples} samples");
    assert!(
        runnable * 2 < samples,
        "a broker thread was runnable in {runnable} of {samples} samples of a parked long poll"
    );
    assert!(
        cpu < 0.25,
        "broker used {cpu:.3} s of CPU during a {waited:?} long poll"
    );
}

/// Drops a file's pages from the page cache, so the broker must read it cold.
fn evict_from_page_cache(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).expect("open segment");
    // SAFETY: posix_fadvise on a descriptor we own; it only gives the kernel advice.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise DONTNEED");
}

/// A fetch of many partitions of cold data with a small response limit reads (copies
/// into memory) about that limit, not every partition up to its own limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_fetch_reads_only_what_fits_the_response() {
    const PARTITIONS: i32 = 8;
    const RECORDS_PER_PARTITION: usize = 200;
    const RESPONSE_MAX_BYTES: i32 = 100 * 1024;
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        rust_log: Some("info".to_string()),
        ..BrokerOpts::default()
    });
    let topic = unique_topic("cold-fetch");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    let producer = broker.producer(&[("batch.size", "16384"), ("linger.ms", "20")]);
    let value = vec![0x5Au8; 1024];
    let mut deliveries = Vec::new();
    for p in 0..PARTITIONS {
        for _ in 0..RECORDS_PER_PARTITION {
            deliveries.push(
                producer.send_result(
                    FutureRecord::<[u8], [u8]>::to(&topic)
                        .partition(p)
                        .payload(value.as_slice()),
                ),
            );
        }
    }
    for d in deliveries {
        d.unwrap_or_else(|_| panic!("enqueue failed"))
            .await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("not delivered: {e}"));
    }
    for p in 0..PARTITIONS {
        evict_from_page_cache(&common::active_segment(&broker.data_dir(), &topic, p));
    }
    let partitions = (0..PARTITIONS)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1024 * 1024)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(partitions)]);
    let mut stream = connect(&broker);
    stream
        .write_all(&frame(ApiKey::Fetch, 4, 5, &request))
        .expect("send fetch");
    let mut body = read_response(&mut stream).expect("fetch answered");
    ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(4))
        .expect("response header");
    let response = FetchResponse::decode(&mut body, 4).expect("fetch response");
    let sent: usize = response.responses[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
            p.records.as_ref().map_or(0, |r| r.len())
        })
        .sum();
    assert!(sent > 0, "nothing fetched");
    assert!(
        sent <= RESPONSE_MAX_BYTES as usize + 16 * 1024,
        "{sent} bytes in a response limited to {RESPONSE_MAX_BYTES}"
    );
    drop(stream);
    broker.stop();
    let log = std::fs::read_to_string(broker.stderr_path()).expect("broker log");
    let copied: u64 = log
        .lines()
        .filter(|l| l.contains("shard stopped"))
        .filter_map(|l| l.split("copied_bytes=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    eprintln!("response {sent} bytes, broker copied {copied} bytes from cold segments");
    // Every partition read up to the response limit would copy 8 × 100 KiB.
    assert!(
        copied <= 2 * RESPONSE_MAX_BYTES as u64,
        "the broker read {copied} bytes of cold data for a {sent}-byte response"
    );
}

/// Shutdown ends the reads of idle and half-read connections at once (SHUT_RD), with
/// no per-connection timer to notice it.
#[test]
fn shutdown_closes_idle_and_half_read_connections_promptly() {
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        rust_log: Some("info".to_string()),
        ..BrokerOpts::default()
    });
    let mut idle = connect(&broker);
    api_versions_round_trip(&mut idle, 1).expect("answered");
    let mut half_size = connect(&broker);
    half_size.write_all(&[0, 0]).expect("write");
    let mut mid_frame = connect(&broker);
    mid_frame.write_all(&100i32.to_be_bytes()).expect("write");
    mid_frame.write_all(&[0u8; 10]).expect("write");
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    broker.stop();
    let took = started.elapsed();
    let log = std::fs::read_to_string(broker.stderr_path()).expect("broker log");
    assert!(
        !log.contains("connections still open at shutdown"),
        "connections outlived the shutdown drain\n{log}"
    );
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    drop((idle, half_size, mid_frame));
}

/// A frame larger than the whole request budget still runs (alone), rather than
/// waiting for bytes that can never be free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_larger_than_the_budget_runs_alone() {
    const BUDGET: usize = 256 * 1024;
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("queued.max.request.bytes", &BUDGET.to_string()),
    );
    let topic = unique_topic("over-budget");
    broker.create_topic(&topic, 1, &[]).await;
    let producer = broker.producer(&[("compression.type", "none")]);
    let value = vec![0x42u8; 3 * BUDGET];
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(value.as_slice()),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("not delivered: {e}\n{}", broker.stderr_tail()));
    let read = broker.read_partition(&topic, 0);
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].value.as_deref(), Some(value.as_slice()));
}

/// Samples the broker's RSS every 50 ms until `stop` is set; returns the peak.
fn rss_sampler(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_bytes(pid));
            thread::sleep(Duration::from_millis(50));
        }
        peak.max(rss_bytes(pid))
    })
}

/// Produces `records` values of `value_bytes` bytes to each of `partitions` partitions,
/// uncompressed; value `i` of partition `p` is filled with `(p * 31 + i) as u8`.
async fn fill_partitions(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    records: usize,
    value_bytes: usize,
) {
    let producer = broker.producer(&[
        ("compression.type", "none"),
        ("batch.size", "1048576"),
        ("linger.ms", "5"),
    ]);
    // One value per fill byte (256 at most), shared by the records that use it.
    let values: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b; value_bytes]).collect();
    let mut deliveries = Vec::new();
    for p in 0..partitions {
        for i in 0..records {
            let value = &values[(p as usize * 31 + i) % 256];
            deliveries.push(
                producer
                    .send_result(
                        FutureRecord::<[u8], [u8]>::to(topic)
                            .partition(p)
                            .payload(value.as_slice()),
                    )
                    .map_err(|(e, _)| e),
            );
        }
    }
    for d in deliveries {
        d.unwrap_or_else(|_| panic!("enqueue failed"))
            .await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("not delivered: {e}\n{}", broker.stderr_tail()));
    }
}

/// A client pipelines many large fetches of cold data and does not read its socket: the
/// connection stops being read once its unsent responses pass their bound
/// (`RESPONSE_QUEUED_BYTES_PER_CONNECTION_MAX`, 16 MiB), and each fetch reserves its
/// copied bytes in that bound before it reads them, so the broker holds about the bound
/// plus one response, not every response (48 here, 1.1 GiB in all). Other clients keep
/// producing and fetching meanwhile. When the client reads (well within
/// `connections.max.idle.ms`, so the connection is not closed), every response arrives,
/// complete and in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_fetches_holds_bounded_memory() {
    const PARTITIONS: i32 = 3;
    const RECORDS: usize = 128;
    const VALUE_BYTES: usize = 64 * 1024;
    // Each response carries every partition whole: 3 × 8 MiB.
    const FETCHES: i32 = 48;
    const HOLD: Duration = Duration::from_secs(6);
    // The bound (16 MiB) plus one response being made (24 MiB of copied ranges, spliced
    // into the frame, not copied again), with room for the other clients and the
    // allocator. Without the bound, 32 responses in flight hold 32 × 24 MiB (measured:
    // a peak 1.3 GiB above the start).
    const RSS_GROWTH_MAX: u64 = 160 * 1024 * 1024;
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("connections.max.idle.ms", "120000"),
    );
    let topic = unique_topic("unread-fetches");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    fill_partitions(&broker, &topic, PARTITIONS, RECORDS, VALUE_BYTES).await;
    let other = unique_topic("unread-fetches-other");
    broker.create_topic(&other, 1, &[]).await;
    produce_and_consume(&broker, &other, 5).await;
    let segments: Vec<_> = (0..PARTITIONS)
        .map(|p| common::active_segment(&broker.data_dir(), &topic, p))
        .collect();
    for s in &segments {
        evict_from_page_cache(s);
    }
    let before = rss_bytes(broker.pid());

    let partitions = (0..PARTITIONS)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(16 * 1024 * 1024)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(55 * 1024 * 1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(partitions)]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(broker.pid(), stop.clone());
    // Keeps the data cold, so every fetch that reads copies.
    let evictor = {
        let stop = stop.clone();
        let segments = segments.clone();
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &segments {
                    evict_from_page_cache(s);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut stream = connect(&broker);
    let mut requests = Vec::new();
    for i in 0..FETCHES {
        requests.extend(frame(ApiKey::Fetch, 4, 1000 + i, &request));
    }
    stream.write_all(&requests).expect("send fetches");
    let started = Instant::now();
    // Others are served while the connection holds its responses.
    produce_and_consume(&broker, &other, 20).await;
    let remaining = HOLD.saturating_sub(started.elapsed());
    thread::sleep(remaining);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    evictor.join().expect("evictor");
    eprintln!(
        "RSS before {} MiB, peak while the client did not read {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < before + RSS_GROWTH_MAX,
        "RSS grew from {before} to {peak} bytes while a client did not read its fetches\n{}",
        broker.stderr_tail()
    );

    // Now read: every response, whole, in order.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut first: Option<Vec<Bytes>> = None;
    for i in 0..FETCHES {
        let mut body = read_response(&mut stream)
            .unwrap_or_else(|e| panic!("response {i} not received: {e}\n{}", broker.stderr_tail()));
        let header = ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(4))
            .expect("response header");
        assert_eq!(header.correlation_id, 1000 + i, "responses out of order");
        let response = FetchResponse::decode(&mut body, 4).expect("fetch response");
        let records: Vec<Bytes> = response.responses[0]
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
                p.records.clone().unwrap_or_default()
            })
            .collect();
        assert_eq!(records.len(), PARTITIONS as usize);
        match &first {
            None => {
                for (p, bytes) in records.iter().enumerate() {
                    let mut buf = bytes.clone();
                    let values: Vec<_> =
                        kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf)
                            .expect("record batches")
                            .into_iter()
                            .flat_map(|set| set.records)
                            .collect();
                    assert_eq!(values.len(), RECORDS, "partition {p} incomplete");
                    for (i, r) in values.iter().enumerate() {
                        assert_eq!(r.offset, i as i64);
                        let value = r.value.as_ref().expect("value");
                        assert_eq!(value.len(), VALUE_BYTES);
                        assert!(value.iter().all(|b| *b == (p * 31 + i) as u8));
                    }
                }
                first = Some(records);
            }
            Some(first) => assert!(&records == first, "response {i} differs from the first one"),
        }
    }
    // The connection still serves.
    api_versions_round_trip(&mut stream, 7).expect("connection still answers");
}

/// A client that never reads its responses is closed after `connections.max.idle.ms`
/// without progress, and what it held is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_by_the_idle_timeout() {
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            rust_log: Some("info".to_string()),
            ..BrokerOpts::default()
        }
        .with("connections.max.idle.ms", "2000"),
    );
    let topic = unique_topic("never-read");
    broker.create_topic(&topic, 1, &[]).await;
    fill_partitions(&broker, &topic, 1, 64, 64 * 1024).await;
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(8 * 1024 * 1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(8 * 1024 * 1024)])]);
    let mut stream = connect(&broker);
    // 16 × 4 MiB of answers: more than the socket buffers hold.
    let mut requests = Vec::new();
    for i in 0..16 {
        requests.extend(frame(ApiKey::Fetch, 4, i, &request));
    }
    stream.write_all(&requests).expect("send fetches");
    let started = Instant::now();
    common::wait_until(
        "the broker closing a client that does not read",
        Duration::from_secs(30),
        || {
            broker
                .stderr_tail()
                .contains("client not reading its responses")
        },
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "closed after {waited:?}, before connections.max.idle.ms"
    );
    // Other clients are served.
    api_versions_round_trip(&mut connect(&broker), 1).expect("a new connection answered");
    drop(stream);
}

/// Far more cross-shard work than `MESH_REQUESTS_IN_PROGRESS_MAX` (1024): 100 connections
/// each pipeline 30 long polls over a partition of each shard (about 1,500 waits parked on
/// each shard for the other), then another client produces and fetches. The broker keeps
/// answering (the produce and the fetch complete well before the long polls' 30 s), every
/// long poll is answered (with the new data), and RSS stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_long_polls_beyond_the_mesh_bound_do_not_stop_the_broker() {
    const CONNECTIONS: usize = 100;
    const POLLS_PER_CONNECTION: i32 = 30;
    const ANSWER_WITHIN: Duration = Duration::from_secs(10);
    const RSS_GROWTH_MAX: u64 = 128 * 1024 * 1024;
    let broker = Broker::start_with(BrokerOpts {
        cores: 2,
        ..BrokerOpts::default()
    });
    // Partitions 0 and 1 are owned by different shards (placement adds the partition to
    // the topic's hash, modulo the shards).
    let topic = unique_topic("mesh-bound");
    broker.create_topic(&topic, 2, &[]).await;
    let producer = broker.producer(&[]);
    for p in 0..2 {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(p)
                    .payload(b"first"),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("not delivered: {e}"));
    }
    let before = rss_bytes(broker.pid());
    let poll = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(30_000)
        .with_min_bytes(1)
        .with_max_bytes(1024 * 1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(
                (0..2)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(1)
                            .with_partition_max_bytes(64 * 1024)
                    })
                    .collect(),
            )]);
    let mut pollers = Vec::new();
    let mut requests = Vec::new();
    for i in 0..POLLS_PER_CONNECTION {
        requests.extend(frame(ApiKey::Fetch, 4, i, &poll));
    }
    for _ in 0..CONNECTIONS {
        let mut s = connect(&broker);
        s.write_all(&requests).expect("send long polls");
        pollers.push(s);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(broker.pid(), stop.clone());
    // Let the polls reach their owners and park.
    thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    for p in 0..2 {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(p)
                    .payload(b"second"),
                ANSWER_WITHIN,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {p} not delivered: {e}"));
    }
    let produced = started.elapsed();
    for p in 0..2 {
        let read = broker.read_range(&topic, p, 0, 2);
        assert_eq!(read[1].value.as_deref(), Some(&b"second"[..]));
    }
    let fetched = started.elapsed();
    eprintln!("produce answered after {produced:?}, fetch after {fetched:?}");
    assert!(
        fetched < ANSWER_WITHIN,
        "a produce and a fetch took {fetched:?} behind the parked long polls\n{}",
        broker.stderr_tail()
    );

    // Every long poll is answered, in order, with the new data.
    for (c, s) in pollers.iter_mut().enumerate() {
        s.set_read_timeout(Some(ANSWER_WITHIN))
            .expect("read timeout");
        for i in 0..POLLS_PER_CONNECTION {
            let mut body = read_response(s).unwrap_or_else(|e| {
                panic!(
                    "long poll {i} of connection {c} not answered: {e}\n{}",
                    broker.stderr_tail()
                )
            });
            let header =
                ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(4))
                    .expect("response header");
            assert_eq!(header.correlation_id, i);
            let response = FetchResponse::decode(&mut body, 4).expect("fetch response");
            let with_data = response.responses[0]
                .partitions
                .iter()
                .filter(|p| {
                    assert_eq!(p.error_code, 0);
                    p.records.as_ref().is_some_and(|r| !r.is_empty())
                })
                .count();
            assert!(
                with_data > 0,
                "long poll {i} of connection {c} answered empty"
            );
        }
    }
    let answered = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    eprintln!(
        "all {} long polls answered after {answered:?}; RSS before {} MiB, peak {} MiB",
        CONNECTIONS * POLLS_PER_CONNECTION as usize,
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < before + RSS_GROWTH_MAX,
        "RSS grew from {before} to {peak} bytes"
    );
}
