//! Partition replication (Kafka's ReplicaManager, Partition and ReplicaFetcher), per shard.
//!
//! Every partition of a cluster node is a replicated log (`storage/replicated.rs`). This shard's
//! `ReplicaManager` knows, from the image, whether it leads or follows each partition it owns:
//! - **Leader**: followers' fetches (`on_follower_fetch`) report the offset each has made
//!   durable; the high watermark bound is the smallest such offset among the ISR's other
//!   members; the ISR task shrinks the ISR of followers that did not catch up within
//!   `replica.lag.time.max.ms` and grows it with followers that reached the high watermark,
//!   both through the controller (AlterPartition, checked against the leader and partition
//!   epochs). The high watermark only ever counts the committed ISR: a shrink takes effect
//!   once the controller committed it.
//! - **Follower**: one fetcher per (this shard, leader broker) (`fetcher.rs`) fetches its
//!   partitions with Kafka's Fetch (replica id, current leader epoch, last fetched epoch),
//!   appends the leader's batches as they are, durable before the next fetch reports them, and
//!   truncates where the leader reports a diverging epoch.
//!
//! A leader that learns from an image that it no longer leads fails its acks=all appends still
//! waiting for replication (NOT_LEADER_OR_FOLLOWER) at once.
//!
//! Single-node brokers (no quorum) do not use this module: their logs stay local.

pub mod client;
pub mod fetcher;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use crate::cluster::MetadataImage;
use crate::config::BrokerConfig;
use crate::handler::errors::code;
use crate::model::{ShardId, TopicPartition};
use crate::runtime::messages::{ShardRequest, ShardResponse};
use crate::runtime::Shard;
use crate::storage::waiters::WakerSet;
use crate::storage::{LogManager, PartitionLog};

/// Replication settings, Kafka's broker properties.
#[derive(Clone, Debug)]
pub struct Settings {
    pub lag_time_max_ms: i64,
    pub fetch_wait_max_ms: i32,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub fetch_response_max_bytes: i32,
    pub fetch_backoff_ms: u64,
    pub socket_timeout_ms: u64,
}

impl Settings {
    pub fn from_config(c: &BrokerConfig) -> Settings {
        let int = |k: &str, d: i64, lo: i64, hi: i64| c.int(k, d).clamp(lo, hi);
        Settings {
            lag_time_max_ms: int("replica.lag.time.max.ms", 30_000, 100, i64::from(i32::MAX)),
            fetch_wait_max_ms: int("replica.fetch.wait.max.ms", 500, 0, 30_000) as i32,
            fetch_min_bytes: int("replica.fetch.min.bytes", 1, 1, i64::from(i32::MAX)) as i32,
            fetch_max_bytes: int("replica.fetch.max.bytes", 1_048_576, 1024, 64 << 20) as i32,
            fetch_response_max_bytes: int(
                "replica.fetch.response.max.bytes",
                10_485_760,
                1024,
                crate::limits::FETCH_RESPONSE_BYTES_MAX as i64,
            ) as i32,
            fetch_backoff_ms: int("replica.fetch.backoff.ms", 1000, 10, 60_000) as u64,
            socket_timeout_ms: int("replica.socket.timeout.ms", 30_000, 1000, 600_000) as u64,
        }
    }
}

/// What a follower reported, as the leader keeps it (Kafka's `Replica` state).
#[derive(Clone, Debug)]
struct Progress {
    /// The follower's durable log end, from its last fetch (`None` until it fetched from this
    /// leader in this epoch).
    offset: Option<i64>,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// This leader's log end when that fetch arrived.
    last_fetch_leader_end: i64,
}

