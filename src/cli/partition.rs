//! `sluice partition reassign|list-reassignments|elect-leaders`: Kafka's
//! `kafka-reassign-partitions.sh` and `kafka-leader-election.sh`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, TopicName,
};
use serde_json::json;

use super::client::{check_with, Client};
use super::output::{print_rows, Format};
use super::topic::{row, sb};

#[derive(Args, Debug)]
pub struct PartitionArgs {
    /// `host:port` of a broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: PartitionCommand,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Election {
    Preferred,
    Unclean,
}

#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// Move a partition to a new replica list (or `--cancel` its reassignment).
    Reassign {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The new replicas, preferred leader first: `1,2,3`.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        #[arg(long)]
        cancel: bool,
        /// Wait (printing progress) until the reassignment completes, at most this many seconds.
        #[arg(long)]
        wait_s: Option<u64>,
    },
    /// Reassignments in progress.
    ListReassignments,
    /// Elect leaders: `--partitions topic:0,1` (repeatable), or every partition.
    ElectLeaders {
        #[arg(long = "type", value_enum, default_value_t = Election::Preferred)]
        election: Election,
        #[arg(long = "partitions", value_name = "TOPIC:P,P")]
        partitions: Vec<String>,
    },
}

const CHANGE_TIMEOUT_MS: i32 = 30_000;

pub fn run(args: PartitionArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    let out = args.output;
    match args.command {
        PartitionCommand::Reassign {
            topic,
            partition,
            replicas,
            cancel,
            wait_s,
        } => {
            reassign(
                &mut client,
                out,
                &topic,
                partition,
                (!cancel).then_some(replicas),
            )?;
            match wait_s {
                Some(s) if !cancel => wait(&mut client, &topic, partition, Duration::from_secs(s)),
                _ => Ok(()),
            }
        }
        PartitionCommand::ListReassignments => list(&mut client, out),
        PartitionCommand::ElectLeaders {
            election,
            partitions,
        } => elect(&mut client, out, election, &partitions),
    }
}

fn reassign(
    client: &mut Client,
    out: Format,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
) -> anyhow::Result<()> {
    let target = replicas
        .clone()
        .map(|r| r.into_iter().map(BrokerId).collect());
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(CHANGE_TIMEOUT_MS)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(target)])]);
    let resp = client.send(&req, 0)?;
    check_with(
        resp.error_code,
        "AlterPartitionReassignments",
        resp.error_message.as_deref(),
    )?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .context("AlterPartitionReassignments answered no partition")?;
    check_with(
        p.error_code,
        &format!("reassigning {topic}-{partition}"),
        p.error_message.as_deref(),
    )?;
    let result = if replicas.is_some() {
        "reassignment started"
    } else {
        "reassignment cancelled"
    };
    print_rows(
        out,
        &["topic", "partition", "replicas", "result"],
        &[row(json!({
        "topic": topic, "partition": partition, "replicas": replicas, "result": result}))],
    );
    Ok(())
}

/// Polls ListPartitionReassignments, printing progress to stderr, until the partition has none.
fn wait(client: &mut Client, topic: &str, partition: i32, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let resp = client.send(
            &ListPartitionReassignmentsRequest::default().with_timeout_ms(CHANGE_TIMEOUT_MS),
            0,
        )?;
        check_with(
            resp.error_code,
            "ListPartitionReassignments",
            resp.error_message.as_deref(),
        )?;
        let ongoing = resp
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition);
        let Some(p) = ongoing else {
            eprintln!(
                "{topic}-{partition}: reassignment complete after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        };
        let adding: Vec<i32> = p.adding_replicas.iter().map(|b| b.0).collect();
        eprintln!(
            "{topic}-{partition}: in progress ({:.0} s), adding {adding:?}",
            started.elapsed().as_secs_f64()
        );
        if started.elapsed() > limit {
            bail!("{topic}-{partition}: reassignment still in progress after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn list(client: &mut Client, out: Format) -> anyhow::Result<()> {
    let resp = client.send(
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(CHANGE_TIMEOUT_MS),
        0,
    )?;
    check_with(
        resp.error_code,
        "ListPartitionReassignments",
        resp.error_message.as_deref(),
    )?;
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let rows: Vec<_> = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p)))
        .map(|(name, p)| row(json!({"topic": name, "partition": p.partition_index,
            "replicas": ids(&p.replicas), "adding": ids(&p.adding_replicas), "removing": ids(&p.removing_replicas)})))
        .collect();
    print_rows(
        out,
        &["topic", "partition", "replicas", "adding", "removing"],
        &rows,
    );
    Ok(())
}

fn elect(
    client: &mut Client,
    out: Format,
    election: Election,
    specs: &[String],
) -> anyhow::Result<()> {
    let mut wanted = Vec::new();
    for spec in specs {
        let (topic, parts) = spec
            .rsplit_once(':')
            .with_context(|| format!("expected TOPIC:P,P, got {spec:?}"))?;
        let parts = parts
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<i32>()
                    .with_context(|| format!("partition {p:?} in {spec:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        wanted.push(
            TopicPartitions::default()
                .with_topic(TopicName(sb(topic)))
                .with_partitions(parts),
        );
    }
    let req = ElectLeadersRequest::default()
        .with_election_type(match election {
            Election::Preferred => 0,
            Election::Unclean => 1,
        })
        .with_topic_partitions((!wanted.is_empty()).then_some(wanted))
        .with_timeout_ms(CHANGE_TIMEOUT_MS);
    let resp = client.send(&req, 2)?;
    check_with(resp.error_code, "ElectLeaders", None)?;
    let mut rows = Vec::new();
    for t in &resp.replica_election_results {
        for p in &t.partition_result {
            let result = match p.error_code {
                0 => "elected".to_string(),
                code => format!(
                    "{} {}",
                    crate::metrics::exposition::error_name(code),
                    p.error_message.as_deref().unwrap_or("")
                ),
            };
            rows.push(row(json!({"topic": t.topic.0.to_string(), "partition": p.partition_id, "result": result.trim()})));
        }
    }
    print_rows(out, &["topic", "partition", "result"], &rows);
    Ok(())
}
