//! `log-recovery`: a child process appends `--tail-bytes` to one partition with acks=1 and a
//! relaxed flush policy (`flush.messages` = u64::MAX: written by O_DIRECT, never fdatasync'ed
//! by policy), well inside the 60 s recovery-point checkpoint interval, so no
//! `recovery-point-offset-checkpoint` exists; it prints what it wrote and this process kills it
//! with SIGKILL (no clean close, no marker). Then this process — which never touched the
//! partition — times `open_partition` on a fresh executor: recovery must verify every batch of
//! the tail (length, magic, CRC-32C, contiguous offsets). O_DIRECT writes leave nothing in the
//! page cache, so the scan reads from the device.

use super::{encode_batch, on_executor, records_per_batch, LogCommonArgs, RunDir, BYTES_PER_MB};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use sluice::model::{LeaderEpoch, ShardId, TopicPartition};
use sluice::storage::{Acks, AppendOptions, LogConfig, LogManager, StorageBrokerConfig};
use std::cell::Cell;
use std::io::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

const TOPIC: &str = "log-recovery";
/// Appends in flight while writing the tail.
const WRITER_INFLIGHT: usize = 4;
/// The writer must finish well inside RECOVERY_POINT_CHECKPOINT_INTERVAL_MS (60 s).
const WRITER_SECONDS_MAX: u64 = 45;

#[derive(Args, Debug)]
pub struct LogRecoveryArgs {
    /// Bytes of unflushed tail to write, then recover.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub tail_bytes: u64,
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_bytes: usize,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    #[command(flatten)]
    pub common: LogCommonArgs,
}

#[derive(Args, Debug)]
pub struct LogRecoveryWriteArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub tail_bytes: u64,
    #[arg(long)]
    pub batch_bytes: usize,
    #[arg(long)]
    pub record_size: usize,
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
}

/// The topic's configuration: one segment large enough for the whole tail, relaxed flushing.
fn log_config(tail_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes: (tail_bytes + 64 * 1024 * 1024).min(i32::MAX as u64),
        flush_messages: Some(u64::MAX),
        ..LogConfig::default()
    }
}