#[derive(Debug)]
pub struct LeaderState {
    pub epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    followers: HashMap<i32, Progress>,
    /// When an AlterPartition of this leader went out and its image has not come back.
    pending_since_ms: Option<i64>,
    /// The ISR that AlterPartition proposed (empty when none is pending). The high watermark
    /// counts its members too (Kafka's maximal ISR): a follower joining the ISR holds every
    /// record below the high watermark the moment the controller commits it, which a
    /// reassignment that hands it the leadership in that same change relies on.
    pending_isr: Vec<i32>,
    /// The log end when this replica took the leadership: a follower joins the ISR only at or
    /// past it (it then holds everything of earlier epochs this leader kept).
    start_offset: i64,
}

impl LeaderState {
    /// Each follower's lag behind `log_end` (offsets; -1 before its first fetch) and the ms
    /// since it was last caught up (for metrics).
    pub fn follower_lag(&self, log_end: i64, now_ms: i64) -> Vec<(i32, i64, i64)> {
        self.followers
            .iter()
            .map(|(id, p)| {
                let offsets = p.offset.map_or(-1, |o| (log_end - o).max(0));
                (*id, offsets, (now_ms - p.last_caught_up_ms).max(0))
            })
            .collect()
    }
}

#[derive(Debug)]
pub enum Role {
    Leader(LeaderState),
    /// `leader` is -1 while the partition has none.
    Follower {
        leader: i32,
        epoch: i32,
    },
}

pub struct ReplicaManager {
    node_id: i32,
    pub settings: Settings,
    roles: RefCell<HashMap<TopicPartition, Role>>,
    /// Woken on every role change, follower catch-up and ISR answer (fetchers, ISR task).
    pub changed: WakerSet,
    /// Bumped on every image applied.
    pub version: Cell<u64>,
    /// Leaders with a running fetcher task on this shard.
    fetchers: RefCell<HashSet<i32>>,
    /// Set when a follower may join an ISR (the ISR task looks at once).
    expand_wanted: Cell<bool>,
}

pub fn now_ms() -> i64 {
    crate::storage::flush::wall_clock_ms()
}

impl ReplicaManager {
    pub fn new(node_id: i32, settings: Settings) -> ReplicaManager {
        ReplicaManager {
            node_id,
            settings,
            roles: RefCell::new(HashMap::new()),
            changed: WakerSet::default(),
            version: Cell::new(0),
            fetchers: RefCell::new(HashSet::new()),
            expand_wanted: Cell::new(false),
        }
    }

    /// Brings every owned partition's role in line with `image` (synchronously, as the image is
    /// installed): a new leader starts tracking its followers, a deposed one fails its waiting
    /// acks=all appends, and every log gets its high watermark bound.
    /// Returns the partitions whose leadership here began (a new epoch) or ended.
    pub fn on_image(&self, logs: &LogManager, image: &MetadataImage) -> Vec<TopicPartition> {
        let now = now_ms();
        let me = self.node_id;
        let mut roles = self.roles.borrow_mut();
        let mut seen = HashSet::new();
        let mut changed = Vec::new();
        for log in logs.partitions() {
            let tp = log.topic_partition().clone();
            let Some(p) = image.partition(&tp) else {
                continue;
            };
            seen.insert(tp.clone());
            log.start_replicated_from_log_start();
            if p.leader == me {
                let keep =
                    matches!(roles.get(&tp), Some(Role::Leader(l)) if l.epoch == p.leader_epoch);
                if keep {
                    if let Some(Role::Leader(l)) = roles.get_mut(&tp) {
                        if l.partition_epoch != p.partition_epoch {
                            l.pending_since_ms = None;
                            l.pending_isr.clear();
                        }
                        l.isr = p.isr.clone();
                        l.partition_epoch = p.partition_epoch;
                        l.replicas = p.replicas.clone();
                        for r in &p.replicas {
                            if *r != me {
                                l.followers.entry(*r).or_insert_with(|| fresh(now));
                            }
                        }
                    }
                } else {
                    changed.push(tp.clone());
                    tracing::info!(partition = %tp, epoch = p.leader_epoch, isr = ?p.isr,
                        log_end = log.log_end_offset().get(), hwm = log.high_watermark().get(),
                        "leading the partition");
                    let followers = p
                        .replicas
                        .iter()
                        .filter(|r| **r != me)
                        .map(|r| (*r, fresh(now)))
                        .collect();
                    roles.insert(
                        tp.clone(),
                        Role::Leader(LeaderState {
                            epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                            isr: p.isr.clone(),
                            replicas: p.replicas.clone(),
                            followers,
                            pending_since_ms: None,
                            pending_isr: Vec::new(),
                            start_offset: log.log_end_offset().get(),
                        }),
                    );
                }
                if let Some(Role::Leader(l)) = roles.get(&tp) {
                    log.set_hw_bound(bound(me, l, log.high_watermark().get()));
                }
            } else {
                let was_leader = matches!(roles.get(&tp), Some(Role::Leader(_)));
                if was_leader {
                    changed.push(tp.clone());
                    tracing::info!(partition = %tp, leader = p.leader, epoch = p.leader_epoch,
                        "no longer leading the partition: waiting acks=all appends fail");
                    log.fail_replica_waiters();
                }
                if was_leader {
                    // The high watermark stays where it is until the leader says more.
                    log.set_hw_bound(log.high_watermark().get());
                }
                roles.insert(
                    tp,
                    Role::Follower {
                        leader: p.leader,
                        epoch: p.leader_epoch,
                    },
                );
            }
        }
        roles.retain(|tp, _| seen.contains(tp));
        drop(roles);
        self.version.set(self.version.get() + 1);
        self.changed.wake_all();
        changed
    }

