//! `log-memory`: a child process writes `--partitions` partitions (data in two segments each)
//! and stops cleanly; this process then opens them all on one executor and reads its own
//! memory from /proc/self (VmRSS, and `Anonymous` of smaps_rollup: heap and anonymous maps,
//! without the binary's file-backed pages) before opening, after opening (idle partitions), and
//! after one fetch-like read per partition (1 MiB from offset 0, which loads the sealed
//! segment's indexes and opens its log file). Each figure is the growth divided by the
//! partition count. Open file descriptors are counted too (kernel memory, not in RSS).
//!
//! The allocator may keep freed memory (the read buffers), so the after-read figure is an upper
//! bound of what stays referenced.

use super::populate::{log_config, populate_in_child, LogPopulateArgs, TOPIC};
use super::{memory_bytes, on_executor, open_fds, LogCommonArgs, RunDir};
use anyhow::Result;
use clap::Args;
use serde_json::json;
use sluice::model::{Offset, ShardId, TopicPartition};
use sluice::storage::{LogManager, StorageBrokerConfig};

/// Bytes per fetch-like read (Kafka's default max.partition.fetch.bytes).
const READ_BYTES: usize = 1024 * 1024;

#[derive(Args, Debug)]
pub struct LogMemoryArgs {
    #[arg(long, default_value_t = 1000)]
    pub partitions: usize,
    /// segment.bytes of the topic (each partition gets two segments).
    #[arg(long, default_value_t = 64 * 1024)]
    pub segment_bytes: u64,
    /// 1 KiB records per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_records: usize,
    #[command(flatten)]
    pub common: LogCommonArgs,
}

/// (VmRSS, Anonymous, open fds) at one point.
type Sample = (u64, u64, u64);

pub fn run(args: &LogMemoryArgs) -> Result<()> {
    let dir = RunDir::create(args.common.data_dir.as_deref())?;
    let populate = LogPopulateArgs {
        dir: dir.path.clone(),
        partitions: args.partitions,
        segments: 2,
        segment_bytes: args.segment_bytes,
        batch_records: args.batch_records,
        cpu: args.common.cpu,
    };
    let load_before = super::load_average();
    let (bytes, _, _) = populate_in_child(&populate)?;
    let p = populate.clone();
    let samples: [Sample; 3] = on_executor("log-memory", args.common.cpu, move || async move {
        let manager = LogManager::new(ShardId(0), StorageBrokerConfig::new(&p.dir));
        manager.start_background();
        let config = log_config(p.segment_bytes);
        let before = sample()?;
        let mut logs = Vec::with_capacity(p.partitions);
        for i in 0..p.partitions {
            let tp = TopicPartition::new(TOPIC, i as i32);
            let log = manager
                .open_partition(&tp, super::topic_id(), config.clone())
                .await
                .map_err(|e| anyhow::anyhow!("opening {tp}: {e}"))?;
            logs.push(log);
        }
        let idle = sample()?;
        for log in &logs {
            let read = log
                .read(Offset(0), READ_BYTES, true)
                .await
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", log.topic_partition()))?;
            anyhow::ensure!(!read.records.is_empty(), "empty read");
        }
        let after_read = sample()?;
        drop(logs);
        manager.shutdown().await;
        Ok([before, idle, after_read])
    })?;
    drop(dir);
    let [before, idle, after_read] = samples;
    let n = args.partitions as f64;
    let per = |a: u64, b: u64| (b as f64 - a as f64) / n / 1024.0;
    let (idle_rss, idle_anon) = (per(before.0, idle.0), per(before.1, idle.1));
    let (read_rss, read_anon) = (per(before.0, after_read.0), per(before.1, after_read.1));
    let fds_idle = per(before.2, idle.2) * 1024.0;
    let fds_read = per(before.2, after_read.2) * 1024.0;
    println!(
        "log-memory: {} idle partitions ({:.1} MB on disk): {idle_anon:.1} KiB anonymous, \
         {idle_rss:.1} KiB RSS per partition (target < 64 KiB); {fds_idle:.2} open files each",
        args.partitions,
        bytes as f64 / super::BYTES_PER_MB,
    );
    println!(
        "log-memory: after one {} KiB read per partition: {read_anon:.1} KiB anonymous, \
         {read_rss:.1} KiB RSS per partition; {fds_read:.2} open files each",
        READ_BYTES / 1024,
    );
    args.common.write_report(
        "log-memory",
        json!({
            "partitions": args.partitions, "segment_bytes": args.segment_bytes,
            "batch_records": args.batch_records, "read_bytes": READ_BYTES,
            "cpu": args.common.cpu,
        }),
        json!({
            "bytes_on_disk": bytes,
            "rss_bytes": { "before": before.0, "idle": idle.0, "after_read": after_read.0 },
            "anonymous_bytes": { "before": before.1, "idle": idle.1, "after_read": after_read.1 },
            "open_fds": { "before": before.2, "idle": idle.2, "after_read": after_read.2 },
            "idle_kib_per_partition": { "anonymous": idle_anon, "rss": idle_rss },
            "after_read_kib_per_partition": { "anonymous": read_anon, "rss": read_rss },
            "loadavg_1m_before": load_before, "loadavg_1m_after": super::load_average(),
        }),
    )
}

fn sample() -> Result<Sample> {
    let (rss, anonymous) = memory_bytes()?;
    Ok((rss, anonymous, open_fds()?))
}
