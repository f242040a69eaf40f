//! The transaction state machine of one transactional id (Kafka's `TransactionMetadata` and the
//! checks of its `TransactionCoordinator`), pure: every function takes the current state and
//! `now_ms` and returns the state to persist, or the Kafka error to answer. The coordinator
//! persists what is returned before it answers, and only then applies it.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;

use crate::model::TopicPartition;

/// Kafka's `TransactionState`, with its on-disk numbers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_i8(v: i8) -> Option<TxnState> {
        Some(match v {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        (0..=7)
            .filter_map(TxnState::from_i8)
            .find(|s| s.name() == name)
    }

    /// Markers are being written (or are to be, after a restart).
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction in progress: a new one may begin.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// One transactional id's state, as `__transaction_state` stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMeta {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last epoch exhaustion (KIP-360 retries), else -1.
    pub prev_producer_id: i64,
    /// Transactions v2: the producer id handed out when the epoch ran out, else -1.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, for recognising a retried InitProducerId (memory only).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The transaction version the client uses (0/1 = v1, 2 = KIP-890 part 2).
    pub client_version: i16,
}

impl TxnMeta {
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMeta {
            transactional_id,
            producer_id,
            prev_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: 0,
        }
    }

    /// An Ongoing transaction older than its timeout (the coordinator aborts it).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && now_ms > self.start_ms + i64::from(self.timeout_ms)
    }
}

/// An epoch at or above this is exhausted: the next bump hands out a new producer id.
const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// What an InitProducerId decided.
#[derive(Debug, PartialEq, Eq)]
pub enum InitDecision {
    /// Persist this state and answer with its producer id and epoch.
    Ready(TxnMeta),
    /// Answer with the current producer id and epoch (a retried request); nothing to write.
    Unchanged(TxnMeta),
    /// The previous instance's transaction is still open: persist this state (PrepareAbort at a
    /// bumped epoch, which fences the old instance), write its abort markers, and answer
    /// CONCURRENT_TRANSACTIONS so the client retries once the abort is complete.
    FenceOngoing(TxnMeta),
}

/// True when InitProducerId must hand out a new producer id (a new transactional id, or an
/// exhausted epoch), which the caller allocates before calling [`init_producer_id`].
pub fn needs_new_producer_id(current: Option<&TxnMeta>) -> bool {
    match current {
        None => true,
        Some(m) => m.state.is_idle() && m.producer_epoch >= EPOCH_EXHAUSTED,
    }
}

/// Kafka's InitProducerId for a transactional id. `expected` is the client's (producer id,
/// epoch) of KIP-360 (both -1 when it has none); `new_producer_id` is set when
/// [`needs_new_producer_id`] said so.
pub fn init_producer_id(
    current: Option<&TxnMeta>,
    transactional_id: &str,
    timeout_ms: i32,
    max_timeout_ms: i32,
    expected: (i64, i16),
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<InitDecision, ResponseError> {
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    let Some(current) = current else {
        let id = new_producer_id.ok_or(ResponseError::CoordinatorNotAvailable)?;
        let mut m = TxnMeta::new(transactional_id.to_string(), id, timeout_ms, now_ms);
        m.producer_epoch = 0;
        return Ok(InitDecision::Ready(m));
    };
    let (expected_id, expected_epoch) = expected;
    if expected_id >= 0 {
        let current_instance =
            expected_id == current.producer_id && expected_epoch == current.producer_epoch;
        let retried = expected_id == current.producer_id
            && expected_epoch == current.last_producer_epoch
            && current.state.is_idle();
        let before_exhaustion = expected_id == current.prev_producer_id && current.state.is_idle();
        if retried {
            return Ok(InitDecision::Unchanged(current.clone()));
        }
        if !current_instance && !before_exhaustion {
            return Err(ResponseError::ProducerFenced);
        }
    }
    match current.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            Err(ResponseError::ConcurrentTransactions)
        }
        TxnState::Dead => Err(ResponseError::ConcurrentTransactions),
        TxnState::Ongoing => {
            let mut m = current.clone();
            m.last_producer_epoch = m.producer_epoch;
            m.producer_epoch = m.producer_epoch.saturating_add(1);
            m.state = TxnState::PrepareAbort;
            m.last_update_ms = now_ms;
            Ok(InitDecision::FenceOngoing(m))
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let mut m = current.clone();
            if current.producer_epoch >= EPOCH_EXHAUSTED {
                let id = new_producer_id.ok_or(ResponseError::CoordinatorNotAvailable)?;
                m.prev_producer_id = current.producer_id;
                m.producer_id = id;
                m.producer_epoch = 0;
                m.last_producer_epoch = -1;
            } else {
                m.last_producer_epoch = m.producer_epoch;
                m.producer_epoch += 1;
            }
            m.timeout_ms = timeout_ms;
            m.state = TxnState::Empty;
            m.partitions.clear();
            m.start_ms = -1;
            m.last_update_ms = now_ms;
            Ok(InitDecision::Ready(m))
        }
    }
}