    /// A follower's fetch reached this leader: `fetch_offset` is what it holds durably. Updates
    /// its progress and the high watermark bound. `Err(code)` when this replica does not lead
    /// the partition or `replica` is not one of its replicas.
    pub fn on_follower_fetch(
        &self,
        log: &PartitionLog,
        replica: i32,
        fetch_offset: i64,
    ) -> Result<(), i16> {
        let me = self.node_id;
        let now = now_ms();
        let mut roles = self.roles.borrow_mut();
        let Some(Role::Leader(l)) = roles.get_mut(log.topic_partition()) else {
            return Err(code::NOT_LEADER_OR_FOLLOWER);
        };
        if replica == me || !l.replicas.contains(&replica) {
            return Err(code::NOT_LEADER_OR_FOLLOWER);
        }
        let leader_end = log.log_end_offset().get();
        let p = l.followers.entry(replica).or_insert_with(|| fresh(now));
        if fetch_offset >= leader_end {
            p.last_caught_up_ms = now;
        } else if fetch_offset >= p.last_fetch_leader_end {
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.last_fetch_leader_end = leader_end;
        p.last_fetch_ms = now;
        p.offset = Some(fetch_offset);
        log.set_hw_bound(bound(me, l, log.high_watermark().get()));
        if !l.isr.contains(&replica)
            && fetch_offset >= log.high_watermark().get()
            && fetch_offset >= l.start_offset
        {
            self.expand_wanted.set(true);
            self.changed.wake_all();
        }
        Ok(())
    }

    /// The role of `tp` here (leader epoch and ISR for a leader).
    pub fn with_role<R>(&self, tp: &TopicPartition, f: impl FnOnce(Option<&Role>) -> R) -> R {
        f(self.roles.borrow().get(tp))
    }

    /// The partitions this shard follows from `leader`, with the leader epoch of each.
    pub fn following(&self, leader: i32) -> Vec<(TopicPartition, i32)> {
        self.roles
            .borrow()
            .iter()
            .filter_map(|(tp, r)| match r {
                Role::Follower { leader: l, epoch } if *l == leader => Some((tp.clone(), *epoch)),
                _ => None,
            })
            .collect()
    }

    /// Leaders this shard follows partitions of.
    fn leaders_followed(&self) -> HashSet<i32> {
        self.roles
            .borrow()
            .values()
            .filter_map(|r| match r {
                Role::Follower { leader, .. } if *leader >= 0 => Some(*leader),
                _ => None,
            })
            .collect()
    }

    /// ISR changes due now: (partition, leader epoch, partition epoch, new ISR). Marks each
    /// as pending.
    fn isr_changes(
        &self,
        image: &MetadataImage,
        logs: &LogManager,
    ) -> Vec<(TopicPartition, i32, i32, Vec<i32>)> {
        let now = now_ms();
        let lag = self.settings.lag_time_max_ms;
        let me = self.node_id;
        let mut out = Vec::new();
        let mut roles = self.roles.borrow_mut();
        for (tp, role) in roles.iter_mut() {
            let Role::Leader(l) = role else { continue };
            if let Some(since) = l.pending_since_ms {
                // An answer lost with its controller: ask again after a while.
                if now - since < 5_000 {
                    continue;
                }
            }
            let hwm = logs.get(tp).map(|log| log.high_watermark().get());
            let mut isr: Vec<i32> = l
                .isr
                .iter()
                .copied()
                .filter(|r| {
                    *r == me
                        || l.followers
                            .get(r)
                            .is_some_and(|p| now - p.last_caught_up_ms <= lag)
                })
                .collect();
            for r in &l.replicas {
                if isr.contains(r) || *r == me || !image.is_active(*r) {
                    continue;
                }
                let caught_up = l
                    .followers
                    .get(r)
                    .and_then(|p| p.offset)
                    .is_some_and(|o| hwm.is_some_and(|h| o >= h) && o >= l.start_offset);
                if caught_up {
                    isr.push(*r);
                }
            }
            isr.sort_by_key(|r| l.replicas.iter().position(|x| x == r));
            let mut current = l.isr.clone();
            current.sort_by_key(|r| l.replicas.iter().position(|x| x == r));
            if isr != current {
                l.pending_since_ms = Some(now);
                l.pending_isr = isr.clone();
                if let Some(log) = logs.get(tp) {
                    // At once: the bound set before may lie above a joining follower's offset.
                    log.set_hw_bound(bound(me, l, log.high_watermark().get()));
                }
                out.push((tp.clone(), l.epoch, l.partition_epoch, isr));
            }
        }
        out
    }
}

fn fresh(now: i64) -> Progress {
    Progress {
        offset: None,
        last_caught_up_ms: now,
        last_fetch_ms: now,
        last_fetch_leader_end: 0,
    }
}

/// The high watermark bound of a leader: the smallest durable offset the other members of the
/// ISR and of a pending ISR change reported (the current high watermark for one that has not
/// fetched yet in this epoch).
fn bound(me: i32, l: &LeaderState, high_watermark: i64) -> i64 {
    l.isr
        .iter()
        .chain(&l.pending_isr)
        .filter(|r| **r != me)
        .map(|r| {
            l.followers
                .get(r)
                .and_then(|p| p.offset)
                .unwrap_or(high_watermark)
        })
        .min()
        .unwrap_or(i64::MAX)
}

/// Starts this shard's replication tasks (cluster mode only): the ISR task, and the fetcher
/// supervisor that keeps one fetcher per leader this shard follows.
pub fn start(shard: &Rc<Shard>) {
    let s = shard.clone();
    glommio::spawn_local(async move { run_isr_task(s).await }).detach();
    let s = shard.clone();
    glommio::spawn_local(async move { supervise_fetchers(s).await }).detach();
}

async fn supervise_fetchers(shard: Rc<Shard>) {
    let rm = shard.replicas.clone();
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let version = rm.version.get();
        for leader in rm.leaders_followed() {
            if leader == rm.node_id || !rm.fetchers.borrow_mut().insert(leader) {
                continue;
            }
            let s = shard.clone();
            glommio::spawn_local(async move {
                fetcher::run(s.clone(), leader).await;
                s.replicas.fetchers.borrow_mut().remove(&leader);
                s.replicas.changed.wake_all();
            })
            .detach();
        }
        let changed = rm.changed.wait_until(|| rm.version.get() != version);
        futures_lite::future::or(changed, async {
            glommio::timer::sleep(Duration::from_millis(500)).await;
        })
        .await;
    }
}

