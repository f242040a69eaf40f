//! The metadata quorum: openraft 0.10 on shard 0's glommio executor.
//!
//! - `rt`: `GlommioRuntime`, openraft's `AsyncRuntime` on glommio.
//! - `types`: openraft's type configuration (commands, replies, nodes).
//! - `log_store`: the Raft log as the Kafka partition `__cluster_metadata-0`, vote in `quorum-state`.
//! - `state_machine`: the `MetadataImage`, applied with `cluster::controller::apply`; snapshots.
//! - `rpc`: the framed RPCs on the CONTROLLER listener, openraft's network client, the server.
//!
//! [`MetadataRaft`] is the handle the runtime uses. It lives on shard 0 (`Rc`, `!Send`).

pub mod log_store;
pub mod rpc;
pub mod rt;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use openraft::errors::ClientWriteError;
use openraft::rt::WatchReceiver;
use openraft::{AsyncRuntime, Config, SnapshotPolicy};

pub use rpc::{ControlReply, ControlRequest};
pub use rt::GlommioRuntime;

use self::log_store::LogStore;
use self::rpc::{InstallSnapshotRpc, Kind, Local, Pool, RemoteError};
use self::state_machine::{ImageCallback, StateMachine};
use self::types::{ControllerNode, Raft, Snapshot};
use crate::cluster::controller::{ControllerCommand, ControllerError, Outcome};
use crate::cluster::image::MetadataImage;
use crate::limits;
use crate::storage::GlommioIo;

/// How to start this node's part of the quorum (from the KRaft configuration).
#[derive(Clone, Debug)]
pub struct RaftSettings {
    /// `node.id`.
    pub node_id: i32,
    /// `controller.quorum.voters`: id → CONTROLLER listener address.
    pub voters: BTreeMap<i32, SocketAddr>,
    /// This node's CONTROLLER listener.
    pub listen: SocketAddr,
    /// The data directory; the log lives in `<dir>/__cluster_metadata-0`.
    pub dir: PathBuf,
    /// Stored (meta.properties) or configured `cluster.id`; `None` until the image has one.
    pub cluster_id: Option<String>,
    /// `controller.quorum.election.timeout.ms` (Kafka's default 1000 ms): a follower that hears
    /// nothing from the leader elects after 1.25 to 1.5 times it (see `raft_config`); heartbeats
    /// go out every tenth of it.
    pub election_timeout: Duration,
    /// `controller.quorum.fetch.timeout.ms` (2000 ms): the bound of one replication RPC.
    pub fetch_timeout: Duration,
    /// The image before the first entry (no topics, no brokers, version 0). Given by the caller
    /// so that this layer does not depend on the image's fields.
    pub initial_image: Arc<MetadataImage>,
}

/// Why start failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("metadata log: {0}")]
    Storage(#[from] io::Error),
    #[error("raft configuration: {0}")]
    Config(String),
    #[error("node {0} is not in controller.quorum.voters")]
    NotAVoter(i32),
    #[error("cannot listen on the CONTROLLER listener {addr}: {error}")]
    Listen { addr: SocketAddr, error: String },
    #[error("raft: {0}")]
    Fatal(String),
}

/// Why a proposal did not commit.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
    #[error("the metadata quorum has no leader")]
    QuorumUnavailable,
    #[error("the proposal was not committed in time")]
    Timeout,
    #[error("{0}")]
    Rejected(ControllerError),
    #[error("raft stopped: {0}")]
    Fatal(String),
}

/// DescribeQuorum's view of the quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumState {
    pub leader_id: i32,
    /// The Raft term.
    pub leader_epoch: i32,
    /// Committed index + 1 (-1 when nothing is committed).
    pub high_watermark: i64,
    pub voters: Vec<ReplicaState>,
    pub observers: Vec<ReplicaState>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub replica_id: i32,
    /// Matched index + 1 as the leader knows it (-1 unknown).
    pub log_end_offset: i64,
    /// Milliseconds since the epoch of the last heartbeat acknowledged (-1 unknown).
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

