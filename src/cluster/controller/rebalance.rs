//! Automatic preferred leader election (`auto.leader.rebalance.enable`): which partitions the
//! active controller moves back to their preferred replica, by Kafka's rule
//! (`KafkaController.checkAndTriggerAutoLeaderRebalance`). Pure: the caller proposes the
//! result as an `ElectLeaders` command.

use std::collections::BTreeMap;

use super::election::active_brokers;
use crate::cluster::image::MetadataImage;

/// For each broker, the partitions it is the preferred replica (first replica) of; when more
/// than `percentage` percent of them are led by another broker (or none), those of them whose
/// preferred replica is active and in the ISR are returned, in image order. At most `max`.
pub fn imbalanced_partitions(
    image: &MetadataImage,
    percentage: i64,
    max: usize,
) -> Vec<(String, i32)> {
    let active = active_brokers(image);
    // preferred broker -> (partitions it prefers, those it does not lead)
    let mut by_broker: BTreeMap<i32, (usize, Vec<(String, i32)>)> = BTreeMap::new();
    for t in image.topics.values() {
        for (index, p) in (0..).zip(&t.partitions) {
            let Some(preferred) = p.replicas.first().copied() else {
                continue;
            };
            let entry = by_broker.entry(preferred).or_default();
            entry.0 += 1;
            if p.leader != preferred {
                entry.1.push((t.name.clone(), index));
            }
        }
    }
    let mut out = Vec::new();
    for (broker, (preferred, not_leading)) in by_broker {
        // Kafka's test: imbalanceRatio > percentage / 100, in exact integer arithmetic.
        let imbalanced =
            (not_leading.len() as u128) * 100 > (preferred as u128) * (percentage.max(0) as u128);
        if !imbalanced || !active.contains(&broker) {
            continue;
        }
        for (topic, index) in not_leading {
            let in_isr = image
                .topic(&topic)
                .and_then(|t| t.partition_image(index))
                .is_some_and(|p| p.isr.contains(&broker));
            if in_isr && out.len() < max {
                out.push((topic, index));
            }
        }
    }
    out
}
