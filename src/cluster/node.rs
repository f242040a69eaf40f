//! A cluster node's life, on shard 0: it starts the metadata quorum, hands every applied
//! image to every shard, registers this broker and keeps its session with heartbeats, and —
//! while it is the active controller — fences brokers whose session expired, unfences caught-up
//! ones, gives a new cluster its id, records its broker-level election defaults and moves
//! leadership back to preferred replicas (`auto.leader.rebalance.enable`). On SIGTERM it hands its leaderships off first
//! (controlled shutdown).
//!
//! Lives on shard 0 (`Rc`, `!Send`); the other shards see only the images and the controller
//! id it publishes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::liveness::{Heartbeat, HeartbeatReply, Liveness};
use super::raft::{ControlRequest, MetadataRaft, ProposeError, RaftSettings};
use super::{ControllerCommand, MetadataImage};
use crate::cluster::controller::{election, rebalance, ElectionType, Outcome};
use crate::config::kraft::QuorumConfig;
use crate::runtime::messages::ShardRequest;
use crate::runtime::Shard;

/// How often the active controller looks for expired broker sessions.
const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Bound on one probe of a broker's port (see `fence_refusing_brokers`).
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause between registration attempts while there is no quorum.
const REGISTER_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Bound on the controlled shutdown's two proposals.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the Raft leader's hand-off when this node stops.
const LEADERSHIP_HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);

/// What travels in the quorum's `Control` frames (serde_json inside them).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum ControlMessage {
    Heartbeat(Heartbeat),
}

/// This node's part in the cluster (shard 0).
pub struct ClusterNode {
    pub raft: Rc<MetadataRaft>,
    node_id: i32,
    quorum: QuorumConfig,
    host: String,
    port: u16,
    rack: Option<String>,
    incarnation_id: uuid::Uuid,
    /// Our broker epoch once registered.
    epoch: Cell<Option<i64>>,
    liveness: RefCell<Liveness>,
    was_leader: Cell<bool>,
    /// When this controller last looked for leader imbalance (`None`: not since it took over).
    rebalance_checked: Cell<Option<Instant>>,
    /// The cluster id this node must belong to (stored in meta.properties, or configured).
    expected_cluster_id: Option<String>,
    /// Published to every shard (Metadata's controller id).
    controller_id: Arc<AtomicI32>,
    stopping: Cell<bool>,
    config: Arc<crate::config::BrokerConfig>,
    /// Set to make the process exit with a failure (a node refused by its cluster).
    failed: Arc<AtomicBool>,
    /// The cluster id already recorded in meta.properties.
    recorded_cluster_id: RefCell<Option<String>>,
    data_dir: std::path::PathBuf,
}

