//! `sluice group list|describe|delete|reset-offsets`: Kafka's `kafka-consumer-groups`,
//! over a small synchronous Kafka client (std `TcpStream` + kafka-protocol codecs).
//!
//! The broker is one node, so every request goes to the bootstrap server (which is the
//! coordinator of every group). Offsets are reset only for inactive groups, and only
//! with `--execute` (a dry run prints the plan), as Kafka's tool does.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use bytes::Buf;
use clap::{Args, Subcommand};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, DeleteGroupsRequest,
    DescribeGroupsRequest, GroupId, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::client::{check, Client};

#[derive(Args, Debug)]
pub struct GroupArgs {
    /// `host:port` of the broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List groups (optionally only those in the given states / of the given types).
    List {
        /// Empty, Stable, PreparingRebalance, CompletingRebalance, Assigning, Reconciling…
        #[arg(long)]
        state: Vec<String>,
        /// classic or consumer
        #[arg(long = "type")]
        group_type: Vec<String>,
    },
    /// Show members, assignments, committed offsets and lag.
    Describe { group: String },
    /// Delete empty groups and their offsets.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Reset committed offsets of an inactive group (dry run unless --execute).
    ResetOffsets {
        group: String,
        /// `topic` or `topic:0,1,2`.
        #[arg(long, required = true)]
        topic: Vec<String>,
        #[arg(long, group = "target")]
        to_earliest: bool,
        #[arg(long, group = "target")]
        to_latest: bool,
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Move each committed offset by this much (negative = back).
        #[arg(long, group = "target", allow_negative_numbers = true)]
        shift_by: Option<i64>,
        #[arg(long)]
        execute: bool,
    },
}

/// Entry point of `sluice group …`.
pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    match args.command {
        GroupCommand::List { state, group_type } => list(&mut client, state, group_type),
        GroupCommand::Describe { group } => describe(&mut client, &group),
        GroupCommand::Delete { groups } => delete(&mut client, groups),
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            shift_by,
            execute,
        } => {
            let target = match (to_earliest, to_latest, to_offset, shift_by) {
                (true, _, _, _) => Target::Earliest,
                (_, true, _, _) => Target::Latest,
                (_, _, Some(o), _) => Target::Offset(o),
                (_, _, _, Some(s)) => Target::Shift(s),
                _ => bail!("choose one of --to-earliest, --to-latest, --to-offset, --shift-by"),
            };
            reset_offsets(&mut client, &group, &topic, target, execute)
        }
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn list(client: &mut Client, states: Vec<String>, types: Vec<String>) -> anyhow::Result<()> {
    let req = ListGroupsRequest::default()
        .with_states_filter(states.iter().map(|s| sb(s)).collect())
        .with_types_filter(types.iter().map(|s| sb(s)).collect());
    let resp = client.send(&req, 5)?;
    check(resp.error_code, "ListGroups")?;
    println!(
        "{:<40} {:<20} {:<10} PROTOCOL-TYPE",
        "GROUP", "STATE", "TYPE"
    );
    for g in resp.groups {
        println!(
            "{:<40} {:<20} {:<10} {}",
            g.group_id.0, g.group_state, g.group_type, g.protocol_type
        );
    }
    Ok(())
}

fn delete(client: &mut Client, groups: Vec<String>) -> anyhow::Result<()> {
    let req = DeleteGroupsRequest::default()
        .with_groups_names(groups.iter().map(|g| GroupId(sb(g))).collect());
    let resp = client.send(&req, 2)?;
    let mut failed = false;
    for r in resp.results {
        match check(r.error_code, "DeleteGroups") {
            Ok(()) => println!("Deleted group {}", r.group_id.0),
            Err(e) => {
                failed = true;
                eprintln!("Group {}: {e}", r.group_id.0);
            }
        }
    }
    if failed {
        bail!("some groups were not deleted");
    }
    Ok(())
}

/// Per partition: who owns it (member, client id, host).
type Owners = BTreeMap<(String, i32), (String, String, String)>;

fn describe(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]);
    let resp = client.send(&req, 5)?;
    let d = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("empty DescribeGroups answer"))?;
    check(d.error_code, "DescribeGroups")?;
    let mut owners: Owners = BTreeMap::new();
    let mut state = d.group_state.to_string();
    if d.protocol_type.as_str() == "consumer"
        && d.members.is_empty()
        && state != "Empty"
        && state != "Dead"
    {
        state = describe_kip848(client, group, &mut owners)?;
    }
    for m in &d.members {
        let mut buf = m.member_assignment.clone();
        if buf.len() < 2 {
            continue;
        }
        let version = buf.get_i16();
        let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) else {
            continue;
        };
        for t in a.assigned_partitions {
            for p in t.partitions {
                owners.insert(
                    (t.topic.0.to_string(), p),
                    (
                        m.member_id.to_string(),
                        m.client_id.to_string(),
                        m.client_host.to_string(),
                    ),
                );
            }
        }
    }
    if state == "Dead" {
        bail!("Consumer group '{group}' does not exist.");
    }
    println!(
        "Consumer group '{group}' is {state} ({} members)\n",
        d.members.len()
    );
    let committed = fetch_committed(client, group)?;
    let mut parts: Vec<(String, i32)> = committed.keys().cloned().collect();
    for k in owners.keys() {
        if !committed.contains_key(k) {
            parts.push(k.clone());
        }
    }
    parts.sort();
    let ends = list_offsets(client, &parts, -1)?;
    println!(
        "{:<30} {:<30} {:>9} {:>14} {:>14} {:>8} {:<45} {:<16} CLIENT-ID",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST"
    );
    for tp in parts {
        let current = committed.get(&tp).copied();
        let end = ends.get(&tp).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) if c >= 0 => (e - c).to_string(),
            _ => "-".into(),
        };
        let (member, client_id, host) =
            owners
                .get(&tp)
                .cloned()
                .unwrap_or(("-".into(), "-".into(), "-".into()));
        let show = |v: Option<i64>| {
            v.filter(|v| *v >= 0)
                .map_or("-".to_string(), |v| v.to_string())
        };
        println!(
            "{:<30} {:<30} {:>9} {:>14} {:>14} {:>8} {:<45} {:<16} {}",
            group,
            tp.0,
            tp.1,
            show(current),
            show(end),
            lag,
            member,
            host,
            client_id
        );
    }
    Ok(())
}

