//! Partition reassignment (KIP-455: Kafka's `ReplicationControlManager.alterPartitionReassignments`
//! and `PartitionReassignmentReplicas`). Called only from `apply`, and from AlterPartition
//! (`isr.rs`), on the next image.
//!
//! A reassignment sets a partition's target replicas. Its replicas become the target followed by
//! the current replicas the target drops (`removing_replicas`); the target's new members
//! (`adding_replicas`) open the partition and follow the leader like any replica, and the
//! leader's ISR task adds each to the ISR once it has caught up (AlterPartition). The
//! reassignment completes in the one change where every target replica is in the ISR
//! ([`complete_if_ready`]): replicas = target, ISR = ISR less the removed replicas, the leader
//! kept while it stays an active ISR member, else the first target replica that is one; the
//! leader epoch is bumped when a replica leaves (as Kafka does, so a removed replica's fetches
//! at the old epoch are fenced). A reassignment that adds no replica and whose target is in the
//! ISR already (a reordering, a shrink) completes at once.

use serde::{Deserialize, Serialize};

use super::{validate_assignment, ControllerError, Outcome};
use crate::cluster::image::{without, MetadataImage, PartitionImage, NO_LEADER};

/// One partition of an AlterPartitionReassignments request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    /// The target replicas in order (the first is the preferred leader); `None` cancels the
    /// partition's reassignment.
    pub target: Option<Vec<i32>>,
}

/// Applies each reassignment in order; one result per reassignment. A refused one leaves its
/// partition as it was; the others still apply (Kafka answers per partition too).
pub fn alter(
    next: &mut MetadataImage,
    reassignments: &[Reassignment],
    allow_replication_factor_change: bool,
) -> Outcome {
    let results = reassignments
        .iter()
        .map(|r| alter_one(next, r, allow_replication_factor_change))
        .collect();
    Outcome::Reassignments(results)
}

/// Completes `p`'s reassignment if every target replica is in the ISR and an active ISR member
/// can lead the target replicas; returns whether it did. The caller bumps the partition epoch.
pub fn complete_if_ready(p: &mut PartitionImage, active: &[i32]) -> bool {
    if !p.is_reassigning() {
        return false;
    }
    let replicas = p.target_replicas();
    let mut isr = without(&p.isr, &p.removing_replicas);
    if replicas.is_empty() || isr.is_empty() || !replicas.iter().all(|r| isr.contains(r)) {
        return false;
    }
    // Kafka would leave the partition without a leader here; waiting keeps it available, and
    // the next ISR change tries again.
    let Some(leader) = elect(p.leader, &replicas, &isr, active) else {
        return false;
    };
    if leader != p.leader || !p.removing_replicas.is_empty() {
        p.leader_epoch += 1;
    }
    isr.sort_by_key(|r| replicas.iter().position(|x| x == r));
    p.leader = leader;
    p.isr = isr;
    p.replicas = replicas;
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    assert!(
        p.isr.contains(&p.leader) && p.isr.iter().all(|r| p.replicas.contains(r)),
        "a completed reassignment's leader is in its ISR, and its ISR among its replicas"
    );
    true
}

fn alter_one(
    next: &mut MetadataImage,
    r: &Reassignment,
    allow_replication_factor_change: bool,
) -> Result<(), ControllerError> {
    let active: Vec<i32> = next
        .brokers
        .values()
        .filter(|b| b.is_active())
        .map(|b| b.node_id)
        .collect();
    let current = next
        .topic(&r.topic)
        .and_then(|t| t.partition_image(r.partition))
        .ok_or(ControllerError::UnknownTopic)?;
    let mut p = current.clone();
    match &r.target {
        None => cancel(&mut p, &r.topic, r.partition, &active)?,
        Some(target) => {
            validate_assignment(next, std::slice::from_ref(target), None)?;
            let original = p.original_replicas().len();
            if !allow_replication_factor_change && target.len() != original {
                return Err(ControllerError::InvalidReplicationFactor(format!(
                    "The replication factor is changed from {original} to {} but \
                     allowReplicationFactorChange is false.",
                    target.len()
                )));
            }
            change(&mut p, target, &active);
        }
    }
    if p == *current {
        return Ok(());
    }
    p.partition_epoch += 1;
    let slot = next
        .topics
        .get_mut(&r.topic)
        .and_then(|t| {
            usize::try_from(r.partition)
                .ok()
                .and_then(|i| t.partitions.get_mut(i))
        })
        .ok_or(ControllerError::UnknownTopic)?;
    *slot = p;
    Ok(())
}

