//! Several real `sluice` processes forming one cluster on 127.0.0.1, each from its own
//! server.properties written as a Kafka 4 KRaft node's would be (combined broker+controller).
//!
//! Ports are fixed for a cluster's life (voters must know each other's controller addresses, and
//! a restarted node comes back where clients and peers expect it): they are taken by binding
//! ephemeral ports and releasing them just before the nodes start.
#![allow(dead_code)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use super::{Broker, BrokerOpts};

/// Short broker sessions, so a killed node is fenced in seconds (Kafka's defaults: 9 s / 2 s).
pub const FAST_SESSIONS: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
];

/// Bound for the quorum to form or to agree after a change.
pub const QUORUM_TIMEOUT: Duration = Duration::from_secs(60);

/// One node's fixed addresses.
#[derive(Clone, Debug)]
pub struct NodePorts {
    pub node_id: i32,
    pub kafka_port: u16,
    pub controller_port: u16,
}

/// A cluster of combined nodes with ids 1..=n.
pub struct Cluster {
    pub ports: Vec<NodePorts>,
    /// `None` while a node is down by the test's hand (kept so restarts reuse its data dir).
    pub nodes: Vec<Broker>,
    extra: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `n` nodes, one core each, with Kafka's default timeouts unless `extra` sets them.
    pub fn start(n: usize, extra: &[(&str, &str)]) -> Cluster {
        let ports = free_ports(2 * n);
        let ports: Vec<NodePorts> = (0..n)
            .map(|i| NodePorts {
                node_id: i as i32 + 1,
                kafka_port: ports[2 * i],
                controller_port: ports[2 * i + 1],
            })
            .collect();
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cluster = Cluster {
            ports,
            nodes: Vec::new(),
            extra,
        };
        for i in 0..n {
            let opts = cluster.opts_for(i);
            cluster.nodes.push(Broker::start_with(opts));
        }
        cluster
    }

