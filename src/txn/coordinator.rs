//! The per-shard transaction coordinator: the async front of [`super::state`].
//!
//! One [`TxnCoordinator`] lives on every shard and owns the transactional ids whose
//! `__transaction_state` partition that shard owns and this node leads. It
//! - replays a state partition into memory before serving its ids (on first use, and for every
//!   owned partition at start-up), once the partition's high watermark reached its end;
//! - writes every state change to that partition (acks=all) *before* applying it and
//!   answering, serialised per partition, so log order is apply order;
//! - ends a transaction in two phases, as Kafka does: EndTxn persists PrepareCommit or
//!   PrepareAbort and answers; the marker sender then writes the commit or abort marker to
//!   every partition of the transaction (WriteTxnMarkers to each leader) and, once every one
//!   is written, persists CompleteCommit or CompleteAbort. A coordinator that loads a
//!   partition (after a restart or a failover) resumes every Prepare state it finds;
//! - aborts transactions open longer than their timeout (bumping the epoch, which fences the
//!   producer that left them) and removes ids idle longer than `transactional.id.expiration.ms`;
//! - writes a snapshot of the live state once the records appended since the last one exceed
//!   `transaction.state.log.segment.bytes` (and twice the last snapshot), and advances the log
//!   start past what it supersedes.
//!
//! The coordinator epoch carried by markers is the state partition's leader epoch when it was
//! loaded, so a partition leader refuses markers of a coordinator that has been replaced.
//!
//! Architecture Invariant: no `RefCell` borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::records::RecordBatchDecoder;

use super::client::Clients;
use super::records::{decode_key, decode_value, encode_key, encode_value};
use super::request::{TxnRequest, TxnResponse};
use super::state::{self, EndDecision, InitDecision, TxnMeta, TxnState};
use super::{now_ms, partition_for, TxnConfig, TRANSACTION_STATE_TOPIC};
use crate::cluster::MetadataImage;
use crate::config::BrokerConfig;
use crate::model::{LeaderEpoch, Offset, ShardId, TopicPartition};
use crate::order::OrderQueue;
use crate::runtime::Shard;
use crate::storage::{Acks, AppendOptions, LogManager};

/// Bytes read per step when replaying a state partition.
const REPLAY_READ_BYTES_MAX: usize = 1 << 20;
/// How long a state write waits for replication before the request is answered
/// COORDINATOR_NOT_AVAILABLE (the write may still complete, as with Kafka's timeouts).
const STATE_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a load waits for the high watermark to reach the partition's end.
const LOAD_WAIT: Duration = Duration::from_secs(10);
/// Marker retries back off from the first to the last value.
const MARKER_BACKOFF_MIN: Duration = Duration::from_millis(20);
const MARKER_BACKOFF_MAX: Duration = Duration::from_millis(1000);

struct StatePartition {
    write_lock: OrderQueue,
    loaded: Cell<bool>,
    /// The leader epoch the partition was loaded at: the markers' coordinator epoch.
    coordinator_epoch: Cell<i32>,
    bytes_since_snapshot: Cell<u64>,
    last_snapshot_bytes: Cell<u64>,
}

pub struct TxnCoordinator {
    shard_id: ShardId,
    pub(crate) config: TxnConfig,
    logs: Rc<LogManager>,
    shard: RefCell<Weak<Shard>>,
    txns: RefCell<HashMap<String, TxnMeta>>,
    partitions: RefCell<HashMap<i32, Rc<StatePartition>>>,
    /// Connections to other brokers (markers, and this shard's produce verifications).
    pub(crate) clients: Clients,
    /// A creation of `__transaction_state` is in flight from this shard.
    creating_topic: Cell<bool>,
}

impl TxnCoordinator {
    pub fn new(shard_id: ShardId, broker: &BrokerConfig, logs: Rc<LogManager>) -> Rc<Self> {
        Rc::new(TxnCoordinator {
            shard_id,
            config: TxnConfig::from_broker(broker),
            logs,
            shard: RefCell::new(Weak::new()),
            txns: RefCell::new(HashMap::new()),
            partitions: RefCell::new(HashMap::new()),
            clients: Clients::default(),
            creating_topic: Cell::new(false),
        })
    }

