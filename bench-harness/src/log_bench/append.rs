//! `log-append`: one executor, one `LogManager` with its group-commit flusher, N partitions,
//! each with a bounded number of appends in flight, appending the same pre-encoded batch until
//! `--total-bytes` are acknowledged. MB/s counts batch bytes acknowledged over the time from
//! the first append to the last acknowledgement (partitions already open).

use super::{encode_batch, on_executor, records_per_batch, LogCommonArgs, RunDir, BYTES_PER_MB};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use sluice::model::{LeaderEpoch, ShardId, TopicPartition};
use sluice::storage::{Acks, AppendOptions, LogConfig, LogManager, StorageBrokerConfig};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

/// Upper bound on appends in flight per partition (each holds a waiter in the log).
pub const INFLIGHT_PER_PARTITION_MAX: usize = 64;

#[derive(Args, Debug)]
pub struct LogAppendArgs {
    /// Partitions appended to at the same time (one group commit covers all of them).
    #[arg(long, default_value_t = 4)]
    pub partitions: usize,
    /// Approximate bytes of record values per batch (records of --record-size).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_bytes: usize,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Bytes to append in all (rounded up to whole batches per partition).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub total_bytes: u64,
    /// `all` (written and fdatasync'ed, group commit) or `1` (written).
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Appends in flight per partition.
    #[arg(long, default_value_t = 4)]
    pub inflight: usize,
    /// fio JSON output of the same run (scripts/bench.sh's fio.json): prints the ratio.
    #[arg(long)]
    pub fio_json: Option<PathBuf>,
    #[command(flatten)]
    pub common: LogCommonArgs,
}

/// What the executor measured.
struct AppendFigures {
    appends: u64,
    bytes: u64,
    seconds: f64,
    latency_ms: [f64; 4],
    /// Executor thread during the measurement: on-CPU and runnable-but-waiting seconds.
    thread_run_seconds: f64,
    thread_wait_seconds: f64,
}

pub fn run(args: &LogAppendArgs) -> Result<()> {
    let acks = match args.acks.as_str() {
        "all" | "-1" => Acks::All,
        "1" => Acks::Leader,
        other => bail!("--acks must be all or 1, not {other}"),
    };
    if args.partitions == 0 || args.inflight == 0 || args.inflight > INFLIGHT_PER_PARTITION_MAX {
        bail!("--partitions must be > 0 and --inflight in 1..={INFLIGHT_PER_PARTITION_MAX}");
    }
    let fio_mb = match &args.fio_json {
        Some(path) => Some(super::fio_write_mb(path)?),
        None => None,
    };
    let batch = encode_batch(
        records_per_batch(args.batch_bytes, args.record_size),
        args.record_size,
    )?;
    let batch_len = batch.len() as u64;
    let per_partition = args.total_bytes.div_ceil(args.partitions as u64);
    let appends_per_partition = per_partition.div_ceil(batch_len).max(1);
    let dir = RunDir::create(args.common.data_dir.as_deref())?;
    let data_dir = dir.path.clone();
    let (partitions, inflight) = (args.partitions, args.inflight);
    let load_before = super::load_average();
    let figures = on_executor("log-append", args.common.cpu, move || async move {
        append_all(
            data_dir,
            partitions,
            inflight,
            appends_per_partition,
            batch,
            acks,
        )
        .await
    })?;
    drop(dir);
    let mb_per_sec = figures.bytes as f64 / BYTES_PER_MB / figures.seconds;
    let appends_per_sec = figures.appends as f64 / figures.seconds;
    let ratio = fio_mb.map(|fio| mb_per_sec / fio);
    let [p50, p99, p999, max] = figures.latency_ms;
    println!(
        "log-append: {:.1} MB in {:.2} s = {mb_per_sec:.1} MB/s, {appends_per_sec:.0} appends/s \
         ({} partitions, {batch_len}-byte batches, acks={}, {inflight} in flight per partition); \
         append latency p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms",
        figures.bytes as f64 / BYTES_PER_MB,
        figures.seconds,
        partitions,
        args.acks,
    );
    println!(
        "log-append: executor thread on CPU {:.2} s, runnable but waiting for CPU {:.2} s, \
         of {:.2} s (1-minute load average {})",
        figures.thread_run_seconds,
        figures.thread_wait_seconds,
        figures.seconds,
        super::load_average().map_or("unknown".into(), |l| format!("{l:.2}")),
    );
    if let (Some(fio), Some(ratio)) = (fio_mb, ratio) {
        println!(
            "log-append: fio O_DIRECT sequential write {fio:.1} MB/s; ratio {ratio:.2} (target >= 0.90)"
        );
    }
    args.common.write_report(
        "log-append",
        json!({
            "partitions": partitions, "batch_bytes": batch_len, "record_size": args.record_size,
            "total_bytes": args.total_bytes, "acks": args.acks, "inflight": inflight,
            "cpu": args.common.cpu,
        }),
        json!({
            "bytes": figures.bytes, "appends": figures.appends, "seconds": figures.seconds,
            "mb_per_sec": mb_per_sec, "appends_per_sec": appends_per_sec,
            "latency_ms": { "p50": p50, "p99": p99, "p999": p999, "max": max },
            "executor_thread_run_seconds": figures.thread_run_seconds,
            "executor_thread_runqueue_wait_seconds": figures.thread_wait_seconds,
            "fio_write_mb_per_sec": fio_mb, "ratio_to_fio": ratio,
            "loadavg_1m_before": load_before, "loadavg_1m_after": super::load_average(),
        }),
    )
}

