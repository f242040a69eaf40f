//! `sluice topic create|list|describe|alter-config|add-partitions|delete`: Kafka's
//! `kafka-topics.sh` (and `kafka-configs.sh --entity-type topics --alter`) over the CLI client.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Map, Value};

use super::client::{check_with, Client};
use super::output::{print_rows, Format};

#[derive(Args, Debug)]
pub struct TopicArgs {
    /// `host:port` of a broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        topic: String,
        /// Partitions (-1: the broker's num.partitions).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replicas per partition (-1: the broker's default.replication.factor).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition count and replication factor.
    List {
        /// Include internal topics (`__consumer_offsets`).
        #[arg(long)]
        internal: bool,
    },
    /// Partitions of topics: leader, leader epoch, replicas, ISR, offline replicas.
    Describe {
        /// Topics (default: every topic).
        topics: Vec<String>,
    },
    /// Set or delete topic configs (IncrementalAlterConfigs).
    AlterConfig {
        topic: String,
        /// `key=value` to set (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A key to return to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Raise a topic's partition count to `--total`.
    AddPartitions {
        topic: String,
        #[arg(long)]
        total: i32,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
}

/// How long the broker may take for a topic change before it answers REQUEST_TIMED_OUT.
const TOPIC_CHANGE_TIMEOUT_MS: i32 = 30_000;

/// Entry point of `sluice topic …`.
pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    let out = args.output;
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => create(
            &mut client,
            out,
            &topic,
            partitions,
            replication_factor,
            &configs,
        ),
        TopicCommand::List { internal } => list(&mut client, out, internal),
        TopicCommand::Describe { topics } => describe(&mut client, out, &topics),
        TopicCommand::AlterConfig { topic, set, delete } => super::configs::alter(
            &mut client,
            out,
            super::configs::TOPIC,
            &topic,
            &set,
            &delete,
        ),
        TopicCommand::AddPartitions { topic, total } => {
            add_partitions(&mut client, out, &topic, total)
        }
        TopicCommand::Delete { topics } => delete(&mut client, out, &topics),
    }
}

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// `key=value` pairs from the command line.
pub fn pairs(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => bail!("expected KEY=VALUE, got {i:?}"),
        })
        .collect()
}

fn create(
    client: &mut Client,
    out: Format,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[String],
) -> anyhow::Result<()> {
    let configs = pairs(configs)?
        .into_iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(sb(&k))
                .with_value(Some(sb(&v)))
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(TOPIC_CHANGE_TIMEOUT_MS)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(configs)]);
    let resp = client.send(&req, 7)?;
    let t = resp
        .topics
        .first()
        .context("CreateTopics answered no topic")?;
    check_with(
        t.error_code,
        &format!("creating topic {topic}"),
        t.error_message.as_deref(),
    )?;
    let row = row(json!({"topic": topic, "partitions": t.num_partitions,
        "replication_factor": t.replication_factor, "result": "created"}));
    print_rows(
        out,
        &["topic", "partitions", "replication_factor", "result"],
        &[row],
    );
    Ok(())
}

/// Metadata v12 for `topics` (all when empty), without creating any.
pub fn metadata(client: &mut Client, topics: &[String]) -> anyhow::Result<MetadataResponse> {
    let wanted = (!topics.is_empty()).then(|| {
        topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(sb(t)))))
            .collect()
    });
    let req = MetadataRequest::default()
        .with_topics(wanted)
        .with_allow_auto_topic_creation(false);
    client.send(&req, 12)
}

fn list(client: &mut Client, out: Format, internal: bool) -> anyhow::Result<()> {
    let resp = metadata(client, &[])?;
    let mut rows: Vec<Map<String, Value>> = resp
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .map(|t| {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
            row(json!({"topic": name, "partitions": t.partitions.len(), "replication_factor": rf,
                "internal": t.is_internal, "topic_id": crate::model::kafka_uuid_string(&t.topic_id)}))
        })
        .collect();
    rows.sort_by(|a, b| a["topic"].as_str().cmp(&b["topic"].as_str()));
    print_rows(
        out,
        &[
            "topic",
            "partitions",
            "replication_factor",
            "internal",
            "topic_id",
        ],
        &rows,
    );
    Ok(())
}

fn describe(client: &mut Client, out: Format, topics: &[String]) -> anyhow::Result<()> {
    let resp = metadata(client, topics)?;
    let mut rows = Vec::new();
    for t in &resp.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        check_with(t.error_code, &format!("describing topic {name}"), None)?;
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        for p in parts {
            let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                v.iter().map(|b| b.0).collect::<Vec<_>>()
            };
            rows.push(row(json!({"topic": name, "partition": p.partition_index,
                "leader": p.leader_id.0, "leader_epoch": p.leader_epoch,
                "replicas": ids(&p.replica_nodes), "isr": ids(&p.isr_nodes),
                "offline": ids(&p.offline_replicas),
                "error": if p.error_code == 0 { Value::Null } else { json!(crate::metrics::exposition::error_name(p.error_code)) }})));
        }
    }
    let columns = [
        "topic",
        "partition",
        "leader",
        "leader_epoch",
        "replicas",
        "isr",
        "offline",
        "error",
    ];
    print_rows(out, &columns, &rows);
    Ok(())
}

fn add_partitions(client: &mut Client, out: Format, topic: &str, total: i32) -> anyhow::Result<()> {
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(TOPIC_CHANGE_TIMEOUT_MS)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_count(total)
            .with_assignments(None)]);
    let resp = client.send(&req, 3)?;
    let r = resp
        .results
        .first()
        .context("CreatePartitions answered no topic")?;
    check_with(
        r.error_code,
        &format!("adding partitions to {topic}"),
        r.error_message.as_deref(),
    )?;
    print_rows(
        out,
        &["topic", "partitions", "result"],
        &[row(
            json!({"topic": topic, "partitions": total, "result": "updated"}),
        )],
    );
    Ok(())
}

fn delete(client: &mut Client, out: Format, topics: &[String]) -> anyhow::Result<()> {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(TOPIC_CHANGE_TIMEOUT_MS)
        .with_topics(
            topics
                .iter()
                .map(|t| DeleteTopicState::default().with_name(Some(TopicName(sb(t)))))
                .collect(),
        );
    let resp = client.send(&req, 6)?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for r in &resp.responses {
        let name = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        match check_with(
            r.error_code,
            &format!("deleting topic {name}"),
            r.error_message.as_deref(),
        ) {
            Ok(()) => rows.push(row(json!({"topic": name, "result": "deleted"}))),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    print_rows(out, &["topic", "result"], &rows);
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// A JSON object literal as a row.
pub fn row(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
