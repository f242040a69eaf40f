//! Broker registration, fencing and controlled shutdown, and what they do to partition
//! leadership (Kafka's `ClusterControlManager` and the broker-state parts of
//! `ReplicationControlManager`). Called only from `apply`, on the next image.

use super::{ControllerError, Outcome};
use crate::cluster::image::{BrokerRegistration, MetadataImage, PartitionImage, NO_LEADER};

/// Registers `node_id` fenced with a new epoch (the next image's version). The same
/// incarnation registering again (a retry) keeps its registration and epoch.
///
/// A new incarnation of a registered broker replaces it but leaves its partitions as they are:
/// while it is fenced its partitions have no available leader (Metadata says
/// LEADER_NOT_AVAILABLE), unfencing makes it their leader again with the same leader epoch, and
/// a fence (its session timing out) moves them away. Kafka instead treats the re-registration as
/// an unclean shutdown and elects anew; Sluice acknowledges only durable writes, so the restarted
/// process still holds what it led, and a single node keeps its leader epochs across restarts
/// (there is no leader epoch cache yet to answer OffsetForLeaderEpoch for older epochs).
pub fn register(
    next: &mut MetadataImage,
    node_id: i32,
    incarnation_id: uuid::Uuid,
    host: &str,
    port: u16,
    rack: &Option<String>,
) -> Outcome {
    if let Some(b) = next
        .broker(node_id)
        .filter(|b| b.incarnation_id == incarnation_id)
    {
        return Outcome::BrokerRegistered {
            node_id,
            epoch: b.epoch,
        };
    }
    let epoch = i64::try_from(next.version).unwrap_or(i64::MAX);
    next.brokers.insert(
        node_id,
        BrokerRegistration {
            node_id,
            incarnation_id,
            epoch,
            host: host.to_string(),
            port,
            rack: rack.clone(),
            fenced: true,
            in_controlled_shutdown: false,
        },
    );
    Outcome::BrokerRegistered { node_id, epoch }
}

/// Unfences the broker; partitions without a leader whose ISR holds it get it as leader.
pub fn unfence(
    next: &mut MetadataImage,
    node_id: i32,
    epoch: i64,
) -> Result<Outcome, ControllerError> {
    let b = registration(next, node_id, epoch)?;
    b.fenced = false;
    if b.in_controlled_shutdown {
        return Ok(Outcome::Done);
    }
    for p in partitions_mut(next) {
        if !p.has_leader() && p.isr.contains(&node_id) {
            p.leader = node_id;
            p.leader_epoch += 1;
            p.partition_epoch += 1;
        }
    }
    Ok(Outcome::Done)
}

/// Fences the broker: it leaves every ISR where it is not the last member, and its
/// partitions move to the first live ISR member (no leader when there is none).
pub fn fence(
    next: &mut MetadataImage,
    node_id: i32,
    epoch: i64,
) -> Result<Outcome, ControllerError> {
    registration(next, node_id, epoch)?.fenced = true;
    move_leadership_away(next, node_id);
    Ok(Outcome::Done)
}

/// Marks the broker as shutting down and moves its leadership away as a fence does; it stays
/// listed (unfenced) until it is fenced.
pub fn begin_controlled_shutdown(
    next: &mut MetadataImage,
    node_id: i32,
    epoch: i64,
) -> Result<Outcome, ControllerError> {
    registration(next, node_id, epoch)?.in_controlled_shutdown = true;
    move_leadership_away(next, node_id);
    Ok(Outcome::Done)
}

/// The registration of `node_id`, if `epoch` is its current epoch.
fn registration(
    next: &mut MetadataImage,
    node_id: i32,
    epoch: i64,
) -> Result<&mut BrokerRegistration, ControllerError> {
    let b = next
        .brokers
        .get_mut(&node_id)
        .ok_or(ControllerError::BrokerNotRegistered(node_id))?;
    if b.epoch != epoch {
        return Err(ControllerError::StaleBrokerEpoch {
            node_id,
            expected: b.epoch,
            got: epoch,
        });
    }
    Ok(b)
}

/// `node_id` (already marked inactive in `next`) leaves every ISR where it is not the last
/// member; partitions it led get the first active ISR member as leader, or none.
fn move_leadership_away(next: &mut MetadataImage, node_id: i32) {
    let active: std::collections::BTreeSet<i32> = next
        .brokers
        .values()
        .filter(|b| b.is_active())
        .map(|b| b.node_id)
        .collect();
    assert!(
        !active.contains(&node_id),
        "leadership moves away only from an inactive broker"
    );
    for p in partitions_mut(next) {
        let mut changed = false;
        if p.isr.len() > 1 && p.isr.contains(&node_id) {
            p.isr.retain(|r| *r != node_id);
            changed = true;
        }
        if p.leader == node_id {
            p.leader = p
                .isr
                .iter()
                .copied()
                .find(|r| active.contains(r))
                .unwrap_or(NO_LEADER);
            p.leader_epoch += 1;
            changed = true;
        }
        if changed {
            p.partition_epoch += 1;
        }
        assert!(!p.isr.is_empty(), "an ISR is never empty");
    }
}

fn partitions_mut(next: &mut MetadataImage) -> impl Iterator<Item = &mut PartitionImage> {
    next.topics
        .values_mut()
        .flat_map(|t| t.partitions.iter_mut())
}