impl ClusterNode {
    /// Starts the quorum member on shard 0 and the broker's registration and heartbeats.
    pub async fn start(
        shard: &Rc<Shard>,
        quorum: QuorumConfig,
        advertised: (String, u16),
        expected_cluster_id: Option<String>,
        controller_id: Arc<AtomicI32>,
        failed: Arc<AtomicBool>,
    ) -> anyhow::Result<Rc<ClusterNode>> {
        let config = shard.config.clone();
        let listen = quorum
            .controller_listen
            .ok_or_else(|| anyhow::anyhow!("process.roles=broker without the controller role is not supported yet: every node must be a voter"))?;
        let settings = RaftSettings {
            node_id: config.node_id,
            voters: quorum.voter_addrs()?,
            listen,
            dir: config.data_dir.clone(),
            cluster_id: expected_cluster_id.clone(),
            election_timeout: quorum.election_timeout,
            fetch_timeout: quorum.fetch_timeout,
            initial_image: Arc::new(MetadataImage::empty()),
        };
        let weak = Rc::downgrade(shard);
        let on_image = Box::new(move |image: Arc<MetadataImage>| {
            if let Some(shard) = weak.upgrade() {
                glommio::spawn_local(async move {
                    let img = image.clone();
                    shard
                        .broadcast(|| ShardRequest::ApplyImage(img.clone()))
                        .await;
                    if let Some(node) = shard.cluster.borrow().clone() {
                        node.image_applied(&image);
                    }
                })
                .detach();
            }
        });
        let raft = MetadataRaft::start(settings, on_image)
            .await
            .map_err(|e| anyhow::anyhow!("starting the metadata quorum: {e}"))?;
        let node = Rc::new(ClusterNode {
            raft,
            node_id: config.node_id,
            host: advertised.0,
            port: advertised.1,
            rack: config.rack.clone(),
            incarnation_id: uuid::Uuid::new_v4(),
            epoch: Cell::new(None),
            liveness: RefCell::new(Liveness::new(quorum.broker_session_timeout)),
            was_leader: Cell::new(false),
            rebalance_checked: Cell::new(None),
            expected_cluster_id,
            quorum,
            controller_id,
            stopping: Cell::new(false),
            config: config.clone(),
            failed,
            recorded_cluster_id: RefCell::new(None),
            data_dir: config.data_dir.clone(),
        });
        node.check_cluster_id(&node.raft.image())?;
        let handler_node = Rc::downgrade(&node);
        node.raft
            .set_rpc_handler(Rc::new(move |req: ControlRequest| {
                let node = handler_node.upgrade();
                Box::pin(async move {
                    let reply = match (node, serde_json::from_value::<ControlMessage>(req)) {
                        (Some(n), Ok(msg)) => n.on_control(msg).await,
                        (_, Err(e)) => {
                            tracing::warn!(error = %e, "malformed control request");
                            HeartbeatReply {
                                stale: true,
                                fenced: true,
                                caught_up: false,
                            }
                        }
                        (None, _) => HeartbeatReply {
                            stale: true,
                            fenced: true,
                            caught_up: false,
                        },
                    };
                    serde_json::to_value(reply).unwrap_or(serde_json::Value::Null)
                })
            }));
        let me = node.clone();
        glommio::spawn_local(async move { me.broker_loop().await }).detach();
        let me = node.clone();
        glommio::spawn_local(async move { me.controller_loop().await }).detach();
        Ok(node)
    }

    /// A node must not join a quorum of another cluster: refused, naming both ids.
    fn check_cluster_id(&self, image: &MetadataImage) -> anyhow::Result<()> {
        if let Some(theirs) = self.raft.refused_by() {
            anyhow::bail!(
                "the quorum's voters belong to cluster {theirs}, but this node's data directory belongs to cluster {}; refusing to join",
                self.expected_cluster_id.as_deref().unwrap_or("?")
            );
        }
        match &self.expected_cluster_id {
            Some(ours) if !image.cluster_id.is_empty() && &image.cluster_id != ours => {
                anyhow::bail!(
                    "this node's data directory belongs to cluster {ours}, but the quorum's cluster id is {}; refusing to join",
                    image.cluster_id
                )
            }
            _ => Ok(()),
        }
    }

