//! `cluster-bench`: the metadata quorum's speed, as issue 10 asks, on a 3-node cluster of real
//! `sluice serve` processes on 127.0.0.1 (one core each, Kafka's default KRaft timeouts).
//!
//! 1. Failover: rounds of kill -9 of the Raft leader (DescribeQuorum v2), then the time until a
//!    CreateTopics v7 sent to a survivor is answered with error 0, retried on
//!    REQUEST_TIMED_OUT / NOT_CONTROLLER / connection errors. The killed node is restarted and
//!    must be back in every node's Metadata (and caught up) before the next round.
//! 2. Commits per second: sequential CreateTopics (1 partition, RF 1, unique names) through a
//!    follower and through the leader, each for a bounded time.
//! 3. A wide topic (1,000 partitions, RF 3): time from sending CreateTopics to the answer, to
//!    every node's Metadata showing it, and to every node having opened each partition it holds a
//!    replica of (`<data>/<topic>-<p>/` holds a `.log` segment: the storage engine creates the
//!    directory, then `partition.metadata`, then the first segment when it opens the log).
//!
//! Prints a plain-text report and writes it, with a JSON twin, under the scratch dir. Every wait
//! is bounded; every process it starts is killed when it exits (also on error or panic: a drop
//! guard, and PR_SET_PDEATHSIG should the harness itself be killed). Loopback only.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde::Serialize;

/// Nodes in the cluster (a 3-voter quorum: one may fail).
const NODES: usize = 3;
/// Bound on a node's start: spawn to its `LISTENING` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a node's exit after SIGTERM at the end (then SIGKILL).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on connecting to a node and on any one answer from it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// `timeout_ms` of every CreateTopics.
const CREATE_TIMEOUT_MS: i32 = 30_000;
/// Largest answer accepted.
const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// Bound on the quorum forming and every node agreeing on brokers and leader.
const AGREEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one failover: kill -9 to a committed change through a survivor.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the killed broker leaving the survivors' Metadata (Kafka's session is 9 s).
const FENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a restarted node being back in every node's Metadata and caught up.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the wide topic being open on every node.
const WIDE_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between polls of cluster state.
const POLL: Duration = Duration::from_millis(20);
/// Pause between retries of a refused CreateTopics during a failover.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Kafka error codes a change may be refused with while the quorum elects (retriable).
const REQUEST_TIMED_OUT: i16 = 7;
const NOT_CONTROLLER: i16 = 41;
/// A retried CreateTopics whose earlier attempt was committed after all.
const TOPIC_ALREADY_EXISTS: i16 = 36;

#[derive(Parser)]
#[command(about = "Failover time, commit rate and wide-topic creation of a 3-node Sluice cluster")]
struct Cli {
    /// A release `sluice` binary.
    #[arg(long)]
    sluice: PathBuf,
    /// Scratch dir: node configs, data, logs and the report go here (must not hold a run).
    #[arg(long)]
    scratch: PathBuf,
    /// Failover rounds.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Partition failover rounds (kill -9 of an RF 3 partition's leader).
    #[arg(long, default_value_t = 10)]
    partition_rounds: usize,
    /// Seconds of sequential CreateTopics through each of a follower and the leader.
    #[arg(long, default_value_t = 10)]
    commit_secs: u64,
    /// Partitions of the wide topic (RF 3).
    #[arg(long, default_value_t = 1000)]
    partitions: i32,
}

// ---- one node ---------------------------------------------------------------------------------

struct Node {
    id: i32,
    kafka_port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    fn write_config(&self, voters: &str) -> Result<()> {
        std::fs::create_dir_all(self.data())?;
        let text = format!(
            "# Written by cluster-bench: node {id} of a {NODES}-node cluster, Kafka's default timeouts.\n\
             process.roles=broker,controller\nnode.id={id}\ncontroller.quorum.voters={voters}\n\
             listeners=PLAINTEXT://127.0.0.1:{kp},CONTROLLER://127.0.0.1:{cp}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{kp}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={data}\nadmin.listener=127.0.0.1:0\n",
            id = self.id,
            kp = self.kafka_port,
            cp = self.controller_port,
            data = self.data().display(),
        );
        std::fs::write(self.dir.join("server.properties"), text)?;
        Ok(())
    }

