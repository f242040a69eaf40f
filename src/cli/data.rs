//! `sluice produce` (stdin or a file, one record per line) and `sluice consume`: Kafka's
//! console producer and consumer over the CLI client, talking to each partition's leader.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FindCoordinatorRequest, ProduceRequest, TopicName,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::json;

use super::client::{check_with, Client};
use super::output::{print_rows, Format};
use super::topic::{row, sb};

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    #[arg(long)]
    pub topic: String,
    /// Every record to this partition (default: by key hash, Kafka's murmur2; keyless
    /// records stick to one partition per batch, rotating).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Split each line into key and value at the first occurrence of this.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// A header on every record, `key=value` (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// -1 (all in-sync replicas), 1 (leader) or 0 (no answer).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub acks: i16,
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    /// Records per produce request.
    #[arg(long, default_value_t = 500)]
    pub batch_records: usize,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum RecordFormat {
    /// The value only.
    Value,
    /// `key<TAB>value`.
    Kv,
    /// One JSON object per record: partition, offset, timestamp, key, value, headers.
    Json,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    #[arg(long)]
    pub topic: String,
    /// Partitions to read (repeatable; default: all) — an assignment, as Kafka's `--partition`.
    #[arg(long = "partition")]
    pub partitions: Vec<i32>,
    /// `earliest`, `latest` or an offset (default: the group's committed offset, else earliest).
    #[arg(long, allow_negative_numbers = true)]
    pub from: Option<String>,
    /// Start at the first record at or after this timestamp (ms since the epoch).
    #[arg(long)]
    pub from_timestamp: Option<i64>,
    /// Start from this group's committed offsets and commit where the read stopped.
    #[arg(long)]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<usize>,
    /// Stop once no record arrived for this long.
    #[arg(long, default_value_t = 3000)]
    pub idle_timeout_ms: u64,
    #[arg(long, value_enum, default_value_t = RecordFormat::Value)]
    pub format: RecordFormat,
}

/// Where a topic's partitions are led: partition -> leader address, and the partition count.
struct Leaders {
    partitions: BTreeMap<i32, String>,
}

fn leaders(client: &mut Client, topic: &str) -> anyhow::Result<Leaders> {
    let resp = super::topic::metadata(client, &[topic.to_string()])?;
    let brokers: BTreeMap<i32, String> = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let t = resp.topics.first().context("Metadata answered no topic")?;
    check_with(t.error_code, &format!("topic {topic}"), None)?;
    let mut partitions = BTreeMap::new();
    for p in &t.partitions {
        check_with(
            p.error_code,
            &format!("{topic}-{}", p.partition_index),
            None,
        )?;
        let addr = brokers.get(&p.leader_id.0).with_context(|| {
            format!(
                "{topic}-{}: leader {} unknown (no leader?)",
                p.partition_index, p.leader_id.0
            )
        })?;
        partitions.insert(p.partition_index, addr.clone());
    }
    Ok(Leaders { partitions })
}

/// One client per broker address, made on first use.
#[derive(Default)]
struct Clients(BTreeMap<String, Client>);

impl Clients {
    fn to(&mut self, addr: &str) -> anyhow::Result<&mut Client> {
        if !self.0.contains_key(addr) {
            self.0.insert(addr.to_string(), Client::connect(addr)?);
        }
        self.0.get_mut(addr).context("client just made")
    }
}

