//! `e2e-latency`: produce at a fixed rate while consuming, and measure produce → consume latency
//! from timestamps carried in each payload.
//!
//! The producer is open loop: message `i` is scheduled at `start + i / rate` whatever the acks
//! do. Each payload carries two times (nanoseconds since the run's start, little-endian):
//! bytes 0..8 the scheduled send time, bytes 8..16 the actual send time. Two histograms:
//! - from the scheduled time: free of coordinated omission by construction (a stalled producer
//!   or broker shows up as latency, as in wrk2);
//! - from the actual send time, corrected for coordinated omission with the expected interval
//!   (HdrHistogram's `record_correct`, applied after the run as `clone_correct`, which is the
//!   same arithmetic per bucket: done per sample on the consumer thread it costs latency/interval
//!   iterations per message and, once latency grows, starves the consumer it is measuring).
//!   The correction assumes a closed-loop sender; with this open-loop sender it adds samples a
//!   pipelined client never waited for, so prefer the first histogram.

use crate::cli::E2eLatencyArgs;
use crate::report::{self, LatencySummaryMs};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BYTES_PER_MB: f64 = 1024.0 * 1024.0;
/// Scheduled and actual send times, 8 bytes each.
const HEADER_BYTES: usize = 16;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);
/// Shortest sleep between sends (the kernel's default timer slack is 50 µs anyway).
const SLEEP_MIN: Duration = Duration::from_micros(100);