    /// Spawns `sluice serve` and waits (bounded) for its `LISTENING` line.
    fn start(&mut self, sluice: &Path) -> Result<()> {
        if self.child.is_some() {
            bail!("node {} is already running", self.id);
        }
        self.starts += 1;
        let stdout_path = self.dir.join(format!("stdout.{}", self.starts));
        let stdout = std::fs::File::create(&stdout_path)?;
        let mut stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))?;
        writeln!(stderr, "==== cluster-bench: start #{} ====", self.starts)?;
        let mut command = Command::new(sluice);
        command
            .arg("serve")
            .arg("--config")
            .arg(self.dir.join("server.properties"))
            .args(["--cores", "1"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // Should this harness die without unwinding, its nodes die with it.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", sluice.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if out.lines().any(|l| l.starts_with("LISTENING ")) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "node {} exited with {status} during start-up\n{}",
                        self.id,
                        self.tail()
                    );
                }
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!(
                    "node {} printed no LISTENING line within {START_TIMEOUT:?}\n{}",
                    self.id,
                    self.tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL and reap.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on our own child, not yet reaped, so its pid is still ours.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while let Ok(None) = child.try_wait() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        let _ = child.wait();
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("---- node {} stderr tail ----\n{}", self.id, &text[start..])
    }
}

/// The cluster; dropping it kills every node still running (error and panic paths included).
struct Cluster {
    sluice: PathBuf,
    nodes: Vec<Node>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
    }
}

impl Cluster {
    fn start(sluice: &Path, scratch: &Path) -> Result<Cluster> {
        // Ports are taken by binding ephemeral ones together and releasing them just before the
        // nodes start (voters must know each other's addresses in advance).
        let listeners: Vec<TcpListener> = (0..2 * NODES)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<_>>()?;
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<_>>()?;
        drop(listeners);
        let mut cluster = Cluster {
            sluice: sluice.to_path_buf(),
            nodes: (0..NODES)
                .map(|i| Node {
                    id: i as i32 + 1,
                    kafka_port: ports[2 * i],
                    controller_port: ports[2 * i + 1],
                    dir: scratch.join(format!("node-{}", i + 1)),
                    child: None,
                    starts: 0,
                })
                .collect(),
        };
        let voters = cluster
            .nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        for n in &cluster.nodes {
            n.write_config(&voters)?;
        }
        for i in 0..NODES {
            let sluice = cluster.sluice.clone();
            cluster.nodes[i].start(&sluice)?;
        }
        Ok(cluster)
    }

