//! `consumer-perf`: a port of Kafka's `ConsumerPerformance` onto librdkafka.
//!
//! By default every partition of the topic is assigned from its beginning by metadata, so no
//! group coordinator is involved and the figure is pure fetch throughput; `--group` subscribes
//! through a consumer group instead and reports the join time as Kafka's `rebalance.time.ms`.

use crate::cli::ConsumerPerfArgs;
use crate::report;
use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

const BYTES_PER_MB: f64 = 1024.0 * 1024.0;
/// How long one poll may block; the idle `--timeout` is checked between polls.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

pub fn run(args: &ConsumerPerfArgs) -> Result<()> {
    let group_id = args
        .group
        .clone()
        .unwrap_or_else(|| format!("sluice-bench-{}", std::process::id()));
    let defaults = [
        ("group.id", group_id.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("enable.partition.eof", "false"),
    ];
    let (config, effective) = crate::props::client_config(
        &args.common.bootstrap_server,
        &defaults,
        args.consumer_config.as_deref(),
        &args.consumer_props,
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
    let context = GroupContext {
        joined_at: Mutex::new(None),
        assigned: AtomicBool::new(false),
    };
    let consumer: BaseConsumer<GroupContext> = config
        .create_with_context(context)
        .context("creating consumer")?;

    let start_wall = SystemTime::now();
    let start = Instant::now();
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic]).context("subscribing")?;
    } else {
        let partitions = crate::admin::partitions_of(&consumer, &args.topic)?;
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            assignment.add_partition_offset(&args.topic, partition, Offset::Beginning)?;
        }
        consumer
            .assign(&assignment)
            .context("assigning partitions")?;
    }

    let idle_timeout = Duration::from_millis(args.timeout);
    let mut messages: u64 = 0;
    let mut bytes: u64 = 0;
    let mut last_consumed = Instant::now();
    while messages < args.messages && last_consumed.elapsed() <= idle_timeout {
        match consumer.poll(POLL_TIMEOUT) {
            Some(Ok(message)) => {
                messages += 1;
                bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
                last_consumed = Instant::now();
            }
            Some(Err(error)) => eprintln!("consume error: {error}"),
            None => {}
        }
    }
    let elapsed = start.elapsed();
    let end_wall = SystemTime::now();
    if messages < args.messages {
        println!(
            "WARNING: Exiting before consuming the expected number of messages: timeout ({} ms) exceeded.",
            args.timeout
        );
    }
    let rebalance = match args.group {
        Some(_) => consumer
            .context()
            .joined_at
            .lock()
            .ok()
            .and_then(|joined| *joined)
            .map_or(Duration::ZERO, |at: Instant| {
                at.saturating_duration_since(start)
            }),
        None => Duration::ZERO,
    };
    let fetch = elapsed.saturating_sub(rebalance);
    let mb = bytes as f64 / BYTES_PER_MB;
    let per_second = |amount: f64, over: Duration| {
        if over.is_zero() {
            0.0
        } else {
            amount / over.as_secs_f64()
        }
    };
    if !args.hide_header {
        println!("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec");
    }
    println!(
        "{}, {}, {:.4}, {:.4}, {}, {:.4}, {}, {}, {:.4}, {:.4}",
        format_utc_millis(start_wall),
        format_utc_millis(end_wall),
        mb,
        per_second(mb, elapsed),
        messages,
        per_second(messages as f64, elapsed),
        rebalance.as_millis(),
        fetch.as_millis(),
        per_second(mb, fetch),
        per_second(messages as f64, fetch),
    );
    let parameters = json!({
        "topic": args.topic,
        "messages": args.messages,
        "timeout_ms": args.timeout,
        "group": args.group,
        "consumer_props": effective.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    let figures = json!({
        "messages": messages,
        "bytes": bytes,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "mb_per_second": per_second(mb, elapsed),
        "messages_per_second": per_second(messages as f64, elapsed),
        "rebalance_ms": rebalance.as_millis() as u64,
        "fetch_mb_per_second": per_second(mb, fetch),
        "fetch_messages_per_second": per_second(messages as f64, fetch),
        "complete": messages >= args.messages,
    });
    report::write_report(&args.common, "consumer-perf", parameters, figures)
}

/// Records when the group first assigned partitions to this consumer (Kafka's join time).
struct GroupContext {
    joined_at: Mutex<Option<Instant>>,
    assigned: AtomicBool,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) && !self.assigned.swap(true, Ordering::Relaxed)
        {
            if let Ok(mut joined) = self.joined_at.lock() {
                *joined = Some(Instant::now());
            }
        }
    }
}

/// Kafka's `yyyy-MM-dd HH:mm:ss:SSS`, in UTC (no time zone database needed).
pub fn format_utc_millis(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs() as i64;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}:{:03}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Howard Hinnant's days-since-1970 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_kafka_style_utc() {
        // 2024-02-29 13:45:06.789 UTC
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_214_306_789);
        assert_eq!(format_utc_millis(time), "2024-02-29 13:45:06:789");
        assert_eq!(
            format_utc_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00:000"
        );
    }
}
