//! `log-populate` (hidden; a child of log-startup and log-memory): creates `--partitions`
//! partitions of topic `log-idle` with small segments, appends to each until it has
//! `--segments` segments, then stops cleanly (`LogManager::shutdown`) and prints
//! `POPULATED <partitions> <bytes> <write ms> <shutdown ms>`.

use super::{encode_batch, on_executor};
use anyhow::{Context, Result};
use clap::Args;
use sluice::model::{LeaderEpoch, ShardId, TopicPartition};
use sluice::storage::{Acks, AppendOptions, LogConfig, LogManager, StorageBrokerConfig};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

pub const TOPIC: &str = "log-idle";
/// Bound on appends per partition while waiting for the segments to roll.
const APPENDS_PER_PARTITION_MAX: u64 = 10_000;

#[derive(Args, Debug, Clone)]
pub struct LogPopulateArgs {
    /// The data directory itself (made by the parent).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub partitions: usize,
    #[arg(long)]
    pub segments: usize,
    #[arg(long)]
    pub segment_bytes: u64,
    /// Records of 1 KiB per batch.
    #[arg(long)]
    pub batch_records: usize,
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
}

impl LogPopulateArgs {
    pub fn to_args(&self) -> Vec<String> {
        [
            "log-populate",
            "--dir",
            &self.dir.to_string_lossy(),
            "--partitions",
            &self.partitions.to_string(),
            "--segments",
            &self.segments.to_string(),
            "--segment-bytes",
            &self.segment_bytes.to_string(),
            "--batch-records",
            &self.batch_records.to_string(),
            "--cpu",
            &self.cpu.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// The log configuration of the populated topic (the opener must use the same).
pub fn log_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        ..LogConfig::default()
    }
}

pub fn run(args: &LogPopulateArgs) -> Result<()> {
    let batch = encode_batch(args.batch_records, 1024)?;
    let a = args.clone();
    let (bytes, write_ms, shutdown_ms) =
        on_executor("log-populate", args.cpu, move || async move {
            let manager = LogManager::new(ShardId(0), StorageBrokerConfig::new(&a.dir));
            manager.start_background();
            let started = Instant::now();
            let mut tasks = Vec::with_capacity(a.partitions);
            for p in 0..a.partitions {
                let manager = manager.clone();
                let batch = batch.clone();
                let (segments, segment_bytes) = (a.segments, a.segment_bytes);
                tasks.push(glommio::spawn_local(async move {
                    let tp = TopicPartition::new(TOPIC, p as i32);
                    let log = manager
                        .open_partition(&tp, super::topic_id(), log_config(segment_bytes))
                        .await
                        .map_err(|e| anyhow::anyhow!("opening {tp}: {e}"))?;
                    let mut appends = 0;
                    while log.segment_count() < segments {
                        anyhow::ensure!(appends < APPENDS_PER_PARTITION_MAX, "{tp} never rolled");
                        let opts = AppendOptions {
                            acks: Acks::Leader,
                            leader_epoch: LeaderEpoch(0),
                            now_ms: super::now_ms(),
                        };
                        log.append(batch.clone(), opts)
                            .await
                            .map_err(|e| anyhow::anyhow!("append to {tp}: {e}"))?;
                        appends += 1;
                    }
                    // The append that rolled went to the new segment: both hold data.
                    anyhow::ensure!(
                        log.segment_count() == segments,
                        "{tp} rolled past {segments}"
                    );
                    anyhow::Ok(log.size_bytes())
                }));
            }
            let mut bytes = 0;
            for task in tasks {
                bytes += task.await?;
            }
            let write_ms = started.elapsed().as_secs_f64() * 1000.0;
            let stopping = Instant::now();
            manager.shutdown().await;
            let shutdown_ms = stopping.elapsed().as_secs_f64() * 1000.0;
            Ok((bytes, write_ms, shutdown_ms))
        })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "POPULATED {} {bytes} {write_ms:.1} {shutdown_ms:.1}",
        args.partitions
    )?;
    out.flush().context("flushing stdout")
}

/// Runs `log-populate` as a child process and waits for it: (bytes, write ms, shutdown ms).
pub fn populate_in_child(args: &LogPopulateArgs) -> Result<(u64, f64, f64)> {
    let mut child = super::spawn_self(&args.to_args())?;
    let fields = super::read_child_line(&mut child, "POPULATED ");
    let status = child.wait().context("waiting for log-populate")?;
    let fields = fields?;
    anyhow::ensure!(status.success(), "log-populate failed: {status}");
    Ok((
        super::parse_field(&fields, 1)?,
        super::parse_field(&fields, 2)?,
        super::parse_field(&fields, 3)?,
    ))
}
