//! Command-line flags. Producer and consumer flags follow Kafka's perf tools by name, so a
//! command line written for `kafka-producer-perf-test` works here with the tool name changed.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const BOOTSTRAP_SERVER_DEFAULT: &str = "127.0.0.1:9092";

#[derive(Parser, Debug)]
#[command(
    name = "sluice-bench",
    version,
    about = "Kafka-compatible perf tests on librdkafka"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Like kafka-producer-perf-test: send N records, report throughput and send→ack latency.
    ProducerPerf(ProducerPerfArgs),
    /// Like kafka-consumer-perf-test: read N messages from the beginning of every partition.
    ConsumerPerf(ConsumerPerfArgs),
    /// Produce at a fixed rate and consume at the same time; latency from a timestamp in the payload.
    E2eLatency(E2eLatencyArgs),
    /// Tabulate a scripts/bench.sh results directory (summary.md and summary.json).
    Summarize(SummarizeArgs),
    /// Storage engine alone: append throughput of pre-encoded batches into a LogManager.
    LogAppend(crate::log_bench::LogAppendArgs),
    /// Storage engine alone: time to open many partitions after a clean stop.
    LogStartup(crate::log_bench::LogStartupArgs),
    /// Storage engine alone: time to open a partition whose unflushed tail must be scanned.
    LogRecovery(crate::log_bench::LogRecoveryArgs),
    /// Storage engine alone: resident memory per idle open partition.
    LogMemory(crate::log_bench::LogMemoryArgs),
    /// Child process of log-startup and log-memory: writes the partitions, stops cleanly.
    #[command(hide = true)]
    LogPopulate(crate::log_bench::LogPopulateArgs),
    /// Child process of log-recovery: writes the tail, then waits to be killed.
    #[command(hide = true)]
    LogRecoveryWrite(crate::log_bench::LogRecoveryWriteArgs),
    /// Consumer group: time back to Stable after a member leaves and after one joins.
    GroupRebalance(crate::group_bench::GroupRebalanceArgs),
    /// Consumer group: synchronous OffsetCommits per second and their latency.
    GroupCommits(crate::group_bench::GroupCommitsArgs),
    /// Check a cluster: acks=all producers (idempotent and not), readers and a fault command
    /// between phases, then a full read; reports acknowledged records lost, duplicated,
    /// reordered, and read records that vanished (exit 1 on an error-class violation).
    Verify(crate::verify::VerifyArgs),
}

/// Flags every subcommand shares: where the broker is, topic creation and the report.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Broker list; a `bootstrap.servers` in the client properties takes precedence.
    #[arg(long, default_value = BOOTSTRAP_SERVER_DEFAULT)]
    pub bootstrap_server: String,
    /// Create the topic first through the Kafka admin API (an existing topic is kept as it is).
    #[arg(long)]
    pub create_topic: bool,
    /// Partition count for `--create-topic`.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor for `--create-topic`.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Write a JSON report (parameters, host, git sha, broker config, figures) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write a latency-by-percentile SVG plot to this file (producer-perf and e2e-latency).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Broker configuration under test, recorded in the report as given (k=v, repeatable).
    #[arg(long = "broker-config", value_name = "K=V", num_args = 1..)]
    pub broker_config: Vec<String>,
    /// Free-form label for the report (e.g. "1 KiB acks=1").
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Args, Debug)]
pub struct ProducerPerfArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub num_records: u64,
    /// Bytes per record; exactly one of --record-size and --payload-file.
    #[arg(
        long,
        required_unless_present = "payload_file",
        conflicts_with = "payload_file"
    )]
    pub record_size: Option<usize>,
    /// Payloads are the lines (split by --payload-delimiter) of this UTF-8 file, picked at random.
    #[arg(long)]
    pub payload_file: Option<PathBuf>,
    #[arg(long, default_value = "\\n")]
    pub payload_delimiter: String,
    /// Records per second cap; -1 means unlimited (Kafka's ThroughputThrottler semantics).
    #[arg(long, allow_negative_numbers = true)]
    pub throughput: f64,
    /// librdkafka producer properties (k=v, several after one flag).
    #[arg(long = "producer-props", value_name = "K=V", num_args = 1..)]
    pub producer_props: Vec<String>,
    /// A properties file of producer settings (k=v lines; # comments).
    #[arg(long = "producer.config")]
    pub producer_config: Option<PathBuf>,
    /// Produce in transactions with this transactional id (Kafka's tool's --transactional-id).
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// Records per transaction with --transactional-id (Kafka's tool bounds a transaction by
    /// time, --transaction-duration-ms; a count makes runs comparable).
    #[arg(long, default_value_t = 1000, requires = "transactional_id")]
    pub transaction_records: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ConsumerPerfArgs {
    #[arg(long)]
    pub topic: String,
    /// Messages to consume before stopping.
    #[arg(long)]
    pub messages: u64,
    /// Stop when no message arrives for this long (Kafka's --timeout, ms).
    #[arg(long, default_value_t = 10_000)]
    pub timeout: u64,
    /// librdkafka consumer properties (k=v, several after one flag).
    #[arg(long = "consumer-props", value_name = "K=V", num_args = 1..)]
    pub consumer_props: Vec<String>,
    /// A properties file of consumer settings (k=v lines; # comments).
    #[arg(long = "consumer.config")]
    pub consumer_config: Option<PathBuf>,
    /// Join this consumer group and subscribe instead of assigning every partition by metadata.
    #[arg(long)]
    pub group: Option<String>,
    /// Print the header line (Kafka prints it unless --hide-header).
    #[arg(long)]
    pub hide_header: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct E2eLatencyArgs {
    #[arg(long)]
    pub topic: String,
    /// Messages per second, spread evenly (open loop: send times do not wait for acks).
    #[arg(long)]
    pub rate: f64,
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Bytes per record, at least the 16-byte timestamp header.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Producer acks: 0, 1, all (-1).
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// After the last send, wait at most this long (ms) for the remaining messages.
    #[arg(long, default_value_t = 10_000)]
    pub drain_timeout: u64,
    #[arg(long = "producer-props", value_name = "K=V", num_args = 1..)]
    pub producer_props: Vec<String>,
    #[arg(long = "consumer-props", value_name = "K=V", num_args = 1..)]
    pub consumer_props: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct SummarizeArgs {
    /// The directory scripts/bench.sh wrote its phase reports to.
    #[arg(long)]
    pub results_dir: PathBuf,
}
