//! Broker registration, fencing and controlled shutdown, and what they do to partition
//! leadership (Kafka's `ClusterControlManager` and the broker-state parts of
//! `ReplicationControlManager`). Called only from `apply`, on the next image.

use std::collections::BTreeSet;

use super::election::{active_brokers, elect_unclean, unclean_enabled};
use super::{ControllerError, Outcome};
use crate::cluster::image::{BrokerRegistration, MetadataImage, PartitionImage, NO_LEADER};

/// Registers `node_id` fenced with a new epoch (the next image's version). The same
/// incarnation registering again (a retry) keeps its registration and epoch.
///
/// A new incarnation of a registered broker replaces it and, like Kafka's unclean-shutdown
/// handling, leaves every ISR where it is not the last member and hands the partitions it led to
/// the first active ISR member. Where no other ISR member is active it stays the leader, with the
/// same leader epoch, unavailable until it is unfenced: it is the only replica that may lead
/// (Sluice acknowledges only durable writes, so it still holds what it led), and a single node
/// thus keeps its leader epochs across restarts (there is no leader epoch cache yet to answer
/// OffsetForLeaderEpoch for older epochs). Kafka would set no leader and elect it again.
/// With unclean leader election enabled for the topic, such a partition goes instead to its
/// first active replica, which alone forms the ISR (as Kafka's unclean-shutdown handling does).
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
    leave_partitions(next, node_id, Departure::Restart);
    Outcome::BrokerRegistered { node_id, epoch }
}

/// Unfences the broker; partitions whose ISR holds it and that have no active leader (none, or
/// a fenced one) get it as leader. Where no ISR member is active and the topic allows unclean
/// leader election, a replica outside the ISR is elected too, alone in its new ISR.
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
    let active = active_brokers(next);
    let unclean = unclean_topics(next);
    for (topic, p) in partitions_mut(next) {
        if active.contains(&p.leader) || !p.replicas.contains(&node_id) {
            continue;
        }
        if p.isr.contains(&node_id) {
            p.leader = node_id;
            p.leader_epoch += 1;
            p.partition_epoch += 1;
        } else if unclean.contains(topic) && !p.isr.iter().any(|r| active.contains(r)) {
            elect_unclean(p, &active, NO_LEADER);
        }
    }
    Ok(Outcome::Done)
}

/// Fences the broker: it leaves every ISR where it is not the last member, and its
/// partitions move to the first live ISR member; when there is none, to the first active
/// replica if the topic allows unclean leader election, else to no leader.
pub fn fence(
    next: &mut MetadataImage,
    node_id: i32,
    epoch: i64,
) -> Result<Outcome, ControllerError> {
    registration(next, node_id, epoch)?.fenced = true;
    leave_partitions(next, node_id, Departure::Fence);
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
    leave_partitions(next, node_id, Departure::Fence);
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

/// Why a broker leaves its partitions.
#[derive(Clone, Copy, PartialEq)]
enum Departure {
    /// Fenced or shutting down: partitions with no other active ISR member lose their leader.
    Fence,
    /// A new incarnation registered: such partitions keep it as leader (see [`register`]).
    Restart,
}

/// Topics whose partitions may elect a leader outside the ISR.
fn unclean_topics(image: &MetadataImage) -> BTreeSet<String> {
    image
        .topics
        .keys()
        .filter(|t| unclean_enabled(image, t))
        .cloned()
        .collect()
}

/// `node_id` (already marked inactive in `next`) leaves every ISR where it is not the last
/// member; partitions it led get the first active ISR member as leader, else (unclean leader
/// election enabled for the topic) the first active replica, else (`Fence`) none.
fn leave_partitions(next: &mut MetadataImage, node_id: i32, why: Departure) {
    let active = active_brokers(next);
    assert!(
        !active.contains(&node_id),
        "a broker leaves its partitions only when inactive"
    );
    let unclean = unclean_topics(next);
    for (topic, p) in partitions_mut(next) {
        let successor = p
            .isr
            .iter()
            .copied()
            .find(|r| *r != node_id && active.contains(r));
        if p.leader == node_id
            && successor.is_none()
            && unclean.contains(topic)
            && elect_unclean(p, &active, node_id)
        {
            continue;
        }
        if why == Departure::Restart && p.leader == node_id && successor.is_none() {
            continue;
        }
        let mut changed = false;
        if p.isr.len() > 1 && p.isr.contains(&node_id) {
            p.isr.retain(|r| *r != node_id);
            changed = true;
        }
        if p.leader == node_id {
            p.leader = successor.unwrap_or(NO_LEADER);
            p.leader_epoch += 1;
            changed = true;
        }
        if changed {
            p.partition_epoch += 1;
        }
        assert!(!p.isr.is_empty(), "an ISR is never empty");
    }
}

/// Every partition, with its topic's name.
fn partitions_mut(
    next: &mut MetadataImage,
) -> impl Iterator<Item = (&String, &mut PartitionImage)> {
    next.topics
        .iter_mut()
        .flat_map(|(name, t)| t.partitions.iter_mut().map(move |p| (name, p)))
}
