//! Committed offsets of one group, with Kafka's retention rule
//! (`offsets.retention.minutes`, counted from when the group became empty).
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

/// The committed offsets of one group.
#[derive(Clone, Debug, Default)]
pub struct GroupOffsets {
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

impl GroupOffsets {
    pub fn get(&self, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.offsets.get(tp)
    }

    pub fn put(&mut self, tp: TopicPartition, offset: CommittedOffset) {
        self.offsets.insert(tp, offset);
    }

    pub fn remove(&mut self, tp: &TopicPartition) -> Option<CommittedOffset> {
        self.offsets.remove(tp)
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
    /// the later of its commit and the moment the group became empty.
    pub fn expire(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
        empty_since_ms: Option<i64>,
    ) -> Vec<TopicPartition> {
        let expired: Vec<TopicPartition> = self
            .offsets
            .iter()
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
}
