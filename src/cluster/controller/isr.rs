//! AlterPartition: a partition leader's ISR change, committed through the controller (Kafka's
//! `ReplicationControlManager.alterPartition`, with its partition-epoch check). Called only from
//! `apply`, on the next image.

use super::{ControllerError, Outcome};
use crate::cluster::image::MetadataImage;

/// Changes the ISR of `topic`-`partition` to `new_isr` at the request of its leader.
///
/// Refused, as Kafka refuses it, when the requester is not the leader or its leader epoch is
/// not current (FENCED_LEADER_EPOCH), when the partition epoch is not the current one (another
/// change came first: INVALID_UPDATE_VERSION), when the new ISR does not hold the leader or
/// names a non-replica (INVALID_REQUEST), or when it adds a broker that is fenced or shutting
/// down (INELIGIBLE_REPLICA). A change that leaves the ISR as it is succeeds without bumping
/// the partition epoch. A reassignment in progress completes in the change that puts every
/// target replica in the ISR (`reassign::complete_if_ready`).
pub fn alter_partition(
    next: &mut MetadataImage,
    topic: &str,
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[i32],
) -> Result<Outcome, ControllerError> {
    let active: Vec<i32> = next
        .brokers
        .values()
        .filter(|b| b.is_active())
        .map(|b| b.node_id)
        .collect();
    let t = next
        .topics
        .get_mut(topic)
        .ok_or(ControllerError::UnknownTopic)?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get_mut(i))
        .ok_or(ControllerError::UnknownTopic)?;
    if p.leader != leader || p.leader_epoch != leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch(format!(
            "{topic}-{partition}: leader {} epoch {}, request from {leader} at epoch {leader_epoch}",
            p.leader, p.leader_epoch
        )));
    }
    if p.partition_epoch != partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion(format!(
            "{topic}-{partition}: partition epoch {}, request at {partition_epoch}",
            p.partition_epoch
        )));
    }
    if !new_isr.contains(&leader) {
        return Err(ControllerError::InvalidRequest(format!(
            "{topic}-{partition}: the new ISR {new_isr:?} does not hold the leader {leader}"
        )));
    }
    let mut isr: Vec<i32> = Vec::with_capacity(new_isr.len());
    for r in new_isr {
        if !p.replicas.contains(r) {
            return Err(ControllerError::InvalidRequest(format!(
                "{topic}-{partition}: {r} in the new ISR is not a replica"
            )));
        }
        if !p.isr.contains(r) && !active.contains(r) {
            return Err(ControllerError::IneligibleReplica(format!(
                "{topic}-{partition}: broker {r} is fenced or shutting down"
            )));
        }
        if !isr.contains(r) {
            isr.push(*r);
        }
    }
    // Kept in replica order, so every node shows the same list.
    isr.sort_by_key(|r| p.replicas.iter().position(|x| x == r));
    let mut changed = false;
    if isr != p.isr {
        p.isr = isr;
        changed = true;
    }
    // The ISR change that brings the last target replica in sync completes a reassignment.
    if super::reassign::complete_if_ready(p, &active) {
        changed = true;
    }
    if changed {
        p.partition_epoch += 1;
    }
    Ok(Outcome::PartitionAltered {
        isr: p.isr.clone(),
        partition_epoch: p.partition_epoch,
    })
}