/// Extra request kinds on the CONTROLLER listener, handled by the runtime's code.
pub type ControlHandler = Rc<dyn Fn(ControlRequest) -> LocalBoxFuture<'static, ControlReply>>;

/// This node's part of the metadata quorum. Lives on shard 0.
pub struct MetadataRaft {
    inner: Rc<Inner>,
}

struct Inner {
    node_id: i32,
    /// Bound of one forwarding attempt (openraft's maximum election timeout): a leader that
    /// stopped answering (no RST: a partition, a hung process) is given up on and the new
    /// leader tried, instead of spending the whole proposal deadline on it.
    forward_attempt_timeout: Duration,
    voters: BTreeMap<i32, SocketAddr>,
    raft: Raft,
    sm: Rc<state_machine::Shared>,
    log: LogStore,
    pool: Pool,
    /// Our node id and cluster id, shared with the network client and the server.
    local: Rc<Local>,
    control: RefCell<Option<ControlHandler>>,
    server: RefCell<Option<glommio::Task<()>>>,
}

fn raft_config(settings: &RaftSettings) -> Result<Config, RaftError> {
    let election_ms = (settings.election_timeout.as_millis() as u64).max(20);
    // A follower elects once openraft's leader lease (its maximum election timeout) and then a
    // randomized election timeout have passed since it last heard from the leader. With
    // min = 1/2 and max = 3/4 of controller.quorum.election.timeout.ms that is 1.25 to 1.5
    // times the setting: at Kafka's default 1000 ms, a crashed leader is replaced within
    // about 1.5 s (the goal is under 2 s to the next commit).
    let config = Config {
        cluster_name: "sluice-metadata".to_string(),
        election_timeout_min: election_ms / 2,
        election_timeout_max: election_ms * 3 / 4,
        heartbeat_interval: (election_ms / 10).max(1),
        install_snapshot_timeout: (settings.fetch_timeout.as_millis() as u64).max(election_ms),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(limits::METADATA_SNAPSHOT_ENTRIES),
        enable_pre_vote: Some(true),
        ..Config::default()
    };
    config
        .validate()
        .map_err(|e| RaftError::Config(e.to_string()))
}

impl MetadataRaft {
    /// Opens the log, loads the newest snapshot, starts Raft and binds the CONTROLLER listener.
    /// A voter whose log is empty initializes the full voter set (every voter does; openraft
    /// accepts the same membership from all). `on_image` is called once with the recovered
    /// image, then after every applied entry that changed it, on the state machine's task: it
    /// must not block (hand the image on, e.g. spawn the broadcast). Call on shard 0's executor.
    pub async fn start(
        settings: RaftSettings,
        on_image: ImageCallback,
    ) -> Result<Rc<MetadataRaft>, RaftError> {
        if !settings.voters.contains_key(&settings.node_id) {
            return Err(RaftError::NotAVoter(settings.node_id));
        }
        let config = Arc::new(raft_config(&settings)?);
        // Bound first: a node that cannot listen starts nothing.
        let listener =
            glommio::net::TcpListener::bind(settings.listen).map_err(|e| RaftError::Listen {
                addr: settings.listen,
                error: e.to_string(),
            })?;
        let io = Rc::new(GlommioIo);
        let log = LogStore::open(&settings.dir, io.clone()).await?;
        let local = Rc::new(Local {
            node_id: settings.node_id,
            cluster_id: RefCell::new(settings.cluster_id.clone().unwrap_or_default()),
            refused_by: RefCell::new(None),
        });
        // Until a cluster id is stored or configured, the node adopts the quorum's (the image's)
        // as soon as it applies it; frames then carry and check it.
        let adopt = local.clone();
        let on_image: ImageCallback = Box::new(move |image: Arc<MetadataImage>| {
            if adopt.cluster_id.borrow().is_empty() && !image.cluster_id.is_empty() {
                *adopt.cluster_id.borrow_mut() = image.cluster_id.clone();
            }
            on_image(image)
        });
        let sm =
            StateMachine::open(log.dir(), io, settings.initial_image.clone(), on_image).await?;
        let shared = sm.shared();
        let network = rpc::NetworkFactory {
            local: local.clone(),
        };
        let election_timeout_max = config.election_timeout_max;
        let raft = Raft::new(settings.node_id as u64, config, network, log.clone(), sm)
            .await
            .map_err(|e| RaftError::Fatal(e.to_string()))?;
        let inner = Rc::new(Inner {
            node_id: settings.node_id,
            forward_attempt_timeout: Duration::from_millis(election_timeout_max),
            voters: settings.voters.clone(),
            raft,
            sm: shared,
            log,
            pool: Pool::new(local.clone()),
            local: local.clone(),
            control: RefCell::new(None),
            server: RefCell::new(None),
        });
        let server = glommio::spawn_local(rpc::accept_loop(
            listener,
            local,
            Rc::new(Service(inner.clone())),
        ));
        *inner.server.borrow_mut() = Some(server);
        inner.initialize_if_empty().await?;
        inner.sm.notify(inner.sm.image());
        tracing::info!(node = settings.node_id, listen = %settings.listen, "metadata quorum started");
        Ok(Rc::new(MetadataRaft { inner }))
    }