/// Starts (or replaces) the reassignment of `p` to `target`, computed against its current
/// replicas as Kafka does: a reassignment in progress is superseded, not stacked.
fn change(p: &mut PartitionImage, target: &[i32], active: &[i32]) {
    let mut removing = without(&p.replicas, target);
    removing.sort_unstable();
    let mut adding = without(target, &p.replicas);
    adding.sort_unstable();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    p.replicas = replicas;
    p.adding_replicas = adding;
    p.removing_replicas = removing;
    // Kept in replica order, like every ISR the controller writes.
    let order = p.replicas.clone();
    p.isr.sort_by_key(|r| order.iter().position(|x| x == r));
    complete_if_ready(p, active);
}

/// Reverts `p` to the replicas it had before its reassignment (Kafka's
/// `PartitionReassignmentRevert`): the replicas being added leave the replicas and the ISR.
fn cancel(
    p: &mut PartitionImage,
    topic: &str,
    partition: i32,
    active: &[i32],
) -> Result<(), ControllerError> {
    if !p.is_reassigning() {
        return Err(ControllerError::NoReassignmentInProgress);
    }
    let isr = without(&p.isr, &p.adding_replicas);
    if isr.is_empty() {
        // Only replicas being added are in sync: reverting would take an unclean election.
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "Unable to revert partition assignment for {topic}:{partition} because it would \
             require an unclean leader election."
        )));
    }
    let replicas = p.original_replicas();
    let leader = elect(p.leader, &replicas, &isr, active).unwrap_or(NO_LEADER);
    if leader != p.leader || !p.adding_replicas.is_empty() {
        p.leader_epoch += 1;
    }
    p.leader = leader;
    p.isr = isr;
    p.replicas = replicas;
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    Ok(())
}