pub fn run(args: &LogRecoveryArgs) -> Result<()> {
    let dir = RunDir::create(args.common.data_dir.as_deref())?;
    let child_args: Vec<String> = [
        "log-recovery-write",
        "--dir",
        &dir.path.to_string_lossy(),
        "--tail-bytes",
        &args.tail_bytes.to_string(),
        "--batch-bytes",
        &args.batch_bytes.to_string(),
        "--record-size",
        &args.record_size.to_string(),
        "--cpu",
        &args.common.cpu.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let load_before = super::load_average();
    let mut child = super::spawn_self(&child_args)?;
    let fields = super::read_child_line(&mut child, "WRITTEN ");
    // SIGKILL, by the pid of the child we started: no clean close, no checkpoint.
    let _ = child.kill();
    let status = child.wait().context("waiting for log-recovery-write")?;
    let fields = fields?;
    let written_bytes: u64 = super::parse_field(&fields, 0)?;
    let written_end: i64 = super::parse_field(&fields, 1)?;
    let write_ms: f64 = super::parse_field(&fields, 2)?;
    let partition_dir = dir.path.join(format!("{TOPIC}-0"));
    let checkpoint_present = partition_dir
        .join("recovery-point-offset-checkpoint")
        .exists();
    let marker_present = partition_dir.join(".kafka_cleanshutdown").exists();
    let (data_dir, tail_bytes) = (dir.path.clone(), args.tail_bytes);
    let (open_ms, recovered, log_end) =
        on_executor("log-recovery", args.common.cpu, move || async move {
            let manager = LogManager::new(ShardId(0), StorageBrokerConfig::new(&data_dir));
            let tp = TopicPartition::new(TOPIC, 0);
            let started = Instant::now();
            let log = manager
                .open_partition(&tp, super::topic_id(), log_config(tail_bytes))
                .await
                .map_err(|e| anyhow::anyhow!("recovering {tp}: {e}"))?;
            let open_ms = started.elapsed().as_secs_f64() * 1000.0;
            let found = (open_ms, log.recovered_bytes(), log.log_end_offset().0);
            manager.shutdown().await;
            Ok(found)
        })?;
    drop(dir);
    anyhow::ensure!(
        log_end == written_end,
        "recovered log end offset {log_end}, the writer had {written_end} acknowledged"
    );
    let gb_per_sec = recovered as f64 / 1e9 / (open_ms / 1000.0);
    println!(
        "log-recovery: wrote {:.1} MB unflushed in {write_ms:.0} ms, killed the writer ({status}); \
         recovery-point checkpoint present: {checkpoint_present}, clean marker: {marker_present}",
        written_bytes as f64 / BYTES_PER_MB,
    );
    println!(
        "log-recovery: open_partition scanned {:.1} MB in {open_ms:.1} ms = {gb_per_sec:.2} GB/s \
         (target < 2000 ms); log end offset {log_end} as written",
        recovered as f64 / BYTES_PER_MB,
    );
    args.common.write_report(
        "log-recovery",
        json!({
            "tail_bytes": args.tail_bytes, "batch_bytes": args.batch_bytes,
            "record_size": args.record_size, "cpu": args.common.cpu,
        }),
        json!({
            "written_bytes": written_bytes, "write_ms": write_ms,
            "recovery_point_checkpoint_present": checkpoint_present,
            "clean_shutdown_marker_present": marker_present,
            "open_ms": open_ms, "scanned_bytes": recovered, "gb_per_sec": gb_per_sec,
            "log_end_offset": log_end,
            "loadavg_1m_before": load_before, "loadavg_1m_after": super::load_average(),
        }),
    )
}

/// The child: writes the tail, prints `WRITTEN <bytes> <log end offset> <ms>`, then idles
/// until killed (bounded: it exits by itself after a while if the parent never kills it).
pub fn write_tail(args: &LogRecoveryWriteArgs) -> Result<()> {
    let batch = encode_batch(
        records_per_batch(args.batch_bytes, args.record_size),
        args.record_size,
    )?;
    let appends = args.tail_bytes.div_ceil(batch.len() as u64).max(1);
    let (dir, tail_bytes) = (args.dir.clone(), args.tail_bytes);
    on_executor("log-recovery-write", args.cpu, move || async move {
        let manager = LogManager::new(ShardId(0), StorageBrokerConfig::new(&dir));
        manager.start_background();
        let tp = TopicPartition::new(TOPIC, 0);
        let log = manager
            .open_partition(&tp, super::topic_id(), log_config(tail_bytes))
            .await
            .map_err(|e| anyhow::anyhow!("opening {tp}: {e}"))?;
        let started = Instant::now();
        let remaining = Rc::new(Cell::new(appends));
        let tasks: Vec<_> = (0..WRITER_INFLIGHT)
            .map(|_| {
                let (log, remaining, batch) = (log.clone(), remaining.clone(), batch.clone());
                glommio::spawn_local(async move {
                    while remaining.get() > 0 {
                        remaining.set(remaining.get() - 1);
                        let opts = AppendOptions {
                            acks: Acks::Leader,
                            leader_epoch: LeaderEpoch(0),
                            now_ms: super::now_ms(),
                        };
                        log.append(batch.clone(), opts)
                            .await
                            .map_err(|e| anyhow::anyhow!("append: {e}"))?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let write_ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(WRITER_SECONDS_MAX),
            "writing took {write_ms:.0} ms: a recovery-point checkpoint may have run"
        );
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "WRITTEN {} {} {write_ms:.1}",
            log.size_bytes(),
            log.log_end_offset().0
        )?;
        out.flush()?;
        drop(out);
        // Wait to be killed; keep the logs alive (no close) until then.
        glommio::timer::sleep(Duration::from_secs(WRITER_SECONDS_MAX)).await;
        drop(log);
        drop(manager);
        anyhow::bail!("log-recovery-write was not killed")
    })
}
