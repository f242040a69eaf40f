//! `verify`: a checker for any Kafka-compatible cluster (Sluice, Kafka, Redpanda). acks=all
//! producers, every other one idempotent, write records that name their producer and sequence
//! number; readers read them back while they are written; between phases a fault command runs
//! (kill -9 a broker, say) while the producers keep sending; then a full read of every partition
//! from its log start offset to its high watermark is compared with what was acknowledged and
//! what the readers saw.
//!
//! - `check`: the verdict as a pure function of the observations (unit-tested);
//! - `record`: what a record carries (producer, sequence number, a hash, padding);
//! - `clients`: the producers, the phase gate, the reading loop.
//!
//! Memory: 16 bytes per acknowledged record, 16 per record in the final read, 16 per record
//! each reader read, and 1 while counting copies: (33 + 16 × readers) bytes per record, so
//! [`RECORDS_MAX`] records with one reader are about 2.5 GB (the vanished check briefly holds a
//! second copy of one partition's reader entries). Larger runs are refused before any client
//! starts; a reader that keeps more than twice the run's records stops (incomplete).
//!
//! Exit status: 0 when no error-class violation, 1 when there is one (the report names it),
//! 2 when the check itself could not run (no cluster, bad flags).

/// Progress and client errors on stderr, stamped with seconds since the run began (defined
/// before the submodules, so they see it too).
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("verify {:>8.3}s: {}", $crate::verify::elapsed_seconds(), format_args!($($arg)*))
    };
}

pub mod check;
mod clients;
pub mod record;

use crate::cli::BOOTSTRAP_SERVER_DEFAULT;
use anyhow::{bail, Context, Result};
use check::{Observed, PartitionBounds, ProducerOutcome, ReadLog, Verdict};
use clap::{Args, ValueEnum};
use clients::{PhaseGate, ProducerPlan, ReadUntil};
use rdkafka::consumer::BaseConsumer;
use rdkafka::{ClientConfig, Offset};
use record::{Codec, HEADER_BYTES};
use serde::Serialize;
use serde_json::json;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound on `--producers × --records-per-producer` (see the memory note above).
pub const RECORDS_MAX: u64 = 50_000_000;
/// Each producer is a librdkafka client with its own threads and connections.
pub const PRODUCERS_MAX: u32 = 256;
pub const READERS_MAX: u32 = 32;
pub const PHASES_MAX: u32 = 1_000;
pub const RECORD_SIZE_MAX: usize = 1024 * 1024;
/// Added to the delivery timeout to bound each producer's final flush.
const FLUSH_MARGIN: Duration = Duration::from_secs(30);
/// How often a running fault command is checked for its exit.
const FAULT_POLL_INTERVAL: Duration = Duration::from_millis(20);
const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

const VERIFY_HELP: &str = "\
Against a 3-node Sluice cluster with a kill -9 between phases (scripts/cluster.sh; SLUICE_BIN
keeps its restart verb from rebuilding):

  scripts/cluster.sh start 3
  SLUICE_BIN=$PWD/target/release/sluice sluice-bench verify \\
    --bootstrap-server 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094 \\
    --topic verify-rf3 --partitions 6 --replication-factor 3 --config min.insync.replicas=2 \\
    --producers 4 --records-per-producer 100000 --throughput 2000 --spread-partitions \\
    --readers 2 --phases 4 \\
    --fault-cmd 'n=$(( $(date +%s) % 3 + 1 )); scripts/cluster.sh kill $n; sleep 5; scripts/cluster.sh restart $n' \\
    --fault-timeout-s 60 --settle-ms 15000

The fault command runs with sh -c in the current directory, in its own process group (killed
with it after --fault-timeout-s); its output goes to stderr. Exit status: 0 no error-class
violation, 1 a violation (named in the report), 2 the check could not run.";