/// KIP-848 groups: members and assignments come from ConsumerGroupDescribe.
fn describe_kip848(
    client: &mut Client,
    group: &str,
    owners: &mut Owners,
) -> anyhow::Result<String> {
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(sb(group))]);
    let resp = client.send(&req, 0)?;
    let d = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("empty ConsumerGroupDescribe answer"))?;
    check(d.error_code, "ConsumerGroupDescribe")?;
    for m in d.members {
        for t in m.assignment.topic_partitions {
            for p in t.partitions {
                owners.insert(
                    (t.topic_name.0.to_string(), p),
                    (
                        m.member_id.to_string(),
                        m.client_id.to_string(),
                        m.client_host.to_string(),
                    ),
                );
            }
        }
    }
    Ok(d.group_state.to_string())
}

pub(crate) fn fetch_committed(
    client: &mut Client,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_topics(None);
    let resp = client.send(&req, 7)?;
    check(resp.error_code, "OffsetFetch")?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            out.insert(
                (t.name.0.to_string(), p.partition_index),
                p.committed_offset,
            );
        }
    }
    Ok(out)
}

/// ListOffsets at `timestamp` (-1 latest, -2 earliest) for each partition.
pub(crate) fn list_offsets(
    client: &mut Client,
    parts: &[(String, i32)],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(sb(t)))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let resp = client.send(&req, 5)?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == 0 {
                out.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Shift(i64),
}

fn reset_offsets(
    client: &mut Client,
    group: &str,
    topics: &[String],
    target: Target,
    execute: bool,
) -> anyhow::Result<()> {
    let parts = resolve_partitions(client, topics)?;
    let earliest = list_offsets(client, &parts, -2)?;
    let latest = list_offsets(client, &parts, -1)?;
    let committed = fetch_committed(client, group)?;
    let mut plan = Vec::new();
    for tp in &parts {
        let (lo, hi) = (
            earliest.get(tp).copied().unwrap_or(0),
            latest.get(tp).copied().unwrap_or(0),
        );
        let wanted = match target {
            Target::Earliest => lo,
            Target::Latest => hi,
            Target::Offset(o) => o,
            Target::Shift(s) => committed.get(tp).copied().filter(|c| *c >= 0).unwrap_or(lo) + s,
        };
        plan.push((tp.clone(), wanted.clamp(lo, hi)));
    }
    println!(
        "{:<30} {:<30} {:>9} NEW-OFFSET",
        "GROUP", "TOPIC", "PARTITION"
    );
    for ((t, p), o) in &plan {
        println!("{group:<30} {t:<30} {p:>9} {o}");
    }
    if !execute {
        println!("\n(dry run: add --execute to commit these offsets)");
        return Ok(());
    }
    let mut by_topic: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in plan {
        by_topic.entry(t).or_default().push((p, o));
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::new())
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(sb(t)))
                        .with_partitions(
                            ps.iter()
                                .map(|(p, o)| {
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(*o)
                                        .with_committed_leader_epoch(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let resp = client.send(&req, 8)?;
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == kafka_protocol::error::ResponseError::UnknownMemberId.code() {
                bail!("Assignments can only be reset if the group '{group}' is inactive.");
            }
            check(
                p.error_code,
                &format!("OffsetCommit {}-{}", t.name.0, p.partition_index),
            )?;
        }
    }
    println!("\nOffsets committed.");
    Ok(())
}

/// `topic` → every partition (from Metadata); `topic:0,2` → those.
fn resolve_partitions(client: &mut Client, specs: &[String]) -> anyhow::Result<Vec<(String, i32)>> {
    let mut out = Vec::new();
    for spec in specs {
        match spec.split_once(':') {
            Some((t, ps)) => {
                for p in ps.split(',') {
                    out.push((
                        t.to_owned(),
                        p.trim()
                            .parse()
                            .with_context(|| format!("partition in {spec}"))?,
                    ));
                }
            }
            None => {
                let req = MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(TopicName(sb(spec)))),
                ]));
                let resp = client.send(&req, 9)?;
                let t = resp
                    .topics
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("no metadata for {spec}"))?;
                check(t.error_code, &format!("Metadata {spec}"))?;
                for p in t.partitions {
                    out.push((spec.clone(), p.partition_index));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
