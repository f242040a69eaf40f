//! A network partition: three real `sluice` nodes, each in its own network namespace (created
//! here: a veth pair per node to a bridge in the root namespace, addresses in a private
//! 10.201.N.0/24 chosen from this process's id), reached by the test's clients from the root
//! namespace through the bridge. The leader of a partition is cut off from the other two nodes
//! (blackhole routes in its namespace to their addresses, and in theirs to its address; the
//! client's address stays reachable from all), so:
//! - the isolated leader, which still believes it leads, must not acknowledge acks=all writes
//!   (they time out or fail), while acks=1 writes to it may succeed;
//! - the majority side fences it, elects a new leader from the ISR and takes acks=all writes;
//!   the partition tested is the one the active controller leads (leaders go round-robin), so
//!   the majority must first elect a new controller;
//! - after the routes are removed, the old leader learns the new epoch, truncates its divergent
//!   tail and rejoins the ISR: its log file equals the new leader's byte for byte, and every
//!   acknowledged acks=all record is present at its offset; no partition changed leader or
//!   leader epoch with the heal (the deposed controller's own fences are not applied).
//!
//! Needs root and `ip netns` (iproute2); without them the test says so and returns early. The
//! namespaces, veths and bridge are removed by a Drop guard, also when the test fails; ones left
//! by a test process that was killed are removed by the next run.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

use common::{BROKER_START_TIMEOUT, STDERR_TAIL_BYTES};

const TOPIC: &str = "split";
const NODES: u8 = 3;
/// Leaders go round-robin, so one partition is led by the active controller: the one tested.
const PARTITIONS: i32 = 3;
const KAFKA_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
/// Bound for elections, fencing, ISR changes and truncation to be seen.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// The produce timeout given to the isolated leader for acks=all.
const ISOLATED_PRODUCE_TIMEOUT_MS: i32 = 5_000;
/// Prefix of every namespace this test creates (`<prefix><pid>-<node>`).
const NS_PREFIX: &str = "sluice-part-";
/// Short sessions and lag bound, so fencing and ISR changes are seen within seconds.
const FAST: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "3000"),
    ("replica.fetch.backoff.ms", "200"),
];

fn ip(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("ip").args(args).stdin(Stdio::null()).output()
}