/// The producer id and epoch checks every transactional request starts with.
fn check_producer(
    current: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
) -> Result<&TxnMeta, ResponseError> {
    let m = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(m)
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): the new state
/// to persist, or `None` when every partition is already in the ongoing transaction.
pub fn add_partitions(
    current: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    partitions: &[TopicPartition],
    now_ms: i64,
) -> Result<Option<TxnMeta>, ResponseError> {
    let m = check_producer(current, producer_id, epoch)?;
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            return Err(ResponseError::ConcurrentTransactions)
        }
        TxnState::Dead => return Err(ResponseError::InvalidTxnState),
        _ => {}
    }
    if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.clone();
    if next.state != TxnState::Ongoing {
        next.start_ms = now_ms;
        next.partitions.clear();
    }
    next.state = TxnState::Ongoing;
    next.partitions.extend(partitions.iter().cloned());
    next.last_update_ms = now_ms;
    Ok(Some(next))
}

/// KIP-890 part 1: a partition leader asks whether `partition` is in the producer's ongoing
/// transaction before it appends the transaction's first batch there.
pub fn verify_partition(
    current: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    partition: &TopicPartition,
) -> Result<(), ResponseError> {
    let m = check_producer(current, producer_id, epoch)?;
    if m.state == TxnState::Ongoing && m.partitions.contains(partition) {
        Ok(())
    } else {
        Err(ResponseError::InvalidTxnState)
    }
}

/// What an EndTxn decided.
#[derive(Debug, PartialEq, Eq)]
pub enum EndDecision {
    /// Persist this Prepare state, answer success (with its producer id and epoch), then write
    /// the markers.
    Prepare(TxnMeta),
    /// A retry of a transaction already completed the same way: answer success with the
    /// current producer id and epoch.
    AlreadyDone(TxnMeta),
}

/// EndTxn. With transactions v2 (`tv2`, EndTxn v5+, KIP-890 part 2) every transaction ends
/// with an epoch bump: the Prepare state carries epoch + 1, its markers are written at that
/// epoch (so a late write of the ended transaction is fenced by the partition), and the client
/// continues with it. A retry at the old epoch of a transaction that completed the same way is
/// answered with the new one. An exhausted epoch moves to `new_producer_id` (epoch 0) once the
/// transaction completes.
pub fn end_txn(
    current: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    tv2: bool,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndDecision, ResponseError> {
    let m = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if tv2 {
        let retry_of_last = m.producer_id == producer_id
            && m.last_producer_epoch == epoch
            && m.producer_epoch == epoch.saturating_add(1);
        let retry_after_new_id =
            m.prev_producer_id == producer_id && m.last_producer_epoch == epoch;
        if retry_of_last || retry_after_new_id {
            return match (m.state, commit) {
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    Ok(EndDecision::AlreadyDone(m.clone()))
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    Err(ResponseError::ConcurrentTransactions)
                }
                _ => Err(ResponseError::InvalidTxnState),
            };
        }
    }
    let m = check_producer(current, producer_id, epoch)?;
    let bump = |state: TxnState| -> Result<TxnMeta, ResponseError> {
        let mut next = m.clone();
        next.state = state;
        next.last_update_ms = now_ms;
        if tv2 {
            next.client_version = 2;
            next.last_producer_epoch = epoch;
            next.producer_epoch = epoch.saturating_add(1);
            if next.producer_epoch >= EPOCH_EXHAUSTED {
                next.next_producer_id =
                    new_producer_id.ok_or(ResponseError::CoordinatorNotAvailable)?;
            }
        }
        Ok(next)
    };
    match (m.state, commit) {
        (TxnState::Ongoing, true) => Ok(EndDecision::Prepare(bump(TxnState::PrepareCommit)?)),
        (TxnState::Ongoing, false) => Ok(EndDecision::Prepare(bump(TxnState::PrepareAbort)?)),
        // v2 lets a producer abort with nothing in flight, to bump its epoch.
        (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, false) if tv2 => {
            let mut next = bump(TxnState::PrepareAbort)?;
            next.partitions.clear();
            Ok(EndDecision::Prepare(next))
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndDecision::AlreadyDone(m.clone()))
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(ResponseError::ConcurrentTransactions)
        }
        (TxnState::PrepareEpochFence, _) => Err(ResponseError::ConcurrentTransactions),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// True when an EndTxn at `epoch` with transactions v2 will exhaust the epoch, so the caller
/// allocates the producer id to move to.
pub fn end_needs_new_producer_id(tv2: bool, epoch: i16) -> bool {
    tv2 && epoch.saturating_add(1) >= EPOCH_EXHAUSTED
}

/// The coordinator aborts a transaction that outlived its timeout: the epoch is bumped so the
/// producer that left it open is fenced (its next request gets PRODUCER_FENCED).
pub fn abort_expired(m: &TxnMeta, now_ms: i64) -> Option<TxnMeta> {
    if !m.is_expired(now_ms) || m.producer_epoch >= EPOCH_EXHAUSTED {
        return None;
    }
    let mut next = m.clone();
    next.last_producer_epoch = next.producer_epoch;
    next.producer_epoch += 1;
    next.state = TxnState::PrepareAbort;
    next.last_update_ms = now_ms;
    Some(next)
}

/// After every marker of a Prepare state is written: the Complete state to persist.
pub fn complete(m: &TxnMeta, now_ms: i64) -> Option<TxnMeta> {
    let state = match m.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return None,
    };
    let mut next = m.clone();
    next.state = state;
    next.partitions.clear();
    next.last_update_ms = now_ms;
    if next.next_producer_id >= 0 {
        next.prev_producer_id = next.producer_id;
        next.producer_id = next.next_producer_id;
        next.next_producer_id = -1;
        next.producer_epoch = 0;
    }
    Some(next)
}