/// Output of the report on stdout (progress and client errors go to stderr).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
#[command(after_help = VERIFY_HELP)]
pub struct VerifyArgs {
    /// Broker list; a `bootstrap.servers` in --producer-props/--consumer-props wins.
    #[arg(long, default_value = BOOTSTRAP_SERVER_DEFAULT)]
    pub bootstrap_server: String,
    /// Created if missing (with --partitions, --replication-factor, --config); an existing
    /// topic is used as it is.
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Topic config for creation (k=v, several after one flag or the flag repeated).
    #[arg(long = "config", value_name = "K=V", num_args = 1..)]
    pub config: Vec<String>,
    /// Producers; producer 0, 2, 4 ... are idempotent, 1, 3, 5 ... acks=all with retries and
    /// max.in.flight 5 but no idempotence.
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    #[arg(long, default_value_t = 10_000)]
    pub records_per_producer: u32,
    /// Send each producer's records round-robin over every partition (record `seq` to the
    /// partition `seq % partitions`) instead of to the partition its key (the producer index)
    /// hashes to, which puts each producer on one partition and may leave some partitions empty.
    #[arg(long)]
    pub spread_partitions: bool,
    /// Bytes per record value (at least the 24-byte header).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records per second per producer; -1 is unlimited.
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    pub throughput: f64,
    /// Each producer's records are split evenly into this many phases. A boundary is reached
    /// when every producer has handed its records of the phase to its client (acknowledged or
    /// not); the fault command then starts and the producers go on with the next phase while it
    /// runs. With --throughput the phases last long enough for a fault to land mid-stream.
    #[arg(long, default_value_t = 1)]
    pub phases: u32,
    /// Shell command run (sh -c) at each phase boundary, e.g. a kill -9 of a broker.
    #[arg(long)]
    pub fault_cmd: Option<String>,
    /// Bound on each run of the fault command (then it is killed with its process group).
    #[arg(long, default_value_t = 120)]
    pub fault_timeout_s: u64,
    /// Consumers reading every partition from the beginning while the producers run
    /// (read_uncommitted, assign() without a group).
    #[arg(long, default_value_t = 1)]
    pub readers: u32,
    /// Seed of the record padding.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Wait after the producers finished, before the end offsets are taken.
    #[arg(long, default_value_t = 1_000)]
    pub settle_ms: u64,
    /// Producer delivery.timeout.ms: how long a record is retried before it counts as failed.
    #[arg(long, default_value_t = 120_000)]
    pub delivery_timeout_ms: u64,
    /// A reader or the final read gives up when nothing arrived for this long after the end
    /// offsets are known (an incomplete final read is an error).
    #[arg(long, default_value_t = 60_000)]
    pub read_timeout_ms: u64,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// librdkafka producer properties (k=v), applied over the defaults: enable.idempotence
    /// (true for even producers), acks=all, max.in.flight.requests.per.connection=5,
    /// retries=2147483647, delivery.timeout.ms, linger.ms=5.
    #[arg(long = "producer-props", value_name = "K=V", num_args = 1..)]
    pub producer_props: Vec<String>,
    /// librdkafka consumer properties (k=v) for the readers and the final read.
    #[arg(long = "consumer-props", value_name = "K=V", num_args = 1..)]
    pub consumer_props: Vec<String>,
}

/// When the run began, for [`note`].
static STARTED: OnceLock<Instant> = OnceLock::new();

