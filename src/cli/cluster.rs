//! `sluice cluster info|brokers|quorum`: DescribeCluster and DescribeQuorum, as Kafka's
//! `kafka-cluster.sh cluster-id` / `kafka-broker-api-versions.sh` / `kafka-metadata-quorum.sh`
//! show them.

use anyhow::Context;
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, TopicName};
use serde_json::json;

use super::client::{check_with, Client};
use super::output::{print_object, print_rows, Format};
use super::topic::{row, sb};

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// `host:port` of a broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller, broker and topic counts.
    Info,
    /// Registered brokers: id, host, port, rack.
    Brokers,
    /// The metadata quorum: leader, term, high watermark, each voter's lag.
    Quorum,
}

/// Entry point of `sluice cluster …`.
pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    match args.command {
        ClusterCommand::Info => info(&mut client, args.output),
        ClusterCommand::Brokers => brokers(&mut client, args.output),
        ClusterCommand::Quorum => quorum(&mut client, args.output),
    }
}

fn info(client: &mut Client, out: Format) -> anyhow::Result<()> {
    let resp = client.send(&DescribeClusterRequest::default(), 0)?;
    check_with(
        resp.error_code,
        "DescribeCluster",
        resp.error_message.as_deref(),
    )?;
    let topics = super::topic::metadata(client, &[])?.topics.len();
    let info = row(json!({"cluster_id": resp.cluster_id.to_string(),
        "controller_id": resp.controller_id.0, "brokers": resp.brokers.len(), "topics": topics}));
    print_object(out, &info);
    Ok(())
}

fn brokers(client: &mut Client, out: Format) -> anyhow::Result<()> {
    let resp = client.send(&DescribeClusterRequest::default(), 0)?;
    check_with(
        resp.error_code,
        "DescribeCluster",
        resp.error_message.as_deref(),
    )?;
    let controller = resp.controller_id.0;
    let mut rows: Vec<_> = resp
        .brokers
        .iter()
        .map(|b| {
            row(json!({"id": b.broker_id.0, "host": b.host.to_string(), "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.to_string()), "controller": b.broker_id.0 == controller}))
        })
        .collect();
    rows.sort_by_key(|r| r["id"].as_i64());
    print_rows(out, &["id", "host", "port", "rack", "controller"], &rows);
    Ok(())
}

fn quorum(client: &mut Client, out: Format) -> anyhow::Result<()> {
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(sb("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let resp = client.send(&req, 1)?;
    check_with(
        resp.error_code,
        "DescribeQuorum",
        resp.error_message.as_deref(),
    )?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("DescribeQuorum answered no partition")?;
    check_with(p.error_code, "DescribeQuorum", p.error_message.as_deref())?;
    let mut rows = Vec::new();
    for (role, replicas) in [("voter", &p.current_voters), ("observer", &p.observers)] {
        for r in replicas {
            let role = if r.replica_id.0 == p.leader_id.0 {
                "leader"
            } else {
                role
            };
            rows.push(row(json!({"node": r.replica_id.0, "role": role,
                "log_end_offset": r.log_end_offset,
                "lag": (p.high_watermark - r.log_end_offset).max(0),
                "last_caught_up_ms": r.last_caught_up_timestamp})));
        }
    }
    if out == Format::Table {
        println!(
            "leader: {}  term: {}  high watermark: {}",
            p.leader_id.0, p.leader_epoch, p.high_watermark
        );
    }
    print_rows(
        out,
        &["node", "role", "log_end_offset", "lag", "last_caught_up_ms"],
        &rows,
    );
    Ok(())
}
