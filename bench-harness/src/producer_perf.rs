//! `producer-perf`: a port of Kafka's `ProducerPerformance` onto librdkafka.
//!
//! Latency is send → delivery report, as in Kafka's tool (there: send → callback). Sends never
//! wait for acks: a `ThreadedProducer` serves delivery reports on its own thread, so throughput
//! is bounded by the client and broker, not by a per-record round trip.

use crate::cli::ProducerPerfArgs;
use crate::report::{self, LatencySummaryMs};
use crate::throttle::ThroughputThrottler;
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Kafka's tool prints a window every 5 s.
const REPORTING_INTERVAL: Duration = Duration::from_secs(5);
/// Kafka's MB is 1024 * 1024 bytes.
const BYTES_PER_MB: f64 = 1024.0 * 1024.0;
/// Random payloads rotated through for `--record-size` (Kafka regenerates per record; a pool
/// keeps the client's CPU for sending while defeating trivial compression just the same).
const RANDOM_PAYLOADS_COUNT: usize = 64;
/// Upper bound on the final flush, so a stuck broker cannot hang a benchmark script.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Back-off when librdkafka's local queue is full (Kafka's send() would block instead).
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);
/// Bound on init, commit (its flush included) of one transaction.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// Delivery errors printed in full; later ones are only counted.
const ERRORS_PRINTED_MAX: u64 = 10;