    /// `controller.quorum.voters` of this cluster.
    pub fn voters(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("{}@127.0.0.1:{}", p.node_id, p.controller_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server.properties of node index `i` (node id `i + 1`).
    pub fn properties(&self, i: usize) -> String {
        let p = &self.ports[i];
        let mut text = format!(
            "process.roles=broker,controller\nnode.id={}\ncontroller.quorum.voters={}\n\
             listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             group.initial.rebalance.delay.ms=0\n",
            p.node_id,
            self.voters(),
            p.kafka_port,
            p.controller_port,
            p.kafka_port
        );
        // `{node}` in a value stands for the node's id (e.g. `broker.rack=rack-{node}`).
        for (k, v) in &self.extra {
            let v = v.replace("{node}", &p.node_id.to_string());
            text.push_str(&format!("{k}={v}\n"));
        }
        text
    }

    fn opts_for(&self, i: usize) -> BrokerOpts {
        BrokerOpts {
            cores: 1,
            listen: None,
            config_text: Some(self.properties(i)),
            ..BrokerOpts::default()
        }
    }

    /// Waits until every node's Metadata lists all the cluster's brokers, a controller and
    /// `__consumer_offsets` (which the active controller creates once they are unfenced): the
    /// point from which clients' groups can find coordinators.
    pub fn wait_ready_for_groups(&self) {
        let n = self.ports.len();
        self.wait(
            "every broker unfenced and __consumer_offsets created",
            || {
                self.ports.iter().all(|p| {
                    metadata(p.kafka_port).is_ok_and(|v| {
                        v.brokers.len() == n
                            && v.controller >= 0
                            && v.topics.contains_key("__consumer_offsets")
                    })
                })
            },
        );
    }

    /// Every node's Kafka address, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.kafka_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node with Kafka id `id`.
    pub fn node(&mut self, id: i32) -> &mut Broker {
        let i = self.index(id);
        &mut self.nodes[i]
    }

    fn index(&self, id: i32) -> usize {
        self.ports
            .iter()
            .position(|p| p.node_id == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// Every running node's stderr tail, for failure messages.
    pub fn tails(&self) -> String {
        self.nodes
            .iter()
            .zip(&self.ports)
            .map(|(n, p)| format!("== node {} ==\n{}", p.node_id, n.stderr_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A librdkafka client configuration bootstrapped from every node (IPv4 loopback).
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4");
        config
    }

    /// The bytes of partition `topic`-`p`'s segment files on node `id`, oldest segment first
    /// (followers store the leader's batches as they are: in-sync replicas' logs are equal).
    pub fn log_bytes(&self, id: i32, topic: &str, p: i32) -> Vec<u8> {
        let dir = self.nodes[self.index(id)]
            .data_dir()
            .join(format!("{topic}-{p}"));
        let mut files: Vec<_> = std::fs::read_dir(&dir)
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

    /// Creates `topic` with replication factor 3 through the admin API (retried while the
    /// cluster is not ready), then waits until every node shows every partition with a leader
    /// and a full ISR.
    pub async fn create_replicated(&self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
        let admin: rdkafka::admin::AdminClient<_> = self.client_config().create().expect("admin");
        let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(3));
        for (k, v) in configs {
            t = t.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let deadline = Instant::now() + QUORUM_TIMEOUT;
        loop {
            let r = admin
                .create_topics([&t], &opts)
                .await
                .expect("create_topics");
            match &r[0] {
                Ok(_) => break,
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => break,
                Err((_, e)) if Instant::now() < deadline => {
                    eprintln!("create {topic}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err((_, e)) => panic!("create {topic}: {e}\n{}", self.tails()),
            }
        }
        for p in &self.ports {
            self.wait(
                &format!("{topic} on node {} with a full ISR", p.node_id),
                || {
                    metadata(p.kafka_port).is_ok_and(|v| {
                        v.topics.get(topic).is_some_and(|ps| {
                            ps.len() == partitions as usize
                                && ps
                                    .iter()
                                    .all(|x| x.leader >= 0 && x.isr.len() == self.ports.len())
                        })
                    })
                },
            );
        }
    }

    /// Polls `condition` until it holds or `QUORUM_TIMEOUT` passes; panics with every node's log.
    pub fn wait(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + QUORUM_TIMEOUT;
        while !condition() {
            if Instant::now() > deadline {
                panic!(
                    "timed out after {QUORUM_TIMEOUT:?} waiting for {what}\n{}",
                    self.tails()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `n` distinct free loopback ports (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// What one node's Metadata answer says about the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub cluster_id: Option<String>,
    pub controller: i32,
    /// Broker ids with their Kafka ports.
    pub brokers: std::collections::BTreeMap<i32, u16>,
    pub topics: std::collections::BTreeMap<String, Vec<PartitionView>>,
}

/// One partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub error: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// Metadata v12 for every topic, from the node listening on `kafka_port`.
pub fn metadata(kafka_port: u16) -> std::io::Result<View> {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    let resp: MetadataResponse = super::wire::call(
        &format!("127.0.0.1:{kafka_port}"),
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )?;
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
    Ok(View {
        cluster_id: resp.cluster_id.map(|c| c.to_string()),
        controller: resp.controller_id.0,
        brokers: resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.port as u16))
            .collect(),
        topics: resp
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let mut parts: Vec<_> = t.partitions.iter().collect();
                parts.sort_by_key(|p| p.partition_index);
                let parts = parts
                    .into_iter()
                    .map(|p| PartitionView {
                        error: p.error_code,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: ids(&p.replica_nodes),
                        isr: ids(&p.isr_nodes),
                        offline: ids(&p.offline_replicas),
                    })
                    .collect();
                Some((name, parts))
            })
            .collect(),
    })
}

/// CreateTopics v7 sent to the node on `kafka_port`; returns the topic's error code and message.
pub fn create_topic(
    kafka_port: u16,
    name: &str,
    partitions: i32,
    replication_factor: i16,
) -> std::io::Result<(i16, Option<String>)> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)]);
    let resp: CreateTopicsResponse = super::wire::call(
        &format!("127.0.0.1:{kafka_port}"),
        ApiKey::CreateTopics,
        7,
        &req,
    )?;
    let t = resp
        .topics
        .first()
        .ok_or_else(|| std::io::Error::other("CreateTopics answered no topic"))?;
    Ok((
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    ))
}