pub fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let mut bootstrap = Client::connect(&args.bootstrap_server)?;
    let leaders = leaders(&mut bootstrap, &args.topic)?;
    let count = leaders.partitions.len() as i32;
    let headers = super::topic::pairs(&args.headers)?;
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let mut clients = Clients::default();
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let (mut buffered, mut produced, mut sticky) = (0usize, 0u64, 0i32);
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut lines = input.lines();
    loop {
        let line = lines.next().transpose().context("reading input")?;
        if let Some(line) = &line {
            let (key, value) = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(k.as_bytes()), v.as_bytes()),
                    None => (None, line.as_bytes()),
                },
                None => (None, line.as_bytes()),
            };
            let partition = match (args.partition, key) {
                (Some(p), _) => p,
                (None, Some(k)) => ((murmur2(k) & 0x7fff_ffff) % count as u32) as i32,
                (None, None) => sticky,
            };
            if !leaders.partitions.contains_key(&partition) {
                bail!(
                    "{}-{partition}: no such partition (the topic has {count})",
                    args.topic
                );
            }
            pending
                .entry(partition)
                .or_default()
                .push(record(key, value, &headers));
            buffered += 1;
        }
        if buffered >= args.batch_records.max(1) || (line.is_none() && buffered > 0) {
            for (partition, records) in std::mem::take(&mut pending) {
                let addr = &leaders.partitions[&partition];
                send_batch(clients.to(addr)?, &args, partition, &records)?;
                produced += records.len() as u64;
            }
            buffered = 0;
            sticky = (sticky + 1) % count.max(1);
            if last_progress.elapsed() >= Duration::from_secs(1) {
                eprintln!(
                    "produced {produced} records ({:.0}/s)",
                    produced as f64 / started.elapsed().as_secs_f64()
                );
                last_progress = Instant::now();
            }
        }
        if line.is_none() {
            break;
        }
    }
    print_rows(
        args.output,
        &["topic", "records", "acks"],
        &[row(
            json!({"topic": args.topic, "records": produced, "acks": args.acks}),
        )],
    );
    Ok(())
}

fn record(key: Option<&[u8]>, value: &[u8], headers: &[(String, String)]) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: crate::replica::now_ms(),
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: headers
            .iter()
            .map(|(k, v)| (sb(k), Some(Bytes::copy_from_slice(v.as_bytes()))))
            .collect(),
    }
}

fn send_batch(
    client: &mut Client,
    args: &ProduceArgs,
    partition: i32,
    records: &[Record],
) -> anyhow::Result<()> {
    let mut records = records.to_vec();
    // One batch: the encoder keeps records together while offset − sequence stays the same, so
    // a non-idempotent batch (base sequence -1) numbers its records -1, 0, 1, …
    for (i, r) in records.iter_mut().enumerate() {
        r.offset = i as i64;
        r.sequence = i as i32 - 1;
    }
    let compression = match args.compression {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| anyhow::anyhow!("encoding a batch: {e}"))?;
    let req = ProduceRequest::default()
        .with_acks(args.acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(sb(&args.topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(buf.freeze()))])]);
    if args.acks == 0 {
        return client.send_only(&req, 9);
    }
    let resp = client.send(&req, 9)?;
    for t in &resp.responses {
        for p in &t.partition_responses {
            check_with(
                p.error_code,
                &format!("producing to {}-{}", args.topic, p.index),
                p.error_message.as_deref(),
            )?;
        }
    }
    Ok(())
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), as its default partitioner hashes keys.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