/// Runs `ip args`, panicking with its stderr unless it succeeds.
fn ip_ok(args: &[&str]) {
    let out = ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, veths and bridge of one run; removed on drop (veths go with their namespace).
struct Net {
    pid: u32,
    /// Third octet of 10.201.N.0/24.
    subnet: u8,
}

impl Net {
    fn namespace(&self, node: u8) -> String {
        format!("{NS_PREFIX}{}-{node}", self.pid)
    }

    fn bridge(pid: u32) -> String {
        // Interface names have at most 15 bytes.
        format!("slbr{}", pid % 10_000_000)
    }

    fn addr(&self, node: u8) -> String {
        format!("10.201.{}.{node}", self.subnet)
    }

    fn create() -> Net {
        remove_stale();
        let pid = std::process::id();
        let net = Net {
            pid,
            subnet: (pid % 200) as u8 + 20,
        };
        let bridge = Net::bridge(pid);
        ip_ok(&["link", "add", &bridge, "type", "bridge"]);
        ip_ok(&[
            "addr",
            "add",
            &format!("10.201.{}.254/24", net.subnet),
            "dev",
            &bridge,
        ]);
        ip_ok(&["link", "set", &bridge, "up"]);
        for node in 1..=NODES {
            let ns = net.namespace(node);
            let veth = veth(pid, node);
            ip_ok(&["netns", "add", &ns]);
            ip_ok(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip_ok(&["link", "set", &veth, "master", &bridge, "up"]);
            let cidr = format!("{}/24", net.addr(node));
            ip_ok(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Blackhole routes between `node` and every other node, both ways (`cut`), or their removal.
    fn isolate(&self, node: u8, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        for other in (1..=NODES).filter(|o| *o != node) {
            for (from, to) in [(node, other), (other, node)] {
                let dst = format!("{}/32", self.addr(to));
                ip_ok(&[
                    "-n",
                    &self.namespace(from),
                    "route",
                    verb,
                    "blackhole",
                    &dst,
                ]);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        remove(self.pid);
    }
}

fn veth(pid: u32, node: u8) -> String {
    format!("slv{}n{node}", pid % 10_000_000)
}

/// Deletes the veths (both ends go together: a namespace kept alive by the kernel's orphaned
/// sockets would otherwise keep them), the namespaces and the bridge of run `pid`.
fn remove(pid: u32) {
    for node in 1..=NODES {
        let _ = ip(&["link", "del", &veth(pid, node)]);
        let _ = ip(&["netns", "del", &format!("{NS_PREFIX}{pid}-{node}")]);
    }
    let _ = ip(&["link", "del", &Net::bridge(pid)]);
}

/// Removes what a killed earlier run of this test left (its process is gone).
fn remove_stale() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing stale namespace {name}");
            remove(pid);
        }
    }
}

/// Whether this process can create network namespaces (root and a working `ip netns`).
fn netns_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    let probe = format!("{NS_PREFIX}probe-{}", std::process::id());
    match ip(&["netns", "add", &probe]) {
        Ok(out) if out.status.success() => {
            let _ = ip(&["netns", "del", &probe]);
            Ok(())
        }
        Ok(out) => Err(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `ip`: {e}")),
    }
}

/// One node: `ip netns exec <ns> sluice serve` with its own data dir and server.properties.
struct Node {
    id: u8,
    namespace: String,
    properties: String,
    child: Option<Child>,
    root: tempfile::TempDir,
}

impl Node {
    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn stderr_path(&self) -> PathBuf {
        self.root.path().join("broker-stderr.log")
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(self.data_dir()).expect("data dir");
        let config = self.root.path().join("server.properties");
        std::fs::write(&config, &self.properties).expect("server.properties");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("stderr log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--config")
            .arg(&config)
            .args(["--cores", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // `ip netns exec` execs the broker in place, so the child is the broker itself and
        // PDEATHSIG (kept across exec) takes it down with the test process.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn ip netns exec sluice");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("LISTENING ") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        if rx.recv_timeout(BROKER_START_TIMEOUT).is_err() {
            panic!(
                "node {} printed no LISTENING line within {BROKER_START_TIMEOUT:?}\n{}",
                self.id,
                self.tail()
            );
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read(self.stderr_path()).unwrap_or_default();
        let from = text.len().saturating_sub(STDERR_TAIL_BYTES as usize);
        format!(
            "== node {} ==\n{}",
            self.id,
            String::from_utf8_lossy(&text[from..])
        )
    }

    /// The bytes of `topic`-`p`'s segment files, oldest first.
    fn log_bytes(&self, p: i32) -> Vec<u8> {
        let dir = self.data_dir().join(format!("{TOPIC}-{p}"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap_or_default())
            .collect()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tail());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fields drop in order: the brokers die before their namespaces go.
struct Cluster {
    nodes: Vec<Node>,
    net: Net,
    /// The partition of `TOPIC` under test: the one the active controller leads.
    part: i32,
}

impl Cluster {
    fn start(net: Net) -> Cluster {
        let voters = (1..=NODES)
            .map(|n| format!("{n}@{}:{CONTROLLER_PORT}", net.addr(n)))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for id in 1..=NODES {
            let addr = net.addr(id);
            let mut properties = format!(
                "process.roles=broker,controller\nnode.id={id}\ncontroller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://{addr}:{KAFKA_PORT},CONTROLLER://{addr}:{CONTROLLER_PORT}\n\
                 advertised.listeners=PLAINTEXT://{addr}:{KAFKA_PORT}\n\
                 controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                 group.initial.rebalance.delay.ms=0\noffsets.topic.num.partitions=1\n\
                 admin.listener=-1\n"
            );
            for (k, v) in FAST {
                properties.push_str(&format!("{k}={v}\n"));
            }
            let root = tempfile::Builder::new()
                .prefix("sluice-netns-")
                .tempdir()
                .expect("temp dir");
            let mut node = Node {
                id,
                namespace: net.namespace(id),
                properties,
                child: None,
                root,
            };
            node.spawn();
            nodes.push(node);
        }
        Cluster {
            nodes,
            net,
            part: 0,
        }
    }

    fn kafka_addr(&self, id: u8) -> String {
        format!("{}:{KAFKA_PORT}", self.net.addr(id))
    }

    fn bootstrap(&self, ids: &[u8]) -> String {
        ids.iter()
            .map(|id| self.kafka_addr(*id))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&self, id: u8) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn tails(&self) -> String {
        self.nodes
            .iter()
            .map(Node::tail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `condition` until it holds or `CHANGE_TIMEOUT` passes; panics with every node's log.
    fn wait(&self, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !condition() {
            if started.elapsed() > CHANGE_TIMEOUT {
                panic!(
                    "timed out after {CHANGE_TIMEOUT:?} waiting for {what}\n{}",
                    self.tails()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        started.elapsed()
    }

    fn metadata(&self, id: u8) -> Option<MetadataResponse> {
        common::wire::call(
            &self.kafka_addr(id),
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .ok()
    }

    /// Every node lists every broker, a controller and `__consumer_offsets` (created once the
    /// brokers are unfenced), as `common::cluster::Cluster::wait_ready_for_groups`.
    fn wait_ready(&self) {
        for id in 1..=NODES {
            self.wait(&format!("node {id} sees every broker unfenced"), || {
                self.metadata(id).is_some_and(|m| {
                    m.brokers.len() == NODES as usize
                        && m.controller_id.0 >= 0
                        && m.topics.iter().any(|t| {
                            t.name
                                .as_ref()
                                .is_some_and(|n| n.0.as_str() == "__consumer_offsets")
                        })
                })
            });
        }
    }

    /// The partition under test as node `id` describes it.
    fn partition(&self, id: u8) -> Option<Partition> {
        self.partition_at(id, self.part)
    }

    fn partition_at(&self, id: u8, part: i32) -> Option<Partition> {
        let resp = self.metadata(id)?;
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))?;
        let p = t.partitions.iter().find(|p| p.partition_index == part)?;
        Some(Partition {
            controller: resp.controller_id.0,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
        })
    }
}

#[derive(Debug)]
struct Partition {
    controller: i32,
    leader: i32,
    leader_epoch: i32,
    isr: Vec<i32>,
}

fn records_batch(values: &[String]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where sequences stop following the offsets; the
            // batch's base sequence is the first record's, -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(v.clone().into_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// Produce v9 of `values` (one batch) to partition `part` on the node at `addr`: (error code, base
/// offset), or the I/O error of the exchange.
fn produce_raw(
    addr: &str,
    part: i32,
    acks: i16,
    timeout_ms: i32,
    values: &[String],
) -> std::io::Result<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(part)
                .with_records(Some(records_batch(values)))])]);
    let resp: ProduceResponse = common::wire::call(addr, ApiKey::Produce, 9, &req)?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or_else(|| std::io::Error::other("Produce answered no partition"))?;
    Ok((p.error_code, p.base_offset))
}

/// Every record of the partition under test, from the beginning to its high watermark: offset -> value.
fn read_all(c: &Cluster) -> BTreeMap<i64, String> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap(&[1, 2, 3]))
        .set("group.id", "netns-reader")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("reader");
    let (_, end) = reader
        .fetch_watermarks(TOPIC, c.part, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("watermarks: {e}\n{}", c.tails()));
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, c.part, rdkafka::Offset::Beginning)
        .expect("tpl");
    reader.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while end > 0 && out.keys().next_back().is_none_or(|o| *o < end - 1) {
        assert!(
            Instant::now() < deadline,
            "read reached {:?} of high watermark {end}\n{}",
            out.keys().next_back(),
            c.tails()
        );
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(500)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.insert(m.offset(), v);
        }
    }
    out
}

async fn create_topic(c: &Cluster) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap(&[1, 2, 3]))
        .create()
        .expect("admin");
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        let r = match admin.create_topics([&topic], &opts).await {
            Ok(r) => r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("create {TOPIC}: {e}; retrying");
                continue;
            }
            Err(e) => panic!("create {TOPIC}: {e}\n{}", c.tails()),
        };
        match &r[0] {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => break,
            Err((_, e)) if Instant::now() < deadline => {
                eprintln!("create {TOPIC}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err((_, e)) => panic!("create {TOPIC}: {e}\n{}", c.tails()),
        }
    }
    for id in 1..=NODES {
        c.wait(&format!("{TOPIC} on node {id} with a full ISR"), || {
            (0..PARTITIONS).all(|part| {
                c.partition_at(id, part)
                    .is_some_and(|p| p.leader > 0 && p.isr.len() == NODES as usize)
            })
        });
    }
}

/// (leader, leader epoch) of every partition of the topic, as node `id` says.
fn leaderships(c: &Cluster, id: u8) -> Vec<(i32, i32)> {
    (0..PARTITIONS)
        .map(|part| {
            c.partition_at(id, part)
                .map_or((-1, -1), |p| (p.leader, p.leader_epoch))
        })
        .collect()
}

/// acks=all through librdkafka, one record at a time: (offset, value) of each.
async fn send_all(c: &Cluster, producer: &FutureProducer, values: &[String]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for v in values {
        let d = producer
            .send(
                FutureRecord::to(TOPIC)
                    .key("k")
                    .payload(v)
                    .partition(c.part),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {v}: {e}\n{}", c.tails()));
        out.push((d.offset, v.clone()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_acknowledges_no_acks_all_write_and_its_divergent_tail_is_truncated() {
    if let Err(why) = netns_available() {
        eprintln!("SKIPPED partition_netns: {why}; this test needs root and `ip netns`");
        return;
    }
    let started = Instant::now();
    let mut c = Cluster::start(Net::create());
    c.wait_ready();
    create_topic(&c).await;
    // The hardest cut: the node that leads the partition also leads the metadata quorum, so
    // the majority must elect a controller before it can fence the old leader.
    let mut led = None;
    c.wait("a partition led by the active controller", || {
        led = (0..PARTITIONS).find(|part| {
            c.partition_at(1, *part)
                .is_some_and(|x| x.leader > 0 && x.leader == x.controller)
        });
        led.is_some()
    });
    c.part = led.unwrap_or_default();
    let all = c.bootstrap(&[1, 2, 3]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut acked: Vec<(i64, String)> = Vec::new();
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    acked.extend(send_all(&c, &producer, &before).await);

    let old = c.partition(1).expect("partition").leader as u8;
    let majority: Vec<u8> = (1..=NODES).filter(|n| *n != old).collect();
    let old_epoch = c.partition(old).expect("partition").leader_epoch;
    eprintln!(
        "cutting node {old}, leader of {TOPIC}-{} (epoch {old_epoch}) and controller, off from \
         {majority:?}",
        c.part
    );
    c.net.isolate(old, true);

    // The isolated leader still believes it leads; acks=all must not be acknowledged there.
    let mut divergent: Vec<String> = Vec::new();
    let refused = |round: &str, divergent: &mut Vec<String>| {
        let values: Vec<String> = (0..3)
            .map(|i| format!("isolated-all-{round}-{i}"))
            .collect();
        let answer = produce_raw(
            &c.kafka_addr(old),
            c.part,
            -1,
            ISOLATED_PRODUCE_TIMEOUT_MS,
            &values,
        );
        eprintln!("acks=all to the isolated leader ({round}): {answer:?}");
        assert!(
            !matches!(answer, Ok((0, _))),
            "the isolated leader acknowledged an acks=all write ({round}): {answer:?}\n{}",
            c.tails()
        );
        divergent.extend(values);
    };
    refused("at-cut", &mut divergent);
    let values: Vec<String> = (0..5).map(|i| format!("isolated-one-{i}")).collect();
    let one = produce_raw(&c.kafka_addr(old), c.part, 1, 10_000, &values);
    eprintln!("acks=1 to the isolated leader: {one:?}");
    divergent.extend(values);

    // The majority fences the old leader and elects a new one from the ISR.
    let took = c.wait("a new leader on the majority side", || {
        majority.iter().all(|m| {
            c.partition(*m).is_some_and(|p| {
                p.leader > 0 && p.leader as u8 != old && !p.isr.contains(&(old as i32))
            })
        })
    });
    let new = c.partition(majority[0]).expect("partition");
    eprintln!(
        "majority elected leader {} epoch {} in {took:?}",
        new.leader, new.leader_epoch
    );
    assert!(
        new.leader_epoch > old_epoch,
        "{new:?} after epoch {old_epoch}"
    );
    let new_leader = new.leader as u8;
    // The old leader still cannot acknowledge acks=all, now that another node leads.
    refused("after-election", &mut divergent);
    let still = c
        .partition(old)
        .expect("the isolated node answers Metadata");
    eprintln!("the isolated node's own view: {still:?}");

    // The majority side takes acks=all writes (to the new leader directly, and through
    // librdkafka bootstrapped at the majority only).
    let values: Vec<String> = (0..5).map(|i| format!("majority-raw-{i}")).collect();
    let answer = produce_raw(&c.kafka_addr(new_leader), c.part, -1, 30_000, &values)
        .unwrap_or_else(|e| panic!("acks=all to the new leader: {e}\n{}", c.tails()));
    assert_eq!(
        answer.0,
        0,
        "acks=all to the new leader: {answer:?}\n{}",
        c.tails()
    );
    acked.extend(
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (answer.1 + i as i64, v)),
    );
    let majority_producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap(&majority))
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let during: Vec<String> = (0..30).map(|i| format!("majority-{i}")).collect();
    acked.extend(send_all(&c, &majority_producer, &during).await);

    // Heal: the old leader learns the new epoch, truncates and rejoins the ISR.
    let before_heal = leaderships(&c, majority[0]);
    c.net.isolate(old, false);
    // Every node agrees on one leader with the old leader back in the ISR.
    let mut leader = -1;
    let took = c.wait("the old leader back in the ISR", || {
        let views: Vec<Option<Partition>> = (1..=NODES).map(|n| c.partition(n)).collect();
        leader = views[0].as_ref().map_or(-1, |p| p.leader);
        leader > 0
            && views.iter().all(|v| {
                v.as_ref()
                    .is_some_and(|p| p.leader == leader && p.isr.len() == NODES as usize)
            })
    });
    let healed = c.partition(1).expect("partition");
    eprintln!("old leader {old} rejoined the ISR {took:?} after healing: {healed:?}");
    // Healing moves no leadership: the returning node only follows, and what the deposed
    // controller decided alone (every other broker's session expired) must not be applied.
    assert_eq!(
        leaderships(&c, majority[0]),
        before_heal,
        "(leader, leader epoch) of every partition changed by the heal\n{}",
        c.tails()
    );
    assert_eq!(leader as u8, new_leader);
    let after: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    acked.extend(send_all(&c, &producer, &after).await);
    c.wait(
        "the old leader's log equal to the new leader's, byte for byte",
        || {
            let want = c.node(new_leader).log_bytes(c.part);
            !want.is_empty() && (1..=NODES).all(|n| c.node(n).log_bytes(c.part) == want)
        },
    );

    let got = read_all(&c);
    for (offset, value) in &acked {
        assert_eq!(
            got.get(offset),
            Some(value),
            "acknowledged acks=all record at {offset} missing or different ({} records read)\n{}",
            got.len(),
            c.tails()
        );
    }
    let kept: Vec<&String> = got.values().filter(|v| divergent.contains(v)).collect();
    assert!(
        kept.is_empty(),
        "the isolated leader's divergent tail survived: {kept:?}"
    );
    eprintln!(
        "partition_netns: {} acknowledged records present, {} divergent records gone, in {:?}",
        acked.len(),
        divergent.len(),
        started.elapsed()
    );
    let mut c = c;
    for node in &mut c.nodes {
        node.stop();
    }
}
