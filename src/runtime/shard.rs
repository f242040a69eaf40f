//! Per-core shard state.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::Senders;

use super::messages::{Envelope, ShardRequest, ShardResponse};
use super::placement;
use crate::cluster::{MetadataImage, TopicImage};
use crate::config::topic::{self, Source};
use crate::config::BrokerConfig;
use crate::model::{ShardId, TopicPartition};
use crate::storage::{LogConfig, LogManager};

/// The state of one shard. Lives on (and never leaves) the core it was created
/// on; other cores reach it only through `ShardRequest` messages.
pub struct Shard {
    pub id: ShardId,
    pub nr_shards: usize,
    pub config: Arc<BrokerConfig>,
    pub logs: Rc<LogManager>,
    pub groups: Rc<crate::group::GroupCoordinator>,
    pub txns: Rc<crate::txn::TxnCoordinator>,
    image: RefCell<Arc<MetadataImage>>,
    senders: Senders<Envelope>,
    reply_senders: Senders<Envelope>,
    /// Bounds the mesh requests this shard works on at once (see `spawn_mesh_receivers`).
    pub mesh_work: Rc<glommio::sync::Semaphore>,
    /// Calls to other shards waiting for their reply, by call id (this shard only).
    pending_calls:
        RefCell<std::collections::HashMap<u64, futures::channel::oneshot::Sender<ShardResponse>>>,
    next_call_id: Cell<u64>,
    /// Serialises controller commands (used on shard 0 only).
    pub controller_lock: glommio::sync::Semaphore,
    /// Serialises `apply_image`'s partition work (FIFO), each pass against the newest image.
    image_lock: glommio::sync::Semaphore,
    pub fetch_sessions: RefCell<crate::handler::fetch_session::FetchSessions>,
    /// Producer ids this shard may hand out: [next, end).
    pub producer_ids: Cell<(i64, i64)>,
    pub connections: Cell<usize>,
    /// Sockets of open connections, so shutdown can end their reads (SHUT_RD)
    /// without racing every read against a timer.
    pub open_sockets: RefCell<std::collections::HashMap<u64, std::os::fd::RawFd>>,
    pub next_connection_id: Cell<u64>,
    pub shutting_down: Cell<bool>,
    /// The node id of the active controller as this node last learned it (this node in
    /// single-node mode). Shared by every shard of the node; written by shard 0's
    /// `ClusterNode` when the Raft leader changes (-1 while there is none).
    pub controller_id: Arc<std::sync::atomic::AtomicI32>,
    /// This node's part in the cluster: shard 0 of a node with a quorum configured only.
    pub cluster: RefCell<Option<Rc<crate::cluster::node::ClusterNode>>>,
    /// Replication of this shard's partitions (cluster mode; unused by a single node).
    pub replicas: Rc<crate::replica::ReplicaManager>,
    pub stats: Stats,
}

/// This shard's ends of the request mesh and the reply mesh.
pub struct MeshSenders {
    pub requests: Senders<Envelope>,
    pub replies: Senders<Envelope>,
}

/// A request handed to its owner shard by [`Shard::submit`]; `answer` waits for the reply.
pub enum Pending {
    Local(super::LocalWork),
    Remote(futures::channel::oneshot::Receiver<ShardResponse>),
    Unavailable,
}

impl Pending {
    pub async fn answer(self) -> ShardResponse {
        match self {
            Pending::Local(work) => work.await,
            Pending::Remote(rx) => rx.await.unwrap_or(ShardResponse::Unavailable),
            Pending::Unavailable => ShardResponse::Unavailable,
        }
    }
}

/// Counters a shard keeps about itself (logged at shutdown; exposed later as metrics).
#[derive(Default)]
pub struct Stats {
    pub requests: Cell<u64>,
    pub produced_bytes: Cell<u64>,
    pub fetched_bytes: Cell<u64>,
    /// Record bytes sent to sockets by sendfile (never in user space).
    pub sendfile_bytes: Cell<u64>,
    /// Record bytes read into user space for a fetch (ranges not in the page cache).
    pub copied_bytes: Cell<u64>,
    /// Of those, followers' fetches: record bytes answered as file ranges (sent by sendfile)
    /// and read into memory first (ranges not in the page cache).
    pub replica_file_bytes: Cell<u64>,
    pub replica_copied_bytes: Cell<u64>,
}