/// Kafka's `electAnyLeader`: the current leader while it is an active member of `isr`, else the
/// first of `replicas` that is one.
fn elect(current: i32, replicas: &[i32], isr: &[i32], active: &[i32]) -> Option<i32> {
    let valid = |r: &i32| isr.contains(r) && active.contains(r) && replicas.contains(r);
    if valid(&current) {
        return Some(current);
    }
    replicas.iter().copied().find(valid)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::controller::{apply, ControllerCommand};

    fn ok(img: &MetadataImage, cmd: &ControllerCommand) -> (MetadataImage, Outcome) {
        apply(img, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    /// Brokers `ids` registered and unfenced, and topic "t" with one partition per assignment,
    /// every replica in sync.
    fn cluster(ids: &[i32], assignment: Vec<Vec<i32>>) -> MetadataImage {
        let mut img = MetadataImage::empty();
        for id in ids {
            let register = ControllerCommand::RegisterBroker {
                node_id: *id,
                incarnation_id: uuid::Uuid::from_u128(*id as u128),
                host: "h".into(),
                port: 9000,
                rack: None,
            };
            let (next, outcome) = ok(&img, &register);
            let Outcome::BrokerRegistered { epoch, .. } = outcome else {
                panic!("{outcome:?}")
            };
            img = ok(
                &next,
                &ControllerCommand::UnfenceBroker {
                    node_id: *id,
                    epoch,
                },
            )
            .0;
        }
        let create = ControllerCommand::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::from_u128(7),
            partitions: assignment.len() as i32,
            replication_factor: assignment[0].len() as i16,
            configs: BTreeMap::new(),
            internal: false,
            assignment: Some(assignment),
        };
        ok(&img, &create).0
    }

    fn part(img: &MetadataImage, p: i32) -> PartitionImage {
        img.topic("t").unwrap().partition_image(p).unwrap().clone()
    }

    fn reassign(
        img: &MetadataImage,
        targets: &[(&str, i32, Option<Vec<i32>>)],
        allow: bool,
    ) -> (MetadataImage, Vec<Result<(), ControllerError>>) {
        let cmd = ControllerCommand::AlterPartitionReassignments {
            reassignments: targets
                .iter()
                .map(|(topic, partition, target)| Reassignment {
                    topic: topic.to_string(),
                    partition: *partition,
                    target: target.clone(),
                })
                .collect(),
            allow_replication_factor_change: allow,
        };
        match ok(img, &cmd) {
            (next, Outcome::Reassignments(results)) => (next, results),
            other => panic!("{other:?}"),
        }
    }

    /// The leader's AlterPartition of `p` to `new_isr`.
    fn alter_isr(img: &MetadataImage, p: i32, new_isr: Vec<i32>) -> MetadataImage {
        let now = part(img, p);
        let cmd = ControllerCommand::AlterPartition {
            topic: "t".into(),
            partition: p,
            leader: now.leader,
            leader_epoch: now.leader_epoch,
            partition_epoch: now.partition_epoch,
            new_isr,
        };
        ok(img, &cmd).0
    }

    #[test]
    fn replacing_a_follower_adds_it_then_completes_when_it_joins_the_isr() {
        let img = cluster(&[1, 2, 3, 4], vec![vec![1, 2, 3]]);
        let before = part(&img, 0);
        let (img, results) = reassign(&img, &[("t", 0, Some(vec![1, 2, 4]))], false);
        assert_eq!(results, vec![Ok(())]);
        let p = part(&img, 0);
        assert_eq!(p.replicas, vec![1, 2, 4, 3]);
        assert_eq!(p.adding_replicas, vec![4]);
        assert_eq!(p.removing_replicas, vec![3]);
        assert_eq!(p.isr, vec![1, 2, 3], "the ISR waits for the new replica");
        assert_eq!((p.leader, p.leader_epoch), (1, before.leader_epoch));
        assert_eq!(p.partition_epoch, before.partition_epoch + 1);
        // The new replica caught up: the leader's ISR change completes the reassignment.
        let img = alter_isr(&img, 0, vec![1, 2, 4, 3]);
        let p = part(&img, 0);
        assert_eq!(p.replicas, vec![1, 2, 4]);
        assert_eq!(p.isr, vec![1, 2, 4]);
        assert!(!p.is_reassigning());
        assert_eq!(p.leader, 1);
        assert_eq!(p.leader_epoch, before.leader_epoch + 1, "a replica left");
        assert_eq!(p.partition_epoch, before.partition_epoch + 2);
    }

    #[test]
    fn replacing_the_leader_moves_leadership_to_the_first_target_replica_in_the_isr() {
        let img = cluster(&[1, 2, 3, 4], vec![vec![1, 2, 3]]);
        let (img, results) = reassign(&img, &[("t", 0, Some(vec![4, 3, 2]))], true);
        assert_eq!(results, vec![Ok(())]);
        assert_eq!(part(&img, 0).replicas, vec![4, 3, 2, 1]);
        // Not every target replica in sync yet (3 left): nothing completes.
        let img = alter_isr(&img, 0, vec![1, 2, 4]);
        let p = part(&img, 0);
        assert!(p.is_reassigning());
        assert_eq!(p.isr, vec![4, 2, 1]);
        let img = alter_isr(&img, 0, vec![1, 2, 3, 4]);
        let p = part(&img, 0);
        assert!(!p.is_reassigning());
        assert_eq!(p.replicas, vec![4, 3, 2]);
        assert_eq!(p.isr, vec![4, 3, 2]);
        assert_eq!(
            p.leader, 4,
            "the removed leader hands over to the first target in sync"
        );
        assert_eq!(p.leader_epoch, 1);
    }

    #[test]
    fn a_reordering_or_a_shrink_in_sync_completes_at_once() {
        let img = cluster(&[1, 2, 3], vec![vec![1, 2, 3], vec![2, 3, 1]]);
        let (img, results) = reassign(
            &img,
            &[("t", 0, Some(vec![3, 2, 1])), ("t", 1, Some(vec![3, 1]))],
            true,
        );
        assert_eq!(results, vec![Ok(()), Ok(())]);
        let p = part(&img, 0);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![3, 2, 1], vec![3, 2, 1])
        );
        assert_eq!(
            (p.leader, p.leader_epoch),
            (1, 0),
            "a reordering keeps its leader and epoch"
        );
        let p = part(&img, 1);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![3, 1], vec![3, 1])
        );
        assert_eq!((p.leader, p.leader_epoch), (3, 1));
        assert!(!p.is_reassigning());
        // The same target again changes nothing.
        let (again, results) = reassign(&img, &[("t", 1, Some(vec![3, 1]))], true);
        assert_eq!(results, vec![Ok(())]);
        assert_eq!(part(&again, 1), part(&img, 1));
    }

    #[test]
    fn cancelling_reverts_to_the_original_replicas() {
        let img = cluster(&[1, 2, 3, 4, 5], vec![vec![1, 2, 3]]);
        let (img, _) = reassign(&img, &[("t", 0, Some(vec![4, 5, 3]))], true);
        // 4 caught up (5 did not): the reassignment is still in progress.
        let img = alter_isr(&img, 0, vec![1, 2, 3, 4]);
        let epoch = part(&img, 0).partition_epoch;
        let (img, results) = reassign(&img, &[("t", 0, None)], true);
        assert_eq!(results, vec![Ok(())]);
        let p = part(&img, 0);
        assert_eq!(p.replicas, vec![3, 1, 2]);
        assert_eq!(p.isr, vec![3, 1, 2]);
        assert_eq!(p.leader, 1);
        assert!(!p.is_reassigning());
        assert_eq!(p.partition_epoch, epoch + 1);
        // Nothing left to cancel.
        let (_, results) = reassign(&img, &[("t", 0, None)], true);
        assert_eq!(
            results,
            vec![Err(ControllerError::NoReassignmentInProgress)]
        );
    }

    #[test]
    fn refusals_are_per_partition_and_leave_the_partition_as_it_was() {
        let img = cluster(&[1, 2, 3, 4], vec![vec![1, 2, 3], vec![2, 3, 4]]);
        let (next, results) = reassign(
            &img,
            &[
                ("nope", 0, Some(vec![1])),
                ("t", 9, Some(vec![1])),
                ("t", 0, Some(vec![1, 1, 2])),
                ("t", 0, Some(vec![1, 2, 7])),
                ("t", 0, Some(vec![])),
                ("t", 0, Some(vec![1, 2])),
                ("t", 1, Some(vec![1, 2, 3])),
            ],
            false,
        );
        let codes: Vec<&str> = results
            .iter()
            .map(|r| match r {
                Ok(()) => "ok",
                Err(ControllerError::UnknownTopic) => "unknown",
                Err(ControllerError::InvalidReplicaAssignment(_)) => "assignment",
                Err(ControllerError::InvalidReplicationFactor(_)) => "rf",
                Err(other) => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                "unknown",
                "unknown",
                "assignment",
                "assignment",
                "assignment",
                "rf",
                "ok"
            ]
        );
        assert_eq!(part(&next, 0), part(&img, 0));
        assert_eq!(part(&next, 1).replicas, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_new_target_supersedes_one_in_progress() {
        let img = cluster(&[1, 2, 3, 4, 5], vec![vec![1, 2, 3]]);
        let (img, _) = reassign(&img, &[("t", 0, Some(vec![1, 2, 4]))], true);
        let (img, results) = reassign(&img, &[("t", 0, Some(vec![1, 2, 5]))], true);
        assert_eq!(results, vec![Ok(())]);
        let p = part(&img, 0);
        assert_eq!(p.replicas, vec![1, 2, 5, 3, 4]);
        assert_eq!(p.adding_replicas, vec![5]);
        assert_eq!(p.removing_replicas, vec![3, 4]);
        let img = alter_isr(&img, 0, vec![1, 2, 3, 5]);
        let p = part(&img, 0);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![1, 2, 5], vec![1, 2, 5])
        );
    }

    #[test]
    fn the_command_and_its_outcome_round_trip_as_json() {
        let cmd = ControllerCommand::AlterPartitionReassignments {
            reassignments: vec![
                Reassignment {
                    topic: "t".into(),
                    partition: 0,
                    target: Some(vec![3, 1]),
                },
                Reassignment {
                    topic: "t".into(),
                    partition: 1,
                    target: None,
                },
            ],
            allow_replication_factor_change: false,
        };
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(
            serde_json::from_str::<ControllerCommand>(&json).unwrap(),
            cmd
        );
        let outcome =
            Outcome::Reassignments(vec![Ok(()), Err(ControllerError::NoReassignmentInProgress)]);
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
    }

    #[test]
    fn the_replication_factor_does_not_count_replicas_being_added() {
        let img = cluster(&[1, 2, 3, 4], vec![vec![1, 2, 3]]);
        let (img, _) = reassign(&img, &[("t", 0, Some(vec![4, 2, 3]))], true);
        assert_eq!(img.topic("t").unwrap().replication_factor(), 3);
    }

    #[test]
    fn old_images_without_reassignment_fields_load() {
        let json =
            r#"{"replicas":[1,2],"isr":[1],"leader":1,"leader_epoch":3,"partition_epoch":4}"#;
        let p: PartitionImage = serde_json::from_str(json).unwrap();
        assert!(!p.is_reassigning());
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            json,
            "nothing new is written"
        );
    }
}
