//! `broker-rss`: the resident memory (VmRSS of /proc/PID/status) of a running broker under two
//! loads that issue 9 asks about. Starts no broker: give it the broker's address and pid.
//!
//! - `idle-connections`: opens N connections, sends one ApiVersions on each and keeps them
//!   open; reports RSS before, after, and per connection.
//! - `cold-fetch`: creates a topic of N partitions, fills each with uncompressed records
//!   (appends are O_DIRECT, so they do not enter the page cache; `--data-dir` also drops the
//!   segment files from the page cache before each round), then sends Fetch requests for
//!   every partition with large `max_bytes` and `partition_max_bytes` and reports the peak
//!   RSS while they are answered (sampled every 5 ms), with the bytes each response carried.
//!
//! Bounded: every socket has a read timeout; traffic goes only to the given address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::{Parser, Subcommand};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, FetchRequest, FetchResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Bound on any one answer from the broker.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(about = "RSS of a running broker under idle connections and a wide cold fetch")]
struct Cli {
    /// The broker's address (host:port).
    #[arg(long)]
    bootstrap_server: String,
    /// The broker's process id (its /proc/PID/status is read).
    #[arg(long)]
    pid: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    IdleConnections {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// How long to keep them open before measuring (the broker settles).
        #[arg(long, default_value_t = 2)]
        settle_secs: u64,
    },
    ColdFetch {
        #[arg(long, default_value = "rss-cold")]
        topic: String,
        #[arg(long, default_value_t = 1000)]
        partitions: i32,
        /// Bytes of record values produced to each partition.
        #[arg(long, default_value_t = 1024 * 1024)]
        bytes_per_partition: usize,
        #[arg(long, default_value_t = 16 * 1024)]
        record_size: usize,
        /// The Fetch's max_bytes (the broker caps it at fetch.max.bytes, 55 MiB).
        #[arg(long, default_value_t = 1 << 30)]
        max_bytes: i32,
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        partition_max_bytes: i32,
        /// Fetches sent, one after another (each from offset 0 of every partition).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Fetches pipelined on one connection per round.
        #[arg(long, default_value_t = 1)]
        pipelined: usize,
        /// The broker's data dir: its segment files are dropped from the page cache before
        /// each round.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Do not create or fill the topic (it is already there).
        #[arg(long)]
        no_fill: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::IdleConnections {
            connections,
            settle_secs,
        } => idle_connections(&cli.bootstrap_server, cli.pid, connections, settle_secs),
        Command::ColdFetch {
            ref topic,
            partitions,
            bytes_per_partition,
            record_size,
            max_bytes,
            partition_max_bytes,
            rounds,
            pipelined,
            ref data_dir,
            no_fill,
        } => {
            if !no_fill {
                fill(
                    &cli.bootstrap_server,
                    topic,
                    partitions,
                    bytes_per_partition,
                    record_size,
                )?;
            }
            cold_fetch(
                &cli.bootstrap_server,
                cli.pid,
                topic,
                partitions,
                max_bytes,
                partition_max_bytes,
                rounds,
                pipelined,
                data_dir.as_deref(),
            )
        }
    }
}

fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")?;
    Ok(kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn frame(key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Result<Vec<u8>> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("broker-rss")))
        .encode(&mut buf, key.request_header_version(version))?;
    body.encode(&mut buf, version)?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.to_vec())
}