impl Shard {
    // Each argument is a distinct piece of the shard's wiring made once in `shard_main`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ShardId,
        nr_shards: usize,
        config: Arc<BrokerConfig>,
        logs: Rc<LogManager>,
        groups: Rc<crate::group::GroupCoordinator>,
        image: Arc<MetadataImage>,
        mesh: MeshSenders,
        controller_id: Arc<std::sync::atomic::AtomicI32>,
    ) -> Shard {
        let slots = config.int("max.incremental.fetch.session.cache.slots", 1000) as usize;
        Shard {
            id,
            nr_shards,
            controller_id,
            cluster: RefCell::new(None),
            replicas: Rc::new(crate::replica::ReplicaManager::new(
                config.node_id,
                crate::replica::Settings::from_config(&config),
            )),
            txns: crate::txn::TxnCoordinator::new(id, &config, logs.clone()),
            config,
            logs,
            groups,
            image: RefCell::new(image),
            senders: mesh.requests,
            reply_senders: mesh.replies,
            mesh_work: Rc::new(glommio::sync::Semaphore::new(
                crate::limits::MESH_REQUESTS_IN_PROGRESS_MAX as u64,
            )),
            pending_calls: RefCell::new(std::collections::HashMap::new()),
            next_call_id: Cell::new(0),
            controller_lock: glommio::sync::Semaphore::new(1),
            image_lock: glommio::sync::Semaphore::new(1),
            fetch_sessions: RefCell::new(crate::handler::fetch_session::FetchSessions::new(slots)),
            producer_ids: Cell::new((0, 0)),
            connections: Cell::new(0),
            open_sockets: RefCell::new(std::collections::HashMap::new()),
            next_connection_id: Cell::new(0),
            shutting_down: Cell::new(false),
            stats: Stats::default(),
        }
    }

    /// The last metadata image this shard received.
    pub fn metadata(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// This node's id (`node.id`).
    /// The active controller's node id as this node knows it (-1: none).
    pub fn controller(&self) -> i32 {
        self.controller_id
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Whether this node leads `tp` in the current image.
    pub fn leads(&self, tp: &TopicPartition) -> bool {
        self.metadata().leads(self.node_id(), tp)
    }

    pub fn shard_for(&self, tp: &TopicPartition) -> ShardId {
        placement::shard_for(tp, self.nr_shards)
    }

    /// Sends `request` to `target` (running it inline when that is this shard)
    /// and waits for the answer.
    pub async fn call(self: &Rc<Self>, target: ShardId, request: ShardRequest) -> ShardResponse {
        self.submit(target, request).await.answer().await
    }

    /// Hands `request` to `target` and returns once it has taken its place there: for this
    /// shard at once (the owner's queues are entered synchronously), for another shard once it
    /// is on the mesh channel, which the receiver reads in order and enters the same way. A
    /// caller that submits requests one after another (holding its connection's turn) thus
    /// gets them served in that order by each owner. The answer is awaited separately.
    pub async fn submit(self: &Rc<Self>, target: ShardId, request: ShardRequest) -> Pending {
        if target == self.id {
            return Pending::Local(super::dispatch_local(self.clone(), request));
        }
        let id = self.next_call_id.get();
        self.next_call_id.set(id.wrapping_add(1));
        let (tx, rx) = futures::channel::oneshot::channel();
        self.pending_calls.borrow_mut().insert(id, tx);
        let envelope = Envelope::Request {
            id,
            from: self.id.0,
            request,
        };
        if self.senders.send_to(target.0, envelope).await.is_err() {
            self.pending_calls.borrow_mut().remove(&id);
            return Pending::Unavailable;
        }
        Pending::Remote(rx)
    }

    /// Handles one message from the mesh: runs a request (replying on the mesh), or
    /// completes the local call a reply belongs to. A request enters the owner's queues
    /// here, synchronously, in the order the mesh delivered it.
    /// `permit` (of `mesh_work`) is held until the reply is sent.
    pub fn receive(
        self: &Rc<Self>,
        envelope: Envelope,
        permit: Option<glommio::sync::StaticPermit>,
    ) {
        match envelope {
            Envelope::Request { id, from, request } => {
                let shard = self.clone();
                let work = super::dispatch_local(shard.clone(), request);
                glommio::spawn_local(async move {
                    let response = work.await;
                    let reply = Envelope::Response { id, response };
                    let sent = shard.reply_senders.send_to(from, reply).await;
                    drop(permit);
                    if sent.is_err() {
                        tracing::debug!(shard = shard.id.0, to = from, "reply dropped: peer gone");
                    }
                })
                .detach();
            }
            Envelope::Response { id, response } => {
                if let Some(tx) = self.pending_calls.borrow_mut().remove(&id) {
                    // The caller may have stopped waiting (a long poll that lost a race).
                    let _ = tx.send(response);
                }
            }
        }
    }

    /// Sends the same kind of request to every shard and collects the answers in shard order.
    pub async fn broadcast(self: &Rc<Self>, make: impl Fn() -> ShardRequest) -> Vec<ShardResponse> {
        let calls = (0..self.nr_shards).map(|s| self.call(ShardId(s), make()));
        futures::future::join_all(calls).await
    }

    /// Installs `image` and brings the partitions this shard owns in line with it.
    pub async fn apply_image(&self, image: Arc<MetadataImage>) {
        let old = self.metadata();
        if image.version < old.version {
            return;
        }
        *self.image.borrow_mut() = image.clone();
        if self.id.0 == 0 {
            crate::metrics::with(|m| m.image_changed(&old, &image));
        }
        // One pass at a time, against the newest image: a pass still at work for an older one
        // would otherwise reopen a partition a newer one removed (a reassignment's removed
        // replica) once the newer pass took it out of the log manager.
        let _turn = self.image_lock.acquire_permit(1).await;
        let image = self.metadata();
        let wanted = partitions_of_shard(&image, self.node_id(), self.id, self.nr_shards);
        for log in self.logs.partitions() {
            let tp = log.topic_partition().clone();
            let stale = match image.topic(&tp.topic) {
                Some(t) => t.id != log.topic_id() || !wanted.contains(&tp),
                None => true,
            };
            if stale {
                if let Err(e) = self.logs.remove_partition(&tp).await {
                    tracing::error!(shard = self.id.0, partition = %tp, error = %e, "removing partition failed");
                }
            }
        }
        let mut to_open = Vec::new();
        for t in image.topics.values() {
            // What the log configuration is made of; leader and ISR changes do not touch it.
            let changed = old
                .topic(&t.name)
                .is_none_or(|o| o.configs != t.configs || o.partitions.len() != t.partitions.len());
            let cfg = log_config(&self.config, t);
            for p in 0..t.partition_count() {
                let tp = TopicPartition::new(t.name.clone(), p);
                if !wanted.contains(&tp) {
                    continue;
                }
                if self.logs.get(&tp).is_some() {
                    if changed {
                        self.logs.update_config(&tp, cfg.clone());
                    }
                    continue;
                }
                to_open.push((tp, t.id, cfg.clone()));
            }
        }
        // Opens (recovery included) run concurrently, a bounded number at a time.
        for chunk in to_open.chunks(crate::storage::manager::PARALLEL_FILE_OPS_MAX) {
            let opens = chunk.iter().map(|(tp, id, cfg)| async move {
                match self.logs.open_partition(tp, *id, cfg.clone()).await {
                    Ok(_) => tracing::debug!(shard = self.id.0, partition = %tp, "partition opened"),
                    Err(e) => {
                        tracing::error!(shard = self.id.0, partition = %tp, error = %e, "opening partition failed")
                    }
                }
            });
            futures::future::join_all(opens).await;
        }
        if self.config.quorum.is_some() {
            // A group coordinator follows its offsets partition's leadership: whatever it
            // held of a partition whose leadership began or ended here is rebuilt from the
            // replicated log when next needed.
            for tp in self.replicas.on_image(&self.logs, &self.metadata()) {
                if tp.topic == crate::cluster::image::CONSUMER_OFFSETS_TOPIC {
                    self.groups.unload(tp.partition);
                } else if tp.topic == crate::txn::TRANSACTION_STATE_TOPIC {
                    self.txns.unload(tp.partition);
                }
            }
        }
    }

    /// Takes one producer id from this shard's block, asking the controller for a
    /// new block when it is used up.
    pub async fn next_producer_id(self: &Rc<Self>) -> Option<i64> {
        let (next, end) = self.producer_ids.get();
        if next < end {
            self.producer_ids.set((next + 1, end));
            return Some(next);
        }
        let resp = self
            .call(
                ShardId(0),
                ShardRequest::Controller(crate::cluster::ControllerCommand::AllocateProducerIds),
            )
            .await;
        match resp {
            ShardResponse::Controller(Ok(
                crate::cluster::controller::Outcome::ProducerIdBlock { first, len },
            )) => {
                self.producer_ids.set((first + 1, first + len));
                Some(first)
            }
            _ => None,
        }
    }
}

/// The partitions shard `shard` of node `node` opens: those with a replica on the node that
/// the shard owns among the node's shards (a pure function of the partition and shard count).
pub fn partitions_of_shard(
    image: &MetadataImage,
    node: i32,
    shard: ShardId,
    nr_shards: usize,
) -> HashSet<TopicPartition> {
    let mut wanted = HashSet::new();
    for t in image.topics.values() {
        for (p, part) in (0..).zip(&t.partitions) {
            let tp = TopicPartition::new(t.name.clone(), p);
            if part.replicas.contains(&node) && placement::shard_for(&tp, nr_shards) == shard {
                wanted.insert(tp);
            }
        }
    }
    wanted
}

/// The storage configuration of a topic: its overrides over the broker's defaults.
pub fn log_config(broker: &BrokerConfig, t: &TopicImage) -> LogConfig {
    let eff = topic::effective(broker, &t.configs);
    let int = |k: &str| -> i64 {
        eff.get(k)
            .and_then(|(v, _)| v.trim().parse().ok())
            .unwrap_or(-1)
    };
    let opt_pos = |k: &str| -> Option<i64> { Some(int(k)).filter(|v| *v >= 0) };
    let unset = |k: &str| -> bool {
        eff.get(k)
            .map(|(_, s)| *s == Source::Default)
            .unwrap_or(true)
    };
    let disk = eff
        .get("retention.disk.percent")
        .and_then(|(v, _)| v.parse::<f64>().ok())
        .filter(|p| *p > 0.0);
    let flush_messages = int("flush.messages");
    let flush_ms = int("flush.ms");
    LogConfig {
        segment_bytes: int("segment.bytes").max(14) as u64,
        segment_ms: opt_pos("segment.ms").map(|v| v as u64),
        segment_jitter_ms: opt_pos("segment.jitter.ms").unwrap_or(0) as u64,
        segment_index_bytes: int("segment.index.bytes").max(4) as u64,
        index_interval_bytes: int("index.interval.bytes").max(0) as u64,
        retention_ms: opt_pos("retention.ms"),
        retention_bytes: opt_pos("retention.bytes"),
        retention_disk_percent: disk,
        topic_partition_count: t.partition_count().max(1) as u32,
        // Unset (or Long.MAX) means Sluice's durable default: fsync before acknowledging.
        flush_messages: (!unset("flush.messages")
            && flush_messages > 0
            && flush_messages < i64::MAX)
            .then_some(flush_messages as u64),
        flush_ms: (!unset("flush.ms") && flush_ms > 0 && flush_ms < i64::MAX)
            .then_some(flush_ms as u64),
        log_append_time: eff
            .get("message.timestamp.type")
            .map(|(v, _)| v == "LogAppendTime")
            .unwrap_or(false),
        file_delete_delay_ms: int("file.delete.delay.ms").max(0) as u64,
        compaction: compaction_config(&eff),
    }
}

/// `cleanup.policy` and the cleaner's topic keys.
fn compaction_config(
    eff: &std::collections::BTreeMap<&'static str, (String, Source)>,
) -> crate::storage::config::CompactionConfig {
    let defaults = crate::storage::config::CompactionConfig::default();
    let get = |k: &str| eff.get(k).map(|(v, _)| v.trim());
    let long = |k: &str, d: i64| get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
    let policy = topic::CleanupPolicy::parse(get("cleanup.policy").unwrap_or("delete"));
    crate::storage::config::CompactionConfig {
        delete: policy.delete,
        compact: policy.compact,
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(defaults.min_cleanable_dirty_ratio),
        min_compaction_lag_ms: long("min.compaction.lag.ms", 0).max(0),
        max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX).max(1),
        delete_retention_ms: long("delete.retention.ms", defaults.delete_retention_ms).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PartitionImage;

    #[test]
    fn a_shard_opens_only_partitions_with_a_replica_on_its_node() {
        let part = |replicas: Vec<i32>| PartitionImage {
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        let mut image = MetadataImage::empty();
        image.topics.insert(
            "t".into(),
            TopicImage {
                name: "t".into(),
                id: uuid::Uuid::from_u128(1),
                configs: Default::default(),
                internal: false,
                partitions: vec![
                    part(vec![1, 2]),
                    part(vec![2, 3]),
                    part(vec![3, 1]),
                    part(vec![2]),
                ],
            },
        );
        let on_node = |node: i32| -> Vec<i32> {
            let mut all: Vec<i32> = (0..2)
                .flat_map(|s| partitions_of_shard(&image, node, ShardId(s), 2))
                .map(|tp| tp.partition)
                .collect();
            all.sort_unstable();
            all
        };
        assert_eq!(on_node(1), vec![0, 2]);
        assert_eq!(on_node(2), vec![0, 1, 3]);
        assert_eq!(on_node(3), vec![1, 2]);
        assert!(on_node(4).is_empty());
        // Each partition of a node is on exactly the shard `shard_for` names.
        for s in 0..2 {
            for tp in partitions_of_shard(&image, 2, ShardId(s), 2) {
                assert_eq!(placement::shard_for(&tp, 2), ShardId(s));
            }
        }
    }
}
