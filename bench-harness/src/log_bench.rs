//! `log-*`: the storage engine measured alone, as a library (`sluice::storage`), on one glommio
//! executor pinned to one CPU, with no network, protocol or client in the way. Each subcommand
//! prints one human line per figure and can save a JSON report (`--report`) like the others.
//!
//! - `log-append`: append throughput of pre-encoded v2 batches (compare with fio O_DIRECT).
//! - `log-startup`: opening many partitions after a clean stop.
//! - `log-recovery`: opening a partition whose tail above the recovery point must be scanned.
//! - `log-memory`: resident memory per idle open partition, before and after a read.
//!
//! Data that a measurement must not have touched itself (a clean stop, a kill -9) is written by
//! a child process of sluice-bench (hidden subcommands `log-populate`, `log-recovery-write`), so
//! the measuring process starts as cold as a restarted broker: no allocator or executor state
//! left over from writing. Every run works in its own directory and deletes it at the end.

pub mod append;
pub mod memory;
pub mod populate;
pub mod recovery;
pub mod startup;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Args;
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

pub use append::LogAppendArgs;
pub use memory::LogMemoryArgs;
pub use populate::LogPopulateArgs;
pub use recovery::{LogRecoveryArgs, LogRecoveryWriteArgs};
pub use startup::LogStartupArgs;

/// glommio's pinned DMA memory per executor: the machine's locked-memory limit is 8 MiB, so the
/// executor keeps to the broker's own setting (src/limits.rs).
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 1024 * 1024;
/// io_uring depth per executor (the broker's setting).
pub const EXECUTOR_RING_DEPTH: usize = 256;
/// MB as in the rest of the harness and in Kafka's perf tools: 2^20 bytes.
pub const BYTES_PER_MB: f64 = 1024.0 * 1024.0;
/// The topic id every log-* partition is created with (recorded in `partition.metadata`).
pub const TOPIC_ID_U128: u128 = 0x5100_1ce0_0000_4000_8000_0000_0000_0001;

/// Flags every log-* subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct LogCommonArgs {
    /// Parent of the run's data directory (a fresh `sluice-log-bench.*` directory is made in it
    /// and deleted afterwards). Default: $TMPDIR or /tmp when it is on the same filesystem as
    /// this binary's target directory, else that target directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// CPU the measuring executor is pinned to.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// Write a JSON report (parameters, host, git sha, figures) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Free-form label for the report.
    #[arg(long)]
    pub label: Option<String>,
}

impl LogCommonArgs {
    /// Writes the report through the harness's one report writer (no broker settings here).
    pub fn write_report(&self, kind: &str, parameters: Value, figures: Value) -> Result<()> {
        let common = crate::cli::CommonArgs {
            bootstrap_server: String::new(),
            create_topic: false,
            partitions: 0,
            replication_factor: 0,
            report: self.report.clone(),
            plot: None,
            broker_config: Vec::new(),
            label: self.label.clone(),
        };
        crate::report::write_report(&common, kind, parameters, figures)
    }
}

/// Runs `body` on a new glommio executor pinned to `cpu` and waits for its result.
pub fn on_executor<F, Fut, T>(name: &str, cpu: usize, body: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + 'static,
    T: Send + 'static,
{
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(name)
        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
        .ring_depth(EXECUTOR_RING_DEPTH)
        .spawn(body)
        .map_err(|err| anyhow::anyhow!("starting executor {name} on CPU {cpu}: {err}"))?;
    match handle.join() {
        Ok(result) => result,
        Err(err) => bail!("executor {name} failed: {err}"),
    }
}

/// One valid v2 batch (no compression, no producer id) of `records` records of `record_size`
/// bytes each, encoded once and reused for every append: the log copies it into its DMA buffer
/// and rewrites the base offset there, never in the source.
pub fn encode_batch(records: usize, record_size: usize) -> Result<Bytes> {
    let now_ms = now_ms();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let records: Vec<Record> = (0..records)
        .map(|i| {
            // Incompressible-looking payload (xorshift), in case a filesystem compresses.
            let value: Vec<u8> = (0..record_size)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).context("encoding a record batch")?;
    Ok(buf.freeze())
}

/// Records per batch so a batch holds about `batch_bytes` of record values (at least one).
pub fn records_per_batch(batch_bytes: usize, record_size: usize) -> usize {
    (batch_bytes / record_size.max(1)).max(1)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn topic_id() -> sluice::model::TopicId {
    sluice::model::TopicId::from_u128(TOPIC_ID_U128)
}

/// A directory of the run, deleted (with everything in it) when dropped.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(parent: Option<&Path>) -> Result<RunDir> {
        let parent = match parent {
            Some(parent) => parent.to_path_buf(),
            None => default_parent()?,
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!(
            "sluice-log-bench.{}.{nanos:09}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating data directory {}", path.display()))?;
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: removing {}: {err}", self.path.display());
        }
    }
}