pub fn run(args: &E2eLatencyArgs) -> Result<()> {
    if args.record_size < HEADER_BYTES {
        bail!("--record-size must be at least {HEADER_BYTES} bytes (the timestamp header)");
    }
    if !args.rate.is_finite() || args.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let acks = match args.acks.as_str() {
        "all" | "-1" => "all",
        "0" | "1" => args.acks.as_str(),
        other => bail!("--acks must be 0, 1, all or -1, got {other}"),
    };
    let (producer_config, producer_effective) = crate::props::client_config(
        &args.common.bootstrap_server,
        &[("acks", acks), ("linger.ms", "1")],
        None,
        &args.producer_props,
    )?;
    let (consumer_config, consumer_effective) = crate::props::client_config(
        &args.common.bootstrap_server,
        &[
            (
                "group.id",
                &format!("sluice-bench-e2e-{}", std::process::id()),
            ),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("fetch.wait.max.ms", "100"),
        ],
        None,
        &args.consumer_props,
    )?;
    if args.common.create_topic {
        let bootstrap = crate::props::bootstrap_of(&producer_effective);
        crate::admin::create_topic(
            &bootstrap,
            &args.topic,
            args.common.partitions,
            args.common.replication_factor,
        )?;
    }

    let consumer: BaseConsumer = consumer_config.create().context("creating consumer")?;
    assign_at_end(&consumer, &args.topic)?;
    let producer: ThreadedProducer<AckCounter> =
        ThreadedProducer::from_config_and_context(&producer_config, AckCounter::default())
            .context("creating producer")?;

    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let shared = Arc::new(Progress::default());
    let consumer_thread = {
        let shared = Arc::clone(&shared);
        let drain_timeout = Duration::from_millis(args.drain_timeout);
        std::thread::spawn(move || consume(consumer, start, &shared, drain_timeout))
    };
    let sent = produce(&producer, args, start, interval)?;
    shared.sent.store(sent, Ordering::Release);
    shared.producing_done.store(true, Ordering::Release);
    let send_elapsed = start.elapsed();
    producer.flush(FLUSH_TIMEOUT).context("flushing producer")?;
    let received = consumer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;

    let acked = producer.context().acked.load(Ordering::Relaxed);
    let failed = producer.context().failed.load(Ordering::Relaxed);
    let achieved_rate = sent as f64 / send_elapsed.as_secs_f64();
    let from_actual_corrected = received
        .from_actual
        .clone_correct(interval_micros(interval));
    let intended = LatencySummaryMs::of(&received.from_scheduled);
    let corrected = LatencySummaryMs::of(&from_actual_corrected);
    println!(
        "sent {sent} ({acked} acked, {failed} failed), received {}, lost {}; target {:.0} msg/s, achieved {:.0} msg/s ({:.2} MB/sec) of {} B records, acks={acks}, {:.1} s",
        received.count,
        sent.saturating_sub(received.count),
        args.rate,
        achieved_rate,
        achieved_rate * args.record_size as f64 / BYTES_PER_MB,
        args.record_size,
        send_elapsed.as_secs_f64(),
    );
    print_line(
        "end-to-end latency from scheduled send (CO-free)",
        &intended,
    );
    print_line(
        &format!(
            "end-to-end latency from actual send, record_correct({} us)",
            interval_micros(interval)
        ),
        &corrected,
    );
    if received.duplicates_or_unknown > 0 {
        println!(
            "{} messages had no valid timestamp header or arrived twice",
            received.duplicates_or_unknown
        );
    }

    report::write_plot(
        &args.common,
        &format!(
            "e2e-latency {:.0} msg/s x {} B, acks={acks}",
            args.rate, args.record_size
        ),
        &[
            ("from scheduled send", &received.from_scheduled),
            ("actual send, CO-corrected", &from_actual_corrected),
        ],
    )?;
    let parameters = json!({
        "topic": args.topic,
        "rate_per_second": args.rate,
        "duration_secs": args.duration_secs,
        "record_size": args.record_size,
        "acks": acks,
        "producer_props": producer_effective.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "consumer_props": consumer_effective.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    let figures = json!({
        "sent": sent,
        "acked": acked,
        "failed": failed,
        "received": received.count,
        "lost": sent.saturating_sub(received.count),
        "achieved_rate_per_second": achieved_rate,
        "achieved_mb_per_second": achieved_rate * args.record_size as f64 / BYTES_PER_MB,
        "latency_from_scheduled_ms": intended,
        "latency_from_actual_corrected_ms": corrected,
        "correction_interval_us": interval_micros(interval),
    });
    report::write_report(&args.common, "e2e-latency", parameters, figures)
}

fn print_line(name: &str, summary: &LatencySummaryMs) {
    println!(
        "{name}: {:.3} ms p50, {:.3} ms p99, {:.3} ms p99.9, {:.3} ms p99.99, {:.3} ms max ({} samples)",
        summary.p50, summary.p99, summary.p999, summary.p9999, summary.max, summary.count
    );
}

/// Assigns every partition at its current high watermark, so only this run's messages are read
/// and none produced after this call is skipped (Offset::End would resolve lazily, later).
fn assign_at_end(consumer: &BaseConsumer, topic: &str) -> Result<()> {
    let mut assignment = TopicPartitionList::new();
    for partition in crate::admin::partitions_of(consumer, topic)? {
        let (_, high_watermark) = consumer
            .fetch_watermarks(topic, partition, crate::admin::REQUEST_TIMEOUT)
            .with_context(|| format!("watermarks of {topic}-{partition}"))?;
        assignment.add_partition_offset(topic, partition, Offset::Offset(high_watermark))?;
    }
    consumer.assign(&assignment).context("assigning partitions")
}

/// Sends on schedule for `--duration-secs`; returns how many were sent.
fn produce(
    producer: &ThreadedProducer<AckCounter>,
    args: &E2eLatencyArgs,
    start: Instant,
    interval: Duration,
) -> Result<u64> {
    let total = (args.rate * args.duration_secs as f64).round() as u64;
    let mut payload = vec![b'x'; args.record_size];
    let mut next: u64 = 0;
    while next < total {
        let now = Instant::now();
        let due = start + interval.mul_f64(next as f64);
        if due > now {
            // Never spin: the client shares its CPU with librdkafka's threads and the consumer.
            // A sleep overshoots by the timer slack; what fell due meanwhile goes out as a burst,
            // and its latency counts from the scheduled time, so overshoot is measured, not hidden.
            std::thread::sleep((due - now).max(SLEEP_MIN));
            continue;
        }
        // Everything due by now goes out back to back (catching up after a late wake-up).
        let scheduled = nanos_since(start, due);
        let actual = nanos_since(start, Instant::now());
        payload[0..8].copy_from_slice(&scheduled.to_le_bytes());
        payload[8..16].copy_from_slice(&actual.to_le_bytes());
        let mut record = BaseRecord::<(), [u8], ()>::to(&args.topic).payload(payload.as_slice());
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
        next += 1;
    }
    Ok(total)
}

#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    producing_done: AtomicBool,
}

struct Received {
    count: u64,
    duplicates_or_unknown: u64,
    from_scheduled: Histogram<u64>,
    /// Uncorrected; corrected after the run.
    from_actual: Histogram<u64>,
}

/// Runs on its own thread until every sent message arrived, or `drain_timeout` after the
/// producer finished.
fn consume(
    consumer: BaseConsumer,
    start: Instant,
    progress: &Progress,
    drain_timeout: Duration,
) -> Result<Received> {
    let mut received = Received {
        count: 0,
        duplicates_or_unknown: 0,
        from_scheduled: report::latency_histogram(),
        from_actual: report::latency_histogram(),
    };
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if progress.producing_done.load(Ordering::Acquire) {
            if received.count >= progress.sent.load(Ordering::Acquire) {
                break;
            }
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + drain_timeout);
            if Instant::now() >= deadline {
                break;
            }
        }
        let message = match consumer.poll(POLL_TIMEOUT) {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                eprintln!("consume error: {error}");
                continue;
            }
            None => continue,
        };
        let now = nanos_since(start, Instant::now());
        let Some((scheduled, actual)) = message.payload().and_then(parse_header) else {
            received.duplicates_or_unknown += 1;
            continue;
        };
        received.count += 1;
        let micros = |nanos: u64| (nanos / 1000).clamp(1, report::LATENCY_MICROS_MAX);
        // Values are clamped into range, so recording cannot fail.
        let _ = received
            .from_scheduled
            .record(micros(now.saturating_sub(scheduled)));
        let _ = received
            .from_actual
            .record(micros(now.saturating_sub(actual)));
    }
    Ok(received)
}

/// The expected interval between sends, in the histograms' unit (µs), at least 1.
fn interval_micros(interval: Duration) -> u64 {
    (interval.as_micros() as u64).max(1)
}

fn parse_header(payload: &[u8]) -> Option<(u64, u64)> {
    let scheduled = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let actual = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    (scheduled <= actual).then_some((scheduled, actual))
}

fn nanos_since(start: Instant, later: Instant) -> u64 {
    later.saturating_duration_since(start).as_nanos() as u64
}

/// Counts delivery reports; the latency that matters here is measured by the consumer.
#[derive(Default)]
struct AckCounter {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for AckCounter {}

impl ProducerContext for AckCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err((error, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < 10 {
                    eprintln!("delivery failed: {error}");
                }
                0
            }
        };
    }
}
