//! The group coordinator's entry for transaction markers that WriteTxnMarkers appended to a
//! `__consumer_offsets` partition.
//!
//! Two ways in, both on the shard that owns the partition:
//! - [`txn_marker_written`]: the marker is already in the log (appended by the WriteTxnMarkers
//!   handler through the partition's append path); the coordinator applies it in memory.
//! - [`crate::group::GroupCoordinator::complete_transaction`]: the coordinator appends the
//!   marker itself, in order with its own writes, then applies it — Kafka's way
//!   (`GroupCoordinator.completeTransaction`), and the one free of any race with a snapshot
//!   of the partition. Prefer it for `__consumer_offsets` partitions.

use crate::model::TopicPartition;
use crate::runtime::Shard;

/// Applies `producer_id`'s end-transaction marker, just appended to `__consumer_offsets`
/// partition `partition`: `commit` makes that producer's pending offsets of every group in the
/// partition the committed ones (each unless a more recent commit of its partition exists, as
/// Kafka does), an abort drops them. Call on the shard that owns the partition, after the
/// marker's append returned. A partition not loaded yet needs nothing: its replay reads the
/// marker from the log.
pub fn txn_marker_written(shard: &Shard, partition: i32, producer_id: i64, commit: bool) {
    let tp = TopicPartition::new(super::OFFSETS_TOPIC, partition);
    if shard.shard_for(&tp) != shard.id {
        tracing::error!(partition, producer_id, shard = shard.id.0,
            "transaction marker applied on a shard that does not own the offsets partition; ignored");
        return;
    }
    let applied = shard.groups.marker_written(partition, producer_id, commit);
    tracing::debug!(
        partition,
        producer_id,
        commit,
        applied,
        "transaction marker applied to group offsets"
    );
}
