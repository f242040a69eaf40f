//! Replica placement: which brokers hold the replicas of new partitions.
//!
//! Kafka's assignment (`AdminUtils.assignReplicasToBrokers`, which KRaft's placer keeps the
//! properties of): partition `p`'s first replica — its preferred leader — is broker
//! `(p + start) % n` of the list, so leaders go round the brokers evenly; the other replicas
//! follow at a shift that grows once every `n` partitions, so followers spread too; replicas of
//! one partition are on distinct brokers. When every broker has a rack, the list alternates
//! racks and a replica skips a broker whose rack already holds one while racks without one
//! remain.
//!
//! Kafka picks `start` and the shift at random. Placement here runs inside the controller's
//! pure `apply`, so both are derived from the topic id (chosen by the proposer): the same image
//! and command give the same assignment on every node.

use std::collections::{BTreeMap, BTreeSet};

use super::controller::ControllerError;
use crate::model::TopicId;

/// A broker replicas may be placed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: i32,
    pub rack: Option<String>,
}

/// Replica lists for partitions `first_partition .. first_partition + count`, each of
/// `replication_factor` distinct brokers out of `brokers` (in any order; sorted here).
pub fn assign(
    topic_id: &TopicId,
    first_partition: i32,
    count: i32,
    replication_factor: i16,
    brokers: &[Candidate],
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0.".into(),
        ));
    }
    if rf > brokers.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {replication_factor} time(s): The target \
             replication factor of {replication_factor} cannot be reached because only {} \
             broker(s) are registered.",
            brokers.len()
        )));
    }
    let mut sorted = brokers.to_vec();
    sorted.sort_by_key(|b| b.node_id);
    sorted.dedup_by_key(|b| b.node_id);
    let rack_aware = sorted.iter().all(|b| b.rack.is_some());
    let (list, racks) = if rack_aware {
        rack_alternated(&sorted)
    } else {
        (sorted.iter().map(|b| b.node_id).collect(), BTreeMap::new())
    };
    let n = list.len();
    let (start, shift) = seeds(topic_id, n);
    let first = usize::try_from(first_partition.max(0)).unwrap_or(0);
    let count = usize::try_from(count.max(0)).unwrap_or(0);
    let mut out = Vec::with_capacity(count);
    let mut next_shift = shift + first / n;
    for p in first..first + count {
        if p > first && p % n == 0 {
            next_shift += 1;
        }
        let leader_index = (p + start) % n;
        let replicas = if rack_aware {
            rack_aware_replicas(&list, &racks, leader_index, next_shift, rf)
        } else {
            (0..rf)
                .map(|j| match j {
                    0 => list[leader_index],
                    _ => list[replica_index(leader_index, next_shift, j - 1, n)],
                })
                .collect()
        };
        assert_eq!(
            replicas.len(),
            rf,
            "placement produced a short replica list"
        );
        out.push(replicas);
    }
    Ok(out)
}

/// Start index and initial replica shift, both in `0..n`, from the topic id's two halves.
fn seeds(topic_id: &TopicId, n: usize) -> (usize, usize) {
    let (high, low) = topic_id.as_u64_pair();
    let n64 = n as u64;
    ((high % n64) as usize, (low % n64) as usize)
}

/// Kafka's `replicaIndex`: the `j`-th follower after the leader at `first`, shifted by `shift`.
fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    let step = 1 + (shift + j) % (n - 1);
    (first + step) % n
}

/// The brokers ordered rack by rack in turn (racks sorted, brokers by id within a rack), as
/// Kafka's `getRackAlternatedBrokerList`, and each broker's rack.
fn rack_alternated(sorted: &[Candidate]) -> (Vec<i32>, BTreeMap<i32, String>) {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    let mut racks = BTreeMap::new();
    for b in sorted {
        let rack = b.rack.as_deref().unwrap_or_default();
        by_rack.entry(rack).or_default().push(b.node_id);
        racks.insert(b.node_id, rack.to_string());
    }
    let columns: Vec<&Vec<i32>> = by_rack.values().collect();
    let deepest = columns.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut list = Vec::with_capacity(sorted.len());
    for row in 0..deepest {
        list.extend(columns.iter().filter_map(|c| c.get(row)));
    }
    (list, racks)
}

