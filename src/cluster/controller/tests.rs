use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::cluster::image::NO_LEADER;

/// Registers and unfences brokers `ids` (rack per id when given) on an image with cluster id "c".
fn cluster(ids: &[i32], racks: Option<&[&str]>) -> MetadataImage {
    let mut img = MetadataImage::empty();
    img.cluster_id = "c".into();
    for (i, id) in ids.iter().enumerate() {
        let epoch = register(&mut img, *id, racks.map(|r| r[i]));
        img = ok(
            &img,
            &ControllerCommand::UnfenceBroker {
                node_id: *id,
                epoch,
            },
        )
        .0;
    }
    img
}

fn register(img: &mut MetadataImage, id: i32, rack: Option<&str>) -> i64 {
    let cmd = ControllerCommand::RegisterBroker {
        node_id: id,
        incarnation_id: uuid::Uuid::from_u128(0x1000 + img.version as u128),
        host: format!("host{id}"),
        port: 9000 + id as u16,
        rack: rack.map(str::to_string),
    };
    let (next, outcome) = ok(img, &cmd);
    *img = next;
    match outcome {
        Outcome::BrokerRegistered { epoch, .. } => epoch,
        other => panic!("unexpected {other:?}"),
    }
}

/// Every replica in sync, as follower replication (AlterPartition) will make them once they
/// catch up; new partitions start with the leader alone in the ISR.
fn caught_up(mut img: MetadataImage) -> MetadataImage {
    for t in img.topics.values_mut() {
        for p in &mut t.partitions {
            p.isr = p.replicas.clone();
        }
    }
    img
}

fn ok(img: &MetadataImage, cmd: &ControllerCommand) -> (MetadataImage, Outcome) {
    apply(img, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn topic_id(name: &str) -> TopicId {
    uuid::Uuid::from_u128(crate::runtime::placement::java_string_hash(name) as u32 as u128 + 1)
}

fn create_rf(name: &str, partitions: i32, rf: i16) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: name.into(),
        id: topic_id(name),
        partitions,
        replication_factor: rf,
        configs: BTreeMap::new(),
        internal: false,
        assignment: None,
    }
}

fn create(name: &str, partitions: i32) -> ControllerCommand {
    create_rf(name, partitions, 1)
}

fn manual(name: &str, assignment: Vec<Vec<i32>>) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: name.into(),
        id: topic_id(name),
        partitions: assignment.len() as i32,
        replication_factor: assignment.first().map_or(0, |r| r.len() as i16),
        configs: BTreeMap::new(),
        internal: false,
        assignment: Some(assignment),
    }
}

fn epoch_of(img: &MetadataImage, id: i32) -> i64 {
    img.brokers[&id].epoch
}

#[test]
fn create_then_duplicate_fails() {
    let (img, _) = apply(&cluster(&[0], None), &create("a", 3)).unwrap();
    assert_eq!(img.topics["a"].partition_count(), 3);
    assert!(matches!(
        apply(&img, &create("a", 1)),
        Err(ControllerError::TopicAlreadyExists(_))
    ));
}

#[test]
fn colliding_names_and_stale_ids_are_refused() {
    let (img, _) = apply(&cluster(&[0], None), &create("a.b", 1)).unwrap();
    assert!(matches!(
        apply(&img, &create("a_b", 1)),
        Err(ControllerError::InvalidTopic(_))
    ));
    let stale = ControllerCommand::DeleteTopic {
        name: "a.b".into(),
        id: Some(uuid::Uuid::new_v4()),
    };
    assert!(matches!(
        apply(&img, &stale),
        Err(ControllerError::UnknownTopicId)
    ));
    let current = ControllerCommand::DeleteTopic {
        name: "a.b".into(),
        id: Some(img.topics["a.b"].id),
    };
    assert!(apply(&img, &current).is_ok());
}

#[test]
fn invalid_names_counts_and_ids() {
    let img = cluster(&[0], None);
    assert!(apply(&img, &create("bad name", 1)).is_err());
    assert!(apply(&img, &create("ok", 0)).is_err());
    let (img, _) = ok(&img, &create("a", 1));
    let mut same_id = create("b", 1);
    if let ControllerCommand::CreateTopic { id, .. } = &mut same_id {
        *id = img.topics["a"].id;
    }
    assert!(matches!(
        apply(&img, &same_id),
        Err(ControllerError::InvalidRequest(_))
    ));
}