    fn node(&self, id: i32) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    fn node_mut(&mut self, id: i32) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn tails(&self) -> String {
        self.nodes
            .iter()
            .map(Node::tail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `condition` every [`POLL`] until it holds, or fails after `bound` with every
    /// node's log tail.
    fn wait(&self, what: &str, bound: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + bound;
        while !condition() {
            if Instant::now() > deadline {
                bail!(
                    "timed out after {bound:?} waiting for {what}\n{}",
                    self.tails()
                );
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Waits until every node in `ids` lists exactly `ids` as brokers, shows one cluster id and
    /// names the same Raft leader (one of them) in DescribeQuorum; returns that leader.
    fn wait_agreement(&self, ids: &[i32], bound: Duration) -> Result<i32> {
        let want: BTreeSet<i32> = ids.iter().copied().collect();
        let mut leader = -1;
        self.wait(&format!("nodes {ids:?} to agree"), bound, || {
            let mut leaders = BTreeSet::new();
            let mut cluster_ids = BTreeSet::new();
            for id in ids {
                let Ok(node) = self.node(*id) else {
                    return false;
                };
                let Ok(view) = metadata(&node.addr()) else {
                    return false;
                };
                if view.brokers != want || view.cluster_id.is_none() {
                    return false;
                }
                cluster_ids.insert(view.cluster_id);
                match describe_quorum(&node.addr()) {
                    Ok((0, l)) if want.contains(&l) => leaders.insert(l),
                    _ => return false,
                };
            }
            if leaders.len() == 1 && cluster_ids.len() == 1 {
                leader = leaders.first().copied().unwrap_or(-1);
                true
            } else {
                false
            }
        })?;
        Ok(leader)
    }
}

// ---- Kafka requests to one chosen node --------------------------------------------------------

fn call<Req: Encodable, Resp: Decodable>(
    addr: &str,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Result<Resp> {
    let sock: SocketAddr = addr.parse().with_context(|| addr.to_string())?;
    let mut stream = TcpStream::connect_timeout(&sock, CALL_TIMEOUT)?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    stream.set_write_timeout(Some(CALL_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("cluster-bench")))
        .encode(&mut buf, key.request_header_version(version))?;
    req.encode(&mut buf, version)?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&buf)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > RESPONSE_BYTES_MAX {
        bail!("response size {size}");
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body)?;
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))?;
    if header.correlation_id != 1 {
        bail!("wrong correlation id");
    }
    let resp = Resp::decode(&mut body, version)?;
    if body.has_remaining() {
        bail!("bytes left after the response");
    }
    Ok(resp)
}

/// One partition in Metadata: (error code, leader, replicas).
type PartitionView = (i16, i32, Vec<i32>);

/// What one node's Metadata v12 says.
struct View {
    cluster_id: Option<String>,
    brokers: BTreeSet<i32>,
    /// Topic → partition index → (error code, leader, replicas).
    topics: BTreeMap<String, BTreeMap<i32, PartitionView>>,
}

fn metadata(addr: &str) -> Result<View> {
    let resp: MetadataResponse = call(
        addr,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )?;
    Ok(View {
        cluster_id: resp.cluster_id.map(|c| c.to_string()),
        brokers: resp.brokers.iter().map(|b| b.node_id.0).collect(),
        topics: resp
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            (
                                p.error_code,
                                p.leader_id.0,
                                p.replica_nodes.iter().map(|b| b.0).collect(),
                            ),
                        )
                    })
                    .collect();
                Some((name, parts))
            })
            .collect(),
    })
}

/// DescribeQuorum v2 of `__cluster_metadata-0`: (error code, leader id).
fn describe_quorum(addr: &str) -> Result<(i16, i32)> {
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let resp: DescribeQuorumResponse = call(addr, ApiKey::DescribeQuorum, 2, &req)?;
    if resp.error_code != 0 {
        return Ok((resp.error_code, -1));
    }
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("no partition in DescribeQuorum")?;
    Ok((p.error_code, p.leader_id.0))
}

/// CreateTopics v7 of one topic: its error code and message.
fn create_topic(addr: &str, name: &str, partitions: i32, rf: i16) -> Result<(i16, Option<String>)> {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(CREATE_TIMEOUT_MS)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)]);
    let resp: CreateTopicsResponse = call(addr, ApiKey::CreateTopics, 7, &req)?;
    let t = resp
        .topics
        .first()
        .context("CreateTopics answered no topic")?;
    Ok((
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    ))
}

// ---- measurements -----------------------------------------------------------------------------

#[derive(Serialize)]
struct FailoverRound {
    round: usize,
    killed_leader: i32,
    via: i32,
    /// kill -9 to the CreateTopics answered with error 0.
    failover_ms: f64,
    /// CreateTopics sent before the one that succeeded, by outcome.
    refused_timed_out: u32,
    refused_not_controller: u32,
    connection_errors: u32,
    /// The answer that ended the round was TOPIC_ALREADY_EXISTS (an earlier attempt committed).
    already_existed: bool,
    new_leader: i32,
    /// kill -9 to the killed broker gone from both survivors' Metadata.
    fenced_ms: f64,
    /// Restart to the node back in every node's Metadata, caught up, one leader agreed.
    rejoin_ms: f64,
}

#[derive(Serialize)]
struct CommitRate {
    via: i32,
    role: &'static str,
    window_s: f64,
    commits: usize,
    errors: usize,
    commits_per_s: f64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
}

#[derive(Serialize)]
struct Wide {
    partitions: i32,
    replication_factor: i16,
    via: i32,
    /// Sending CreateTopics to its answer (error 0).
    answered_ms: f64,
    /// Sending to the topic in the Metadata of the node it was sent to.
    via_metadata_ms: f64,
    /// Sending to every node's Metadata listing every partition with a leader.
    metadata_everywhere_ms: f64,
    /// Sending to every node holding a `.log` segment in each partition dir it is a replica of.
    opened_everywhere_ms: f64,
    /// Per node: partition dirs expected, and when the last one was opened.
    per_node: Vec<WideNode>,
}