pub fn run(args: &ProducerPerfArgs) -> Result<()> {
    let (config, effective) = crate::props::client_config(
        &args.common.bootstrap_server,
        &[],
        args.producer_config.as_deref(),
        &args.producer_props,
    )?;
    let bootstrap = crate::props::bootstrap_of(&effective);
    if args.common.create_topic {
        crate::admin::create_topic(
            &bootstrap,
            &args.topic,
            args.common.partitions,
            args.common.replication_factor,
        )?;
    }
    let payloads = payloads(args)?;
    let start = Instant::now();
    let context = PerfContext {
        start,
        stats: Mutex::new(Stats::new(start)),
    };
    let mut config = config;
    if let Some(id) = &args.transactional_id {
        config.set("transactional.id", id);
    }
    let producer: ThreadedProducer<PerfContext> =
        ThreadedProducer::from_config_and_context(&config, context).context("creating producer")?;
    // Transactions: commit every --transaction-records records; commit latency (the flush of
    // the transaction's records included, as in Kafka's tool) goes in its own histogram.
    let mut commits = report::latency_histogram();
    let per_txn = args.transaction_records.max(1);
    if args.transactional_id.is_some() {
        producer
            .init_transactions(TXN_TIMEOUT)
            .context("init_transactions")?;
        producer.begin_transaction().context("begin_transaction")?;
    }

    let mut throttler = ThroughputThrottler::new(args.throughput, start);
    let mut rng = XorShift64::new(0x5eed_cafe);
    for sent in 0..args.num_records {
        let payload = &payloads[(rng.next() % payloads.len() as u64) as usize];
        let send_start = Instant::now();
        let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(
            &args.topic,
            nanos_between(start, send_start),
        )
        .payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(QUEUE_FULL_BACKOFF);
                }
                Err((error, _)) => bail!("send failed: {error}"),
            }
        }
        if throttler.should_throttle(sent + 1, send_start) {
            throttler.throttle(std::thread::sleep);
        }
        if args.transactional_id.is_some() && (sent + 1).is_multiple_of(per_txn) {
            let t = Instant::now();
            commit(&producer)?;
            let _ = commits.record(t.elapsed().as_micros() as u64);
            if sent + 1 < args.num_records {
                producer.begin_transaction().context("begin_transaction")?;
            }
        }
    }
    if args.transactional_id.is_some() && !args.num_records.is_multiple_of(per_txn) {
        let t = Instant::now();
        commit(&producer)?;
        let _ = commits.record(t.elapsed().as_micros() as u64);
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .context("flushing outstanding records")?;
    let stats = producer
        .context()
        .stats
        .lock()
        .map_err(|_| anyhow::anyhow!("stats lock poisoned"))?;
    let elapsed = start.elapsed();
    let summary = stats.print_total(elapsed);
    let commit_latency = (!commits.is_empty()).then(|| LatencySummaryMs::of(&commits));
    if let Some(c) = &commit_latency {
        println!(
            "{} transactions of up to {per_txn} records; commit latency ms: p50 {:.2}, p99 {:.2}, max {:.2}",
            c.count, c.p50, c.p99, c.max
        );
    }
    if stats.errors > 0 {
        eprintln!("{} records failed delivery", stats.errors);
    }
    report::write_plot(
        &args.common,
        &format!("producer-perf {} (send → ack)", args.topic),
        &[("send→ack", &stats.histogram)],
    )?;
    let parameters = json!({
        "topic": args.topic,
        "num_records": args.num_records,
        "record_size": args.record_size,
        "payload_file": args.payload_file,
        "throughput": args.throughput,
        "transactional_id": args.transactional_id,
        "transaction_records": args.transactional_id.as_ref().map(|_| args.transaction_records),
        "producer_props": effective.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    let figures = json!({
        "records_acked": stats.count,
        "records_failed": stats.errors,
        "bytes_acked": stats.bytes,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "records_per_second": summary.records_per_second,
        "mb_per_second": summary.mb_per_second,
        "latency_ms": summary.latency,
        "transactions": commit_latency.as_ref().map(|c| json!({
            "records_per_transaction": per_txn,
            "commits": c.count,
            "commit_latency_ms": c,
        })),
    });
    report::write_report(&args.common, "producer-perf", parameters, figures)
}

/// Commits the open transaction. The rdkafka crate's `commit_transaction` first flushes with
/// its own loop, which waits up to 100 ms per turn for events that this `ThreadedProducer`'s
/// polling thread serves instead, so every commit took at least 100 ms whatever the broker did
/// (measured: 101 ms p50 against 8 ms for kcat's whole commit on the same broker). Flushing here
/// in 1 ms turns first leaves that loop nothing to wait for.
fn commit(producer: &ThreadedProducer<PerfContext>) -> Result<()> {
    let start = Instant::now();
    while producer.flush(Duration::from_millis(1)).is_err() {
        if start.elapsed() > TXN_TIMEOUT {
            bail!("the transaction's records were not delivered within {TXN_TIMEOUT:?}");
        }
    }
    producer
        .commit_transaction(TXN_TIMEOUT)
        .context("commit_transaction")
}

/// Final figures, as printed.
pub struct Totals {
    pub records_per_second: f64,
    pub mb_per_second: f64,
    pub latency: LatencySummaryMs,
}

/// Shared with the producer's polling thread, which runs the delivery callbacks.
struct PerfContext {
    start: Instant,
    stats: Mutex<Stats>,
}

impl ClientContext for PerfContext {}

impl ProducerContext for PerfContext {
    /// Nanoseconds from the run's start to the send, carried through librdkafka without allocating.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, send_nanos: usize) {
        let now = Instant::now();
        let latency = nanos_between(self.start, now).saturating_sub(send_nanos) as u64;
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        match result {
            Ok(message) => stats.record(latency / 1000, message.payload_len(), now),
            Err((error, _)) => {
                stats.errors += 1;
                if stats.errors <= ERRORS_PRINTED_MAX {
                    eprintln!("delivery failed: {error}");
                }
            }
        }
    }
}

/// Kafka's `Stats`: totals, a 5 s window, and (here) an HdrHistogram instead of sampling.
struct Stats {
    histogram: Histogram<u64>,
    count: u64,
    bytes: u64,
    errors: u64,
    latency_total_micros: u64,
    latency_max_micros: u64,
    window: Window,
}

struct Window {
    start: Instant,
    count: u64,
    bytes: u64,
    latency_total_micros: u64,
    latency_max_micros: u64,
}

impl Window {
    fn new(start: Instant) -> Self {
        Self {
            start,
            count: 0,
            bytes: 0,
            latency_total_micros: 0,
            latency_max_micros: 0,
        }
    }
}

impl Stats {
    fn new(start: Instant) -> Self {
        Self {
            histogram: report::latency_histogram(),
            count: 0,
            bytes: 0,
            errors: 0,
            latency_total_micros: 0,
            latency_max_micros: 0,
            window: Window::new(start),
        }
    }

    fn record(&mut self, latency_micros: u64, bytes: usize, now: Instant) {
        let latency_micros = latency_micros.clamp(1, report::LATENCY_MICROS_MAX);
        // Clamped into the histogram's range above, so recording cannot fail.
        let _ = self.histogram.record(latency_micros);
        self.count += 1;
        self.bytes += bytes as u64;
        self.latency_total_micros += latency_micros;
        self.latency_max_micros = self.latency_max_micros.max(latency_micros);
        self.window.count += 1;
        self.window.bytes += bytes as u64;
        self.window.latency_total_micros += latency_micros;
        self.window.latency_max_micros = self.window.latency_max_micros.max(latency_micros);
        if now.duration_since(self.window.start) >= REPORTING_INTERVAL {
            self.print_window(now);
            self.window = Window::new(now);
        }
    }

    fn print_window(&self, now: Instant) {
        let window = &self.window;
        let seconds = now.duration_since(window.start).as_secs_f64();
        println!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            window.count,
            window.count as f64 / seconds,
            window.bytes as f64 / BYTES_PER_MB / seconds,
            window.latency_total_micros as f64 / window.count.max(1) as f64 / 1000.0,
            window.latency_max_micros as f64 / 1000.0,
        );
    }

    /// Kafka's final line, with latencies to 0.01 ms rather than whole ms (loopback latencies
    /// are mostly under 1 ms); the words are Kafka's, so parsers written for it still match.
    fn print_total(&self, elapsed: Duration) -> Totals {
        let seconds = elapsed.as_secs_f64();
        let totals = Totals {
            records_per_second: self.count as f64 / seconds,
            mb_per_second: self.bytes as f64 / BYTES_PER_MB / seconds,
            latency: LatencySummaryMs::of(&self.histogram),
        };
        println!(
            "{} records sent, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
            self.count,
            totals.records_per_second,
            totals.mb_per_second,
            self.latency_total_micros as f64 / self.count.max(1) as f64 / 1000.0,
            self.latency_max_micros as f64 / 1000.0,
            totals.latency.p50,
            totals.latency.p95,
            totals.latency.p99,
            totals.latency.p999,
        );
        totals
    }
}

