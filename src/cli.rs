//! Command-line interface (clap). No logic beyond turning flags into config.

use std::path::PathBuf;

pub mod client;
pub mod cluster;
pub mod configs;
pub mod data;
pub mod group;
pub mod log_dump;
pub mod output;
pub mod partition;
pub mod topic;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible streaming broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Inspect and manage consumer groups (like kafka-consumer-groups).
    Group(group::GroupArgs),
    /// Create, list, describe, alter and delete topics (like kafka-topics).
    Topic(topic::TopicArgs),
    /// The cluster: id and controller, brokers, the metadata quorum (like kafka-metadata-quorum).
    Cluster(cluster::ClusterArgs),
    /// Describe and alter topic and broker configs (like kafka-configs).
    Config(configs::ConfigArgs),
    /// Reassign partitions and elect leaders (like kafka-reassign-partitions, kafka-leader-election).
    Partition(partition::PartitionArgs),
    /// Produce records from stdin or a file, one per line (like kafka-console-producer).
    Produce(data::ProduceArgs),
    /// Print records of a topic (like kafka-console-consumer).
    Consume(data::ConsumeArgs),
    /// Offline tools for a data directory's files (like kafka-dump-log).
    Log(log_dump::LogArgs),
    /// Format a data directory for a cluster (like `kafka-storage format`).
    Format(FormatArgs),
    /// Print a new random cluster id (like `kafka-storage random-uuid`).
    RandomUuid,
}

#[derive(Args, Debug, Clone)]
pub struct FormatArgs {
    /// The broker's server.properties (its `log.dirs` and `node.id` are formatted).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// The cluster id (`sluice random-uuid` makes one); default: `cluster.id` of the config.
    /// An id may begin with `-` (Kafka's ids are base64url), so the value is taken as it is.
    #[arg(long, short = 't', allow_hyphen_values = true)]
    pub cluster_id: Option<String>,
    /// Data directory, when not taken from the config.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Node id, when not taken from the config.
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Succeed when the directory is already formatted with the same ids.
    #[arg(long, short = 'g')]
    pub ignore_formatted: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Data directory (Kafka's `log.dirs`).
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to accept Kafka clients on (`listeners`).
    #[arg(long, env = "SLUICE_LISTEN")]
    pub listen: Option<String>,
    /// HOST:PORT that clients are told to connect to (`advertised.listeners`).
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Shards (one per core); default: all online CPUs.
    #[arg(long, env = "SLUICE_CORES")]
    pub cores: Option<usize>,
    /// This broker's node id (`node.id`).
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<i32>,
    /// A server.properties-style file with Kafka broker property names.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Set any broker property, e.g. `--override num.partitions=8` (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ServeArgs {
    /// Flags as property overrides (flags win over the file and the environment).
    pub fn property_overrides(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        if let Some(d) = &self.data_dir {
            out.push(("log.dirs".to_string(), d.display().to_string()));
        }
        if let Some(l) = &self.listen {
            out.push(("listeners".to_string(), format!("PLAINTEXT://{l}")));
        }
        if let Some(a) = &self.advertised_listener {
            out.push((
                "advertised.listeners".to_string(),
                format!("PLAINTEXT://{a}"),
            ));
        }
        if let Some(n) = self.node_id {
            out.push(("node.id".to_string(), n.to_string()));
        }
        for o in &self.overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| format!("--override expects KEY=VALUE, got {o:?}"))?;
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(out)
    }
}