#[derive(Serialize)]
struct WideNode {
    node: i32,
    partitions: usize,
    opened_ms: f64,
}

#[derive(Serialize)]
struct Summary {
    min_ms: f64,
    median_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct Report {
    sluice: String,
    nodes: usize,
    cores_per_node: u32,
    machine: Machine,
    load_before: String,
    load_after: String,
    formed_ms: f64,
    failover: Vec<FailoverRound>,
    failover_summary: Option<Summary>,
    commit_rates: Vec<CommitRate>,
    wide: Option<Wide>,
    partition_failover: Vec<PartitionFailover>,
    partition_failover_summary: Option<Summary>,
}

/// One round of kill -9 of a replicated partition's leader.
#[derive(Serialize)]
struct PartitionFailover {
    round: usize,
    killed_leader: i32,
    new_leader: i32,
    /// kill -9 to the first acks=all Produce answered with error 0 by the new leader.
    acked_ms: f64,
    /// Produce attempts answered with an error (or a connection error) before that one.
    refused: u32,
    /// Records acknowledged before the kill that the new leader still holds (all of them).
    kept: i64,
    /// The new leader's log end offset right after the failover (before the new record).
    new_log_end: i64,
}

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    cpu_model: String,
    kernel: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        kernel,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn leader_of(c: &Cluster, ids: &[i32]) -> Result<i32> {
    for id in ids {
        if let Ok((0, l)) = describe_quorum(&c.node(*id)?.addr()) {
            if l >= 0 {
                return Ok(l);
            }
        }
    }
    bail!("no node named a Raft leader\n{}", c.tails())
}

fn failover_round(c: &mut Cluster, round: usize) -> Result<FailoverRound> {
    let all = c.ids();
    let leader = leader_of(c, &all)?;
    let survivors: Vec<i32> = all.iter().copied().filter(|id| *id != leader).collect();
    let via = survivors[round % survivors.len()];
    let via_addr = c.node(via)?.addr();
    let name = format!("failover-{round}");
    let (mut timed_out, mut not_controller, mut conn) = (0, 0, 0);
    let mut already_existed = false;
    let killed_at = Instant::now();
    c.node_mut(leader)?.kill9();
    let failover = loop {
        match create_topic(&via_addr, &name, 1, 1) {
            Ok((0, _)) => break killed_at.elapsed(),
            // An earlier attempt answered "timed out" (or lost) was committed after all: the
            // change is in, and this answer is an upper bound on when.
            Ok((TOPIC_ALREADY_EXISTS, _)) if timed_out + conn > 0 => {
                already_existed = true;
                break killed_at.elapsed();
            }
            Ok((REQUEST_TIMED_OUT, _)) => timed_out += 1,
            Ok((NOT_CONTROLLER, _)) => not_controller += 1,
            Ok((code, msg)) => bail!("CreateTopics {name} via node {via}: error {code} {msg:?}"),
            Err(_) => conn += 1,
        }
        if killed_at.elapsed() > FAILOVER_TIMEOUT {
            bail!(
                "no commit within {FAILOVER_TIMEOUT:?} of killing leader {leader}\n{}",
                c.tails()
            );
        }
        std::thread::sleep(RETRY_PAUSE);
    };
    let new_leader = leader_of(c, &survivors).unwrap_or(-1);
    // The killed broker leaves Metadata once its session expires; then it is restarted, so that
    // every round starts from a cluster where it registered afresh.
    c.wait(
        &format!("node {leader} to be fenced"),
        FENCE_TIMEOUT,
        || {
            survivors.iter().all(|id| {
                c.node(*id)
                    .ok()
                    .and_then(|n| metadata(&n.addr()).ok())
                    .is_some_and(|v| !v.brokers.contains(&leader))
            })
        },
    )?;
    let fenced = killed_at.elapsed();
    let restarted_at = Instant::now();
    let sluice = c.sluice.clone();
    c.node_mut(leader)?.start(&sluice)?;
    c.wait_agreement(&all, REJOIN_TIMEOUT)?;
    let back = c.node(leader)?.addr();
    c.wait(
        &format!("node {leader} to show {name}"),
        REJOIN_TIMEOUT,
        || metadata(&back).is_ok_and(|v| v.topics.contains_key(&name)),
    )?;
    Ok(FailoverRound {
        round,
        killed_leader: leader,
        via,
        failover_ms: ms(failover),
        refused_timed_out: timed_out,
        refused_not_controller: not_controller,
        connection_errors: conn,
        already_existed,
        new_leader,
        fenced_ms: ms(fenced),
        rejoin_ms: ms(restarted_at.elapsed()),
    })
}

fn commit_rate(c: &Cluster, via: i32, role: &'static str, window: Duration) -> Result<CommitRate> {
    let addr = c.node(via)?.addr();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < window {
        let t = Instant::now();
        match create_topic(&addr, &format!("rate-{role}-{i}"), 1, 1) {
            Ok((0, _)) => latencies.push(ms(t.elapsed())),
            _ => errors += 1,
        }
        i += 1;
    }
    let took = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    Ok(CommitRate {
        via,
        role,
        window_s: took.as_secs_f64(),
        commits: latencies.len(),
        errors,
        commits_per_s: latencies.len() as f64 / took.as_secs_f64(),
        latency_ms_p50: percentile(&latencies, 0.5),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(f64::NAN),
    })
}

/// Whether `<data>/<topic>-<p>/` holds a `.log` segment (the log was opened).
fn opened(data: &Path, topic: &str, p: i32) -> bool {
    std::fs::read_dir(data.join(format!("{topic}-{p}"))).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".log"))
    })
}