async fn run_isr_task(shard: Rc<Shard>) {
    let rm = shard.replicas.clone();
    let tick = Duration::from_millis((rm.settings.lag_time_max_ms / 2).clamp(50, 5_000) as u64);
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let wanted = &rm.expand_wanted;
        futures_lite::future::or(rm.changed.wait_until(|| wanted.get()), async {
            glommio::timer::sleep(tick).await;
        })
        .await;
        wanted.set(false);
        let image = shard.metadata();
        for (tp, leader_epoch, partition_epoch, new_isr) in rm.isr_changes(&image, &shard.logs) {
            let s = shard.clone();
            glommio::spawn_local(async move {
                propose_isr(&s, tp, leader_epoch, partition_epoch, new_isr).await;
            })
            .detach();
        }
    }
}

async fn propose_isr(
    shard: &Rc<Shard>,
    tp: TopicPartition,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: Vec<i32>,
) {
    tracing::info!(partition = %tp, isr = ?new_isr, leader_epoch, partition_epoch, "proposing an ISR change");
    let cmd = crate::cluster::ControllerCommand::AlterPartition {
        topic: tp.topic.clone(),
        partition: tp.partition,
        leader: shard.node_id(),
        leader_epoch,
        partition_epoch,
        new_isr,
    };
    match shard.call(ShardId(0), ShardRequest::Controller(cmd)).await {
        ShardResponse::Controller(Ok(_)) => {}
        ShardResponse::Controller(Err(e)) => {
            tracing::info!(partition = %tp, error = %e, "ISR change refused");
            shard.replicas.clear_pending(&tp);
        }
        _ => shard.replicas.clear_pending(&tp),
    }
}