    /// Proposes `cmd`: on the leader, appends it and answers after commit and apply; elsewhere
    /// forwards it to the leader's CONTROLLER listener. Waits at most
    /// `METADATA_PROPOSE_TIMEOUT_MS`, following leader changes meanwhile.
    pub async fn propose(&self, cmd: ControllerCommand) -> Result<Outcome, ProposeError> {
        self.inner.propose(cmd).await
    }

    /// Proposes `cmd` only under this node's own leadership, never forwarding it: for decisions
    /// the active controller made from its own view (a broker's session expired), which a
    /// deposed controller must not hand to its successor. NotLeader once it is not the leader.
    pub async fn propose_as_leader(&self, cmd: ControllerCommand) -> Result<Outcome, ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let within = Duration::from_millis(limits::METADATA_PROPOSE_TIMEOUT_MS);
        self.inner.propose_local(cmd, within).await
    }

    /// The cluster id of a peer that answered from another cluster, if one did: this node's
    /// data or configuration belongs elsewhere and it cannot join.
    pub fn refused_by(&self) -> Option<String> {
        self.inner.local.refused_by.borrow().clone()
    }

    /// The last applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.sm.image()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<i32> {
        self.inner.leader()
    }

    pub fn is_leader(&self) -> bool {
        self.inner.raft.is_leader()
    }

    /// DescribeQuorum's view, from openraft's metrics.
    pub fn quorum_state(&self) -> QuorumState {
        self.inner.quorum_state()
    }

    /// Installs the handler of `Control` requests on the CONTROLLER listener.
    pub fn set_rpc_handler(&self, handler: ControlHandler) {
        *self.inner.control.borrow_mut() = Some(handler);
    }

    /// Sends a control request to the leader's CONTROLLER listener (the lead's broker
    /// heartbeats), bounded by `within`. On the leader itself the handler is called directly.
    pub async fn control_to_leader(
        &self,
        req: ControlRequest,
        within: Duration,
    ) -> Result<ControlReply, ProposeError> {
        let Some(leader) = self.leader() else {
            return Err(ProposeError::QuorumUnavailable);
        };
        if leader == self.inner.node_id {
            let handler = self.inner.control.borrow().clone();
            return match handler {
                Some(handler) => Ok(handler(req).await),
                None => Err(ProposeError::Fatal("no control handler installed".into())),
            };
        }
        let addr = self.inner.addr_of(leader)?;
        let reply: Result<ControlReply, rpc::CallError> = self
            .inner
            .pool
            .call(&addr, Kind::Control, &req, within)
            .await;
        reply.map_err(|e| remote_to_propose(e, Some(leader)))
    }

    /// Makes a snapshot now (openraft's trigger; it also purges the log up to openraft's
    /// `max_in_snapshot_log_to_keep`). Returns once the snapshot is requested.
    pub async fn trigger_snapshot(&self) -> Result<(), ProposeError> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ProposeError::Fatal(e.to_string()))
    }

    /// Stops Raft and the listener, and closes the log cleanly. A leader first hands
    /// leadership to the most caught-up voter and waits (at most `handoff_within`) for another
    /// leader, so that the quorum does not wait an election timeout.
    pub async fn shutdown(&self, handoff_within: Duration) {
        self.inner.hand_off_leadership(handoff_within).await;
        if let Err(err) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %err, "raft shutdown");
        }
        if let Some(server) = self.inner.server.borrow_mut().take() {
            drop(server); // cancels the accept loop; open connections end with their peers
        }
        self.inner.log.close().await;
    }
}

