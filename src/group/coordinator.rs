//! The per-shard group coordinator: the async front of the pure state machines.
//!
//! One [`GroupCoordinator`] lives on every shard (core) and owns the groups whose
//! `__consumer_offsets` partition that shard owns. It
//! - replays an offsets partition into memory before serving its groups (lazily, and
//!   for every owned partition at start-up),
//! - writes every commit and group change to that partition with acks=all *before*
//!   applying it and answering (so an acknowledged commit survives a crash),
//! - serialises appends per partition, so log order is apply order,
//! - leaves keeping the partition small to the log cleaner: `__consumer_offsets` is created
//!   with `cleanup.policy=compact`, as Kafka's, and every record is keyed (tombstones delete);
//!   only a partition of a topic created before that (not compacted) still gets the old
//!   scheme: a snapshot of the live state once the records appended since the last one exceed
//!   `offsets.topic.segment.bytes` (and twice the last snapshot's size), then DeleteRecords
//!   past what it supersedes,
//! - runs the timer task (session/rebalance deadlines, offset retention).
//!
//! Architecture Invariant: no `RefCell` borrow of `groups` is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;

use super::classic::{ClassicGroup, GroupState};
use super::consumer::ConsumerGroup;
use super::offsets::PendingOffset;
use super::records::{BatchKind, OffsetsRecord};
use super::request::{GroupRequest, GroupResponse};
use super::{now_ms, offsets_partition_for, GroupConfig, GroupError, OFFSETS_TOPIC};
use crate::cluster::MetadataImage;
use crate::config::BrokerConfig;
use crate::model::{Offset, ShardId, TopicPartition};
use crate::runtime::Shard;
use crate::storage::{Acks, AppendOptions, LogManager};

/// A group of either protocol. (Sizes differ, but groups live in one map per shard and
/// are few; boxing would only add an indirection to every access.)
#[allow(clippy::large_enum_variant)]
pub enum Group {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

impl Group {
    pub fn offsets(&self) -> &super::offsets::GroupOffsets {
        match self {
            Group::Classic(g) => &g.offsets,
            Group::Consumer(g) => &g.offsets,
        }
    }
    pub fn offsets_mut(&mut self) -> &mut super::offsets::GroupOffsets {
        match self {
            Group::Classic(g) => &mut g.offsets,
            Group::Consumer(g) => &mut g.offsets,
        }
    }
}

/// Load and write state of one `__consumer_offsets` partition owned by this shard.
pub(crate) struct OffsetsPartition {
    /// Held across each append+apply, and across replay and snapshots.
    /// Serialises appends to this `__consumer_offsets` partition. A FIFO hand-off lock
    /// (`order::OrderQueue`): with `futures::lock::Mutex` a committer could be overtaken by
    /// newer ones for as long as they kept coming (seen: commits starved for the whole length of
    /// a benchmark run, and kafkajs members expired meanwhile); glommio 0.9's semaphore leaves
    /// the permit free for a caller that re-acquires before the woken waiter runs.
    pub(crate) write_lock: crate::order::OrderQueue,
    loaded: Cell<bool>,
    pub(super) bytes_since_snapshot: Cell<u64>,
    pub(super) last_snapshot_bytes: Cell<u64>,
    /// Transaction markers applied that were appended outside `write_lock` (by
    /// [`super::txn_hook::txn_marker_written`]); a snapshot that sees it move while it was
    /// written may be stale and is written again (see `snapshot`).
    pub(crate) markers_applied: Cell<u64>,
}

/// Where an offsets record came from, which decides how an offset commit applies.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordOrigin {
    /// OffsetCommit (and every other plain write): supersedes pending transactional offsets.
    Plain,
    /// A snapshot restating the live state: supersedes nothing.
    Snapshot,
    /// TxnOffsetCommit: pending until the producer's marker.
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
        record_offset: Offset,
    },
}

/// The group coordinator of one shard. Lives on that shard's core only.
pub struct GroupCoordinator {
    shard_id: ShardId,
    pub(crate) config: GroupConfig,
    pub(super) logs: Rc<LogManager>,
    shard: RefCell<Weak<Shard>>,
    pub(crate) groups: RefCell<HashMap<String, Group>>,
    partitions: RefCell<HashMap<i32, Rc<OffsetsPartition>>>,
    /// (offsets partition, producer id) → the groups that may hold that producer's pending
    /// offsets (a marker resolves them without a scan of every group; entries may be stale
    /// once a group is gone, never missing).
    pub(crate) txn_groups: RefCell<HashMap<(i32, i64), BTreeSet<String>>>,
}

