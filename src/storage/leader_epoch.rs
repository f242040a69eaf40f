//! Kafka's `LeaderEpochFileCache`: for each leader epoch of the partition, the first offset
//! written in it, from the `partitionLeaderEpoch` of every appended batch. Followers ask the
//! leader where their last epoch ends (OffsetForLeaderEpoch) and truncate their log there;
//! truncation and retention cut the cache with the log.
//!
//! File `leader-epoch-checkpoint`, Kafka's text format: `0\n<entry count>\n` then one
//! `<epoch> <start offset>\n` per entry, oldest first. Written atomically with every
//! recovery-point checkpoint (before the recovery point, so the entries of the batches recovery
//! will not scan again are on disk first), at clean close and by truncations; recovery assigns
//! the epochs of the batches it scans, so entries newer than the file come back from the log.
//!
//! Lives with its partition log on the shard (core) that owns the partition.

use crate::model::{LeaderEpoch, Offset};

/// Entries kept. An epoch is a leader change; at the bound the oldest entry goes (it only
/// answers OffsetForLeaderEpoch for an epoch that old, which then gets the next epoch's start).
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 65_536;
const FILE_VERSION: &str = "0";

/// One epoch and the first offset written in it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// The epochs of one partition, both epoch and start offset strictly increasing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
    /// Bumped by every change (the owner writes the file when it moved).
    changes: u64,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Kafka's `assign`: records that `epoch` starts at `start_offset` unless the latest
    /// entry already is that epoch at or before it. Entries with an epoch >= `epoch` or a
    /// start offset >= `start_offset` are removed first (they would break monotonicity; Kafka
    /// logs and does the same). A negative epoch (no leader epoch) is ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        if epoch < 0 || start_offset < 0 {
            return;
        }
        let needed = self
            .latest()
            .is_none_or(|latest| latest.epoch.0 != epoch || start_offset < latest.start_offset.0);
        if !needed {
            return;
        }
        let keep = self
            .entries
            .iter()
            .position(|e| e.epoch.0 >= epoch || e.start_offset.0 >= start_offset)
            .unwrap_or(self.entries.len());
        if keep < self.entries.len() {
            tracing::warn!(
                epoch,
                start_offset,
                removed = ?&self.entries[keep..],
                "leader epoch cache: removing entries that are not older than the new one"
            );
            self.entries.truncate(keep);
        }
        self.entries.push(EpochEntry {
            epoch: LeaderEpoch(epoch),
            start_offset: Offset(start_offset),
        });
        if self.entries.len() > LEADER_EPOCH_ENTRIES_MAX {
            self.entries.remove(0);
        }
        self.changes += 1;
    }

    /// Kafka's `endOffsetFor`: the largest epoch <= `requested` and the offset where it ends
    /// (the next epoch's start, or `log_end` for the latest epoch); `None` (Kafka's
    /// UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) for a negative epoch, an empty cache, or an
    /// epoch above the latest. An epoch below the first one ends where the first starts.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(LeaderEpoch, Offset)> {
        if requested < 0 {
            return None;
        }
        let latest = self.latest()?;
        if latest.epoch.0 == requested {
            return Some((latest.epoch, Offset(log_end)));
        }
        let higher = self.entries.partition_point(|e| e.epoch.0 <= requested);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some(floor) => Some((floor.epoch, next.start_offset)),
            None => Some((LeaderEpoch(requested), next.start_offset)),
        }
    }

    /// Kafka's `truncateFromEnd`: removes the entries starting at or above `end_offset` (a
    /// truncation of the log to `end_offset`).
    pub fn truncate_from_end(&mut self, end_offset: i64) {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset.0 < end_offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.changes += 1;
        }
    }

    /// Kafka's `truncateFromStart`: the log now starts at `start_offset`; entries starting
    /// below it go, except the last of them, which now starts at `start_offset`.
    pub fn truncate_from_start(&mut self, start_offset: i64) {
        let below = self
            .entries
            .partition_point(|e| e.start_offset.0 < start_offset);
        if below == 0 {
            return;
        }
        let mut kept = self.entries[below - 1];
        kept.start_offset = Offset(start_offset);
        self.entries.drain(..below);
        if self
            .entries
            .first()
            .is_none_or(|e| e.start_offset.0 > start_offset)
        {
            self.entries.insert(0, kept);
        }
        self.changes += 1;
    }

    /// Removes every entry (a full truncation).
    pub fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.changes += 1;
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{FILE_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            out.push_str(&format!("{} {}\n", entry.epoch.0, entry.start_offset.0));
        }
        out.into_bytes()
    }

    /// `None` when the file is damaged: a wrong version or count, a bad line, or entries that
    /// do not both grow.
    pub fn decode(bytes: &[u8]) -> Option<LeaderEpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != FILE_VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        if count > LEADER_EPOCH_ENTRIES_MAX {
            return None;
        }
        let mut cache = LeaderEpochCache::default();
        for _ in 0..count {
            let (epoch, offset) = lines.next()?.split_once(' ')?;
            let entry = EpochEntry {
                epoch: LeaderEpoch(epoch.trim().parse().ok()?),
                start_offset: Offset(offset.trim().parse().ok()?),
            };
            let grows = cache.latest().is_none_or(|last| {
                entry.epoch.0 > last.epoch.0 && entry.start_offset.0 > last.start_offset.0
            });
            if entry.epoch.0 < 0 || entry.start_offset.0 < 0 || !grows {
                return None;
            }
            cache.entries.push(entry);
        }
        Some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for (epoch, start) in entries {
            cache.assign(*epoch, *start);
        }
        cache
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch.0, e.start_offset.0))
            .collect()
    }

    #[test]
    fn assign_keeps_the_first_offset_of_each_epoch() {
        let mut c = cache(&[(0, 0), (0, 5), (2, 10), (2, 12), (5, 20)]);
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (5, 20)]);
        // Not monotonic: the entries not older than the new one go (Kafka's behaviour).
        c.assign(3, 15);
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (3, 15)]);
        c.assign(3, 14);
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (3, 14)]);
        c.assign(-1, 30);
        assert_eq!(pairs(&c).len(), 3, "no leader epoch: ignored");
    }

    #[test]
    fn end_offsets_as_kafka_answers_them() {
        let c = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert_eq!(c.end_offset_for(6, 40), Some((LeaderEpoch(6), Offset(40))));
        assert_eq!(c.end_offset_for(3, 40), Some((LeaderEpoch(3), Offset(25))));
        assert_eq!(
            c.end_offset_for(4, 40),
            Some((LeaderEpoch(3), Offset(25))),
            "an epoch never seen ends where the next one starts, answered with the floor epoch"
        );
        assert_eq!(c.end_offset_for(0, 40), Some((LeaderEpoch(0), Offset(0))));
        assert_eq!(c.end_offset_for(7, 40), None);
        assert_eq!(c.end_offset_for(-1, 40), None);
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), None);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 10), (6, 25)]);
        c.truncate_from_end(26);
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10), (6, 25)]);
        c.truncate_from_end(25);
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10)]);
        c.truncate_from_start(12);
        assert_eq!(pairs(&c), vec![(3, 12)]);
        let mut d = cache(&[(1, 0), (3, 10)]);
        d.truncate_from_start(10);
        assert_eq!(pairs(&d), vec![(3, 10)]);
        let before = d.changes();
        d.truncate_from_start(5);
        assert_eq!(d.changes(), before, "nothing below: unchanged");
        d.clear();
        assert!(d.entries().is_empty());
    }

    #[test]
    fn the_file_is_kafkas_checkpoint_format() {
        let c = cache(&[(0, 0), (4, 100)]);
        assert_eq!(c.encode(), b"0\n2\n0 0\n4 100\n".to_vec());
        assert_eq!(
            LeaderEpochCache::decode(&c.encode()).map(|d| pairs(&d)),
            Some(pairs(&c))
        );
        assert!(LeaderEpochCache::decode(b"0\n2\n0 0\n").is_none(), "short");
        assert!(
            LeaderEpochCache::decode(b"0\n2\n4 0\n3 5\n").is_none(),
            "not growing"
        );
        assert!(LeaderEpochCache::decode(b"1\n0\n").is_none(), "version");
        assert_eq!(
            LeaderEpochCache::decode(b"0\n0\n").map(|d| d.entries().len()),
            Some(0)
        );
    }
}