fn wide_topic(c: &Cluster, via: i32, partitions: i32) -> Result<Wide> {
    const TOPIC: &str = "wide";
    const RF: i16 = 3;
    let addr = c.node(via)?.addr();
    let sent = Instant::now();
    let (code, msg) = create_topic(&addr, TOPIC, partitions, RF)?;
    if code != 0 {
        bail!("CreateTopics {TOPIC} ({partitions} partitions): error {code} {msg:?}");
    }
    let answered = sent.elapsed();
    let all = c.ids();
    // Which node holds which partitions, from the node it was created through. A forwarded
    // CreateTopics answers once the controller committed; this broker's own image may apply the
    // change a little later, so its Metadata is polled (bounded).
    let mut assigned = BTreeMap::new();
    c.wait(
        "the wide topic in the Metadata of the node it was created through",
        WIDE_TIMEOUT,
        || match metadata(&addr).map(|mut v| v.topics.remove(TOPIC)) {
            Ok(Some(t)) if t.len() == partitions as usize => {
                assigned = t;
                true
            }
            _ => false,
        },
    )?;
    let in_via_metadata = sent.elapsed();
    let mut remaining: BTreeMap<i32, BTreeSet<i32>> =
        all.iter().map(|id| (*id, BTreeSet::new())).collect();
    for (p, (_, _, replicas)) in &assigned {
        for r in replicas {
            remaining.entry(*r).or_default().insert(*p);
        }
    }
    let expected: BTreeMap<i32, usize> = remaining.iter().map(|(id, ps)| (*id, ps.len())).collect();
    let mut done_at: BTreeMap<i32, Duration> = BTreeMap::new();
    let mut metadata_pending: BTreeSet<i32> = all.iter().copied().collect();
    let mut metadata_at = Duration::ZERO;
    let deadline = sent + WIDE_TIMEOUT;
    while done_at.len() < all.len() || !metadata_pending.is_empty() {
        if Instant::now() > deadline {
            let left: BTreeMap<i32, usize> =
                remaining.iter().map(|(id, ps)| (*id, ps.len())).collect();
            bail!(
                "the wide topic not open everywhere within {WIDE_TIMEOUT:?}: partitions left {left:?}, \
                 Metadata pending on {metadata_pending:?}\n{}",
                c.tails()
            );
        }
        for id in &all {
            if done_at.contains_key(id) {
                continue;
            }
            let data = c.node(*id)?.data();
            if let Some(ps) = remaining.get_mut(id) {
                ps.retain(|p| !opened(&data, TOPIC, *p));
                if ps.is_empty() {
                    done_at.insert(*id, sent.elapsed());
                }
            }
        }
        let mut newly = Vec::new();
        for id in &metadata_pending {
            let complete = metadata(&c.node(*id)?.addr()).is_ok_and(|v| {
                v.topics.get(TOPIC).is_some_and(|t| {
                    t.len() == partitions as usize && t.values().all(|(e, l, _)| *e == 0 && *l >= 0)
                })
            });
            if complete {
                newly.push(*id);
            }
        }
        for id in newly {
            metadata_pending.remove(&id);
            if metadata_pending.is_empty() {
                metadata_at = sent.elapsed();
            }
        }
        std::thread::sleep(POLL);
    }
    let opened_everywhere = done_at.values().max().copied().unwrap_or_default();
    Ok(Wide {
        partitions,
        replication_factor: RF,
        via,
        answered_ms: ms(answered),
        via_metadata_ms: ms(in_via_metadata),
        metadata_everywhere_ms: ms(metadata_at),
        opened_everywhere_ms: ms(opened_everywhere),
        per_node: done_at
            .iter()
            .map(|(id, at)| WideNode {
                node: *id,
                partitions: expected.get(id).copied().unwrap_or(0),
                opened_ms: ms(*at),
            })
            .collect(),
    })
}