/// Records to replay per read of the offsets log.
const REPLAY_READ_BYTES_MAX: usize = 1 << 20;

/// Snapshots written in a row when transaction markers keep landing while one is written.
pub(super) const SNAPSHOT_ATTEMPTS_MAX: usize = 3;

impl GroupCoordinator {
    pub fn new(shard_id: ShardId, broker: Arc<BrokerConfig>, logs: Rc<LogManager>) -> Rc<Self> {
        Rc::new(GroupCoordinator {
            shard_id,
            config: config_from(&broker),
            logs,
            shard: RefCell::new(Weak::new()),
            groups: RefCell::new(HashMap::new()),
            partitions: RefCell::new(HashMap::new()),
            txn_groups: RefCell::new(HashMap::new()),
        })
    }

    /// Starts the timer task and loads every offsets partition this shard owns.
    /// Call once, inside the shard's executor, after its partitions are open.
    pub fn start(self: &Rc<Self>, shard: Rc<Shard>) {
        *self.shard.borrow_mut() = Rc::downgrade(&shard);
        let me = self.clone();
        glommio::spawn_local(async move {
            let image = shard.metadata();
            let n = offsets_partition_count(&image, &me.config);
            for p in 0..n {
                let tp = TopicPartition::new(OFFSETS_TOPIC, p);
                // Only partitions with a replica here are open; the others (led by other
                // nodes, or not created yet) load on their first request if they come.
                if shard.shard_for(&tp) == me.shard_id
                    && me.logs.get(&tp).is_some()
                    && shard.leads(&tp)
                {
                    if let Err(e) = me.ensure_loaded(p).await {
                        tracing::error!(partition = p, error = %e, "loading group state failed");
                    }
                }
            }
        })
        .detach();
        let me = self.clone();
        glommio::spawn_local(async move { me.timer_loop().await }).detach();
    }

    /// Serves one request for a group this shard owns.
    pub async fn handle(self: &Rc<Self>, req: GroupRequest) -> GroupResponse {
        if let GroupRequest::CompleteTransaction {
            partition,
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
        } = req
        {
            let done = self
                .complete_transaction(
                    partition,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                )
                .await;
            return GroupResponse::CompleteTransaction(done);
        }
        let Some(group_id) = req.group_id().map(str::to_owned) else {
            return self.handle_shard_wide(req).await;
        };
        let partition = self.partition_for(&group_id);
        if let Err(e) = self.ensure_loaded(partition).await {
            tracing::warn!(group = %group_id, error = %e, "group request on a shard without its partition");
            return super::ops::error_response(&req, ResponseError::NotCoordinator);
        }
        super::ops::handle(self, partition, group_id, req).await
    }

    async fn handle_shard_wide(self: &Rc<Self>, req: GroupRequest) -> GroupResponse {
        // ListGroups: make sure every partition we own is loaded first.
        let owned: Vec<i32> = self.owned_partitions();
        for p in owned {
            let _ = self.ensure_loaded(p).await;
        }
        super::ops::handle_shard_wide(self, req)
    }

    pub(crate) fn shard(&self) -> Option<Rc<Shard>> {
        self.shard.borrow().upgrade()
    }

    pub(crate) fn metadata(&self) -> Option<Arc<MetadataImage>> {
        self.shard().map(|s| s.metadata())
    }

    pub(crate) fn partition_for(&self, group_id: &str) -> i32 {
        let n = self
            .metadata()
            .map(|m| offsets_partition_count(&m, &self.config))
            .unwrap_or(self.config.offsets_topic_partitions);
        offsets_partition_for(group_id, n)
    }

    fn owned_partitions(&self) -> Vec<i32> {
        let Some(shard) = self.shard() else {
            return vec![];
        };
        let n = offsets_partition_count(&shard.metadata(), &self.config);
        // Only partitions this node leads: a follower's copy of a partition's groups is not
        // this coordinator's (its leader's coordinator serves them).
        (0..n)
            .filter(|p| {
                let tp = TopicPartition::new(OFFSETS_TOPIC, *p);
                shard.shard_for(&tp) == self.shard_id && shard.leads(&tp)
            })
            .collect()
    }