pub(crate) fn elapsed_seconds() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Runs the check; true when it found no error-class violation.
pub fn run(args: &VerifyArgs) -> Result<bool> {
    let _ = STARTED.set(Instant::now());
    check_limits(args)?;
    let topic_config = crate::props::parse_pairs(&args.config)?;
    let consumer = consumer_config(args)?;
    let bootstrap = crate::props::bootstrap_of(&consumer.1);
    let created = crate::admin::create_topic_with_config(
        &bootstrap,
        &args.topic,
        args.partitions,
        args.replication_factor,
        &topic_config,
    )?;
    let metadata_consumer: BaseConsumer =
        consumer.0.create().context("creating metadata consumer")?;
    let partitions = crate::admin::partitions_of(&metadata_consumer, &args.topic)?;
    drop(metadata_consumer);
    let producers = (0..args.producers)
        .map(|index| producer_config(args, index))
        .collect::<Result<Vec<_>>>()?;
    let codec = Codec::new(
        args.seed,
        run_id(args.seed),
        args.producers,
        args.records_per_producer,
        args.record_size,
    );
    note!(
        "topic {} ({}, {} partitions), run id {:016x}, {} producers x {} records of {} B, {} phases, {} readers",
        args.topic,
        if created { "created" } else { "existing" },
        partitions.len(),
        codec.run_id(),
        args.producers,
        args.records_per_producer,
        args.record_size,
        args.phases,
        args.readers,
    );
    let run = Run {
        args,
        consumer_config: &consumer.0,
        producer_configs: &producers,
        codec: &codec,
        partitions: &partitions,
    };
    let observed = run.observe()?;
    let verdict = check::check(observed.observed);
    let report = Report {
        verdict,
        produce_seconds: observed.produce_seconds,
        faults: observed.faults,
        final_bounds: observed.final_bounds,
    };
    match args.output {
        OutputFormat::Text => print_text(args, &report),
        OutputFormat::Json => print_json(args, &report, created, &producers, &consumer.1)?,
    }
    Ok(report.verdict.passed())
}

fn check_limits(args: &VerifyArgs) -> Result<()> {
    let records = u64::from(args.producers) * u64::from(args.records_per_producer);
    if records > RECORDS_MAX {
        bail!(
            "--producers x --records-per-producer = {records} is above the limit of {RECORDS_MAX}: \
             verify keeps about {} bytes per record in memory (16 acknowledged + 16 final read + 16 per \
             reader + 1); run several shorter checks instead",
            33 + 16 * u64::from(args.readers)
        );
    }
    if args.producers == 0 || args.producers > PRODUCERS_MAX {
        bail!("--producers must be 1..={PRODUCERS_MAX}");
    }
    if args.records_per_producer == 0 {
        bail!("--records-per-producer must be at least 1");
    }
    if args.readers > READERS_MAX {
        bail!("--readers must be at most {READERS_MAX}");
    }
    if args.phases == 0 || args.phases > PHASES_MAX {
        bail!("--phases must be 1..={PHASES_MAX}");
    }
    if args.fault_cmd.is_some() && args.phases < 2 {
        bail!("--fault-cmd runs between phases: give --phases 2 or more");
    }
    if args.record_size < HEADER_BYTES || args.record_size > RECORD_SIZE_MAX {
        bail!("--record-size must be {HEADER_BYTES}..={RECORD_SIZE_MAX} (the record header is {HEADER_BYTES} bytes)");
    }
    if args.throughput.is_nan() || args.throughput == 0.0 {
        bail!("--throughput must be positive, or -1 for unlimited");
    }
    Ok(())
}

/// Producer `index`: idempotent when even.
fn producer_config(args: &VerifyArgs, index: u32) -> Result<(ClientConfig, Vec<(String, String)>)> {
    let idempotent = if index.is_multiple_of(2) {
        "true"
    } else {
        "false"
    };
    let delivery_timeout = args.delivery_timeout_ms.to_string();
    let defaults = [
        ("enable.idempotence", idempotent),
        ("acks", "all"),
        ("max.in.flight.requests.per.connection", "5"),
        ("retries", "2147483647"),
        ("delivery.timeout.ms", delivery_timeout.as_str()),
        ("linger.ms", "5"),
    ];
    crate::props::client_config(
        &args.bootstrap_server,
        &defaults,
        None,
        &args.producer_props,
    )
}