    /// Starts the timer task and loads every state partition this shard owns and leads.
    pub fn start(self: &Rc<Self>, shard: Rc<Shard>) {
        *self.shard.borrow_mut() = Rc::downgrade(&shard);
        let me = self.clone();
        glommio::spawn_local(async move {
            for p in me.owned_partitions() {
                if let Err(e) = me.ensure_loaded(p).await {
                    tracing::warn!(partition = p, error = %e, "loading transaction state failed");
                }
            }
        })
        .detach();
        let me = self.clone();
        glommio::spawn_local(async move { me.timer_loop().await }).detach();
    }

    fn shard(&self) -> Option<Rc<Shard>> {
        self.shard.borrow().upgrade()
    }

    fn metadata(&self) -> Option<Arc<MetadataImage>> {
        self.shard().map(|s| s.metadata())
    }

    fn partition_count(&self) -> i32 {
        self.metadata()
            .and_then(|m| {
                m.topic(TRANSACTION_STATE_TOPIC)
                    .map(|t| t.partition_count())
            })
            .unwrap_or(self.config.partitions)
    }

    fn partition_of(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.partition_count())
    }

    fn owned_partitions(&self) -> Vec<i32> {
        let Some(shard) = self.shard() else {
            return vec![];
        };
        let image = shard.metadata();
        let Some(topic) = image.topic(TRANSACTION_STATE_TOPIC) else {
            return vec![];
        };
        (0..topic.partition_count())
            .filter(|p| {
                let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, *p);
                shard.shard_for(&tp) == self.shard_id
                    && shard.leads(&tp)
                    && self.logs.get(&tp).is_some()
            })
            .collect()
    }

    fn state(&self, partition: i32) -> Rc<StatePartition> {
        self.partitions
            .borrow_mut()
            .entry(partition)
            .or_insert_with(|| {
                Rc::new(StatePartition {
                    write_lock: OrderQueue::new(),
                    loaded: Cell::new(false),
                    coordinator_epoch: Cell::new(-1),
                    bytes_since_snapshot: Cell::new(0),
                    last_snapshot_bytes: Cell::new(0),
                })
            })
            .clone()
    }

    /// Forgets what this shard holds of `partition` (its leadership here began or ended): the
    /// next request replays the partition's log again, and marker senders of the old
    /// leadership stop at their next step.
    pub fn unload(&self, partition: i32) {
        if let Some(s) = self.partitions.borrow().get(&partition) {
            s.loaded.set(false);
        }
        let n = self.partition_count();
        self.txns
            .borrow_mut()
            .retain(|id, _| partition_for(id, n) != partition);
    }

    /// Replays `partition` into memory once, then resumes the markers of every transaction
    /// it finds half-ended. Fails when the partition is not led here.
    async fn ensure_loaded(self: &Rc<Self>, partition: i32) -> Result<(), ResponseError> {
        let st = self.state(partition);
        if st.loaded.get() {
            return Ok(());
        }
        let _guard = st.write_lock.lock().await;
        if st.loaded.get() {
            return Ok(());
        }
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
        let shard = self.shard().ok_or(ResponseError::CoordinatorNotAvailable)?;
        if !shard.leads(&tp) {
            return Err(ResponseError::NotCoordinator);
        }
        let log = self.logs.get(&tp).ok_or(ResponseError::NotCoordinator)?;
        let epoch = shard
            .metadata()
            .partition(&tp)
            .map(|p| p.leader_epoch)
            .unwrap_or(-1);
        if !log.wait_caught_up(LOAD_WAIT).await {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        {
            let n = self.partition_count();
            self.txns
                .borrow_mut()
                .retain(|id, _| partition_for(id, n) != partition);
        }
        let (count, bytes) = self.replay(&tp).await.map_err(|e| {
            tracing::error!(partition = %tp, error = %e, "replaying transaction state failed");
            ResponseError::CoordinatorLoadInProgress
        })?;
        st.bytes_since_snapshot.set(bytes);
        st.coordinator_epoch.set(epoch);
        st.loaded.set(true);
        let resume: Vec<TxnMeta> = {
            let n = self.partition_count();
            self.txns
                .borrow()
                .iter()
                .filter(|(id, m)| partition_for(id, n) == partition && m.state.is_prepare())
                .map(|(_, m)| m.clone())
                .collect()
        };
        tracing::info!(
            shard = self.shard_id.0,
            partition,
            records = count,
            coordinator_epoch = epoch,
            resumed = resume.len(),
            "transaction state loaded"
        );
        for m in resume {
            self.spawn_markers(partition, m);
        }
        Ok(())
    }

    async fn replay(&self, tp: &TopicPartition) -> Result<(u64, u64), String> {
        let log = self.logs.get(tp).ok_or("partition missing")?;
        let mut next = log.log_start_offset();
        let end = log.log_end_offset();
        let (mut count, mut bytes) = (0u64, 0u64);
        while next < end {
            let read = log
                .read(next, REPLAY_READ_BYTES_MAX, true)
                .await
                .map_err(|e| e.to_string())?;
            if read.records.is_empty() {
                break;
            }
            bytes += read.records.len() as u64;
            let mut buf = read.records.clone();
            let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| e.to_string())?;
            let mut last = next;
            let mut txns = self.txns.borrow_mut();
            for set in sets {
                for r in set.records {
                    last = last.max(Offset(r.offset + 1));
                    if r.control {
                        continue;
                    }
                    let Some(key) = r.key.as_deref() else {
                        continue;
                    };
                    let id = match decode_key(key) {
                        Ok(Some(id)) => id,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(partition = %tp, offset = r.offset, error = %e, "skipping a malformed record");
                            continue;
                        }
                    };
                    match r.value.as_deref() {
                        None => {
                            txns.remove(&id);
                        }
                        Some(v) => match decode_value(&id, v) {
                            Ok(m) => {
                                txns.insert(id, m);
                            }
                            Err(e) => {
                                tracing::warn!(partition = %tp, offset = r.offset, error = %e, "skipping a malformed record")
                            }
                        },
                    }
                    count += 1;
                }
            }
            if last <= next {
                break;
            }
            next = last;
        }
        Ok((count, bytes))
    }

    /// Appends state records (a `None` value is a tombstone) to `partition` with acks=all.
    /// The caller holds the partition's write lock.
    async fn append_locked(
        &self,
        partition: i32,
        records: &[(String, Option<TxnMeta>)],
    ) -> Result<(Offset, u64), ResponseError> {
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
        let shard = self.shard().ok_or(ResponseError::CoordinatorNotAvailable)?;
        let log = self.logs.get(&tp).ok_or(ResponseError::NotCoordinator)?;
        let Some(p) = shard.metadata().partition(&tp).cloned() else {
            return Err(ResponseError::NotCoordinator);
        };
        if !shard.leads(&tp) {
            return Err(ResponseError::NotCoordinator);
        }
        let now = now_ms();
        let pairs: Vec<(Option<Bytes>, Option<Bytes>)> = records
            .iter()
            .map(|(id, m)| (Some(encode_key(id)), m.as_ref().map(encode_value)))
            .collect();
        let batch = crate::group::records::encode_uncompressed_batch(&pairs, now).map_err(|e| {
            tracing::error!(error = %e, "encoding transaction state failed");
            ResponseError::UnknownServerError
        })?;
        let len = batch.len() as u64;
        let opts = AppendOptions {
            acks: Acks::All,
            leader_epoch: LeaderEpoch(p.leader_epoch),
            now_ms: now,
        };
        let place = log.reserve_append();
        match log
            .append_reserved_within(place, batch, opts, STATE_WRITE_TIMEOUT)
            .await
        {
            Ok(r) => Ok((r.base_offset, len)),
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "writing transaction state failed");
                Err(match e {
                    crate::storage::StorageError::NotLeader => ResponseError::NotCoordinator,
                    _ => ResponseError::CoordinatorNotAvailable,
                })
            }
        }
    }

    /// Persists `records` then applies them; the caller holds the write lock.
    async fn persist_locked(
        &self,
        partition: i32,
        records: Vec<(String, Option<TxnMeta>)>,
    ) -> Result<(), ResponseError> {
        let (_, n) = self.append_locked(partition, &records).await?;
        let st = self.state(partition);
        st.bytes_since_snapshot
            .set(st.bytes_since_snapshot.get() + n);
        let mut txns = self.txns.borrow_mut();
        for (id, m) in records {
            match m {
                Some(m) => {
                    txns.insert(id, m);
                }
                None => {
                    txns.remove(&id);
                }
            }
        }
        Ok(())
    }

    /// Snapshots `partition` when enough was appended since the last snapshot.
    async fn maybe_snapshot(&self, partition: i32) {
        let st = self.state(partition);
        let due = self
            .config
            .segment_bytes
            .max(2 * st.last_snapshot_bytes.get());
        if st.bytes_since_snapshot.get() < due {
            return;
        }
        let _guard = st.write_lock.lock().await;
        if !st.loaded.get() {
            return;
        }
        st.bytes_since_snapshot.set(0);
        let records: Vec<(String, Option<TxnMeta>)> = {
            let n = self.partition_count();
            self.txns
                .borrow()
                .iter()
                .filter(|(id, _)| partition_for(id, n) == partition)
                .map(|(id, m)| (id.clone(), Some(m.clone())))
                .collect()
        };
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
        let base = if records.is_empty() {
            match self.logs.get(&tp) {
                Some(log) => log.log_end_offset(),
                None => return,
            }
        } else {
            match self.append_locked(partition, &records).await {
                Ok((base, bytes)) => {
                    st.last_snapshot_bytes.set(bytes);
                    base
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "transaction state snapshot failed");
                    return;
                }
            }
        };
        if let Some(log) = self.logs.get(&tp) {
            if let Err(e) = log.delete_records_before(base).await {
                tracing::warn!(partition, error = %e, "advancing the transaction state log start failed");
                return;
            }
        }
        tracing::info!(
            partition,
            ids = records.len(),
            log_start = base.0,
            "transaction state snapshot written"
        );
    }

    /// Serves one request for an id this shard coordinates (or ListTransactions).
    pub async fn handle(self: &Rc<Self>, req: TxnRequest) -> TxnResponse {
        let Some(id) = req.transactional_id().map(str::to_owned) else {
            return self.list(req).await;
        };
        let partition = self.partition_of(&id);
        if let Err(e) = self.ensure_loaded(partition).await {
            return TxnResponse::error(&req, e.code());
        }
        let st = self.state(partition);
        let answer = {
            let _guard = st.write_lock.lock().await;
            if !st.loaded.get() {
                return TxnResponse::error(&req, ResponseError::NotCoordinator.code());
            }
            self.serve_locked(partition, &id, req).await
        };
        self.maybe_snapshot(partition).await;
        answer
    }

    async fn serve_locked(
        self: &Rc<Self>,
        partition: i32,
        id: &str,
        req: TxnRequest,
    ) -> TxnResponse {
        let current = self.txns.borrow().get(id).cloned();
        let now = now_ms();
        match req {
            TxnRequest::InitProducerId {
                timeout_ms,
                producer_id,
                producer_epoch,
                ..
            } => {
                let new_id = if state::needs_new_producer_id(current.as_ref()) {
                    let Some(shard) = self.shard() else {
                        return producer_error(ResponseError::CoordinatorNotAvailable);
                    };
                    match shard.next_producer_id().await {
                        Some(id) => Some(id),
                        None => return producer_error(ResponseError::CoordinatorNotAvailable),
                    }
                } else {
                    None
                };
                let decision = state::init_producer_id(
                    current.as_ref(),
                    id,
                    timeout_ms,
                    self.config.max_timeout_ms,
                    (producer_id, producer_epoch),
                    new_id,
                    now,
                );
                match decision {
                    Err(e) => producer_error(e),
                    Ok(InitDecision::Unchanged(m)) => producer_ok(&m),
                    Ok(InitDecision::Ready(m)) => {
                        match self
                            .persist_locked(partition, vec![(id.to_string(), Some(m.clone()))])
                            .await
                        {
                            Ok(()) => {
                                tracing::debug!(
                                    transactional_id = id,
                                    producer_id = m.producer_id,
                                    epoch = m.producer_epoch,
                                    "producer initialised"
                                );
                                producer_ok(&m)
                            }
                            Err(e) => producer_error(e),
                        }
                    }
                    Ok(InitDecision::FenceOngoing(m)) => {
                        match self
                            .persist_locked(partition, vec![(id.to_string(), Some(m.clone()))])
                            .await
                        {
                            Ok(()) => {
                                tracing::info!(transactional_id = id, epoch = m.producer_epoch, "a new instance fenced the previous one; aborting its open transaction");
                                self.spawn_markers(partition, m);
                                producer_error(ResponseError::ConcurrentTransactions)
                            }
                            Err(e) => producer_error(e),
                        }
                    }
                }
            }
            TxnRequest::AddPartitions {
                producer_id,
                producer_epoch,
                partitions,
                verify_only,
                ..
            } => {
                if verify_only {
                    let results = partitions
                        .into_iter()
                        .map(|tp| {
                            let code = match state::verify_partition(
                                current.as_ref(),
                                producer_id,
                                producer_epoch,
                                &tp,
                            ) {
                                Ok(()) => 0,
                                Err(e) => e.code(),
                            };
                            (tp, code)
                        })
                        .collect();
                    return TxnResponse::Partitions(results);
                }
                let code = match state::add_partitions(
                    current.as_ref(),
                    producer_id,
                    producer_epoch,
                    &partitions,
                    now,
                ) {
                    Err(e) => e.code(),
                    Ok(None) => 0,
                    Ok(Some(m)) => match self
                        .persist_locked(partition, vec![(id.to_string(), Some(m))])
                        .await
                    {
                        Ok(()) => 0,
                        Err(e) => e.code(),
                    },
                };
                TxnResponse::Partitions(partitions.into_iter().map(|tp| (tp, code)).collect())
            }
            TxnRequest::AddOffsets {
                producer_id,
                producer_epoch,
                group_id,
                ..
            } => {
                let Some(image) = self.metadata() else {
                    return TxnResponse::Code(ResponseError::CoordinatorNotAvailable.code());
                };
                let Some(offsets_tp) = crate::group::dispatch::offsets_partition(&image, &group_id)
                else {
                    return TxnResponse::Code(ResponseError::CoordinatorNotAvailable.code());
                };
                let code = match state::add_partitions(
                    current.as_ref(),
                    producer_id,
                    producer_epoch,
                    &[offsets_tp],
                    now,
                ) {
                    Err(e) => e.code(),
                    Ok(None) => 0,
                    Ok(Some(m)) => match self
                        .persist_locked(partition, vec![(id.to_string(), Some(m))])
                        .await
                    {
                        Ok(()) => 0,
                        Err(e) => e.code(),
                    },
                };
                TxnResponse::Code(code)
            }
            TxnRequest::EndTxn {
                producer_id,
                producer_epoch,
                commit,
                transaction_version,
                ..
            } => {
                let tv2 = transaction_version >= 2;
                let new_id = if state::end_needs_new_producer_id(tv2, producer_epoch) {
                    match self.shard() {
                        Some(shard) => shard.next_producer_id().await,
                        None => None,
                    }
                } else {
                    None
                };
                match state::end_txn(
                    current.as_ref(),
                    producer_id,
                    producer_epoch,
                    commit,
                    tv2,
                    new_id,
                    now,
                ) {
                    Err(e) => producer_error(e),
                    Ok(EndDecision::AlreadyDone(m)) => producer_ok(&m),
                    Ok(EndDecision::Prepare(m)) => match self
                        .persist_locked(partition, vec![(id.to_string(), Some(m.clone()))])
                        .await
                    {
                        Ok(()) => {
                            // The client continues with the id and epoch it will have once
                            // this transaction completes.
                            let next = TxnResponse::Producer {
                                error_code: 0,
                                producer_id: if m.next_producer_id >= 0 {
                                    m.next_producer_id
                                } else {
                                    m.producer_id
                                },
                                producer_epoch: if m.next_producer_id >= 0 {
                                    0
                                } else {
                                    m.producer_epoch
                                },
                            };
                            self.spawn_markers(partition, m);
                            next
                        }
                        Err(e) => producer_error(e),
                    },
                }
            }
            TxnRequest::Describe { .. } => {
                TxnResponse::Described(current.ok_or(ResponseError::TransactionalIdNotFound.code()))
            }
            TxnRequest::List { .. } => TxnResponse::Listed(Vec::new()),
        }
    }

    async fn list(self: &Rc<Self>, req: TxnRequest) -> TxnResponse {
        let TxnRequest::List {
            states,
            producer_ids,
            min_duration_ms,
            pattern,
        } = req
        else {
            return TxnResponse::Listed(Vec::new());
        };
        for p in self.owned_partitions() {
            let _ = self.ensure_loaded(p).await;
        }
        let pattern = match pattern.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => match regex_automata::meta::Regex::new(&format!("^(?:{p})$")) {
                Ok(r) => Some(r),
                Err(_) => return TxnResponse::Listed(Vec::new()),
            },
        };
        let now = now_ms();
        let owned: BTreeSet<i32> = self.owned_partitions().into_iter().collect();
        let n = self.partition_count();
        let out = self
            .txns
            .borrow()
            .iter()
            .filter(|(id, _)| owned.contains(&partition_for(id, n)))
            .filter(|(_, m)| states.is_empty() || states.iter().any(|s| s == m.state.name()))
            .filter(|(_, m)| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|(_, m)| {
                min_duration_ms < 0
                    || (m.state == TxnState::Ongoing && now - m.start_ms > min_duration_ms)
            })
            .filter(|(id, _)| pattern.as_ref().is_none_or(|r| r.is_match(id.as_str())))
            .map(|(id, m)| (id.clone(), m.producer_id, m.state.name()))
            .collect();
        TxnResponse::Listed(out)
    }

    /// Writes the markers of `m` (a Prepare state) in the background, then completes it.
    fn spawn_markers(self: &Rc<Self>, partition: i32, m: TxnMeta) {
        let me = self.clone();
        glommio::spawn_local(async move { me.write_markers(partition, m).await }).detach();
    }

    /// True while this shard still coordinates `partition` at `epoch`.
    fn still_coordinator(&self, partition: i32, epoch: i32) -> bool {
        let st = self.state(partition);
        if !st.loaded.get() || st.coordinator_epoch.get() != epoch {
            return false;
        }
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
        self.shard()
            .is_some_and(|s| !s.shutting_down.get() && s.leads(&tp))
    }

    async fn write_markers(self: Rc<Self>, partition: i32, m: TxnMeta) {
        let commit = m.state == TxnState::PrepareCommit;
        let epoch = self.state(partition).coordinator_epoch.get();
        let mut remaining: BTreeSet<TopicPartition> = m.partitions.clone();
        let mut backoff = MARKER_BACKOFF_MIN;
        while !remaining.is_empty() {
            if !self.still_coordinator(partition, epoch) {
                tracing::info!(transactional_id = %m.transactional_id, "no longer the coordinator; its successor resumes the markers");
                return;
            }
            let Some(image) = self.metadata() else { return };
            // A partition whose topic was deleted needs no marker (Kafka drops it too).
            remaining.retain(|tp| {
                let exists = image.partition(tp).is_some();
                if !exists {
                    tracing::info!(partition = %tp, transactional_id = %m.transactional_id, "no marker for a partition that no longer exists");
                }
                exists
            });
            let mut by_leader: HashMap<i32, Vec<TopicPartition>> = HashMap::new();
            for tp in &remaining {
                if let Some(p) = image.partition(tp) {
                    if image.leader_available(p) {
                        by_leader.entry(p.leader).or_default().push(tp.clone());
                    }
                }
            }
            let sends = by_leader.into_iter().map(|(node, tps)| {
                let image = image.clone();
                let me = self.clone();
                let m = &m;
                async move {
                    let done = me.send_markers(&image, node, m, commit, epoch, &tps).await;
                    (tps, done)
                }
            });
            let mut fenced = false;
            for (_tps, done) in futures::future::join_all(sends).await {
                match done {
                    Ok(written) => {
                        for tp in written {
                            remaining.remove(&tp);
                        }
                    }
                    Err(MarkerFailure::Fenced) => fenced = true,
                    Err(MarkerFailure::Retry) => {}
                }
            }
            if fenced {
                tracing::warn!(transactional_id = %m.transactional_id, "a partition leader reports a newer coordinator; this one stops");
                return;
            }
            if !remaining.is_empty() {
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(MARKER_BACKOFF_MAX);
            }
        }
        // Every marker is written: persist the Complete state.
        let st = self.state(partition);
        let _guard = st.write_lock.lock().await;
        if !self.still_coordinator(partition, epoch) {
            return;
        }
        let current = self.txns.borrow().get(&m.transactional_id).cloned();
        let Some(current) = current else { return };
        if current.producer_id != m.producer_id
            || current.producer_epoch != m.producer_epoch
            || current.state != m.state
        {
            return;
        }
        if let Some(done) = state::complete(&current, now_ms()) {
            let id = m.transactional_id.clone();
            match self.persist_locked(partition, vec![(id, Some(done))]).await {
                Ok(()) => {
                    tracing::debug!(transactional_id = %m.transactional_id, commit, "transaction complete")
                }
                Err(e) => {
                    // The Prepare state stays; the next load (or an unload/reload) resumes it.
                    tracing::warn!(transactional_id = %m.transactional_id, error = %e, "persisting the completed transaction failed");
                    st.loaded.set(false);
                }
            }
        }
    }

    /// One WriteTxnMarkers request to `node` for `tps`; returns the partitions now written.
    async fn send_markers(
        &self,
        image: &MetadataImage,
        node: i32,
        m: &TxnMeta,
        commit: bool,
        coordinator_epoch: i32,
        tps: &[TopicPartition],
    ) -> Result<Vec<TopicPartition>, MarkerFailure> {
        let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
        for tp in tps {
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == tp.topic => t.partition_indexes.push(tp.partition),
                _ => topics.push(
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(crate::handler::str_bytes(&tp.topic)))
                        .with_partition_indexes(vec![tp.partition]),
                ),
            }
        }
        let req =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(topics)]);
        let resp: WriteTxnMarkersResponse = match self
            .clients
            .call(image, node, ApiKey::WriteTxnMarkers, 1, &req)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(node, error = %e, "sending transaction markers failed; retrying");
                return Err(MarkerFailure::Retry);
            }
        };
        let mut written = Vec::new();
        let mut fenced = false;
        for result in resp.markers {
            for t in result.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    match ResponseError::try_from_code(p.error_code) {
                        None => written.push(tp),
                        Some(ResponseError::TransactionCoordinatorFenced) => fenced = true,
                        Some(e) => {
                            tracing::debug!(partition = %tp, error = %e, "marker not written; retrying")
                        }
                    }
                }
            }
        }
        if fenced {
            return Err(MarkerFailure::Fenced);
        }
        Ok(written)
    }

    async fn timer_loop(self: Rc<Self>) {
        let tick = Duration::from_millis(self.config.abort_interval_ms);
        let mut next_removal = now_ms() + self.config.remove_interval_ms as i64;
        loop {
            glommio::timer::sleep(tick).await;
            let Some(shard) = self.shard() else { return };
            if shard.shutting_down.get() {
                return;
            }
            let now = now_ms();
            let owned = self.owned_partitions();
            for p in &owned {
                self.abort_expired(*p, now).await;
            }
            if now >= next_removal {
                next_removal = now + self.config.remove_interval_ms as i64;
                for p in &owned {
                    self.remove_expired_ids(*p, now).await;
                }
            }
        }
    }

    fn ids_of(&self, partition: i32, pick: impl Fn(&TxnMeta) -> bool) -> Vec<TxnMeta> {
        let n = self.partition_count();
        self.txns
            .borrow()
            .iter()
            .filter(|(id, m)| partition_for(id, n) == partition && pick(m))
            .map(|(_, m)| m.clone())
            .collect()
    }

    async fn abort_expired(self: &Rc<Self>, partition: i32, now: i64) {
        let st = self.state(partition);
        if !st.loaded.get() {
            return;
        }
        let expired = self.ids_of(partition, |m| m.is_expired(now));
        if expired.is_empty() {
            return;
        }
        let _guard = st.write_lock.lock().await;
        for m in expired {
            // Re-read under the lock: the producer may have ended it meanwhile.
            let current = self.txns.borrow().get(&m.transactional_id).cloned();
            let Some(next) = current.and_then(|c| state::abort_expired(&c, now)) else {
                continue;
            };
            let id = m.transactional_id.clone();
            match self
                .persist_locked(partition, vec![(id, Some(next.clone()))])
                .await
            {
                Ok(()) => {
                    tracing::info!(transactional_id = %m.transactional_id, timeout_ms = m.timeout_ms, "aborting a transaction open past its timeout");
                    self.spawn_markers(partition, next);
                }
                Err(e) => {
                    tracing::warn!(transactional_id = %m.transactional_id, error = %e, "aborting an expired transaction failed")
                }
            }
        }
    }

    async fn remove_expired_ids(&self, partition: i32, now: i64) {
        let st = self.state(partition);
        if !st.loaded.get() {
            return;
        }
        let expiration = self.config.id_expiration_ms;
        let idle = self.ids_of(partition, |m| state::is_removable(m, now, expiration));
        if idle.is_empty() {
            return;
        }
        let _guard = st.write_lock.lock().await;
        let records: Vec<(String, Option<TxnMeta>)> = idle
            .into_iter()
            .filter(|m| {
                self.txns
                    .borrow()
                    .get(&m.transactional_id)
                    .is_some_and(|c| state::is_removable(c, now, expiration))
            })
            .map(|m| (m.transactional_id, None))
            .collect();
        let count = records.len();
        match self.persist_locked(partition, records).await {
            Ok(()) => tracing::info!(partition, count, "removed expired transactional ids"),
            Err(e) => {
                tracing::warn!(partition, error = %e, "removing expired transactional ids failed")
            }
        }
    }

    /// Creates `__transaction_state` once (Kafka creates it on the first transactional request):
    /// `transaction.state.log.*` settings, the replication factor capped by the brokers
    /// registered.
    pub fn ensure_topic(self: &Rc<Self>, shard: &Rc<Shard>) {
        if self.creating_topic.get() || shard.metadata().topic(TRANSACTION_STATE_TOPIC).is_some() {
            return;
        }
        self.creating_topic.set(true);
        let me = self.clone();
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let image = shard.metadata();
            let brokers = image.brokers.len().max(1) as i64;
            let rf = me.config.replication_factor.min(brokers);
            let mut configs = std::collections::BTreeMap::new();
            configs.insert(
                "segment.bytes".to_string(),
                me.config.segment_bytes.to_string(),
            );
            configs.insert("retention.ms".to_string(), "-1".to_string());
            // Kafka's: the latest state of each id is what counts (the cleaner keeps it).
            configs.insert("cleanup.policy".to_string(), "compact".to_string());
            configs.insert(
                "min.insync.replicas".to_string(),
                me.config.min_isr.min(rf).to_string(),
            );
            let cmd = crate::cluster::ControllerCommand::CreateTopic {
                name: TRANSACTION_STATE_TOPIC.to_string(),
                id: uuid::Uuid::new_v4(),
                partitions: me.config.partitions,
                replication_factor: rf as i16,
                configs,
                internal: true,
                assignment: None,
            };
            match crate::handler::create_topics::submit(&shard, cmd, false).await {
                Ok(_) => tracing::info!(replication_factor = rf, partitions = me.config.partitions, "created {TRANSACTION_STATE_TOPIC}"),
                Err(e) => tracing::warn!(error = ?e, "creating {TRANSACTION_STATE_TOPIC} failed; the next transactional request retries"),
            }
            me.creating_topic.set(false);
        })
        .detach();
    }
}

enum MarkerFailure {
    /// A partition leader knows a newer coordinator epoch: this coordinator is stale.
    Fenced,
    Retry,
}

fn producer_ok(m: &TxnMeta) -> TxnResponse {
    TxnResponse::Producer {
        error_code: 0,
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
    }
}

fn producer_error(e: ResponseError) -> TxnResponse {
    TxnResponse::Producer {
        error_code: e.code(),
        producer_id: -1,
        producer_epoch: -1,
    }
}