fn remote_to_propose(err: rpc::CallError, leader: Option<i32>) -> ProposeError {
    match err {
        rpc::CallError::Remote(RemoteError::NotLeader { leader }) => {
            ProposeError::NotLeader { leader }
        }
        rpc::CallError::Remote(RemoteError::QuorumUnavailable) => ProposeError::QuorumUnavailable,
        rpc::CallError::Remote(RemoteError::Timeout) => ProposeError::Timeout,
        rpc::CallError::Remote(RemoteError::Rejected(e)) => ProposeError::Rejected(e),
        rpc::CallError::Remote(other) => ProposeError::Fatal(other.to_string()),
        // The leader is unreachable: retried until the deadline.
        rpc::CallError::Unreachable(_) | rpc::CallError::Network(_) => {
            ProposeError::NotLeader { leader }
        }
    }
}

impl Inner {
    fn leader(&self) -> Option<i32> {
        let metrics = self.raft.metrics();
        let leader = metrics.borrow_watched().current_leader;
        leader.and_then(|id| i32::try_from(id).ok())
    }

    /// Resolves when this node knows a leader other than `leader` (or none).
    async fn leader_other_than(&self, leader: i32) {
        let mut metrics = self.raft.metrics();
        loop {
            let current = metrics.borrow_watched().current_leader;
            if current != Some(leader as u64) {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    fn addr_of(&self, node: i32) -> Result<String, ProposeError> {
        self.voters
            .get(&node)
            .map(|a| a.to_string())
            .ok_or(ProposeError::NotLeader { leader: Some(node) })
    }

    /// Leader only: asks the most caught-up other voter to take over, and waits for it.
    async fn hand_off_leadership(&self, within: Duration) {
        if !self.raft.is_leader() {
            return;
        }
        let target = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let replication = m.replication.clone().unwrap_or_default();
            m.membership_config
                .membership()
                .voter_ids()
                .filter(|id| *id != self.node_id as u64)
                .max_by_key(|id| replication.get(id).cloned().flatten().map(|l| l.index))
        };
        let Some(target) = target else {
            return;
        };
        if let Err(err) = self.raft.trigger().transfer_leader(target).await {
            tracing::warn!(error = %err, "leadership hand-off");
            return;
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.leader().is_some_and(|l| l != self.node_id) {
                tracing::info!(to = target, "metadata leadership handed off");
                return;
            }
            GlommioRuntime::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(
            to = target,
            "metadata leadership hand-off not confirmed in time"
        );
    }

    async fn initialize_if_empty(&self) -> Result<(), RaftError> {
        let metrics = self.raft.metrics();
        let (last_log, vote_term) = {
            let m = metrics.borrow_watched();
            (m.last_log_index, m.current_term)
        };
        if last_log.is_some() || vote_term > 0 {
            return Ok(());
        }
        let members: BTreeMap<u64, ControllerNode> = self
            .voters
            .iter()
            .map(|(id, addr)| {
                (
                    *id as u64,
                    ControllerNode {
                        addr: addr.to_string(),
                    },
                )
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another voter's initialization reached this node first: the same membership.
            Err(openraft::errors::RaftError::APIError(err)) => {
                tracing::info!(error = %err, "metadata quorum already initialized");
                Ok(())
            }
            Err(err) => Err(RaftError::Fatal(err.to_string())),
        }
    }

    /// Proposes on this node if it leads, else forwards; follows leader changes until the
    /// deadline.
    async fn propose(&self, cmd: ControllerCommand) -> Result<Outcome, ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(limits::METADATA_PROPOSE_TIMEOUT_MS);
        let mut last_error = ProposeError::QuorumUnavailable;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = match self.leader() {
                Some(leader) if leader == self.node_id => {
                    self.propose_local(cmd.clone(), left).await
                }
                Some(leader) => {
                    let within = left.min(self.forward_attempt_timeout);
                    // Given up as soon as this node learns of another leader.
                    let forward = Box::pin(self.forward(leader, &cmd, within));
                    let moved = Box::pin(self.leader_other_than(leader));
                    match GlommioRuntime::select2(forward, moved).await {
                        openraft::rt::Select2::First(result) => result,
                        openraft::rt::Select2::Second(()) => {
                            Err(ProposeError::NotLeader { leader: None })
                        }
                    }
                }
                None => Err(ProposeError::QuorumUnavailable),
            };
            match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(err @ (ProposeError::NotLeader { .. } | ProposeError::QuorumUnavailable)) => {
                    last_error = err;
                    // Wait for an election or a new leader to become known.
                    GlommioRuntime::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => return Err(err),
            }
        }
        Err(match last_error {
            ProposeError::NotLeader { .. } => ProposeError::QuorumUnavailable,
            other => other,
        })
    }

    async fn forward(
        &self,
        leader: i32,
        cmd: &ControllerCommand,
        within: Duration,
    ) -> Result<Outcome, ProposeError> {
        let addr = self.addr_of(leader)?;
        let reply: Result<Outcome, rpc::CallError> =
            self.pool.call(&addr, Kind::Forward, cmd, within).await;
        reply.map_err(|e| remote_to_propose(e, Some(leader)))
    }

    /// client_write on this node, bounded by `within`.
    async fn propose_local(
        &self,
        cmd: ControllerCommand,
        within: Duration,
    ) -> Result<Outcome, ProposeError> {
        match GlommioRuntime::timeout(within, self.raft.client_write(cmd)).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Ok(response)) => response.data.map_err(ProposeError::Rejected),
            Ok(Err(openraft::errors::RaftError::APIError(ClientWriteError::ForwardToLeader(
                f,
            )))) => Err(ProposeError::NotLeader {
                leader: f.leader_id.and_then(|id| i32::try_from(id).ok()),
            }),
            // The entry may still commit through the new leader: not retried here.
            Ok(Err(openraft::errors::RaftError::APIError(other))) => {
                Err(ProposeError::Fatal(other.to_string()))
            }
            Ok(Err(openraft::errors::RaftError::Fatal(fatal))) => {
                Err(ProposeError::Fatal(fatal.to_string()))
            }
        }
    }

