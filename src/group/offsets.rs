//! Committed offsets of one group, with Kafka's retention rule
//! (`offsets.retention.minutes`, counted from when the group became empty), and the group's
//! pending transactional offsets (TxnOffsetCommit, KIP-98/KIP-447): kept per producer id,
//! invisible to OffsetFetch until that producer's commit marker makes them the committed ones,
//! dropped by its abort marker.
//!
//! Owned by the group's coordinator shard, inside the group.

use std::collections::BTreeMap;

use crate::model::{LeaderEpoch, Offset, TopicPartition};

/// One committed offset as stored and returned by OffsetFetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: Offset,
    /// -1 when the client did not send one.
    pub leader_epoch: LeaderEpoch,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2-v4 with an explicit retention time.
    pub expire_timestamp_ms: Option<i64>,
}

/// One offset of an open transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffset {
    pub value: CommittedOffset,
    /// Where its record lies in the offsets log (orders two transactions' offsets of one
    /// partition, as Kafka's record offset does).
    pub record_offset: Offset,
    /// A later commit of the same partition (a plain OffsetCommit, or another transaction's
    /// offset written after this one and committed first) won: Kafka keeps the most recent
    /// commit, so this one is never materialized. It still makes the partition unstable for
    /// OffsetFetch(require_stable) until its transaction ends.
    pub superseded: bool,
}

/// The pending offsets of one producer's open transaction in one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingTransaction {
    /// The highest producer epoch that wrote to it: an older epoch is a zombie.
    pub producer_epoch: i16,
    pub offsets: BTreeMap<TopicPartition, PendingOffset>,
}

/// The committed offsets of one group, and its pending transactional ones.
#[derive(Clone, Debug, Default)]
pub struct GroupOffsets {
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// By producer id.
    pending: BTreeMap<i64, PendingTransaction>,
}

impl GroupOffsets {
    pub fn get(&self, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.offsets.get(tp)
    }

    /// A plain (non-transactional) commit: it supersedes every pending transactional offset
    /// of the partition written before it.
    pub fn put(&mut self, tp: TopicPartition, offset: CommittedOffset) {
        for txn in self.pending.values_mut() {
            if let Some(p) = txn.offsets.get_mut(&tp) {
                p.superseded = true;
            }
        }
        self.offsets.insert(tp, offset);
    }

    /// A committed offset restated by a snapshot of the group: the same value as before, so it
    /// supersedes nothing.
    pub fn restate(&mut self, tp: TopicPartition, offset: CommittedOffset) {
        self.offsets.insert(tp, offset);
    }

    /// A tombstone: removes the committed offset and, as Kafka does, every pending
    /// transactional offset of the partition.
    pub fn remove(&mut self, tp: &TopicPartition) -> Option<CommittedOffset> {
        for txn in self.pending.values_mut() {
            txn.offsets.remove(tp);
        }
        self.offsets.remove(tp)
    }

    /// The epoch of `producer_id`'s open transaction in this group, if it has one.
    pub fn pending_epoch(&self, producer_id: i64) -> Option<i16> {
        self.pending.get(&producer_id).map(|t| t.producer_epoch)
    }

    /// Adds one offset to `producer_id`'s open transaction (it replaces an earlier offset of
    /// the same partition in that transaction).
    pub fn put_pending(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        tp: TopicPartition,
        value: CommittedOffset,
        record_offset: Offset,
    ) {
        let txn = self.pending.entry(producer_id).or_default();
        txn.producer_epoch = txn.producer_epoch.max(producer_epoch);
        txn.offsets.insert(
            tp,
            PendingOffset {
                value,
                record_offset,
                superseded: false,
            },
        );
    }

    /// Restores one pending offset exactly as a snapshot recorded it.
    pub fn restore_pending(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        tp: TopicPartition,
        pending: PendingOffset,
    ) {
        let txn = self.pending.entry(producer_id).or_default();
        txn.producer_epoch = txn.producer_epoch.max(producer_epoch);
        txn.offsets.insert(tp, pending);
    }