#[test]
fn single_node_topics_have_the_node_as_their_one_replica() {
    let img = cluster(&[4], None);
    let (img, _) = ok(&img, &create("t", 3));
    for p in &img.topics["t"].partitions {
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader, p.leader_epoch),
            (vec![4], vec![4], 4, 0)
        );
    }
    let e = apply(&img, &create_rf("u", 1, 2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Unable to replicate the partition 2 time(s): The target replication factor of 2 \
         cannot be reached because only 1 broker(s) are registered."
    );
}

#[test]
fn leaders_spread_evenly_over_three_and_five_brokers() {
    for n in [3, 5] {
        let ids: Vec<i32> = (1..=n).collect();
        let (img, _) = ok(&cluster(&ids, None), &create_rf("t", n * 2, 3));
        let mut leaders = BTreeMap::new();
        for p in &img.topics["t"].partitions {
            *leaders.entry(p.leader).or_insert(0) += 1;
            assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            // Every replica is active: all of them start in the ISR.
            assert_eq!(
                (p.isr.clone(), p.leader),
                (p.replicas.clone(), p.replicas[0])
            );
        }
        assert_eq!(leaders.len(), n as usize, "{leaders:?}");
        assert!(leaders.values().all(|c| *c == 2), "{leaders:?}");
    }
}