// ---- the run ----------------------------------------------------------------------------------

fn main() -> Result<()> {
    let cli = Cli::parse();
    let sluice = std::fs::canonicalize(&cli.sluice)
        .with_context(|| format!("the sluice binary {}", cli.sluice.display()))?;
    std::fs::create_dir_all(&cli.scratch)?;
    let scratch = std::fs::canonicalize(&cli.scratch)?;
    if scratch.join("node-1").exists() {
        bail!(
            "{} already holds a run: give an empty scratch dir",
            scratch.display()
        );
    }
    let mut report = Report {
        sluice: sluice.display().to_string(),
        nodes: NODES,
        cores_per_node: 1,
        machine: machine(),
        load_before: loadavg(),
        load_after: String::new(),
        formed_ms: 0.0,
        failover: Vec::new(),
        failover_summary: None,
        commit_rates: Vec::new(),
        wide: None,
        partition_failover: Vec::new(),
        partition_failover_summary: None,
    };
    let result = run(&cli, &sluice, &scratch, &mut report);
    report.load_after = loadavg();
    let text = render(&report, result.as_ref().err());
    print!("{text}");
    std::fs::write(scratch.join("cluster-bench.txt"), &text)?;
    std::fs::write(
        scratch.join("cluster-bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!(
        "report: {} and {}",
        scratch.join("cluster-bench.txt").display(),
        scratch.join("cluster-bench.json").display()
    );
    result
}

fn run(cli: &Cli, sluice: &Path, scratch: &Path, report: &mut Report) -> Result<()> {
    let started = Instant::now();
    let mut c = Cluster::start(sluice, scratch)?;
    let all = c.ids();
    c.wait_agreement(&all, AGREEMENT_TIMEOUT)?;
    report.formed_ms = ms(started.elapsed());
    eprintln!("cluster formed in {:.0} ms", report.formed_ms);

    for round in 0..cli.rounds {
        let r = failover_round(&mut c, round)?;
        eprintln!(
            "failover {round}: leader {} killed, commit via {} after {:.0} ms (new leader {}), \
             fenced after {:.0} ms, rejoined in {:.0} ms",
            r.killed_leader, r.via, r.failover_ms, r.new_leader, r.fenced_ms, r.rejoin_ms
        );
        report.failover.push(r);
    }
    let mut times: Vec<f64> = report.failover.iter().map(|r| r.failover_ms).collect();
    times.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (times.first(), times.last()) {
        report.failover_summary = Some(Summary {
            min_ms: *min,
            median_ms: median(&times),
            max_ms: *max,
        });
    }

    let window = Duration::from_secs(cli.commit_secs);
    let leader = c.wait_agreement(&all, AGREEMENT_TIMEOUT)?;
    let follower = all
        .iter()
        .copied()
        .find(|id| *id != leader)
        .context("no follower")?;
    for (via, role) in [(follower, "follower"), (leader, "leader")] {
        let r = commit_rate(&c, via, role, window)?;
        eprintln!(
            "commits via the {role} (node {via}): {} in {:.1} s = {:.1}/s, {} errors",
            r.commits, r.window_s, r.commits_per_s, r.errors
        );
        report.commit_rates.push(r);
    }

    let leader = c.wait_agreement(&all, AGREEMENT_TIMEOUT)?;
    let follower = all
        .iter()
        .copied()
        .find(|id| *id != leader)
        .context("no follower")?;
    report.wide = Some(wide_topic(&c, follower, cli.partitions)?);

    if cli.partition_rounds > 0 {
        partition_failovers(&mut c, cli.partition_rounds, report)?;
    }

    for n in &mut c.nodes {
        n.stop();
    }
    Ok(())
}

/// One record, acks=all, to `topic`-0 on the node at `addr`: the error code and base offset.
fn produce_one(addr: &str, topic: &str, value: &str) -> Result<(i16, i64)> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let resp: ProduceResponse = call(addr, ApiKey::Produce, 9, &req)?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .context("Produce answered no partition")?;
    Ok((p.error_code, p.base_offset))
}

