//! Deterministic placement of partitions on shards.
//!
//! A partition's owner is a pure function of (topic, partition, shard count), so
//! every shard computes the same answer with no shared table, and the partitions
//! of one topic are spread round-robin starting at a hashed shard.

use crate::model::{ShardId, TopicPartition};

/// FNV-1a: stable across builds and platforms (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn shard_for(tp: &TopicPartition, nr_shards: usize) -> ShardId {
    debug_assert!(nr_shards > 0);
    let base = fnv1a(tp.topic.as_bytes()) % nr_shards as u64;
    let p = u64::from(tp.partition.unsigned_abs());
    ShardId(((base + p) % nr_shards as u64) as usize)
}

/// Java's `String.hashCode`, which Kafka uses to map a group to a partition of
/// `__consumer_offsets`.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`.
pub fn group_partition(group_id: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_partitions_round_robin() {
        let owners: Vec<usize> = (0..4)
            .map(|p| shard_for(&TopicPartition::new("t", p), 2).0)
            .collect();
        assert_ne!(owners[0], owners[1]);
        assert_eq!(owners[0], owners[2]);
    }

    #[test]
    fn java_hash_matches_jvm() {
        // "hello".hashCode() == 99162322 on the JVM.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(group_partition("hello", 50), 99_162_322 % 50);
    }
}
