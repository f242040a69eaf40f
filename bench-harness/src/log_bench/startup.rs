//! `log-startup`: a child process writes `--partitions` partitions of `--segments` small
//! segments and stops cleanly; then this process, on a fresh executor, times opening all of
//! them with `LogManager::open_partition`:
//! - one at a time;
//! - then, after a clean shutdown of those logs (timed too) and on another fresh executor,
//!   concurrently, `PARALLEL_FILE_OPS_MAX` (32) at a time, as the broker does at start-up
//!   (src/runtime/shard.rs `apply_image`). Its page cache is warmer: the first pass read the
//!   same files.

use super::populate::{log_config, populate_in_child, LogPopulateArgs, TOPIC};
use super::{on_executor, LogCommonArgs, RunDir};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use sluice::model::{ShardId, TopicPartition};
use sluice::storage::{LogManager, StorageBrokerConfig};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct LogStartupArgs {
    #[arg(long, default_value_t = 1000)]
    pub partitions: usize,
    /// Segments per partition (the writer appends until the last one exists).
    #[arg(long, default_value_t = 2)]
    pub segments: usize,
    /// segment.bytes of the topic.
    #[arg(long, default_value_t = 64 * 1024)]
    pub segment_bytes: u64,
    /// 1 KiB records per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_records: usize,
    #[command(flatten)]
    pub common: LogCommonArgs,
}

/// One timed pass over every partition.
pub struct OpenPass {
    pub total_ms: f64,
    pub shutdown_ms: f64,
}

pub fn run(args: &LogStartupArgs) -> Result<()> {
    let dir = RunDir::create(args.common.data_dir.as_deref())?;
    let populate = LogPopulateArgs {
        dir: dir.path.clone(),
        partitions: args.partitions,
        segments: args.segments,
        segment_bytes: args.segment_bytes,
        batch_records: args.batch_records,
        cpu: args.common.cpu,
    };
    let load_before = super::load_average();
    let (bytes, write_ms, populate_shutdown_ms) = populate_in_child(&populate)?;
    let sequential = open_pass(&populate, false)?;
    let concurrent = open_pass(&populate, true)?;
    drop(dir);
    let n = args.partitions as f64;
    println!(
        "log-startup: wrote {} partitions x {} segments ({:.1} MB) in {write_ms:.0} ms; \
         clean shutdown {populate_shutdown_ms:.0} ms ({:.2} ms/partition)",
        args.partitions,
        args.segments,
        bytes as f64 / super::BYTES_PER_MB,
        populate_shutdown_ms / n,
    );
    for (name, pass) in [
        ("one at a time", &sequential),
        ("concurrently, 32 at a time (as the broker)", &concurrent),
    ] {
        println!(
            "log-startup: open {} partitions {name}: {:.1} ms ({:.3} ms/partition; target < 200 ms); \
             clean shutdown after: {:.0} ms",
            args.partitions,
            pass.total_ms,
            pass.total_ms / n,
            pass.shutdown_ms,
        );
    }
    args.common.write_report(
        "log-startup",
        json!({
            "partitions": args.partitions, "segments": args.segments,
            "segment_bytes": args.segment_bytes, "batch_records": args.batch_records,
            "cpu": args.common.cpu,
        }),
        json!({
            "bytes": bytes, "populate_write_ms": write_ms,
            "populate_shutdown_ms": populate_shutdown_ms,
            "open_sequential_ms": sequential.total_ms,
            "open_sequential_ms_per_partition": sequential.total_ms / n,
            "shutdown_after_sequential_ms": sequential.shutdown_ms,
            "open_concurrent_ms": concurrent.total_ms,
            "open_concurrent_ms_per_partition": concurrent.total_ms / n,
            "shutdown_after_concurrent_ms": concurrent.shutdown_ms,
            "loadavg_1m_before": load_before, "loadavg_1m_after": super::load_average(),
        }),
    )
}

/// Opens every partition on a fresh executor (timed), checks what it found, stops cleanly.
fn open_pass(populate: &LogPopulateArgs, concurrent: bool) -> Result<OpenPass> {
    let p = populate.clone();
    on_executor("log-startup", populate.cpu, move || async move {
        let manager = LogManager::new(ShardId(0), StorageBrokerConfig::new(&p.dir));
        manager.start_background();
        let config = log_config(p.segment_bytes);
        let started = Instant::now();
        if concurrent {
            // As the broker does (src/runtime/shard.rs `apply_image`): concurrent opens,
            // PARALLEL_FILE_OPS_MAX at a time.
            let tps: Vec<TopicPartition> = (0..p.partitions)
                .map(|i| TopicPartition::new(TOPIC, i as i32))
                .collect();
            for chunk in tps.chunks(sluice::storage::manager::PARALLEL_FILE_OPS_MAX) {
                let opens = chunk
                    .iter()
                    .map(|tp| manager.open_partition(tp, super::topic_id(), config.clone()));
                for opened in futures::future::join_all(opens).await {
                    opened.map_err(|e| anyhow::anyhow!("open: {e}"))?;
                }
            }
        } else {
            for i in 0..p.partitions {
                let tp = TopicPartition::new(TOPIC, i as i32);
                manager
                    .open_partition(&tp, super::topic_id(), config.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("opening {tp}: {e}"))?;
            }
        }
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        for log in manager.partitions() {
            let tp = log.topic_partition();
            anyhow::ensure!(log.segment_count() == p.segments, "{tp}: segments lost");
            anyhow::ensure!(
                log.recovered_bytes() < p.segment_bytes,
                "{tp}: recovered as unclean"
            );
        }
        anyhow::ensure!(
            manager.partitions().len() == p.partitions,
            "partitions missing"
        );
        let stopping = Instant::now();
        manager.shutdown().await;
        let shutdown_ms = stopping.elapsed().as_secs_f64() * 1000.0;
        Ok(OpenPass {
            total_ms,
            shutdown_ms,
        })
    })
    .context("open pass")
}