fn payloads(args: &ProducerPerfArgs) -> Result<Vec<Vec<u8>>> {
    if let Some(path) = &args.payload_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading payload file {}", path.display()))?;
        let delimiter = args
            .payload_delimiter
            .replace("\\n", "\n")
            .replace("\\t", "\t");
        let payloads: Vec<Vec<u8>> = text
            .split(delimiter.as_str())
            .filter(|payload| !payload.is_empty())
            .map(|payload| payload.as_bytes().to_vec())
            .collect();
        if payloads.is_empty() {
            bail!("payload file {} has no payloads", path.display());
        }
        println!("Number of messages read: {}", payloads.len());
        return Ok(payloads);
    }
    let record_size = args
        .record_size
        .context("--record-size or --payload-file is required")?;
    let mut rng = XorShift64::new(0x1234_5678);
    // Kafka's payload alphabet: uppercase ASCII letters.
    Ok((0..RANDOM_PAYLOADS_COUNT)
        .map(|_| {
            (0..record_size)
                .map(|_| b'A' + (rng.next() % 26) as u8)
                .collect()
        })
        .collect())
}

fn nanos_between(start: Instant, later: Instant) -> usize {
    later.duration_since(start).as_nanos() as usize
}

/// Marsaglia's xorshift: a payload picker, not cryptography; avoids a `rand` dependency.
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