fn read_response(stream: &mut TcpStream) -> Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if size < 0 {
        bail!("negative response size {size}");
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

fn connect(bootstrap: &str) -> Result<TcpStream> {
    let stream =
        TcpStream::connect(bootstrap).with_context(|| format!("connecting {bootstrap}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(stream)
}

fn idle_connections(bootstrap: &str, pid: u32, connections: usize, settle: u64) -> Result<()> {
    let before = rss_bytes(pid)?;
    let mut open = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut s = connect(bootstrap)?;
        s.write_all(&frame(
            ApiKey::ApiVersions,
            0,
            i as i32,
            &ApiVersionsRequest::default(),
        )?)?;
        let mut answer = read_response(&mut s).with_context(|| format!("connection {i}"))?;
        if answer.get_i32() != i as i32 {
            bail!("connection {i}: wrong correlation id");
        }
        open.push(s);
    }
    std::thread::sleep(Duration::from_secs(settle));
    let after = rss_bytes(pid)?;
    println!(
        "idle-connections: {connections} connections, RSS before {:.1} MiB, after {:.1} MiB, \
         +{:.1} KiB per connection",
        mib(before),
        mib(after),
        after.saturating_sub(before) as f64 / 1024.0 / connections as f64
    );
    println!(
        "{{\"phase\": \"idle-connections\", \"connections\": {connections}, \"rss_before\": {before}, \"rss_after\": {after}}}"
    );
    drop(open);
    Ok(())
}

fn fill(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    bytes_per_partition: usize,
    record_size: usize,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("admin client")?;
        let options = AdminOptions::new().operation_timeout(Some(ANSWER_TIMEOUT));
        let results = tokio::time::timeout(
            ANSWER_TIMEOUT,
            admin.create_topics(
                [&NewTopic::new(
                    topic,
                    partitions,
                    TopicReplication::Fixed(1),
                )],
                &options,
            ),
        )
        .await
        .context("CreateTopics timed out")??;
        for r in results {
            if let Err((name, code)) = r {
                bail!("creating {name}: {code}");
            }
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "1")
            .set("compression.type", "none")
            .set("linger.ms", "20")
            .set("batch.size", "1048576")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", "120000")
            .create()
            .context("producer")?;
        let value: Vec<u8> = (0..record_size).map(|i| (i * 7 + 13) as u8).collect();
        let per_partition = bytes_per_partition.div_ceil(record_size);
        let started = Instant::now();
        let mut pending = Vec::new();
        for _ in 0..per_partition {
            for p in 0..partitions {
                let record = FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(p)
                    .payload(&value);
                pending.push(producer.send(record, Duration::from_secs(60)));
                if pending.len() >= 4096 {
                    for d in pending.drain(..) {
                        d.await.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                    }
                }
            }
        }
        for d in pending.drain(..) {
            d.await.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
        }
        let total = per_partition * record_size * partitions as usize;
        println!(
            "filled {topic}: {partitions} partitions × {per_partition} records of {record_size} B \
             ({:.0} MiB) in {:.1} s",
            mib(total as u64),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

/// Drops every segment file of `topic` under `data_dir` from the page cache.
fn evict(data_dir: &Path, topic: &str) -> Result<usize> {
    use std::os::fd::AsRawFd;
    let mut files = 0;
    for entry in std::fs::read_dir(data_dir)? {
        let dir = entry?.path();
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = name
            .strip_prefix(topic)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !ours {
            continue;
        }
        for f in std::fs::read_dir(&dir)? {
            let path = f?.path();
            if path.extension().is_some_and(|e| e == "log") {
                let file = std::fs::File::open(&path)?;
                // SAFETY: posix_fadvise on a descriptor we own; it only advises the kernel.
                unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
                }
                files += 1;
            }
        }
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn cold_fetch(
    bootstrap: &str,
    pid: u32,
    topic: &str,
    partitions: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
    rounds: usize,
    pipelined: usize,
    data_dir: Option<&Path>,
) -> Result<()> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )]);
    let one = frame(ApiKey::Fetch, 4, 0, &request)?;
    let mut stream = connect(bootstrap)?;
    // Let the fill's memory settle before the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let before = rss_bytes(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let mut sizes = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        if let Some(dir) = data_dir {
            let files = evict(dir, topic)?;
            if round == 0 {
                println!("dropping {files} segment files from the page cache before each round");
            }
        }
        let mut requests = Vec::new();
        for _ in 0..pipelined {
            requests.extend_from_slice(&one);
        }
        stream.write_all(&requests)?;
        for _ in 0..pipelined {
            let mut body = read_response(&mut stream)?;
            ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(4))?;
            let response = FetchResponse::decode(&mut body, 4)?;
            let mut bytes = 0usize;
            let mut with_data = 0usize;
            for t in &response.responses {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        bail!("partition {}: error {}", p.partition_index, p.error_code);
                    }
                    let n = p.records.as_ref().map_or(0, |r| r.len());
                    bytes += n;
                    with_data += usize::from(n > 0);
                }
            }
            sizes.push((bytes, with_data));
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| anyhow::anyhow!("sampler"))?;
    let after = rss_bytes(pid)?;
    let (bytes, with_data) = sizes.first().copied().unwrap_or((0, 0));
    println!(
        "cold-fetch: {} fetches of {partitions} partitions ({pipelined} pipelined per round), \
         max_bytes {max_bytes}, partition_max_bytes {partition_max_bytes}: each answered \
         {:.1} MiB from {with_data} partitions; {:.2} s; RSS before {:.1} MiB, peak {:.1} MiB, \
         after {:.1} MiB",
        sizes.len(),
        mib(bytes as u64),
        took.as_secs_f64(),
        mib(before),
        mib(peak),
        mib(after)
    );
    println!(
        "{{\"phase\": \"cold-fetch\", \"partitions\": {partitions}, \"fetches\": {}, \"response_bytes\": {bytes}, \"rss_before\": {before}, \"rss_peak\": {peak}, \"rss_after\": {after}}}",
        sizes.len()
    );
    Ok(())
}