    fn quorum_state(&self) -> QuorumState {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        let heartbeats = m.heartbeat.clone().unwrap_or_default();
        let now = Instant::now();
        let wall_now = crate::storage::flush::wall_clock_ms();
        let own_end = m.last_log_index.map_or(-1, |i| i as i64 + 1);
        let replica = |id: u64| {
            if id == self.node_id as u64 {
                let seen = if m.current_leader == Some(id) {
                    wall_now
                } else {
                    -1
                };
                return ReplicaState {
                    replica_id: id as i32,
                    log_end_offset: own_end,
                    last_fetch_timestamp: seen,
                    last_caught_up_timestamp: seen,
                };
            }
            let log_end_offset = replication
                .get(&id)
                .and_then(|l| l.as_ref())
                .map_or(-1, |l| l.index as i64 + 1);
            // The last acknowledged heartbeat, as wall-clock milliseconds.
            let last_fetch_timestamp =
                heartbeats
                    .get(&id)
                    .and_then(|t| t.as_ref())
                    .map_or(-1, |t| {
                        let ago = now.saturating_duration_since((*t).into_inner());
                        wall_now - ago.as_millis() as i64
                    });
            let caught_up = log_end_offset >= 0 && log_end_offset == own_end;
            ReplicaState {
                replica_id: id as i32,
                log_end_offset,
                last_fetch_timestamp,
                last_caught_up_timestamp: if caught_up { last_fetch_timestamp } else { -1 },
            }
        };
        QuorumState {
            leader_id: m.current_leader.map_or(-1, |id| id as i32),
            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
            high_watermark: m.cluster_committed.map_or(-1, |c| c.index as i64 + 1),
            voters: voters.iter().map(|id| replica(*id)).collect(),
            observers: Vec::new(),
        }
    }
}

