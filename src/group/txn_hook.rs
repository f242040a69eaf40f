//! The group coordinator's entry for transaction markers that WriteTxnMarkers appended to a
//! `__consumer_offsets` partition.
//!
//! Two ways in, both on the shard that owns the partition:
//! - [`txn_marker_written`]: the marker is already in the log (appended by the WriteTxnMarkers
//!   handler through the partition's append path); the coordinator applies it in memory.
//! - [`complete_transaction`]: the coordinator appends the marker itself, in order with its
//!   own writes, then applies it — Kafka's way (`GroupCoordinator.completeTransaction`), and
//!   the one free of any race with a snapshot of the partition. Prefer it for
//!   `__consumer_offsets` partitions. Callable from any shard.

use std::rc::Rc;

use super::request::{GroupRequest, GroupResponse};
use super::GroupError;
use crate::model::TopicPartition;
use crate::runtime::messages::{ShardRequest, ShardResponse};
use crate::runtime::Shard;

/// WriteTxnMarkers' entry for a `__consumer_offsets` partition this node leads, from any
/// shard: the owning shard's coordinator appends `producer_id`'s marker (acks=all) in order
/// with its own writes and then applies it (commit: the producer's pending offsets in every
/// group of the partition become committed, each unless a more recent commit exists; abort:
/// dropped). Returns how many offsets became committed. `NotLeader` maps to
/// NOT_LEADER_OR_FOLLOWER for the marker's partition.
pub async fn complete_transaction(
    shard: &Rc<Shard>,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
) -> Result<usize, GroupError> {
    let tp = TopicPartition::new(super::OFFSETS_TOPIC, partition);
    if !shard.leads(&tp) {
        return Err(GroupError::NotLeader);
    }
    let request = GroupRequest::CompleteTransaction {
        partition,
        producer_id,
        producer_epoch,
        coordinator_epoch,
        commit,
    };
    match shard
        .call(shard.shard_for(&tp), ShardRequest::Group(Box::new(request)))
        .await
    {
        ShardResponse::Group(GroupResponse::CompleteTransaction(done)) => done,
        _ => Err(GroupError::Append(
            "the coordinator shard did not answer".into(),
        )),
    }
}

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