/// Kafka's rack-aware follower choice: walk the rack-alternated list from the leader; skip a
/// broker whose rack already has a replica while some rack has none, and a broker that already
/// has one (always, since replicas are distinct).
fn rack_aware_replicas(
    list: &[i32],
    racks: &BTreeMap<i32, String>,
    leader_index: usize,
    shift: usize,
    rf: usize,
) -> Vec<i32> {
    let n = list.len();
    let rack_count = racks.values().collect::<BTreeSet<_>>().len();
    let leader = list[leader_index];
    let mut replicas = vec![leader];
    let mut racks_used: BTreeSet<&str> = BTreeSet::new();
    racks_used.insert(racks[&leader].as_str());
    let mut k = 0;
    // Each follower is found within one pass over the list per rack state; bounded.
    let steps_max = rf * n * 2;
    while replicas.len() < rf && k < steps_max {
        let broker = list[replica_index(leader_index, shift * rack_count, k, n)];
        let rack = racks[&broker].as_str();
        if (!racks_used.contains(rack) || racks_used.len() == rack_count)
            && !replicas.contains(&broker)
        {
            replicas.push(broker);
            racks_used.insert(rack);
        }
        k += 1;
    }
    // The walk visits every broker; fill from the list if the shift pattern ever missed one.
    for b in list {
        if replicas.len() == rf {
            break;
        }
        if !replicas.contains(b) {
            replicas.push(*b);
        }
    }
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(n: i32) -> Vec<Candidate> {
        (1..=n)
            .map(|node_id| Candidate {
                node_id,
                rack: None,
            })
            .collect()
    }

    fn leaders_per_broker(assignment: &[Vec<i32>]) -> BTreeMap<i32, usize> {
        let mut out = BTreeMap::new();
        for r in assignment {
            *out.entry(r[0]).or_default() += 1;
        }
        out
    }

    fn replicas_per_broker(assignment: &[Vec<i32>]) -> BTreeMap<i32, usize> {
        let mut out = BTreeMap::new();
        for r in assignment.iter().flatten() {
            *out.entry(*r).or_default() += 1;
        }
        out
    }

    #[test]
    fn leaders_and_replicas_spread_evenly_over_three_and_five_brokers() {
        for n in [3, 5] {
            for seed in 0..20u128 {
                let id = uuid::Uuid::from_u128(
                    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834),
                );
                let a = assign(&id, 0, n * 4, 3, &brokers(n)).unwrap();
                let leaders = leaders_per_broker(&a);
                assert_eq!(leaders.len(), n as usize);
                assert!(
                    leaders.values().all(|c| *c == 4),
                    "{n} brokers: {leaders:?}"
                );
                let replicas = replicas_per_broker(&a);
                assert!(replicas.values().all(|c| *c == 12), "{replicas:?}");
                for r in &a {
                    let distinct: BTreeSet<_> = r.iter().collect();
                    assert_eq!(distinct.len(), 3, "{r:?}");
                }
            }
        }
    }

    #[test]
    fn same_input_same_assignment() {
        let id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let a = assign(&id, 0, 12, 2, &brokers(5)).unwrap();
        let mut shuffled = brokers(5);
        shuffled.reverse();
        assert_eq!(a, assign(&id, 0, 12, 2, &shuffled).unwrap());
        // Added partitions continue the same striping.
        let more = assign(&id, 12, 3, 2, &brokers(5)).unwrap();
        assert_eq!(more, assign(&id, 0, 15, 2, &brokers(5)).unwrap()[12..]);
    }

    #[test]
    fn replication_factor_above_brokers_is_refused_with_kafkas_message() {
        let e = assign(&uuid::Uuid::nil(), 0, 1, 4, &brokers(3)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unable to replicate the partition 4 time(s): The target replication factor of 4 \
             cannot be reached because only 3 broker(s) are registered."
        );
        assert!(matches!(e, ControllerError::InvalidReplicationFactor(_)));
        assert!(assign(&uuid::Uuid::nil(), 0, 1, 0, &brokers(3)).is_err());
    }

    #[test]
    fn one_broker_gets_every_partition() {
        let a = assign(&uuid::Uuid::new_v4(), 0, 4, 1, &brokers(1)).unwrap();
        assert_eq!(a, vec![vec![1]; 4]);
    }

    #[test]
    fn racks_alternate() {
        let racked: Vec<Candidate> = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]
            .iter()
            .map(|(id, rack)| Candidate {
                node_id: *id,
                rack: Some(rack.to_string()),
            })
            .collect();
        let rack_of = |id: i32| {
            racked
                .iter()
                .find(|b| b.node_id == id)
                .unwrap()
                .rack
                .clone()
        };
        for seed in 0..10u128 {
            let a = assign(&uuid::Uuid::from_u128(seed), 0, 12, 3, &racked).unwrap();
            for r in &a {
                let racks: BTreeSet<_> = r.iter().map(|id| rack_of(*id)).collect();
                assert_eq!(racks.len(), 3, "replicas {r:?} share a rack");
            }
            assert!(leaders_per_broker(&a).values().all(|c| *c == 2));
        }
        // Two racks, RF 3: both racks used, replicas distinct.
        let a = assign(&uuid::Uuid::from_u128(7), 0, 6, 3, &racked[..4]).unwrap();
        for r in &a {
            let racks: BTreeSet<_> = r.iter().map(|id| rack_of(*id)).collect();
            assert_eq!(
                (racks.len(), r.iter().collect::<BTreeSet<_>>().len()),
                (2, 3)
            );
        }
    }
}