pub fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut bootstrap = Client::connect(&args.bootstrap_server)?;
    let leaders = leaders(&mut bootstrap, &args.topic)?;
    let wanted: Vec<i32> = if args.partitions.is_empty() {
        leaders.partitions.keys().copied().collect()
    } else {
        args.partitions.clone()
    };
    let mut clients = Clients::default();
    let mut coordinator = match &args.group {
        Some(group) => Some(coordinator_of(&mut bootstrap, group)?),
        None => None,
    };
    let committed = match (&args.group, coordinator.as_mut()) {
        (Some(group), Some(c)) => super::group::fetch_committed(c, group)?,
        _ => BTreeMap::new(),
    };
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for p in &wanted {
        let addr = leaders
            .partitions
            .get(p)
            .with_context(|| format!("{}-{p}: no such partition", args.topic))?;
        let tp = (args.topic.clone(), *p);
        let start = match (
            &args.from,
            args.from_timestamp,
            committed.get(&tp).filter(|o| **o >= 0),
        ) {
            (Some(f), _, _) if f == "earliest" => -2,
            (Some(f), _, _) if f == "latest" => -1,
            (Some(f), _, _) => f
                .parse::<i64>()
                .with_context(|| format!("--from {f:?}: earliest, latest or an offset"))?,
            (None, Some(ts), _) => ts,
            (None, None, Some(o)) => *o,
            (None, None, None) => -2,
        };
        let resolved = if start >= 0 && args.from_timestamp.is_none() {
            start
        } else {
            let found =
                super::group::list_offsets(clients.to(addr)?, std::slice::from_ref(&tp), start)?;
            *found
                .get(&tp)
                .with_context(|| format!("ListOffsets answered nothing for {}-{p}", args.topic))?
        };
        offsets.insert(*p, resolved);
    }
    let mut printed = 0usize;
    let mut last_record = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    'read: while last_record.elapsed() < Duration::from_millis(args.idle_timeout_ms) {
        let mut by_leader: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for p in offsets.keys() {
            by_leader
                .entry(leaders.partitions[p].as_str())
                .or_default()
                .push(*p);
        }
        for (addr, parts) in by_leader {
            let fetch = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(8 << 20)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(sb(&args.topic)))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(offsets[p])
                                    .with_partition_max_bytes(1 << 20)
                                    .with_log_start_offset(-1)
                                    .with_current_leader_epoch(-1)
                                    .with_last_fetched_epoch(-1)
                            })
                            .collect(),
                    )]);
            let resp = clients.to(addr)?.send(&fetch, 12)?;
            check_with(resp.error_code, "Fetch", None)?;
            for t in &resp.responses {
                for p in &t.partitions {
                    check_with(
                        p.error_code,
                        &format!("fetching {}-{}", args.topic, p.partition_index),
                        None,
                    )?;
                    let Some(mut bytes) = p.records.clone() else {
                        continue;
                    };
                    let sets = RecordBatchDecoder::decode_all(&mut bytes)
                        .map_err(|e| anyhow::anyhow!("decoding records: {e}"))?;
                    for record in sets.iter().flat_map(|s| s.records.iter()) {
                        let next = offsets
                            .get_mut(&p.partition_index)
                            .context("answered an unasked partition")?;
                        if record.offset < *next {
                            continue;
                        }
                        *next = record.offset + 1;
                        print_record(&mut out, args.format, p.partition_index, record)?;
                        printed += 1;
                        last_record = Instant::now();
                        if args.max_messages.is_some_and(|m| printed >= m) {
                            break 'read;
                        }
                    }
                }
            }
        }
    }
    out.flush()?;
    if let (Some(group), Some(c)) = (&args.group, coordinator.as_mut()) {
        commit(c, group, &args.topic, &offsets)?;
    }
    eprintln!("consumed {printed} records");
    Ok(())
}

fn print_record(
    out: &mut impl Write,
    format: RecordFormat,
    partition: i32,
    r: &Record,
) -> anyhow::Result<()> {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    match format {
        RecordFormat::Value => writeln!(out, "{}", text(&r.value).unwrap_or_default())?,
        RecordFormat::Kv => writeln!(
            out,
            "{}\t{}",
            text(&r.key).unwrap_or_default(),
            text(&r.value).unwrap_or_default()
        )?,
        RecordFormat::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(text(v))))
                .collect();
            writeln!(
                out,
                "{}",
                json!({"partition": partition, "offset": r.offset, "timestamp": r.timestamp,
                "key": text(&r.key), "value": text(&r.value), "headers": headers})
            )?
        }
    }
    Ok(())
}

fn coordinator_of(client: &mut Client, group: &str) -> anyhow::Result<Client> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![sb(group)]);
    let resp = client.send(&req, 4)?;
    let c = resp
        .coordinators
        .first()
        .context("FindCoordinator answered no coordinator")?;
    check_with(
        c.error_code,
        &format!("finding the coordinator of {group}"),
        c.error_message.as_deref(),
    )?;
    Client::connect(&format!("{}:{}", c.host, c.port))
}

fn commit(
    client: &mut Client,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(sb(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_leader_epoch(-1)
                    })
                    .collect(),
            )]);
    let resp = client.send(&req, 8)?;
    for t in &resp.topics {
        for p in &t.partitions {
            check_with(
                p.error_code,
                &format!("committing {topic}-{} for {group}", p.partition_index),
                None,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Vectors of Kafka's UtilsTest.testMurmur2 (as Java ints).
        for (key, hash) in [
            ("21", -973932308i32),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ] {
            assert_eq!(super::murmur2(key.as_bytes()) as i32, hash, "{key}");
        }
    }
}