    pub(crate) fn partition_state(&self, partition: i32) -> Rc<OffsetsPartition> {
        self.partitions
            .borrow_mut()
            .entry(partition)
            .or_insert_with(|| {
                Rc::new(OffsetsPartition {
                    write_lock: crate::order::OrderQueue::new(),
                    loaded: Cell::new(false),
                    bytes_since_snapshot: Cell::new(0),
                    last_snapshot_bytes: Cell::new(0),
                    markers_applied: Cell::new(0),
                })
            })
            .clone()
    }

    /// Forgets what this shard holds of `partition`'s groups (its leadership here began or
    /// ended): the next request replays the partition's log again.
    pub fn unload(&self, partition: i32) {
        if let Some(state) = self.partitions.borrow().get(&partition) {
            state.loaded.set(false);
        }
        self.forget_groups_of(partition);
    }

    fn forget_groups_of(&self, partition: i32) {
        let n = self
            .metadata()
            .map(|m| offsets_partition_count(&m, &self.config))
            .unwrap_or(self.config.offsets_topic_partitions);
        self.groups
            .borrow_mut()
            .retain(|g, _| offsets_partition_for(g, n) != partition);
        self.txn_groups
            .borrow_mut()
            .retain(|(p, _), _| *p != partition);
    }

    /// Replays the partition into memory once. Fails when the partition is not here.
    pub async fn ensure_loaded(&self, partition: i32) -> Result<(), GroupError> {
        let state = self.partition_state(partition);
        if state.loaded.get() {
            return Ok(());
        }
        let _guard = state.write_lock.lock().await;
        if state.loaded.get() {
            return Ok(());
        }
        self.forget_groups_of(partition);
        self.wait_replicated(partition).await?;
        let (count, bytes) = self.replay(partition).await?;
        state.bytes_since_snapshot.set(bytes);
        state.loaded.set(true);
        tracing::debug!(
            shard = self.shard_id.0,
            partition,
            records = count,
            "group state loaded"
        );
        Ok(())
    }