impl ReplicaManager {
    fn clear_pending(&self, tp: &TopicPartition) {
        if let Some(Role::Leader(l)) = self.roles.borrow_mut().get_mut(tp) {
            l.pending_since_ms = None;
            l.pending_isr.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(isr: Vec<i32>, pending_isr: Vec<i32>, offsets: &[(i32, Option<i64>)]) -> LeaderState {
        LeaderState {
            epoch: 0,
            partition_epoch: 0,
            isr,
            replicas: vec![1, 2, 3, 4],
            followers: offsets
                .iter()
                .map(|(r, offset)| {
                    let mut p = fresh(0);
                    p.offset = *offset;
                    (*r, p)
                })
                .collect(),
            pending_since_ms: None,
            pending_isr,
            start_offset: 0,
        }
    }

    #[test]
    fn the_bound_is_the_smallest_offset_of_the_isr_and_a_pending_expansion() {
        let offsets = [(2, Some(100)), (3, Some(90)), (4, Some(60))];
        // Node 4 is no ISR member: it does not hold the bound back.
        assert_eq!(bound(1, &leader(vec![1, 2, 3], vec![], &offsets), 50), 90);
        // Proposed to join (Kafka's maximal ISR): it does, until the controller answers.
        let pending = leader(vec![1, 2, 3], vec![1, 2, 3, 4], &offsets);
        assert_eq!(bound(1, &pending, 50), 60);
        // A pending shrink changes nothing before it is committed.
        assert_eq!(
            bound(1, &leader(vec![1, 2, 3], vec![1, 2], &offsets), 50),
            90
        );
        // A member that has not fetched in this epoch counts at the high watermark.
        let unknown = [(2, None), (3, Some(90))];
        assert_eq!(bound(1, &leader(vec![1, 2, 3], vec![], &unknown), 50), 50);
        assert_eq!(bound(1, &leader(vec![1], vec![], &[]), 50), i64::MAX);
    }
}