/// Rounds of kill -9 of an RF 3 partition's leader with the default broker session: the time
/// to the first acks=all Produce the new leader acknowledges (Metadata polled on the survivors
/// every `POLL`; Produce sent to the leader they name), the killed node restarted and back in
/// the ISR before the next round.
fn partition_failovers(c: &mut Cluster, rounds: usize, report: &mut Report) -> Result<()> {
    const TOPIC: &str = "failover-rf3";
    let all = c.ids();
    let addr0 = c.node(all[0])?.addr();
    let (code, msg) = create_topic(&addr0, TOPIC, 1, 3)?;
    if code != 0 {
        bail!("CreateTopics {TOPIC}: error {code} {msg:?}");
    }
    let leader_seen_by = |c: &Cluster, ids: &[i32]| -> Option<i32> {
        ids.iter().find_map(|id| {
            let v = metadata(&c.node(*id).ok()?.addr()).ok()?;
            let (e, l, _) = v.topics.get(TOPIC)?.get(&0)?.clone();
            (e == 0 && l >= 0).then_some(l)
        })
    };
    let mut acked_before = 0i64;
    for round in 0..rounds {
        // A leader, and a few records acknowledged by the full ISR first.
        let mut leader = -1;
        c.wait(
            "the RF 3 partition to have a leader",
            REJOIN_TIMEOUT,
            || {
                leader = leader_seen_by(c, &all).unwrap_or(-1);
                leader >= 0
            },
        )?;
        let laddr = c.node(leader)?.addr();
        for i in 0..10 {
            let deadline = Instant::now() + FAILOVER_TIMEOUT;
            loop {
                match produce_one(&laddr, TOPIC, &format!("r{round}-{i}")) {
                    Ok((0, _)) => break,
                    _ if Instant::now() < deadline => std::thread::sleep(RETRY_PAUSE),
                    other => bail!(
                        "produce before round {round}: {other:?}
{}",
                        c.tails()
                    ),
                }
            }
            acked_before += 1;
        }
        let survivors: Vec<i32> = all.iter().copied().filter(|id| *id != leader).collect();
        let killed_at = Instant::now();
        c.node_mut(leader)?.kill9();
        let mut refused = 0u32;
        let (new_leader, new_log_end) = loop {
            if killed_at.elapsed() > FAILOVER_TIMEOUT {
                bail!("no acks=all produce acknowledged within {FAILOVER_TIMEOUT:?} of killing {leader}
{}", c.tails());
            }
            let Some(l) = leader_seen_by(c, &survivors).filter(|l| *l != leader) else {
                std::thread::sleep(POLL);
                continue;
            };
            match produce_one(&c.node(l)?.addr(), TOPIC, &format!("after-{round}")) {
                Ok((0, base)) => break (l, base),
                _ => {
                    refused += 1;
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        };
        let acked = killed_at.elapsed();
        eprintln!(
            "partition failover {round}: leader {leader} killed, acks=all acknowledged by {new_leader} after {:.0} ms ({refused} refused)",
            ms(acked)
        );
        report.partition_failover.push(PartitionFailover {
            round,
            killed_leader: leader,
            new_leader,
            acked_ms: ms(acked),
            refused,
            kept: acked_before,
            new_log_end,
        });
        if new_log_end < acked_before {
            bail!("the new leader's log ends at {new_log_end}, below the {acked_before} records acknowledged before the kill");
        }
        acked_before = new_log_end + 1;
        let sluice = c.sluice.clone();
        c.node_mut(leader)?.start(&sluice)?;
        c.wait_agreement(&all, REJOIN_TIMEOUT)?;
    }
    let mut times: Vec<f64> = report
        .partition_failover
        .iter()
        .map(|r| r.acked_ms)
        .collect();
    times.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (times.first(), times.last()) {
        report.partition_failover_summary = Some(Summary {
            min_ms: *min,
            median_ms: median(&times),
            max_ms: *max,
        });
    }
    Ok(())
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn render(r: &Report, error: Option<&anyhow::Error>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cluster-bench: {} nodes × --cores 1, Kafka's default KRaft timeouts, sluice {}",
        r.nodes, r.sluice
    );
    let _ = writeln!(
        s,
        "machine: {} CPUs, {}, kernel {}; load average before {}, after {}",
        r.machine.nproc, r.machine.cpu_model, r.machine.kernel, r.load_before, r.load_after
    );
    let _ = writeln!(s, "cluster formed and agreed in {:.0} ms", r.formed_ms);
    let _ = writeln!(
        s,
        "\nfailover (kill -9 of the Raft leader → CreateTopics committed via a survivor):"
    );
    for f in &r.failover {
        let _ = writeln!(
            s,
            "  round {:>2}: killed {} → {:>6.0} ms via node {} (refused: {} timed out, {} not controller, {} connection errors; new leader {}), fenced at {:.0} ms, rejoined in {:.0} ms",
            f.round, f.killed_leader, f.failover_ms, f.via, f.refused_timed_out, f.refused_not_controller,
            f.connection_errors, f.new_leader, f.fenced_ms, f.rejoin_ms
        );
    }
    if let Some(sum) = &r.failover_summary {
        let _ = writeln!(
            s,
            "  {} rounds: min {:.0} ms, median {:.0} ms, max {:.0} ms (goal: median under 2000 ms)",
            r.failover.len(),
            sum.min_ms,
            sum.median_ms,
            sum.max_ms
        );
    }
    let _ = writeln!(
        s,
        "\nmetadata commits (sequential CreateTopics, 1 partition, RF 1):"
    );
    for c in &r.commit_rates {
        let _ = writeln!(
            s,
            "  via the {:<8} (node {}): {:>5} commits in {:.1} s = {:.1}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} errors",
            c.role, c.via, c.commits, c.window_s, c.commits_per_s, c.latency_ms_p50, c.latency_ms_p99, c.latency_ms_max, c.errors
        );
    }
    if let Some(w) = &r.wide {
        let _ = writeln!(
            s,
            "\nwide topic ({} partitions, RF {}, via node {}): answered {:.0} ms, in that node's Metadata {:.0} ms, in every node's Metadata {:.0} ms, opened on every node {:.0} ms",
            w.partitions, w.replication_factor, w.via, w.answered_ms, w.via_metadata_ms, w.metadata_everywhere_ms, w.opened_everywhere_ms
        );
        for n in &w.per_node {
            let _ = writeln!(
                s,
                "  node {}: {} partition dirs with a segment at {:.0} ms",
                n.node, n.partitions, n.opened_ms
            );
        }
    }
    if !r.partition_failover.is_empty() {
        let _ = writeln!(
            s,
            "\npartition failover (kill -9 of an RF 3 partition's leader → first acks=all Produce acknowledged by the new leader):"
        );
        for f in &r.partition_failover {
            let _ = writeln!(
                s,
                "  round {:>2}: killed {} → {:>6.0} ms by node {} ({} refused before), new leader's log end {} (>= {} acknowledged before)",
                f.round, f.killed_leader, f.acked_ms, f.new_leader, f.refused, f.new_log_end, f.kept
            );
        }
        if let Some(sum) = &r.partition_failover_summary {
            let _ = writeln!(
                s,
                "  {} rounds: min {:.0} ms, median {:.0} ms, max {:.0} ms (goal: median under 2000 ms; Kafka waits ~9 s)",
                r.partition_failover.len(),
                sum.min_ms,
                sum.median_ms,
                sum.max_ms
            );
        }
    }
    if let Some(e) = error {
        let _ = writeln!(
            s,
            "\nFAILED (figures above are what was measured before): {e:#}"
        );
    }
    s
}