    /// Forgets every open transaction (a snapshot that follows restates them).
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }

    /// Ends `producer_id`'s open transaction: a commit makes each of its offsets the committed
    /// one unless a more recent commit of that partition exists (Kafka's rule); an abort drops
    /// them. Returns how many offsets became committed.
    pub fn end_transaction(&mut self, producer_id: i64, commit: bool) -> usize {
        let Some(txn) = self.pending.remove(&producer_id) else {
            return 0;
        };
        if !commit {
            return 0;
        }
        let mut applied = 0;
        for (tp, p) in txn.offsets {
            if p.superseded {
                continue;
            }
            // The other transactions' offsets of this partition written before this one are
            // older than the committed offset now.
            for other in self.pending.values_mut() {
                if let Some(o) = other.offsets.get_mut(&tp) {
                    if o.record_offset < p.record_offset {
                        o.superseded = true;
                    }
                }
            }
            self.offsets.insert(tp, p.value);
            applied += 1;
        }
        applied
    }

    /// Whether an open transaction holds an offset of `tp` (OffsetFetch with require_stable
    /// answers UNSTABLE_OFFSET_COMMIT for it).
    pub fn has_pending(&self, tp: &TopicPartition) -> bool {
        self.pending.values().any(|t| t.offsets.contains_key(tp))
    }

    /// Whether any transaction is open in this group.
    pub fn has_open_transactions(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The open transactions, by producer id.
    pub fn pending(&self) -> impl Iterator<Item = (i64, &PendingTransaction)> {
        self.pending.iter().map(|(p, t)| (*p, t))
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &CommittedOffset)> {
        self.offsets.iter()
    }

    /// Partitions of `topic` with a committed offset.
    pub fn partitions_of<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = i32> + 'a {
        self.offsets
            .keys()
            .filter(move |tp| tp.topic == topic)
            .map(|tp| tp.partition)
    }

    /// Removes and returns the offsets whose retention has passed.
    ///
    /// Kafka's rule (KIP-211): while a group has members, only offsets with an explicit
    /// expire timestamp expire; once it is empty, an offset expires `retention_ms` after
    /// the later of its commit and the moment the group became empty. An offset with a
    /// pending transactional offset does not expire (as in Kafka: the tombstone would drop
    /// the open transaction's offset too).
    pub fn expire(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
        empty_since_ms: Option<i64>,
    ) -> Vec<TopicPartition> {
        let expired: Vec<TopicPartition> = self
            .offsets
            .iter()
            .filter(|(tp, _)| !self.has_pending(tp))
            .filter(|(_, o)| match (o.expire_timestamp_ms, empty_since_ms) {
                (Some(expire), _) => expire <= now_ms,
                (None, Some(since)) => {
                    since
                        .max(o.commit_timestamp_ms)
                        .saturating_add(retention_ms)
                        <= now_ms
                }
                (None, None) => false,
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &expired {
            self.offsets.remove(tp);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64, ts: i64) -> CommittedOffset {
        CommittedOffset {
            offset: Offset(offset),
            leader_epoch: LeaderEpoch(-1),
            metadata: String::new(),
            commit_timestamp_ms: ts,
            expire_timestamp_ms: None,
        }
    }

    #[test]
    fn offsets_expire_only_after_group_is_empty() {
        let mut o = GroupOffsets::default();
        o.put(TopicPartition::new("t", 0), committed(5, 0));
        o.put(TopicPartition::new("t", 1), committed(6, 500));
        assert!(o.expire(10_000, 1_000, None).is_empty());
        assert_eq!(o.expire(1_499, 1_000, Some(100)).len(), 1);
        assert_eq!(o.len(), 1);
        assert_eq!(o.expire(1_499, 1_000, Some(100)).len(), 0);
        assert_eq!(o.expire(1_500, 1_000, Some(100)).len(), 1);
        assert!(o.is_empty());
    }

    #[test]
    fn explicit_expiry_applies_to_active_groups() {
        let mut o = GroupOffsets::default();
        let mut c = committed(1, 0);
        c.expire_timestamp_ms = Some(50);
        o.put(TopicPartition::new("t", 0), c);
        assert_eq!(o.expire(49, 1_000, None).len(), 0);
        assert_eq!(o.expire(50, 1_000, None).len(), 1);
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn pending_offsets_are_invisible_until_committed() {
        let mut o = GroupOffsets::default();
        o.put(tp(0), committed(1, 0));
        o.put_pending(7, 0, tp(0), committed(5, 1), Offset(10));
        o.put_pending(7, 0, tp(1), committed(6, 1), Offset(10));
        assert_eq!(o.get(&tp(0)).map(|c| c.offset), Some(Offset(1)));
        assert!(o.get(&tp(1)).is_none());
        assert!(o.has_pending(&tp(0)) && o.has_pending(&tp(1)) && !o.has_pending(&tp(2)));
        assert_eq!(
            o.end_transaction(8, true),
            0,
            "another producer commits nothing here"
        );
        assert_eq!(o.end_transaction(7, true), 2);
        assert_eq!(o.get(&tp(0)).map(|c| c.offset), Some(Offset(5)));
        assert_eq!(o.get(&tp(1)).map(|c| c.offset), Some(Offset(6)));
        assert!(!o.has_pending(&tp(0)) && !o.has_open_transactions());
    }

    #[test]
    fn aborted_offsets_are_dropped() {
        let mut o = GroupOffsets::default();
        o.put(tp(0), committed(1, 0));
        o.put_pending(7, 0, tp(0), committed(5, 1), Offset(10));
        assert_eq!(o.end_transaction(7, false), 0);
        assert_eq!(o.get(&tp(0)).map(|c| c.offset), Some(Offset(1)));
        assert!(!o.has_open_transactions());
    }

    #[test]
    fn the_most_recent_commit_wins() {
        let mut o = GroupOffsets::default();
        // A plain commit after the transaction's offset supersedes it.
        o.put_pending(7, 0, tp(0), committed(5, 1), Offset(10));
        o.put(tp(0), committed(9, 2));
        assert!(
            o.has_pending(&tp(0)),
            "still unstable while the transaction is open"
        );
        assert_eq!(o.end_transaction(7, true), 0);
        assert_eq!(o.get(&tp(0)).map(|c| c.offset), Some(Offset(9)));
        // A restated offset (a snapshot) supersedes nothing.
        o.put_pending(7, 0, tp(0), committed(11, 3), Offset(20));
        o.restate(tp(0), committed(9, 2));
        assert_eq!(o.end_transaction(7, true), 1);
        assert_eq!(o.get(&tp(0)).map(|c| c.offset), Some(Offset(11)));
        // Two transactions: the one written later wins, whichever commits first.
        o.put_pending(1, 0, tp(1), committed(100, 4), Offset(30));
        o.put_pending(2, 0, tp(1), committed(200, 5), Offset(40));
        assert_eq!(o.end_transaction(2, true), 1);
        assert_eq!(o.end_transaction(1, true), 0);
        assert_eq!(o.get(&tp(1)).map(|c| c.offset), Some(Offset(200)));
        o.put_pending(1, 0, tp(2), committed(100, 4), Offset(50));
        o.put_pending(2, 0, tp(2), committed(200, 5), Offset(60));
        assert_eq!(o.end_transaction(1, true), 1);
        assert_eq!(o.end_transaction(2, true), 1);
        assert_eq!(o.get(&tp(2)).map(|c| c.offset), Some(Offset(200)));
    }

    #[test]
    fn a_tombstone_drops_pending_offsets_and_pending_offsets_do_not_expire() {
        let mut o = GroupOffsets::default();
        o.put(tp(0), committed(1, 0));
        o.put(tp(1), committed(1, 0));
        o.put_pending(7, 0, tp(0), committed(5, 1), Offset(10));
        assert_eq!(o.expire(10_000, 1_000, Some(0)), vec![tp(1)]);
        assert!(o.get(&tp(0)).is_some());
        o.remove(&tp(0));
        assert!(!o.has_pending(&tp(0)));
        assert_eq!(o.end_transaction(7, true), 0);
        assert!(o.get(&tp(0)).is_none());
    }
}