async fn append_all(
    data_dir: PathBuf,
    partitions: usize,
    inflight: usize,
    appends_per_partition: u64,
    batch: bytes::Bytes,
    acks: Acks,
) -> Result<AppendFigures> {
    let manager = LogManager::new(ShardId(0), StorageBrokerConfig::new(&data_dir));
    manager.start_background();
    let mut logs = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let tp = TopicPartition::new("log-append", p as i32);
        let log = manager
            .open_partition(&tp, super::topic_id(), LogConfig::default())
            .await
            .with_context(|| format!("opening {tp}"))?;
        logs.push(log);
    }
    let histogram = Rc::new(RefCell::new(crate::report::latency_histogram()));
    let sched_before = super::thread_cpu_seconds().unwrap_or_default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for log in &logs {
        let remaining = Rc::new(Cell::new(appends_per_partition));
        for _ in 0..inflight {
            let (log, remaining, batch) = (log.clone(), remaining.clone(), batch.clone());
            let histogram = histogram.clone();
            tasks.push(glommio::spawn_local(async move {
                while remaining.get() > 0 {
                    remaining.set(remaining.get() - 1);
                    let opts = AppendOptions {
                        acks,
                        leader_epoch: LeaderEpoch(0),
                        now_ms: super::now_ms(),
                    };
                    let sent = Instant::now();
                    log.append(batch.clone(), opts)
                        .await
                        .map_err(|e| anyhow::anyhow!("append: {e}"))?;
                    let micros = sent.elapsed().as_micros() as u64;
                    let _ = histogram.borrow_mut().record(micros.max(1));
                }
                anyhow::Ok(())
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let sched_after = super::thread_cpu_seconds().unwrap_or_default();
    let appends = appends_per_partition * partitions as u64;
    for log in &logs {
        let stored = log.high_watermark().0;
        anyhow::ensure!(stored > 0, "{} has no data", log.topic_partition());
    }
    manager.shutdown().await;
    let h = histogram.borrow();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(AppendFigures {
        appends,
        bytes: appends * batch.len() as u64,
        seconds,
        latency_ms: [ms(0.5), ms(0.99), ms(0.999), h.max() as f64 / 1000.0],
        thread_run_seconds: sched_after.0 - sched_before.0,
        thread_wait_seconds: sched_after.1 - sched_before.1,
    })
}