fn consumer_config(args: &VerifyArgs) -> Result<(ClientConfig, Vec<(String, String)>)> {
    // A group id librdkafka wants set; nothing joins or commits (assign() only).
    let group_id = format!("sluice-bench-verify-{}", std::process::id());
    let defaults = [
        ("group.id", group_id.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("enable.partition.eof", "true"),
        ("isolation.level", "read_uncommitted"),
    ];
    crate::props::client_config(
        &args.bootstrap_server,
        &defaults,
        None,
        &args.consumer_props,
    )
}

/// Tells this run's records from an earlier run's on the same topic: the seed, the clock and
/// the process id, mixed (splitmix64's finaliser).
fn run_id(seed: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = seed ^ nanos ^ (u64::from(std::process::id()) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One run of the fault command.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRun {
    /// The boundary it ran at: after phase `after_phase` (0-based) was sent.
    pub after_phase: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub seconds: f64,
}

struct Run<'a> {
    args: &'a VerifyArgs,
    consumer_config: &'a ClientConfig,
    producer_configs: &'a [(ClientConfig, Vec<(String, String)>)],
    codec: &'a Codec,
    partitions: &'a [i32],
}

struct Observation {
    observed: Observed,
    produce_seconds: f64,
    faults: Vec<FaultRun>,
    final_bounds: Vec<PartitionBounds>,
}

impl Run<'_> {
    /// Producers and readers on their own threads; this thread runs the phases and the fault
    /// command, then takes the end offsets and does the final read.
    fn observe(&self) -> Result<Observation> {
        let args = self.args;
        let records_max = 2 * u64::from(args.producers) * u64::from(args.records_per_producer);
        let gate = PhaseGate::new(args.producers);
        let end: OnceLock<Vec<PartitionBounds>> = OnceLock::new();
        let abort = AtomicBool::new(false);
        let until = ReadUntil {
            end: &end,
            stall_timeout: Duration::from_millis(args.read_timeout_ms),
            records_max,
            abort: &abort,
        };
        let from_beginning: Vec<(i32, Offset)> = self
            .partitions
            .iter()
            .map(|&p| (p, Offset::Beginning))
            .collect();
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..args.readers)
                .map(|index| {
                    let (until, from_beginning) = (&until, &from_beginning);
                    scope.spawn(move || {
                        let name = format!("reader {index}");
                        clients::read(
                            self.consumer_config,
                            &args.topic,
                            from_beginning,
                            self.codec,
                            until,
                            &name,
                        )
                    })
                })
                .collect();
            let result =
                self.produce_and_fault(scope, &gate)
                    .and_then(|(producers, seconds, faults)| {
                        note!(
                            "producers done: {} acknowledged; settling {} ms",
                            producers.iter().map(|p| p.acked.len()).sum::<usize>(),
                            args.settle_ms
                        );
                        std::thread::sleep(Duration::from_millis(args.settle_ms));
                        let bounds = clients::bounds_of(
                            self.consumer_config,
                            &args.topic,
                            self.partitions,
                            2 * crate::admin::REQUEST_TIMEOUT,
                        )?;
                        note!("end offsets taken: {bounds:?}");
                        let _ = end.set(bounds.clone());
                        Ok((producers, seconds, faults, bounds))
                    });
            if result.is_err() {
                abort.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let mut reader_logs = Vec::new();
            for reader in readers {
                match reader.join() {
                    Ok(Ok(log)) => reader_logs.push(log),
                    Ok(Err(error)) => note!("reader failed: {error:#}"),
                    Err(_) => note!("reader thread panicked"),
                }
            }
            let (producers, produce_seconds, faults, final_bounds) = result?;
            note!("final read of {} partitions", final_bounds.len());
            let final_read = self.final_read(&final_bounds, &until)?;
            Ok(Observation {
                observed: Observed {
                    records_per_producer: args.records_per_producer,
                    producers,
                    readers: reader_logs,
                    final_bounds: final_bounds.clone(),
                    final_read,
                },
                produce_seconds,
                faults,
                final_bounds,
            })
        })
    }

    /// Starts the producers, runs the fault command at each phase boundary, and waits for the
    /// producers' outcomes.
    fn produce_and_fault<'scope, 'env>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        gate: &'env PhaseGate,
    ) -> Result<(Vec<ProducerOutcome>, f64, Vec<FaultRun>)> {
        let args = self.args;
        let start = Instant::now();
        let producers: Vec<_> = self
            .producer_configs
            .iter()
            .enumerate()
            .map(|(index, (config, effective))| {
                let plan = ProducerPlan {
                    index: index as u32,
                    idempotent: effective
                        .iter()
                        .rev()
                        .find(|(key, _)| key == "enable.idempotence")
                        .is_some_and(|(_, value)| value == "true"),
                    records: args.records_per_producer,
                    phases: args.phases,
                    throughput: args.throughput,
                    flush_timeout: Duration::from_millis(args.delivery_timeout_ms) + FLUSH_MARGIN,
                    spread: args.spread_partitions.then(|| self.partitions.to_vec()),
                };
                scope.spawn(move || clients::produce(&plan, config, &args.topic, self.codec, gate))
            })
            .collect();
        let mut faults = Vec::new();
        for phase in 1..args.phases {
            gate.wait_all_reached(phase);
            note!("phase {} of {} sent", phase, args.phases);
            match &args.fault_cmd {
                Some(command) => {
                    let mut fault = FaultCommand::start(command)?;
                    gate.release(phase);
                    faults.push(fault.wait(phase - 1, Duration::from_secs(args.fault_timeout_s)));
                }
                None => gate.release(phase),
            }
        }
        let mut outcomes = Vec::new();
        let mut failure = None;
        for producer in producers {
            match producer.join() {
                Ok(Ok(outcome)) => outcomes.push(outcome),
                Ok(Err(error)) => failure = Some(error),
                Err(_) => failure = Some(anyhow::anyhow!("producer thread panicked")),
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        Ok((outcomes, start.elapsed().as_secs_f64(), faults))
    }

    fn final_read(&self, bounds: &[PartitionBounds], until: &ReadUntil<'_>) -> Result<ReadLog> {
        let end = OnceLock::new();
        let _ = end.set(bounds.to_vec());
        let no_abort = AtomicBool::new(false);
        let final_until = ReadUntil {
            end: &end,
            abort: &no_abort,
            ..*until
        };
        let start: Vec<(i32, Offset)> = bounds
            .iter()
            .map(|b| (b.partition, Offset::Offset(b.log_start)))
            .collect();
        clients::read(
            self.consumer_config,
            &self.args.topic,
            &start,
            self.codec,
            &final_until,
            "final read",
        )
    }
}

/// The fault command, in its own process group so a timeout can end all of it.
struct FaultCommand {
    child: std::process::Child,
    started: Instant,
}

impl FaultCommand {
    fn start(command: &str) -> Result<Self> {
        note!("fault command: {command}");
        // Its stdout goes to our stderr, keeping our stdout for the report.
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stderr for the fault command")?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the fault command (sh -c)")?;
        Ok(Self {
            child,
            started: Instant::now(),
        })
    }

    fn wait(&mut self, after_phase: u32, timeout: Duration) -> FaultRun {
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if self.started.elapsed() < timeout => {
                    std::thread::sleep(FAULT_POLL_INTERVAL)
                }
                Ok(None) => {
                    timed_out = true;
                    note!("fault command ran past {timeout:?}; killing its process group");
                    // SAFETY: kill(2) with the negated pid of the group this child leads.
                    unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
                    break self.child.wait().ok();
                }
                Err(error) => {
                    note!("waiting for the fault command: {error}");
                    break None;
                }
            }
        };
        let run = FaultRun {
            after_phase,
            exit_code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            timed_out,
            seconds: self.started.elapsed().as_secs_f64(),
        };
        note!(
            "fault command after phase {after_phase}: exit {:?}, signal {:?}, {:.2} s",
            run.exit_code,
            run.signal,
            run.seconds
        );
        run
    }
}