    /// A replicated offsets partition is replayed only once its high watermark reached the log
    /// end (a new leader's followers caught up): records above it may still be replaced.
    async fn wait_replicated(&self, partition: i32) -> Result<(), GroupError> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let log = self
            .logs
            .get(&tp)
            .ok_or(GroupError::OffsetsPartitionMissing(partition))?;
        if log.wait_caught_up(Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(GroupError::Read(format!(
                "{tp}: the high watermark did not reach the log end {} yet",
                log.log_end_offset()
            )))
        }
    }

    /// Rebuilds the partition's groups; returns (records applied, bytes read).
    async fn replay(&self, partition: i32) -> Result<(u64, u64), GroupError> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let log = self
            .logs
            .get(&tp)
            .ok_or(GroupError::OffsetsPartitionMissing(partition))?;
        let mut next = log.log_start_offset();
        let mut count = 0u64;
        let mut bytes = 0u64;
        let now = now_ms();
        // To the log's end as it moves: a marker appended while the replay runs (outside the
        // write lock) is read here, whenever its in-memory hook ran.
        while next < log.log_end_offset() {
            let read = log
                .read(next, REPLAY_READ_BYTES_MAX, true)
                .await
                .map_err(|e| GroupError::Read(e.to_string()))?;
            if read.records.is_empty() {
                break;
            }
            bytes += read.records.len() as u64;
            let mut buf = read.records.clone();
            let sets = RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| GroupError::Read(e.to_string()))?;
            let mut last = next;
            for set in sets {
                let snapshot = set
                    .records
                    .first()
                    .filter(|r| !r.transactional)
                    .and_then(|r| super::records::snapshot_record(&r.headers));
                if snapshot == Some(true) {
                    // A snapshot states every open transaction of the partition anew.
                    self.clear_pending_of(partition);
                }
                for r in set.records {
                    last = last.max(Offset(r.offset + 1));
                    let Some(key) = r.key.as_deref() else {
                        continue;
                    };
                    if r.control {
                        if let Some(control) = super::records::decode_control_key(key) {
                            let commit = control == super::records::ControlType::Commit;
                            self.end_transaction_in(partition, r.producer_id, commit);
                        }
                        continue;
                    }
                    let origin = if r.transactional {
                        RecordOrigin::Transactional {
                            producer_id: r.producer_id,
                            producer_epoch: r.producer_epoch,
                            record_offset: Offset(r.offset),
                        }
                    } else if snapshot.is_some() {
                        RecordOrigin::Snapshot
                    } else {
                        RecordOrigin::Plain
                    };
                    match OffsetsRecord::decode(key, r.value.as_deref()) {
                        Ok(Some(rec)) => {
                            self.apply_from(rec, now, true, origin);
                            count += 1;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(partition, offset = r.offset, error = %e, "skipping malformed record")
                        }
                    }
                }
            }
            if last <= next {
                break;
            }
            next = last;
        }
        Ok((count, bytes))
    }

    /// Applies one record to the in-memory state. On replay every record rebuilds state;
    /// after a live append only offsets and deletions apply, because a group metadata
    /// record was derived from the live group (re-loading it would drop parked requests).
    pub(crate) fn apply(&self, rec: OffsetsRecord, now: i64, replay: bool) {
        self.apply_from(rec, now, replay, RecordOrigin::Plain)
    }

    /// [`apply`](Self::apply) of a record from `origin`.
    pub(crate) fn apply_from(
        &self,
        rec: OffsetsRecord,
        now: i64,
        replay: bool,
        origin: RecordOrigin,
    ) {
        let live_group_snapshot = matches!(
            rec,
            OffsetsRecord::Group { value: Some(_), .. }
                | OffsetsRecord::ConsumerGroup { epoch: Some(_), .. }
        );
        if !replay && live_group_snapshot {
            return;
        }
        let mut groups = self.groups.borrow_mut();
        match rec {
            OffsetsRecord::Offset { group, tp, value } => match value {
                Some(v) => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::Classic(ClassicGroup::new(group.clone(), now)));
                    match origin {
                        RecordOrigin::Plain => g.offsets_mut().put(tp, v),
                        RecordOrigin::Snapshot => g.offsets_mut().restate(tp, v),
                        RecordOrigin::Transactional {
                            producer_id,
                            producer_epoch,
                            record_offset,
                        } => {
                            g.offsets_mut().put_pending(
                                producer_id,
                                producer_epoch,
                                tp,
                                v,
                                record_offset,
                            );
                            self.index_transaction(&group, producer_id);
                        }
                    }
                }
                None => {
                    if let Some(g) = groups.get_mut(&group) {
                        g.offsets_mut().remove(&tp);
                    }
                }
            },
            OffsetsRecord::Group { group, value } => match value {
                Some(v) => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::Classic(ClassicGroup::new(group.clone(), now)));
                    if let Group::Consumer(_) = g {
                        let offsets = g.offsets().clone();
                        let mut c = ClassicGroup::new(group, now);
                        c.offsets = offsets;
                        *g = Group::Classic(c);
                    }
                    if let Group::Classic(c) = g {
                        c.load_record(v, now);
                    }
                }
                None => {
                    // Live: a tombstone written for an empty group must not remove one
                    // that members joined in the meantime.
                    let in_use = matches!(groups.get(&group), Some(Group::Classic(c)) if c.member_count() > 0);
                    if replay || !in_use {
                        groups.remove(&group);
                    }
                }
            },
            OffsetsRecord::ConsumerGroup { group, epoch } => match epoch {
                Some(epoch) => {
                    let offsets = groups
                        .get(&group)
                        .map(|g| g.offsets().clone())
                        .unwrap_or_default();
                    match groups.get_mut(&group) {
                        Some(Group::Consumer(c)) => c.set_epoch_at_least(epoch),
                        _ => {
                            let mut c = ConsumerGroup::new(group.clone(), epoch);
                            c.offsets = offsets;
                            groups.insert(group, Group::Consumer(c));
                        }
                    }
                }
                None => {
                    let removable = matches!(groups.get(&group), Some(Group::Consumer(c)) if replay || c.is_empty());
                    if removable {
                        groups.remove(&group);
                    }
                }
            },
            OffsetsRecord::PendingOffset {
                group,
                tp,
                producer_id,
                pending,
            } => {
                let g = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::Classic(ClassicGroup::new(group.clone(), now)));
                g.offsets_mut().restore_pending(
                    producer_id,
                    pending.producer_epoch,
                    tp,
                    PendingOffset {
                        value: pending.value,
                        record_offset: pending.record_offset,
                        superseded: pending.superseded,
                    },
                );
                self.index_transaction(&group, producer_id);
            }
        }
    }

    /// Appends `records` to the group's offsets partition (acks=all), then applies them.
    /// Returns once they are durable and visible.
    pub(crate) async fn write(
        &self,
        partition: i32,
        records: Vec<OffsetsRecord>,
    ) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        let state = self.partition_state(partition);
        {
            let _guard = state.write_lock.lock().await;
            let (_, n) = self.append_locked(partition, &records).await?;
            state
                .bytes_since_snapshot
                .set(state.bytes_since_snapshot.get() + n);
            let now = now_ms();
            for r in records {
                self.apply(r, now, false);
            }
        }
        self.maybe_snapshot(partition).await;
        Ok(())
    }

    /// Counts `bytes` appended to `partition` towards its next snapshot.
    pub(crate) fn add_appended(&self, partition: i32, bytes: u64) {
        let state = self.partition_state(partition);
        state
            .bytes_since_snapshot
            .set(state.bytes_since_snapshot.get().saturating_add(bytes));
    }

    async fn append_locked(
        &self,
        partition: i32,
        records: &[OffsetsRecord],
    ) -> Result<(Offset, u64), GroupError> {
        let batch = encode_batch(records, now_ms(), BatchKind::Plain)?;
        self.append_encoded(partition, None, batch).await
    }

    /// Appends encoded batches (acks=all) at `place` if one was taken, else at the end of the
    /// partition's append queue. Returns (base offset, bytes). Call with `write_lock` held.
    pub(crate) async fn append_encoded(
        &self,
        partition: i32,
        place: Option<crate::order::Ticket>,
        batch: Bytes,
    ) -> Result<(Offset, u64), GroupError> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let log = self
            .logs
            .get(&tp)
            .ok_or(GroupError::OffsetsPartitionMissing(partition))?;
        // Written only where this node leads the partition, at the image's leader epoch (a
        // follower's copy is the leader's; its coordinator may hold a group an instant after
        // losing the leadership).
        let image = self.metadata();
        let leader_epoch = match image.as_ref().and_then(|m| m.partition(&tp).cloned()) {
            Some(p) if self.shard().is_some_and(|s| s.leads(&tp)) => {
                crate::model::LeaderEpoch(p.leader_epoch)
            }
            Some(_) => return Err(GroupError::NotLeader),
            None => log.leader_epoch(),
        };
        let len = batch.len() as u64;
        let opts = AppendOptions {
            acks: Acks::All,
            leader_epoch,
            now_ms: now_ms(),
        };
        let result = match place {
            Some(place) => log.append_reserved(place, batch, opts).await,
            None => log.append(batch, opts).await,
        };
        let result = result.map_err(|e| match e {
            crate::storage::StorageError::InvalidProducerEpoch { .. } => {
                GroupError::InvalidProducerEpoch
            }
            crate::storage::StorageError::NotLeader => GroupError::NotLeader,
            e => GroupError::Append(e.to_string()),
        })?;
        Ok((result.base_offset, len))
    }

    async fn timer_loop(self: Rc<Self>) {
        let tick = Duration::from_millis(self.config.tick_interval_ms.max(10));
        let mut next_retention = now_ms() + self.config.offsets_retention_check_interval_ms;
        loop {
            glommio::timer::sleep(tick).await;
            let Some(shard) = self.shard() else { return };
            if shard.shutting_down.get() {
                return;
            }
            let now = now_ms();
            let dirty = self.tick_groups(now);
            for (partition, records) in dirty {
                if let Err(e) = self.write(partition, records).await {
                    tracing::warn!(partition, error = %e, "persisting group metadata failed");
                }
            }
            if now >= next_retention {
                next_retention = now + self.config.offsets_retention_check_interval_ms;
                for (partition, records) in self.expire_offsets(now) {
                    if let Err(e) = self.write(partition, records).await {
                        tracing::warn!(partition, error = %e, "writing offset expirations failed");
                    }
                }
            }
        }
    }

    /// Advances every group's timers; returns metadata records to persist, by partition.
    fn tick_groups(&self, now: i64) -> HashMap<i32, Vec<OffsetsRecord>> {
        let mut out: HashMap<i32, Vec<OffsetsRecord>> = HashMap::new();
        let mut groups = self.groups.borrow_mut();
        for (id, g) in groups.iter_mut() {
            let record = match g {
                Group::Classic(c) => {
                    c.tick(now, &self.config);
                    c.take_dirty().then(|| OffsetsRecord::Group {
                        group: id.clone(),
                        value: Some(c.to_record()),
                    })
                }
                Group::Consumer(c) => {
                    c.tick(now, &self.config);
                    c.take_dirty().then(|| OffsetsRecord::ConsumerGroup {
                        group: id.clone(),
                        epoch: Some(c.group_epoch()),
                    })
                }
            };
            if let Some(r) = record {
                out.entry(self.partition_for(id)).or_default().push(r);
            }
        }
        out
    }

    /// Kafka's offset retention; empty groups without offsets are deleted too.
    fn expire_offsets(&self, now: i64) -> HashMap<i32, Vec<OffsetsRecord>> {
        let mut out: HashMap<i32, Vec<OffsetsRecord>> = HashMap::new();
        let retention = self.config.offsets_retention_ms;
        let mut groups = self.groups.borrow_mut();
        for (id, g) in groups.iter_mut() {
            let empty_since = match g {
                Group::Classic(c) => {
                    (c.state() == GroupState::Empty).then(|| c.state_timestamp_ms())
                }
                Group::Consumer(c) => c.is_empty().then(|| c.empty_since_ms()),
            };
            let expired = g.offsets_mut().expire(now, retention, empty_since);
            let partition = self.partition_for(id);
            for tp in expired {
                out.entry(partition)
                    .or_default()
                    .push(OffsetsRecord::Offset {
                        group: id.clone(),
                        tp,
                        value: None,
                    });
            }
            if empty_since.is_some()
                && g.offsets().is_empty()
                && !g.offsets().has_open_transactions()
            {
                let tombstone = match g {
                    Group::Classic(_) => OffsetsRecord::Group {
                        group: id.clone(),
                        value: None,
                    },
                    Group::Consumer(_) => OffsetsRecord::ConsumerGroup {
                        group: id.clone(),
                        epoch: None,
                    },
                };
                out.entry(partition).or_default().push(tombstone);
            }
        }
        out
    }
}