/// $TMPDIR (or /tmp) when it shares a filesystem with the target directory holding this binary
/// (so the figures are for the disk the repository builds on), else that target directory.
fn default_parent() -> Result<PathBuf> {
    let temp = std::env::temp_dir();
    let exe = std::env::current_exe().context("locating sluice-bench")?;
    // target/<profile>/sluice-bench → target
    let target = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| temp.clone());
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev()).ok();
    match (device(&temp), device(&target)) {
        (Some(a), Some(b)) if a != b => Ok(target),
        _ => Ok(temp),
    }
}

/// Starts this binary again with `args` (a hidden child subcommand), stdout piped.
pub fn spawn_self(args: &[String]) -> Result<Child> {
    let exe = std::env::current_exe().context("locating sluice-bench")?;
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a sluice-bench child process")
}

/// Process memory from /proc/self: (VmRSS, Anonymous of smaps_rollup), bytes.
pub fn memory_bytes() -> Result<(u64, u64)> {
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")
        .context("reading /proc/self/smaps_rollup")?;
    let rss = field(&status, "VmRSS:").context("no VmRSS in /proc/self/status")?;
    let anonymous = field(&rollup, "Anonymous:").context("no Anonymous in smaps_rollup")?;
    Ok((rss, anonymous))
}

/// (on-CPU, waiting-to-run) seconds of the calling thread so far, from
/// /proc/thread-self/schedstat: on a shared machine the second says how long the measuring
/// thread was runnable but another task held its CPU.
pub fn thread_cpu_seconds() -> Option<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let run = fields.next()??;
    let wait = fields.next()??;
    Some((run as f64 / 1e9, wait as f64 / 1e9))
}

/// Open file descriptors of this process.
pub fn open_fds() -> Result<u64> {
    Ok(std::fs::read_dir("/proc/self/fd")
        .context("reading /proc/self/fd")?
        .count() as u64)
}

/// The 1-minute load average, recorded with every figure (the machine is shared).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sequential write bandwidth (MB/s, 2^20) from a fio JSON output (`jobs[0].write.bw_bytes`).
pub fn fio_write_mb(path: &Path) -> Result<f64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: Value = serde_json::from_str(&text).context("fio output is not JSON")?;
    json["jobs"][0]["write"]["bw_bytes"]
        .as_f64()
        .map(|bytes| bytes / BYTES_PER_MB)
        .context("no jobs[0].write.bw_bytes in the fio output")
}

/// Reads one `KEY value...` line from a child's stdout (the child prints exactly one).
pub fn read_child_line(child: &mut Child, key: &str) -> Result<Vec<String>> {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().context("child stdout not piped")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading child output")?;
        if let Some(rest) = line.strip_prefix(key) {
            return Ok(rest.split_whitespace().map(str::to_string).collect());
        }
    }
    bail!("child process ended without printing {key}")
}

pub fn parse_field<T: std::str::FromStr>(fields: &[String], index: usize) -> Result<T> {
    fields
        .get(index)
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("child output field {index} missing or malformed: {fields:?}"))
}