struct Report {
    verdict: Verdict,
    produce_seconds: f64,
    faults: Vec<FaultRun>,
    final_bounds: Vec<PartitionBounds>,
}

impl Report {
    fn records_per_second(&self) -> f64 {
        if self.produce_seconds > 0.0 {
            self.verdict.acknowledged as f64 / self.produce_seconds
        } else {
            0.0
        }
    }
}

fn print_text(args: &VerifyArgs, report: &Report) {
    let v = &report.verdict;
    let rate = report.records_per_second();
    println!(
        "acknowledged {}, failed {}, unresolved {}; produce {:.0} records/s ({:.2} MB/s) over {:.2} s",
        v.acknowledged,
        v.failed,
        v.unresolved,
        rate,
        rate * args.record_size as f64 / BYTES_PER_MB,
        report.produce_seconds
    );
    println!(
        "read by readers {} ({} of {} readers reached the end); final read {} records of this run, {} others, {}",
        v.read_by_readers,
        v.readers_complete,
        args.readers,
        v.final_read_records,
        v.final_read_foreign,
        if v.final_read_complete { "complete" } else { "INCOMPLETE" }
    );
    for fault in &report.faults {
        println!(
            "fault command after phase {}: exit code {}, {:.2} s{}",
            fault.after_phase,
            fault.exit_code.map_or_else(
                || format!("none (signal {:?})", fault.signal),
                |c| c.to_string()
            ),
            fault.seconds,
            if fault.timed_out { ", timed out" } else { "" }
        );
    }
    let kinds = [
        ("lost", &v.lost, true),
        ("duplicated (idempotent producers)", &v.duplicated, true),
        (
            "duplicates from retries (non-idempotent producers)",
            &v.duplicates_from_retries,
            false,
        ),
        ("reordered (idempotent producers)", &v.reordered, true),
        (
            "reordered (non-idempotent producers)",
            &v.reordered_from_retries,
            false,
        ),
        ("vanished", &v.vanished, true),
    ];
    for (name, violations, error_class) in kinds {
        println!(
            "{name}: {}{}",
            violations.count,
            if error_class {
                ""
            } else {
                " (counted, not an error)"
            }
        );
        for example in &violations.examples {
            println!(
                "  partition {} offset {}: producer {} seq {}: {}",
                example.partition, example.offset, example.producer, example.seq, example.detail
            );
        }
    }
    println!("corrupted: {}", v.corrupted);
    if v.passed() {
        println!("PASS: no acknowledged record lost, no duplicate or reordering from an idempotent producer, nothing read vanished");
    } else {
        println!("FAIL: {}", v.errors.join("; "));
    }
}

