//! `group-commits`: OffsetCommit requests per second the group coordinator sustains, and the
//! latency of each, from K closed-loop committers.
//!
//! Each committer is a `BaseConsumer` that never subscribes (a "simple" consumer, generation -1)
//! with a group id shared by `committers / groups` of them, committing explicit offsets for every
//! partition of the topic with `CommitMode::Sync`, the next commit as soon as the previous one is
//! acknowledged. The first commit of each committer (coordinator discovery) is outside the
//! measured window. At the end each committer reads its offsets back (OffsetFetch) and checks
//! they are the last ones it committed.
//!
//! What bounds it: a commit is acknowledged after the coordinator's acks=all append to
//! `__consumer_offsets` is durable, so per-commit latency is at least one fsync, and commits/s is
//! at most (commits batched per fsync) / (fsync time). With one shard (`--cores 1`) every group's
//! coordinator is that shard.

use super::fresh_group_id;
use crate::cli::CommonArgs;
use crate::report::{self, LatencySummaryMs};
use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Bound on the warm-up commit (coordinator lookup) and the final read-back.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Errors printed per committer; the rest are only counted.
const ERRORS_PRINTED_MAX: u64 = 3;

#[derive(Args, Debug)]
pub struct GroupCommitsArgs {
    /// Topic whose partitions' offsets are committed (created with --partitions if missing).
    #[arg(long, default_value = "group-commits")]
    pub topic: String,
    /// Concurrent committers, one thread and one connection each.
    #[arg(long, default_value_t = 8)]
    pub committers: usize,
    /// Distinct group ids among the committers (committer i uses group i mod G); default: one
    /// group per committer.
    #[arg(long)]
    pub groups: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// librdkafka consumer properties for every committer (k=v, several after one flag).
    #[arg(long = "consumer-props", value_name = "K=V", num_args = 1..)]
    pub consumer_props: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct CommitterResult {
    histogram: Histogram<u64>,
    commits: u64,
    errors: u64,
    /// From the barrier to the end of this committer's last commit.
    window: Duration,
    read_back_ok: bool,
}

pub fn run(args: &GroupCommitsArgs) -> Result<()> {
    let groups = args.groups.unwrap_or(args.committers);
    if args.committers == 0 || groups == 0 || groups > args.committers {
        bail!("need 1 <= --groups <= --committers");
    }
    let prefix = fresh_group_id("sluice-bench-commits");
    let defaults = [
        ("group.id", prefix.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
    ];
    let (config, effective) = crate::props::client_config(
        &args.common.bootstrap_server,
        &defaults,
        None,
        &args.consumer_props,
    )?;
    let bootstrap = crate::props::bootstrap_of(&effective);
    crate::admin::create_topic(
        &bootstrap,
        &args.topic,
        args.common.partitions,
        args.common.replication_factor,
    )?;
    let metadata_client: BaseConsumer = config.create().context("creating metadata client")?;
    let partitions = crate::admin::partitions_of(&metadata_client, &args.topic)?;
    drop(metadata_client);

    let duration = Duration::from_secs(args.duration_secs);
    let barrier = Arc::new(Barrier::new(args.committers + 1));
    let threads: Vec<_> = (0..args.committers)
        .map(|index| {
            let mut config = config.clone();
            config.set("group.id", format!("{prefix}-{}", index % groups));
            let (topic, partitions, barrier) =
                (args.topic.clone(), partitions.clone(), barrier.clone());
            let sole = groups == args.committers;
            std::thread::spawn(move || {
                committer(config, &topic, &partitions, &barrier, duration, sole)
            })
        })
        .collect();
    barrier.wait();
    let mut histogram = report::latency_histogram();
    let (mut commits, mut errors, mut read_back_failures) = (0u64, 0u64, 0usize);
    let mut elapsed = Duration::ZERO;
    // Per committer: a starved committer shows as few commits and a max near the duration.
    let mut per_committer = Vec::with_capacity(args.committers);
    for thread in threads {
        let result = thread
            .join()
            .map_err(|_| anyhow::anyhow!("committer thread panicked"))??;
        histogram.add(&result.histogram)?;
        per_committer.push(json!({
            "commits": result.commits,
            "errors": result.errors,
            "max_ms": result.histogram.max() as f64 / 1000.0,
        }));
        commits += result.commits;
        errors += result.errors;
        read_back_failures += usize::from(!result.read_back_ok);
        // Each committer stops after its first commit past `duration`; the slowest ends the window.
        elapsed = elapsed.max(result.window);
    }
    let per_second = commits as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let latency = LatencySummaryMs::of(&histogram);
    println!(
        "{commits} commits in {:.2} s, {per_second:.1} commits/s ({:.1} partition offsets/s), \
         {:.3} ms p50, {:.3} ms p99, {:.3} ms max latency, {errors} errors; \
         {} committers, {groups} groups, {} partitions per commit.",
        elapsed.as_secs_f64(),
        per_second * partitions.len() as f64,
        latency.p50,
        latency.p99,
        latency.max,
        args.committers,
        partitions.len(),
    );
    if read_back_failures > 0 {
        eprintln!("WARNING: {read_back_failures} committers read back offsets other than their last commit");
    }
    let parameters = json!({
        "topic": args.topic,
        "partitions_per_commit": partitions.len(),
        "committers": args.committers,
        "groups": groups,
        "duration_secs": args.duration_secs,
        "commit_mode": "sync",
        "consumer_props": effective.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    let figures = json!({
        "commits": commits,
        "errors": errors,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "commits_per_second": per_second,
        "partition_offsets_per_second": per_second * partitions.len() as f64,
        "latency_ms": latency,
        "read_back_failures": read_back_failures,
        "per_committer": per_committer,
    });
    report::write_report(&args.common, "group-commits", parameters, figures)?;
    if read_back_failures > 0 {
        bail!("{read_back_failures} committers read back offsets other than their last commit");
    }
    Ok(())
}

/// One committer: a warm-up commit, the barrier, then commits until `duration` has passed.
fn committer(
    config: rdkafka::ClientConfig,
    topic: &str,
    partitions: &[i32],
    barrier: &Barrier,
    duration: Duration,
    sole_committer: bool,
) -> Result<CommitterResult> {
    let consumer: BaseConsumer = config.create().context("creating committer")?;
    let offsets = |offset: i64| -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for &partition in partitions {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        Ok(list)
    };
    let warm_up_deadline = Instant::now() + SETUP_TIMEOUT;
    let mut next_offset: i64 = 1;
    // Always reach the barrier, even on failure, or every other thread waits forever.
    let warm_up = loop {
        match consumer.commit(&offsets(next_offset)?, CommitMode::Sync) {
            Ok(()) => break Ok(()),
            Err(error) if Instant::now() >= warm_up_deadline => break Err(error),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    barrier.wait();
    warm_up.context("warm-up commit")?;

    let mut histogram = report::latency_histogram();
    let (mut commits, mut errors) = (0u64, 0u64);
    let mut last_committed = next_offset;
    let started = Instant::now();
    while started.elapsed() < duration {
        next_offset += 1;
        let list = offsets(next_offset)?;
        let sent = Instant::now();
        let result = consumer.commit(&list, CommitMode::Sync);
        let micros = sent.elapsed().as_micros().max(1) as u64;
        match result {
            Ok(()) => {
                histogram.saturating_record(micros);
                commits += 1;
                last_committed = next_offset;
            }
            Err(error) => {
                errors += 1;
                if errors <= ERRORS_PRINTED_MAX {
                    eprintln!("commit error: {error}");
                }
            }
        }
    }
    let window = started.elapsed();
    // Committers sharing a group overwrite each other's offsets: only a sole committer can check.
    let read_back_ok = !sole_committer || {
        let mut wanted = TopicPartitionList::with_capacity(partitions.len());
        for &partition in partitions {
            wanted.add_partition(topic, partition);
        }
        let read_back = consumer
            .committed_offsets(wanted, SETUP_TIMEOUT)
            .context("reading committed offsets back")?;
        read_back
            .elements()
            .iter()
            .all(|e| e.offset() == Offset::Offset(last_committed))
    };
    Ok(CommitterResult {
        histogram,
        commits,
        errors,
        window,
        read_back_ok,
    })
}