/// The server side of the CONTROLLER listener.
struct Service(Rc<Inner>);

impl rpc::Service for Service {
    fn handle(
        &self,
        kind: Kind,
        from: i32,
        payload: Vec<u8>,
    ) -> LocalBoxFuture<'_, io::Result<Vec<u8>>> {
        Box::pin(async move {
            let inner = &self.0;
            let raft_err = |e: &dyn std::fmt::Display| RemoteError::Raft(e.to_string());
            match kind {
                Kind::Vote => {
                    let req = rpc::request(&payload)?;
                    rpc::reply_payload(&inner.raft.vote(req).await.map_err(|e| raft_err(&e)))
                }
                Kind::PreVote => {
                    let req = rpc::request(&payload)?;
                    rpc::reply_payload(&inner.raft.pre_vote(req).await.map_err(|e| raft_err(&e)))
                }
                Kind::AppendEntries => {
                    let req = rpc::request(&payload)?;
                    rpc::reply_payload(
                        &inner
                            .raft
                            .append_entries(req)
                            .await
                            .map_err(|e| raft_err(&e)),
                    )
                }
                Kind::InstallSnapshot => {
                    let req: InstallSnapshotRpc = rpc::request(&payload)?;
                    let snapshot = Snapshot {
                        meta: req.meta,
                        snapshot: req.data.into_bytes(),
                    };
                    let result = inner.raft.install_full_snapshot(req.vote, snapshot).await;
                    rpc::reply_payload(&result.map_err(|e| raft_err(&e)))
                }
                Kind::Forward => {
                    let cmd: ControllerCommand = rpc::request(&payload)?;
                    let within = Duration::from_millis(limits::METADATA_PROPOSE_TIMEOUT_MS);
                    let result = if inner.raft.is_leader() {
                        inner.propose_local(cmd, within).await
                    } else {
                        Err(ProposeError::NotLeader {
                            leader: inner.leader(),
                        })
                    };
                    tracing::debug!(from, ok = result.is_ok(), "forwarded proposal");
                    rpc::reply_payload(&result.map_err(|e| match e {
                        ProposeError::NotLeader { leader } => RemoteError::NotLeader { leader },
                        ProposeError::QuorumUnavailable => RemoteError::QuorumUnavailable,
                        ProposeError::Timeout => RemoteError::Timeout,
                        ProposeError::Rejected(e) => RemoteError::Rejected(e),
                        ProposeError::Fatal(e) => RemoteError::Raft(e),
                    }))
                }
                Kind::Control => {
                    let req: ControlRequest = rpc::request(&payload)?;
                    let handler = inner.control.borrow().clone();
                    let result = match handler {
                        Some(handler) => Ok(handler(req).await),
                        None => Err(RemoteError::NoHandler),
                    };
                    rpc::reply_payload(&result)
                }
                Kind::TransferLeader => {
                    let req = rpc::request(&payload)?;
                    let result = inner.raft.handle_transfer_leader(req).await;
                    rpc::reply_payload(&result.map_err(|e| raft_err(&e)))
                }
                Kind::Reply => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected reply frame",
                )),
            }
        })
    }
}