    /// Registration, then a heartbeat every `broker.heartbeat.interval.ms`; registers again
    /// when the controller says our registration is stale.
    async fn broker_loop(self: Rc<Self>) {
        while !self.stopping.get() {
            if self.epoch.get().is_none() {
                match self.register().await {
                    Ok(epoch) => {
                        tracing::info!(node = self.node_id, epoch, "broker registered");
                        self.epoch.set(Some(epoch));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "broker registration not yet accepted");
                        glommio::timer::sleep(REGISTER_RETRY_BACKOFF).await;
                        continue;
                    }
                }
            }
            if let Some(epoch) = self.epoch.get() {
                let hb = Heartbeat {
                    node_id: self.node_id,
                    epoch,
                    applied_version: self.raft.image().version,
                };
                let req = serde_json::to_value(ControlMessage::Heartbeat(hb))
                    .unwrap_or(serde_json::Value::Null);
                let within = self.quorum.request_timeout;
                match self.raft.control_to_leader(req, within).await {
                    Ok(reply) => match serde_json::from_value::<HeartbeatReply>(reply) {
                        Ok(r) if r.stale => {
                            tracing::warn!(
                                node = self.node_id,
                                "registration is stale; registering again"
                            );
                            self.epoch.set(None);
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "malformed heartbeat reply"),
                    },
                    Err(e) => tracing::debug!(error = %e, "heartbeat not delivered"),
                }
            }
            glommio::timer::sleep(self.quorum.broker_heartbeat_interval).await;
        }
    }

    async fn register(&self) -> Result<i64, ProposeError> {
        let cmd = ControllerCommand::RegisterBroker {
            node_id: self.node_id,
            incarnation_id: self.incarnation_id,
            host: self.host.clone(),
            port: self.port,
            rack: self.rack.clone(),
        };
        match self.raft.propose(cmd).await? {
            Outcome::BrokerRegistered { epoch, .. } => Ok(epoch),
            other => Err(ProposeError::Fatal(format!(
                "registration answered {other:?}"
            ))),
        }
    }

    /// While this node leads the quorum: fence expired sessions, name the cluster.
    async fn controller_loop(self: Rc<Self>) {
        while !self.stopping.get() {
            glommio::timer::sleep(LIVENESS_CHECK_INTERVAL).await;
            let leader = self.raft.leader();
            self.controller_id
                .store(leader.unwrap_or(-1), Ordering::Relaxed);
            let image = self.raft.image();
            if let Err(e) = self.check_cluster_id(&image) {
                tracing::error!("{e:#}");
                self.failed.store(true, Ordering::SeqCst);
                return;
            }
            if !self.raft.is_leader() {
                self.was_leader.set(false);
                self.rebalance_checked.set(None);
                continue;
            }
            if !self.was_leader.replace(true) {
                self.liveness
                    .borrow_mut()
                    .become_leader(&image, Instant::now());
                tracing::info!(node = self.node_id, "this node is the active controller");
            }
            if image.cluster_id.is_empty() {
                let id = self
                    .expected_cluster_id
                    .clone()
                    .unwrap_or_else(crate::cluster::image::new_cluster_id);
                if let Err(e) = self
                    .raft
                    .propose(ControllerCommand::SetClusterId { cluster_id: id })
                    .await
                {
                    tracing::warn!(error = %e, "naming the cluster failed; will retry");
                }
                continue;
            }
            self.create_offsets_topic(&image).await;
            self.fence_refusing_brokers(&image).await;
            self.record_broker_defaults(&image).await;
            let expired = self.liveness.borrow_mut().expired(&image, Instant::now());
            for cmd in expired {
                // Not forwarded: a controller cut off from the quorum sees every session expire;
                // once deposed, those fences must not reach the new controller.
                match self.raft.propose_as_leader(cmd.clone()).await {
                    Ok(_) => tracing::warn!(command = ?cmd, "broker session expired: fenced"),
                    Err(ProposeError::NotLeader { .. }) => {
                        tracing::debug!(command = ?cmd, "not the leader: no fencing from here");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, command = ?cmd, "fencing failed; will retry")
                    }
                }
            }
            self.rebalance_leaders(&image).await;
        }
    }

    /// The broker-level defaults elections use are this (active) controller's own: recorded in
    /// the image when they differ from what it holds, so every node applies the same.
    async fn record_broker_defaults(&self, image: &MetadataImage) {
        let configs = election::broker_defaults(&self.config);
        if image.broker_defaults == configs {
            return;
        }
        if let Err(e) = self
            .raft
            .propose(ControllerCommand::SetBrokerDefaults { configs })
            .await
        {
            tracing::warn!(error = %e, "recording the broker defaults failed; will retry");
        }
    }

    /// `auto.leader.rebalance.enable`: every `leader.imbalance.check.interval.seconds` (the
    /// first check one interval after taking over, as Kafka schedules it), a preferred
    /// election for the partitions Kafka's per-broker imbalance rule picks.
    async fn rebalance_leaders(&self, image: &MetadataImage) {
        if !self.config.flag("auto.leader.rebalance.enable") {
            return;
        }
        let seconds = self
            .config
            .int("leader.imbalance.check.interval.seconds", 300);
        let interval = Duration::from_secs(u64::try_from(seconds).unwrap_or(1).max(1));
        let now = Instant::now();
        match self.rebalance_checked.get() {
            None => {
                self.rebalance_checked.set(Some(now));
                return;
            }
            Some(at) if now.duration_since(at) < interval => return,
            Some(_) => self.rebalance_checked.set(Some(now)),
        }
        let percentage = self
            .config
            .int("leader.imbalance.per.broker.percentage", 10);
        let partitions = rebalance::imbalanced_partitions(
            image,
            percentage,
            crate::limits::ELECT_LEADERS_PARTITIONS_MAX,
        );
        if partitions.is_empty() {
            return;
        }
        let cmd = ControllerCommand::ElectLeaders {
            election_type: ElectionType::Preferred,
            partitions: Some(partitions),
        };
        match self.raft.propose(cmd).await {
            Ok(Outcome::Elected(results)) => {
                let elected = results.iter().filter(|r| r.error.is_none()).count();
                tracing::info!(
                    elected,
                    tried = results.len(),
                    "automatic preferred leader election"
                );
            }
            Ok(other) => tracing::warn!(outcome = ?other, "preferred election answered oddly"),
            Err(e) => tracing::warn!(error = %e, "automatic preferred leader election failed"),
        }
    }

    /// Fences every unfenced broker whose Kafka port refuses connections.
    ///
    /// Decision: a broker killed with kill -9 (or crashed) leaves nothing listening on its
    /// port, and the kernel answers a connect with a reset at once; the active controller
    /// probes each unfenced broker's port every `LIVENESS_CHECK_INTERVAL` and fences one that
    /// refuses, instead of waiting out `broker.session.timeout.ms` (9 s by default, Kafka's
    /// failover time). Only a refusal counts: a probe that times out (a slow or partitioned
    /// broker) proves nothing and leaves it to the session timeout. A restarting broker that
    /// is fenced this way registers again anyway. Why: the goal of a new leader within
    /// 2 s of a kill -9 at default settings; measured in BENCHMARKS.md.
    async fn fence_refusing_brokers(&self, image: &MetadataImage) {
        let probes = image
            .brokers
            .values()
            .filter(|b| b.node_id != self.node_id && !b.fenced && !b.in_controlled_shutdown)
            .map(|b| async move {
                let addr = match b.host.parse::<std::net::IpAddr>() {
                    Ok(ip) => std::net::SocketAddr::new(ip, b.port),
                    Err(_) => return None,
                };
                let probe = glommio::net::TcpStream::connect_timeout(addr, BROKER_PROBE_TIMEOUT)
                    .await
                    .map_err(std::io::Error::from);
                match probe {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Some((b.node_id, b.epoch))
                    }
                    _ => None,
                }
            });
        let refused: Vec<(i32, i64)> = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        for (node_id, epoch) in refused {
            // Under this node's leadership only, like session expiry (never forwarded).
            let cmd = ControllerCommand::FenceBroker { node_id, epoch };
            match self.raft.propose_as_leader(cmd).await {
                Ok(_) => tracing::warn!(
                    node_id,
                    epoch,
                    "broker's port refuses connections (process gone): fenced"
                ),
                Err(ProposeError::NotLeader { .. }) => break,
                Err(e) => tracing::warn!(error = %e, node_id, "fencing failed; will retry"),
            }
        }
    }

    /// After every applied image: records a newly learned cluster id in meta.properties, and
    /// stops the node if the quorum turns out to be another cluster's.
    fn image_applied(&self, image: &MetadataImage) {
        if let Err(e) = self.check_cluster_id(image) {
            tracing::error!("{e:#}");
            self.failed.store(true, Ordering::SeqCst);
            return;
        }
        if image.cluster_id.is_empty()
            || self.recorded_cluster_id.borrow().as_deref() == Some(image.cluster_id.as_str())
        {
            return;
        }
        match super::meta::ensure(&self.data_dir, &image.cluster_id, self.node_id) {
            Ok(()) => *self.recorded_cluster_id.borrow_mut() = Some(image.cluster_id.clone()),
            Err(e) => tracing::error!(error = %e, "recording the cluster id failed"),
        }
    }

    /// The active controller creates `__consumer_offsets` once as many brokers are unfenced as
    /// its replication factor asks (`offsets.topic.replication.factor`, capped by the number of
    /// voters, as Kafka caps it by the brokers present), so groups get replicated coordinators.
    async fn create_offsets_topic(&self, image: &MetadataImage) {
        use crate::cluster::image::CONSUMER_OFFSETS_TOPIC;
        if image.topic(CONSUMER_OFFSETS_TOPIC).is_some() {
            return;
        }
        let wanted = self
            .config
            .int("offsets.topic.replication.factor", 3)
            .max(1);
        let rf = wanted.min(self.quorum.voters.len() as i64);
        let unfenced = image.brokers.values().filter(|b| !b.fenced).count() as i64;
        if unfenced < rf {
            return;
        }
        let cmd = crate::runtime::offsets_topic_command(&self.config, rf as i16);
        match self.raft.propose(cmd).await {
            Ok(_) => tracing::info!(replication_factor = rf, "created {CONSUMER_OFFSETS_TOPIC}"),
            Err(e) => {
                tracing::warn!(error = %e, "creating {CONSUMER_OFFSETS_TOPIC} failed; will retry")
            }
        }
    }

    /// A control RPC from another node (or this one), served by the active controller.
    async fn on_control(&self, msg: ControlMessage) -> HeartbeatReply {
        match msg {
            ControlMessage::Heartbeat(hb) => {
                let image = self.raft.image();
                let (reply, cmd) =
                    self.liveness
                        .borrow_mut()
                        .heartbeat(&image, &hb, Instant::now());
                if let Some(cmd) = cmd {
                    if self.raft.is_leader() {
                        let raft = self.raft.clone();
                        glommio::spawn_local(async move {
                            if let Err(e) = raft.propose(cmd).await {
                                tracing::warn!(error = %e, "unfencing failed; will retry");
                            }
                        })
                        .detach();
                    }
                }
                reply
            }
        }
    }

    /// SIGTERM: move our leaderships away and leave the broker list before exit.
    pub async fn controlled_shutdown(&self) {
        self.stopping.set(true);
        let Some(epoch) = self.epoch.get() else {
            self.raft.shutdown(LEADERSHIP_HANDOFF_TIMEOUT).await;
            return;
        };
        let steps = [
            ControllerCommand::BeginControlledShutdown {
                node_id: self.node_id,
                epoch,
            },
            ControllerCommand::FenceBroker {
                node_id: self.node_id,
                epoch,
            },
        ];
        for cmd in steps {
            let r = glommio::timer::timeout(CONTROLLED_SHUTDOWN_TIMEOUT, async {
                Ok(self.raft.propose(cmd.clone()).await)
            })
            .await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, command = ?cmd, "controlled shutdown step failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!(command = ?cmd, "controlled shutdown step timed out");
                    break;
                }
            }
        }
        tracing::info!(node = self.node_id, "controlled shutdown done");
        self.raft.shutdown(LEADERSHIP_HANDOFF_TIMEOUT).await;
    }
}