fn print_json(
    args: &VerifyArgs,
    report: &Report,
    created: bool,
    producers: &[(ClientConfig, Vec<(String, String)>)],
    consumer: &[(String, String)],
) -> Result<()> {
    let pairs = |effective: &[(String, String)]| {
        effective
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    let rate = report.records_per_second();
    let document = json!({
        "tool": "sluice-bench",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "kind": "verify",
        "host": crate::report::host_facts(),
        "parameters": {
            "topic": args.topic,
            "topic_created": created,
            "partitions": args.partitions,
            "replication_factor": args.replication_factor,
            "config": args.config,
            "producers": args.producers,
            "records_per_producer": args.records_per_producer,
            "record_size": args.record_size,
            "spread_partitions": args.spread_partitions,
            "throughput": args.throughput,
            "phases": args.phases,
            "fault_cmd": args.fault_cmd,
            "fault_timeout_s": args.fault_timeout_s,
            "readers": args.readers,
            "seed": args.seed,
            "settle_ms": args.settle_ms,
            "producer_props": producers.iter().map(|(_, effective)| pairs(effective)).collect::<Vec<_>>(),
            "consumer_props": pairs(consumer),
        },
        "passed": report.verdict.passed(),
        "errors": report.verdict.errors,
        "figures": {
            "produce_seconds": report.produce_seconds,
            "records_per_second": rate,
            "mb_per_second": rate * args.record_size as f64 / BYTES_PER_MB,
            "fault_exit_codes": report.faults.iter().map(|f| f.exit_code).collect::<Vec<_>>(),
            "faults": report.faults,
            "final_bounds": report.final_bounds,
            "verdict": report.verdict,
        },
    });
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}