/// `transactional.id.expiration.ms`: an idle id not used for that long is removed.
pub fn is_removable(m: &TxnMeta, now_ms: i64, expiration_ms: i64) -> bool {
    m.state.is_idle() && now_ms.saturating_sub(m.last_update_ms) > expiration_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i32 = 900_000;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn ready(d: InitDecision) -> TxnMeta {
        match d {
            InitDecision::Ready(m) => m,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction_commits_and_the_next_init_bumps_the_epoch() {
        let m = ready(init_producer_id(None, "x", 60_000, MAX, (-1, -1), Some(5), 1).unwrap());
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (5, 0, TxnState::Empty)
        );
        let m = add_partitions(Some(&m), 5, 0, &[tp(0), tp(1)], 2)
            .unwrap()
            .unwrap();
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 2));
        assert_eq!(add_partitions(Some(&m), 5, 0, &[tp(1)], 3).unwrap(), None);
        assert!(verify_partition(Some(&m), 5, 0, &tp(1)).is_ok());
        assert_eq!(
            verify_partition(Some(&m), 5, 0, &tp(2)),
            Err(ResponseError::InvalidTxnState)
        );
        let EndDecision::Prepare(p) = end_txn(Some(&m), 5, 0, true, false, None, 4).unwrap() else {
            panic!()
        };
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(
            end_txn(Some(&p), 5, 0, true, false, None, 5),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            end_txn(Some(&p), 5, 0, false, false, None, 5),
            Err(ResponseError::InvalidTxnState)
        );
        let c = complete(&p, 6).unwrap();
        assert_eq!(c.state, TxnState::CompleteCommit);
        assert!(c.partitions.is_empty());
        assert_eq!(
            end_txn(Some(&c), 5, 0, true, false, None, 7),
            Ok(EndDecision::AlreadyDone(c.clone()))
        );
        let again = ready(init_producer_id(Some(&c), "x", 60_000, MAX, (-1, -1), None, 8).unwrap());
        assert_eq!((again.producer_id, again.producer_epoch), (5, 1));
        // The old instance is fenced.
        assert_eq!(
            add_partitions(Some(&again), 5, 0, &[tp(0)], 9),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            add_partitions(Some(&again), 6, 1, &[tp(0)], 9),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn a_new_instance_aborts_the_open_transaction_of_the_old_one() {
        let m = ready(init_producer_id(None, "x", 60_000, MAX, (-1, -1), Some(5), 1).unwrap());
        let m = add_partitions(Some(&m), 5, 0, &[tp(0)], 2)
            .unwrap()
            .unwrap();
        let InitDecision::FenceOngoing(f) =
            init_producer_id(Some(&m), "x", 60_000, MAX, (-1, -1), None, 3).unwrap()
        else {
            panic!()
        };
        assert_eq!((f.state, f.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(
            init_producer_id(Some(&f), "x", 60_000, MAX, (-1, -1), None, 4),
            Err(ResponseError::ConcurrentTransactions)
        );
        let done = complete(&f, 5).unwrap();
        let m = ready(init_producer_id(Some(&done), "x", 60_000, MAX, (-1, -1), None, 6).unwrap());
        assert_eq!(m.producer_epoch, 2);
    }

    #[test]
    fn timeouts_and_expiration() {
        assert_eq!(
            init_producer_id(None, "x", MAX + 1, MAX, (-1, -1), Some(1), 0),
            Err(ResponseError::InvalidTransactionTimeout)
        );
        let m = ready(init_producer_id(None, "x", 100, MAX, (-1, -1), Some(1), 0).unwrap());
        let m = add_partitions(Some(&m), 1, 0, &[tp(0)], 10)
            .unwrap()
            .unwrap();
        assert_eq!(abort_expired(&m, 110), None);
        let a = abort_expired(&m, 111).unwrap();
        assert_eq!((a.state, a.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(
            end_txn(Some(&a), 1, 0, true, false, None, 112),
            Err(ResponseError::ProducerFenced)
        );
        let c = complete(&a, 113).unwrap();
        assert!(!is_removable(&c, 200, 1000));
        assert!(is_removable(&c, 2000, 1000));
    }

    #[test]
    fn kip_360_retries_and_epoch_exhaustion() {
        let mut m = ready(init_producer_id(None, "x", 100, MAX, (-1, -1), Some(1), 0).unwrap());
        m.producer_epoch = EPOCH_EXHAUSTED;
        assert!(needs_new_producer_id(Some(&m)));
        let n = ready(
            init_producer_id(Some(&m), "x", 100, MAX, (1, EPOCH_EXHAUSTED), Some(9), 1).unwrap(),
        );
        assert_eq!(
            (n.producer_id, n.producer_epoch, n.prev_producer_id),
            (9, 0, 1)
        );
        let n2 = ready(init_producer_id(Some(&n), "x", 100, MAX, (9, 0), None, 2).unwrap());
        assert_eq!(n2.producer_epoch, 1);
        // The same request again (its answer was lost): the same id and epoch.
        assert_eq!(
            init_producer_id(Some(&n2), "x", 100, MAX, (9, 0), None, 3).unwrap(),
            InitDecision::Unchanged(n2.clone())
        );
        assert_eq!(
            init_producer_id(Some(&n2), "x", 100, MAX, (3, 0), None, 3),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            TxnState::from_name("PrepareAbort"),
            Some(TxnState::PrepareAbort)
        );
    }

    #[test]
    fn transactions_v2_bump_the_epoch_at_every_end() {
        let m = ready(init_producer_id(None, "x", 100, MAX, (-1, -1), Some(1), 0).unwrap());
        let m = add_partitions(Some(&m), 1, 0, &[tp(0)], 1)
            .unwrap()
            .unwrap();
        let EndDecision::Prepare(p) = end_txn(Some(&m), 1, 0, true, true, None, 2).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.state, p.producer_epoch, p.client_version),
            (TxnState::PrepareCommit, 1, 2)
        );
        // The old epoch is fenced for new work, but a retried EndTxn is recognised.
        assert_eq!(
            add_partitions(Some(&p), 1, 0, &[tp(0)], 3),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end_txn(Some(&p), 1, 0, true, true, None, 3),
            Err(ResponseError::ConcurrentTransactions)
        );
        let c = complete(&p, 4).unwrap();
        assert_eq!(
            end_txn(Some(&c), 1, 0, true, true, None, 5),
            Ok(EndDecision::AlreadyDone(c.clone()))
        );
        // The next transaction runs at epoch 1; an abort with nothing in flight bumps too.
        let EndDecision::Prepare(a) = end_txn(Some(&c), 1, 1, false, true, None, 6).unwrap() else {
            panic!()
        };
        assert_eq!((a.producer_epoch, a.partitions.len()), (2, 0));
        // Epoch exhaustion moves to the new producer id once complete.
        let mut e = add_partitions(Some(&complete(&a, 7).unwrap()), 1, 2, &[tp(0)], 8)
            .unwrap()
            .unwrap();
        e.producer_epoch = EPOCH_EXHAUSTED - 1;
        assert!(end_needs_new_producer_id(true, e.producer_epoch));
        let EndDecision::Prepare(x) =
            end_txn(Some(&e), 1, EPOCH_EXHAUSTED - 1, true, true, Some(9), 9).unwrap()
        else {
            panic!()
        };
        let done = complete(&x, 10).unwrap();
        assert_eq!(
            (done.producer_id, done.producer_epoch, done.prev_producer_id),
            (9, 0, 1)
        );
    }
}