impl super::consumer::TopicLookup for MetadataImage {
    fn topic_id_and_partitions(&self, name: &str) -> Option<(crate::model::TopicId, i32)> {
        self.topic(name).map(|t| (t.id, t.partition_count()))
    }
    fn topic_name(&self, id: &crate::model::TopicId) -> Option<String> {
        self.topic_by_id(id).map(|t| t.name.clone())
    }
    fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }
}

/// Encodes records as one uncompressed v2 batch of `kind` (offsets relative; the log assigns
/// them).
pub(crate) fn encode_batch(
    records: &[OffsetsRecord],
    now: i64,
    kind: BatchKind,
) -> Result<Bytes, GroupError> {
    let pairs: Vec<(Option<Bytes>, Option<Bytes>)> = records
        .iter()
        .map(|r| {
            let (key, value) = r.encode();
            (Some(key), value)
        })
        .collect();
    super::records::encode_batch_of(&pairs, now, kind).map_err(GroupError::Append)
}

fn offsets_partition_count(image: &MetadataImage, config: &GroupConfig) -> i32 {
    image
        .topic(OFFSETS_TOPIC)
        .map(|t| t.partition_count())
        .unwrap_or(config.offsets_topic_partitions)
}

/// The group settings from the broker's Kafka-named properties.
pub fn config_from(broker: &BrokerConfig) -> GroupConfig {
    let d = GroupConfig::default();
    let int = |k: &str, v: i64| broker.int(k, v);
    GroupConfig {
        offsets_topic_partitions: int("offsets.topic.num.partitions", 50) as i32,
        min_session_timeout_ms: int("group.min.session.timeout.ms", 6000) as i32,
        max_session_timeout_ms: int("group.max.session.timeout.ms", 1_800_000) as i32,
        initial_rebalance_delay_ms: int("group.initial.rebalance.delay.ms", 3000),
        max_group_size: int("group.max.size", i64::from(i32::MAX)).max(1) as usize,
        offsets_retention_ms: int("offsets.retention.minutes", 10080).saturating_mul(60_000),
        offsets_retention_check_interval_ms: int("offsets.retention.check.interval.ms", 600_000)
            .max(1000),
        consumer_session_timeout_ms: int("group.consumer.session.timeout.ms", 45_000) as i32,
        consumer_heartbeat_interval_ms: int("group.consumer.heartbeat.interval.ms", 5000) as i32,
        // Kafka compacts __consumer_offsets segment by segment; a snapshot per segment's
        // worth of appends keeps the log as bounded.
        snapshot_bytes_min: int("offsets.topic.segment.bytes", 104_857_600).max(1024) as u64,
        verify_transactions: broker.flag("transaction.partition.verification.enable"),
        ..d
    }
}