#[test]
fn same_commands_same_image() {
    let run = || {
        let mut img = cluster(&[1, 2, 3], Some(&["a", "b", "a"]));
        for cmd in [
            create_rf("x", 6, 2),
            create_rf("y", 4, 3),
            ControllerCommand::CreatePartitions {
                name: "x".into(),
                count: 9,
                assignment: None,
            },
            ControllerCommand::FenceBroker {
                node_id: 2,
                epoch: epoch_of(&img, 2),
            },
        ] {
            img = ok(&img, &cmd).0;
        }
        serde_json::to_string(&img).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn fencing_moves_leadership_and_shrinks_isrs() {
    let img = cluster(&[1, 2, 3], None);
    let (img, _) = ok(&img, &manual("t", vec![vec![1, 2], vec![2, 3], vec![3, 1]]));
    let (img, _) = ok(&img, &manual("solo", vec![vec![1]]));
    let img = caught_up(img);
    let fence = ControllerCommand::FenceBroker {
        node_id: 1,
        epoch: epoch_of(&img, 1),
    };
    let (fenced, _) = ok(&img, &fence);
    assert!(fenced.brokers[&1].fenced);
    let t = &fenced.topics["t"].partitions;
    // Led by 1: moves to 2, epochs bumped.
    assert_eq!((t[0].leader, t[0].isr.clone()), (2, vec![2]));
    assert_eq!((t[0].leader_epoch, t[0].partition_epoch), (1, 1));
    // Not involving 1: unchanged.
    assert_eq!(t[1], img.topics["t"].partitions[1]);
    // 1 a follower: leaves the ISR, leader and leader epoch stay.
    assert_eq!((t[2].leader, t[2].isr.clone()), (3, vec![3]));
    assert_eq!((t[2].leader_epoch, t[2].partition_epoch), (0, 1));
    // 1 the last ISR member: stays in it, no leader.
    let solo = &fenced.topics["solo"].partitions[0];
    assert_eq!(
        (solo.leader, solo.isr.clone(), solo.leader_epoch),
        (NO_LEADER, vec![1], 1)
    );
    assert_eq!(fenced.offline_replicas(solo), vec![1]);

    // Unfencing gives the leaderless partition its leader back; the others keep theirs.
    let unfence = ControllerCommand::UnfenceBroker {
        node_id: 1,
        epoch: epoch_of(&fenced, 1),
    };
    let (back, _) = ok(&fenced, &unfence);
    let solo = &back.topics["solo"].partitions[0];
    assert_eq!(
        (solo.leader, solo.leader_epoch, solo.partition_epoch),
        (1, 2, 2)
    );
    assert_eq!(back.topics["t"].partitions, fenced.topics["t"].partitions);
}

#[test]
fn stale_epochs_and_unknown_brokers_are_refused() {
    let mut img = cluster(&[1], None);
    let old = epoch_of(&img, 1);
    // A new incarnation: fenced, a new epoch; the old epoch no longer counts.
    let new = register(&mut img, 1, None);
    assert!(new > old && img.brokers[&1].fenced);
    let stale = ControllerCommand::UnfenceBroker {
        node_id: 1,
        epoch: old,
    };
    assert!(matches!(
        apply(&img, &stale),
        Err(ControllerError::StaleBrokerEpoch { .. })
    ));
    let unknown = ControllerCommand::FenceBroker {
        node_id: 9,
        epoch: 0,
    };
    assert!(matches!(
        apply(&img, &unknown),
        Err(ControllerError::BrokerNotRegistered(9))
    ));
    // The same incarnation registering again keeps its epoch.
    let again = ControllerCommand::RegisterBroker {
        node_id: 1,
        incarnation_id: img.brokers[&1].incarnation_id,
        host: "h".into(),
        port: 1,
        rack: None,
    };
    assert_eq!(
        ok(&img, &again).1,
        Outcome::BrokerRegistered {
            node_id: 1,
            epoch: new
        }
    );
}

#[test]
fn restarted_broker_keeps_its_partitions_and_leader_epochs() {
    let img = cluster(&[1], None);
    let (before, _) = ok(&img, &create("t", 2));
    let mut img = before.clone();
    let epoch = register(&mut img, 1, None);
    // Fenced: its partitions have no available leader until it is unfenced.
    let p = &img.topics["t"].partitions[0];
    assert!(img.brokers[&1].fenced && !img.leader_available(p));
    let (img, _) = ok(
        &img,
        &ControllerCommand::UnfenceBroker { node_id: 1, epoch },
    );
    assert_eq!(img.topics["t"], before.topics["t"]);
    assert!(img.leader_available(&img.topics["t"].partitions[0]));
    // Fenced while restarting: the partitions lose their leader, and get it back.
    let mut img = img;
    let epoch = register(&mut img, 1, None);
    let fence = ControllerCommand::FenceBroker { node_id: 1, epoch };
    let (img, _) = ok(&img, &fence);
    assert!(img.topics["t"]
        .partitions
        .iter()
        .all(|p| p.leader == NO_LEADER));
    let (img, _) = ok(
        &img,
        &ControllerCommand::UnfenceBroker { node_id: 1, epoch },
    );
    assert!(img.topics["t"]
        .partitions
        .iter()
        .all(|p| p.leader == 1 && p.leader_epoch == 2));
}

#[test]
fn controlled_shutdown_moves_leaders_but_keeps_the_broker_listed() {
    let img = cluster(&[1, 2], None);
    let (img, _) = ok(&img, &manual("t", vec![vec![1, 2]]));
    let img = caught_up(img);
    let cmd = ControllerCommand::BeginControlledShutdown {
        node_id: 1,
        epoch: epoch_of(&img, 1),
    };
    let (img, _) = ok(&img, &cmd);
    let p = &img.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    assert_eq!(img.unfenced_brokers().count(), 2);
    // No new replicas on a broker that is shutting down.
    assert!(matches!(
        apply(&img, &create_rf("u", 1, 2)),
        Err(ControllerError::InvalidReplicationFactor(_))
    ));
}

#[test]
fn manual_assignments_are_validated() {
    let img = cluster(&[1, 2, 3], None);
    let err = |a: Vec<Vec<i32>>| apply(&img, &manual("t", a)).unwrap_err().to_string();
    assert!(err(vec![vec![1, 1]]).contains("broker 1 more than once"));
    assert!(err(vec![vec![1, 7]]).contains("broker 7, but no such broker is registered"));
    assert!(err(vec![vec![1, 2], vec![3]]).contains("not consistent with previous partitions"));
    assert!(err(vec![vec![]]).contains("empty replica list"));
    let (img, _) = ok(&img, &manual("t", vec![vec![3, 1], vec![2, 3]]));
    assert_eq!(img.topics["t"].partitions[0].leader, 3);
    // CreatePartitions: count must match the increase, replicas the topic's RF.
    let grow = |assignment: Vec<Vec<i32>>| ControllerCommand::CreatePartitions {
        name: "t".into(),
        count: 4,
        assignment: Some(assignment),
    };
    assert!(apply(&img, &grow(vec![vec![1, 2]]))
        .unwrap_err()
        .to_string()
        .contains("add 2 additional partition(s), but only 1"));
    assert!(apply(&img, &grow(vec![vec![1, 2], vec![3]]))
        .unwrap_err()
        .to_string()
        .contains("not consistent"));
    let (img, _) = ok(&img, &grow(vec![vec![1, 2], vec![2, 1]]));
    assert_eq!(img.topics["t"].partitions[3].replicas, vec![2, 1]);
}

#[test]
fn create_partitions_places_with_the_topics_replication_factor() {
    let img = cluster(&[1, 2, 3], None);
    let (img, _) = ok(&img, &create_rf("t", 2, 2));
    let cmd = ControllerCommand::CreatePartitions {
        name: "t".into(),
        count: 5,
        assignment: None,
    };
    let (img, _) = ok(&img, &cmd);
    let t = &img.topics["t"];
    assert_eq!(t.partition_count(), 5);
    assert!(t.partitions.iter().all(|p| p.replicas.len() == 2));
}

#[test]
fn cluster_id_is_set_once() {
    let img = MetadataImage::empty();
    let set = |id: &str| ControllerCommand::SetClusterId {
        cluster_id: id.into(),
    };
    let (img, _) = ok(&img, &set("x"));
    assert_eq!(img.cluster_id, "x");
    assert!(apply(&img, &set("x")).is_ok());
    assert!(matches!(
        apply(&img, &set("y")),
        Err(ControllerError::InconsistentClusterId { .. })
    ));
}

#[test]
fn commands_and_outcomes_round_trip_as_json() {
    let cmds = vec![
        create_rf("t", 3, 1),
        manual("m", vec![vec![1]]),
        ControllerCommand::FenceBroker {
            node_id: 1,
            epoch: 7,
        },
        ControllerCommand::AlterTopicConfigs {
            name: "t".into(),
            mode: AlterMode::Incremental(vec![("retention.ms".into(), 0, Some("1".into()))]),
        },
    ];
    for cmd in cmds {
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(
            serde_json::from_str::<ControllerCommand>(&json).unwrap(),
            cmd
        );
    }
    let e = ControllerError::StaleBrokerEpoch {
        node_id: 1,
        expected: 2,
        got: 3,
    };
    let json = serde_json::to_string(&Err::<Outcome, _>(e.clone())).unwrap();
    assert_eq!(
        serde_json::from_str::<Result<Outcome, ControllerError>>(&json).unwrap(),
        Err(e)
    );
}

#[test]
fn incremental_alter_sets_and_deletes() {
    let (img, _) = apply(&cluster(&[0], None), &create("a", 1)).unwrap();
    let cmd = ControllerCommand::AlterTopicConfigs {
        name: "a".into(),
        mode: AlterMode::Incremental(vec![("retention.ms".into(), 0, Some("1000".into()))]),
    };
    let (img, _) = apply(&img, &cmd).unwrap();
    assert_eq!(img.topics["a"].configs["retention.ms"], "1000");
    let cmd = ControllerCommand::AlterTopicConfigs {
        name: "a".into(),
        mode: AlterMode::Incremental(vec![("retention.ms".into(), 1, None)]),
    };
    let (img, _) = apply(&img, &cmd).unwrap();
    assert!(img.topics["a"].configs.is_empty());
}

#[test]
fn producer_id_blocks_do_not_overlap() {
    let (img, a) = apply(
        &MetadataImage::empty(),
        &ControllerCommand::AllocateProducerIds,
    )
    .unwrap();
    let (_, b) = apply(&img, &ControllerCommand::AllocateProducerIds).unwrap();
    match (a, b) {
        (Outcome::ProducerIdBlock { first: x, len }, Outcome::ProducerIdBlock { first: y, .. }) => {
            assert_eq!(y, x + len)
        }
        _ => panic!("expected blocks"),
    }
}

#[test]
fn restart_hands_leadership_to_a_live_isr_member_where_there_is_one() {
    let img = cluster(&[1, 2], None);
    let (img, _) = ok(&img, &manual("t", vec![vec![1, 2], vec![2, 1]]));
    let (img, _) = ok(&img, &manual("solo", vec![vec![1]]));
    let mut img = caught_up(img);
    register(&mut img, 1, None);
    let t = &img.topics["t"].partitions;
    // Led by 1 with 2 in sync: moves to 2, as a fence would.
    assert_eq!(
        (t[0].leader, t[0].isr.clone(), t[0].leader_epoch),
        (2, vec![2], 1)
    );
    // 1 a follower: leaves the ISR.
    assert_eq!(
        (t[1].leader, t[1].isr.clone(), t[1].leader_epoch),
        (2, vec![2], 0)
    );
    // 1 the only possible leader: stays, same epoch, unavailable while fenced.
    let solo = &img.topics["solo"].partitions[0];
    assert_eq!((solo.leader, solo.leader_epoch), (1, 0));
    assert!(!img.leader_available(solo));
}

#[test]
fn unfencing_takes_over_a_partition_whose_leader_is_fenced() {
    let img = cluster(&[1, 2], None);
    let (mut img, _) = ok(&img, &manual("t", vec![vec![1, 2]]));
    // A hand-made state (e.g. a migrated image): the leader fenced, 2 in the ISR and fenced too.
    let p = &mut img.topics.get_mut("t").unwrap().partitions[0];
    p.isr = vec![1, 2];
    img.brokers.get_mut(&1).unwrap().fenced = true;
    img.brokers.get_mut(&2).unwrap().fenced = true;
    let epoch = epoch_of(&img, 2);
    let (img, _) = ok(
        &img,
        &ControllerCommand::UnfenceBroker { node_id: 2, epoch },
    );
    let p = &img.topics["t"].partitions[0];
    assert_eq!((p.leader, p.leader_epoch), (2, 1));
}

fn alter(
    topic: &str,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[i32],
) -> ControllerCommand {
    ControllerCommand::AlterPartition {
        topic: topic.into(),
        partition: 0,
        leader,
        leader_epoch,
        partition_epoch,
        new_isr: isr.to_vec(),
    }
}

#[test]
fn alter_partition_checks_the_leader_epoch_the_partition_epoch_and_the_members() {
    let (img, _) = ok(&cluster(&[1, 2, 3], None), &create_rf("t", 1, 3));
    let p = img.topics["t"].partitions[0].clone();
    let (leader, others): (i32, Vec<i32>) = (p.leader, p.replicas[1..].to_vec());
    // A shrink by the leader at the current epochs commits and bumps the partition epoch.
    let (img2, out) = ok(&img, &alter("t", leader, 0, 0, &[leader, others[0]]));
    let p2 = &img2.topics["t"].partitions[0];
    assert_eq!(p2.isr, vec![leader, others[0]]);
    assert_eq!(p2.partition_epoch, 1);
    assert_eq!(
        out,
        Outcome::PartitionAltered {
            isr: vec![leader, others[0]],
            partition_epoch: 1
        }
    );
    // The same change again, at the old partition epoch: another change came first.
    let e = apply(&img2, &alter("t", leader, 0, 0, &[leader])).unwrap_err();
    assert!(
        matches!(e, ControllerError::InvalidUpdateVersion(_)),
        "{e:?}"
    );
    // Not the leader, or a stale leader epoch.
    let e = apply(&img2, &alter("t", others[0], 0, 1, &[others[0]])).unwrap_err();
    assert!(matches!(e, ControllerError::FencedLeaderEpoch(_)), "{e:?}");
    let e = apply(&img2, &alter("t", leader, 7, 1, &[leader])).unwrap_err();
    assert!(matches!(e, ControllerError::FencedLeaderEpoch(_)), "{e:?}");
    // The leader must stay; members must be replicas.
    let e = apply(&img2, &alter("t", leader, 0, 1, &[others[0]])).unwrap_err();
    assert!(matches!(e, ControllerError::InvalidRequest(_)), "{e:?}");
    let e = apply(&img2, &alter("t", leader, 0, 1, &[leader, 99])).unwrap_err();
    assert!(matches!(e, ControllerError::InvalidRequest(_)), "{e:?}");
    // Growing back (in replica order, whatever order was asked).
    let (img3, _) = ok(
        &img2,
        &alter("t", leader, 0, 1, &[others[1], others[0], leader]),
    );
    assert_eq!(img3.topics["t"].partitions[0].isr, p.replicas);
    assert_eq!(img3.topics["t"].partitions[0].partition_epoch, 2);
}

#[test]
fn alter_partition_refuses_to_add_a_fenced_broker() {
    let (img, _) = ok(&cluster(&[1, 2, 3], None), &create_rf("t", 1, 3));
    let p = img.topics["t"].partitions[0].clone();
    let (leader, out) = (p.leader, p.replicas[2]);
    let (img, _) = ok(&img, &alter("t", leader, 0, 0, &[leader, p.replicas[1]]));
    let epoch = img.brokers[&out].epoch;
    let (img, _) = ok(
        &img,
        &ControllerCommand::FenceBroker {
            node_id: out,
            epoch,
        },
    );
    let pe = img.topics["t"].partitions[0].partition_epoch;
    let e = apply(
        &img,
        &alter("t", leader, 0, pe, &[leader, p.replicas[1], out]),
    )
    .unwrap_err();
    assert!(matches!(e, ControllerError::IneligibleReplica(_)), "{e:?}");
}
