//! Elections: unclean leader election on broker departures and arrivals, ElectLeaders
//! (preferred and unclean), the recorded broker default, and the automatic rebalance's choice.

use std::collections::BTreeMap;

use super::rebalance::imbalanced_partitions;
use super::*;
use crate::cluster::image::NO_LEADER;

fn ok(img: &MetadataImage, cmd: &ControllerCommand) -> (MetadataImage, Outcome) {
    apply(img, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn register(img: &mut MetadataImage, id: i32) -> i64 {
    let cmd = ControllerCommand::RegisterBroker {
        node_id: id,
        incarnation_id: uuid::Uuid::from_u128(0x2000 + img.version as u128),
        host: format!("host{id}"),
        port: 9000 + id as u16,
        rack: None,
    };
    let (next, outcome) = ok(img, &cmd);
    *img = next;
    match outcome {
        Outcome::BrokerRegistered { epoch, .. } => epoch,
        other => panic!("unexpected {other:?}"),
    }
}

fn unfence(img: &MetadataImage, id: i32) -> MetadataImage {
    let epoch = img.brokers[&id].epoch;
    ok(
        img,
        &ControllerCommand::UnfenceBroker { node_id: id, epoch },
    )
    .0
}

fn fence(img: &MetadataImage, id: i32) -> MetadataImage {
    let epoch = img.brokers[&id].epoch;
    ok(img, &ControllerCommand::FenceBroker { node_id: id, epoch }).0
}

fn cluster(ids: &[i32]) -> MetadataImage {
    let mut img = MetadataImage::empty();
    img.cluster_id = "c".into();
    for id in ids {
        register(&mut img, *id);
        img = unfence(&img, *id);
    }
    img
}

/// A topic with this manual assignment, `unclean.leader.election.enable` set when given, and
/// every ISR shrunk to the leader alone (as AlterPartition leaves it when the followers fall
/// behind), so that a departure of the leader leaves no other in-sync replica.
fn topic(
    img: &MetadataImage,
    name: &str,
    assignment: Vec<Vec<i32>>,
    unclean: Option<bool>,
) -> MetadataImage {
    let mut configs = BTreeMap::new();
    if let Some(u) = unclean {
        configs.insert(
            election::UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
            u.to_string(),
        );
    }
    let cmd = ControllerCommand::CreateTopic {
        name: name.into(),
        id: uuid::Uuid::from_u128(0x9000 + img.version as u128),
        partitions: assignment.len() as i32,
        replication_factor: assignment[0].len() as i16,
        configs,
        internal: false,
        assignment: Some(assignment),
    };
    let mut next = ok(img, &cmd).0;
    for p in &mut next.topics.get_mut(name).unwrap().partitions {
        p.isr = vec![p.leader];
    }
    next
}

fn part<'a>(img: &'a MetadataImage, name: &str, index: usize) -> &'a PartitionImage {
    &img.topics[name].partitions[index]
}

/// (leader, isr, leader epoch, partition epoch)
fn state(p: &PartitionImage) -> (i32, Vec<i32>, i32, i32) {
    (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch)
}

fn set_isr(img: &mut MetadataImage, name: &str, index: usize, isr: Vec<i32>) {
    img.topics.get_mut(name).unwrap().partitions[index].isr = isr;
}

fn elect(
    img: &MetadataImage,
    election_type: ElectionType,
    partitions: Option<Vec<(&str, i32)>>,
) -> (MetadataImage, Vec<ElectionResult>) {
    let cmd = ControllerCommand::ElectLeaders {
        election_type,
        partitions: partitions.map(|v| v.into_iter().map(|(t, p)| (t.to_string(), p)).collect()),
    };
    match ok(img, &cmd) {
        (next, Outcome::Elected(results)) => (next, results),
        (_, other) => panic!("unexpected {other:?}"),
    }
}

fn errors(results: &[ElectionResult]) -> Vec<(String, i32, Option<ElectionError>)> {
    results
        .iter()
        .map(|r| (r.topic.clone(), r.partition, r.error))
        .collect()
}

#[test]
fn fencing_the_last_isr_member_elects_uncleanly_only_where_enabled() {
    let img = cluster(&[1, 2, 3]);
    let img = topic(&img, "clean", vec![vec![1, 2, 3]], None);
    let img = topic(&img, "unclean", vec![vec![1, 3, 2]], Some(true));
    let img = topic(&img, "off", vec![vec![1, 2, 3]], Some(false));
    for name in ["clean", "unclean", "off"] {
        assert_eq!(state(part(&img, name, 0)), (1, vec![1], 0, 0));
    }
    let fenced = fence(&img, 1);
    // Default (false) and explicit false: offline, the ISR keeps its last member.
    assert_eq!(state(part(&fenced, "clean", 0)), (NO_LEADER, vec![1], 1, 1));
    assert_eq!(state(part(&fenced, "off", 0)), (NO_LEADER, vec![1], 1, 1));
    // Enabled: the first active replica in replica order (3 before 2) leads, alone in the ISR.
    assert_eq!(state(part(&fenced, "unclean", 0)), (3, vec![3], 1, 1));

    // The old leader comes back: it is no longer in the ISR, so it does not lead.
    let back = unfence(&fenced, 1);
    assert_eq!(state(part(&back, "unclean", 0)), (3, vec![3], 1, 1));
    // The clean partition gets its ISR member back as leader.
    assert_eq!(state(part(&back, "clean", 0)), (1, vec![1], 2, 2));
}

#[test]
fn controlled_shutdown_and_restart_elect_uncleanly_where_enabled() {
    let img = cluster(&[1, 2]);
    let img = topic(&img, "u", vec![vec![1, 2]], Some(true));
    let img = topic(&img, "c", vec![vec![1, 2]], None);
    let epoch = img.brokers[&1].epoch;
    let (down, _) = ok(
        &img,
        &ControllerCommand::BeginControlledShutdown { node_id: 1, epoch },
    );
    assert_eq!(state(part(&down, "u", 0)), (2, vec![2], 1, 1));
    assert_eq!(state(part(&down, "c", 0)), (NO_LEADER, vec![1], 1, 1));

    // A new incarnation of 1 registering: the clean partition keeps it as (unavailable)
    // leader, the unclean one moves to 2.
    let mut restarted = img.clone();
    register(&mut restarted, 1);
    assert!(restarted.brokers[&1].fenced);
    assert_eq!(state(part(&restarted, "c", 0)), (1, vec![1], 0, 0));
    assert_eq!(state(part(&restarted, "u", 0)), (2, vec![2], 1, 1));
}

#[test]
fn fencing_with_no_active_replica_leaves_the_partition_offline_even_if_unclean() {
    let img = cluster(&[1, 2]);
    let img = topic(&img, "u", vec![vec![1, 2]], Some(true));
    let img = fence(&img, 2);
    let img = fence(&img, 1);
    assert_eq!(state(part(&img, "u", 0)), (NO_LEADER, vec![1], 1, 1));
    // 2 comes back: not in the ISR, but no ISR member is active and unclean is enabled.
    let img = unfence(&img, 2);
    assert_eq!(state(part(&img, "u", 0)), (2, vec![2], 2, 2));
}

#[test]
fn unfencing_a_replica_outside_the_isr_elects_it_only_if_unclean() {
    let img = cluster(&[1, 2]);
    let img = topic(&img, "u", vec![vec![1, 2]], Some(true));
    let img = topic(&img, "c", vec![vec![1, 2]], None);
    let img = fence(&img, 2);
    let img = fence(&img, 1);
    let img = unfence(&img, 2);
    assert_eq!(state(part(&img, "u", 0)), (2, vec![2], 2, 2));
    assert_eq!(state(part(&img, "c", 0)), (NO_LEADER, vec![1], 1, 1));
    // An ISR member's return is a clean election, unclean or not.
    let img = unfence(&img, 1);
    assert_eq!(state(part(&img, "c", 0)), (1, vec![1], 2, 2));
    assert_eq!(state(part(&img, "u", 0)), (2, vec![2], 2, 2));
}

#[test]
fn the_broker_default_applies_unless_the_topic_overrides_it() {
    let img = cluster(&[1, 2]);
    let img = topic(&img, "inherit", vec![vec![1, 2]], None);
    let img = topic(&img, "off", vec![vec![1, 2]], Some(false));
    let mut defaults = BTreeMap::new();
    defaults.insert(
        election::UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
        "true".to_string(),
    );
    let (img, _) = ok(
        &img,
        &ControllerCommand::SetBrokerDefaults {
            configs: defaults.clone(),
        },
    );
    assert_eq!(img.broker_defaults, defaults);
    let fenced = fence(&img, 1);
    assert_eq!(state(part(&fenced, "inherit", 0)), (2, vec![2], 1, 1));
    assert_eq!(state(part(&fenced, "off", 0)), (NO_LEADER, vec![1], 1, 1));

    // Enabling it for an offline partition's topic elects at once (Kafka does on the change).
    let alter = ControllerCommand::AlterTopicConfigs {
        name: "off".into(),
        mode: AlterMode::Incremental(vec![(
            election::UNCLEAN_LEADER_ELECTION_ENABLE.into(),
            0,
            Some("true".into()),
        )]),
    };
    let (altered, outcome) = ok(&fenced, &alter);
    assert_eq!(state(part(&altered, "off", 0)), (2, vec![2], 2, 2));
    let Outcome::Topic(t) = outcome else {
        panic!("unexpected {outcome:?}")
    };
    assert_eq!(t.partitions[0].leader, 2);

    // Unknown keys and bad values are refused.
    let mut bad = BTreeMap::new();
    bad.insert("log.retention.ms".to_string(), "1".to_string());
    assert!(matches!(
        apply(&img, &ControllerCommand::SetBrokerDefaults { configs: bad }),
        Err(ControllerError::InvalidConfig(_))
    ));
    let mut bad = BTreeMap::new();
    bad.insert(
        election::UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
        "maybe".to_string(),
    );
    assert!(apply(&img, &ControllerCommand::SetBrokerDefaults { configs: bad }).is_err());
}

#[test]
fn preferred_election_moves_leadership_back_to_the_first_replica() {
    let img = cluster(&[1, 2, 3]);
    let mut img = topic(
        &img,
        "t",
        vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
        None,
    );
    for i in 0..3 {
        set_isr(&mut img, "t", i, vec![1, 2, 3]);
    }
    let fenced = fence(&img, 1);
    assert_eq!(state(part(&fenced, "t", 0)), (2, vec![2, 3], 1, 1));
    let back = unfence(&fenced, 1);
    // Back, but not in the ISR: the preferred replica cannot lead.
    let (same, results) = elect(&back, ElectionType::Preferred, Some(vec![("t", 0)]));
    assert_eq!(
        errors(&results),
        vec![(
            "t".into(),
            0,
            Some(ElectionError::PreferredLeaderNotAvailable)
        )]
    );
    assert_eq!(same.topics, back.topics);
    // Caught up (in the ISR again): it leads; epochs bumped, ISR kept.
    let mut caught_up = back.clone();
    set_isr(&mut caught_up, "t", 0, vec![2, 3, 1]);
    let (elected, results) = elect(
        &caught_up,
        ElectionType::Preferred,
        Some(vec![("t", 0), ("t", 1), ("t", 7), ("nope", 0)]),
    );
    assert_eq!(
        errors(&results),
        vec![
            ("t".into(), 0, None),
            ("t".into(), 1, Some(ElectionError::ElectionNotNeeded)),
            ("t".into(), 7, Some(ElectionError::UnknownTopicOrPartition)),
            (
                "nope".into(),
                0,
                Some(ElectionError::UnknownTopicOrPartition)
            ),
        ]
    );
    assert_eq!(state(part(&elected, "t", 0)), (1, vec![2, 3, 1], 2, 2));
    assert_eq!(part(&elected, "t", 1), part(&caught_up, "t", 1));

    // All partitions (null): those that needed nothing are left out of the answer.
    let (_, results) = elect(&caught_up, ElectionType::Preferred, None);
    assert_eq!(errors(&results), vec![("t".into(), 0, None)]);
}

#[test]
fn preferred_election_needs_the_preferred_replica_active() {
    let img = cluster(&[1, 2]);
    let mut img = topic(&img, "t", vec![vec![1, 2]], None);
    set_isr(&mut img, "t", 0, vec![1, 2]);
    let img = fence(&img, 1);
    let (_, results) = elect(&img, ElectionType::Preferred, Some(vec![("t", 0)]));
    assert_eq!(
        errors(&results),
        vec![(
            "t".into(),
            0,
            Some(ElectionError::PreferredLeaderNotAvailable)
        )]
    );
}

#[test]
fn unclean_election_gives_an_offline_partition_a_leader() {
    let img = cluster(&[1, 2, 3]);
    let img = topic(&img, "t", vec![vec![1, 2, 3], vec![2, 3, 1]], None);
    let img = fence(&img, 1);
    assert_eq!(state(part(&img, "t", 0)), (NO_LEADER, vec![1], 1, 1));
    let (elected, results) = elect(&img, ElectionType::Unclean, Some(vec![("t", 0), ("t", 1)]));
    assert_eq!(
        errors(&results),
        vec![
            ("t".into(), 0, None),
            ("t".into(), 1, Some(ElectionError::ElectionNotNeeded)),
        ]
    );
    // Unclean even though the topic does not allow it on its own: the operator asked.
    assert_eq!(state(part(&elected, "t", 0)), (2, vec![2], 2, 2));

    // An active ISR member is preferred over the replica order (a clean election).
    let img = cluster(&[1, 2, 3]);
    let mut img = topic(&img, "t", vec![vec![1, 2, 3]], None);
    set_isr(&mut img, "t", 0, vec![1, 3]);
    let mut img = fence(&img, 1);
    // Make the partition leaderless with 3 active in the ISR (as after a restart race).
    img.topics.get_mut("t").unwrap().partitions[0].leader = NO_LEADER;
    let (elected, _) = elect(&img, ElectionType::Unclean, Some(vec![("t", 0)]));
    assert_eq!(part(&elected, "t", 0).leader, 3);
    assert_eq!(part(&elected, "t", 0).isr, vec![3]);

    // No active replica at all.
    let img = cluster(&[1]);
    let img = topic(&img, "solo", vec![vec![1]], None);
    let img = fence(&img, 1);
    let (same, results) = elect(&img, ElectionType::Unclean, Some(vec![("solo", 0)]));
    assert_eq!(
        errors(&results),
        vec![(
            "solo".into(),
            0,
            Some(ElectionError::EligibleLeadersNotAvailable)
        )]
    );
    assert_eq!(same.topics, img.topics);
}

#[test]
fn elections_are_bounded_and_round_trip_as_json() {
    let img = cluster(&[1]);
    let many = (0..=crate::limits::ELECT_LEADERS_PARTITIONS_MAX as i32)
        .map(|p| ("t".to_string(), p))
        .collect();
    let cmd = ControllerCommand::ElectLeaders {
        election_type: ElectionType::Preferred,
        partitions: Some(many),
    };
    assert!(matches!(
        apply(&img, &cmd),
        Err(ControllerError::InvalidRequest(_))
    ));
    let cmd = ControllerCommand::ElectLeaders {
        election_type: ElectionType::Unclean,
        partitions: Some(vec![("t".into(), 0)]),
    };
    let json = serde_json::to_string(&cmd).unwrap();
    assert_eq!(
        serde_json::from_str::<ControllerCommand>(&json).unwrap(),
        cmd
    );
    let outcome = Outcome::Elected(vec![ElectionResult {
        topic: "t".into(),
        partition: 0,
        error: Some(ElectionError::ElectionNotNeeded),
    }]);
    let json = serde_json::to_string(&outcome).unwrap();
    assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
    // Images written before broker defaults existed still load.
    let mut value = serde_json::to_value(&img).unwrap();
    value.as_object_mut().unwrap().remove("broker_defaults");
    let old: MetadataImage = serde_json::from_value(value).unwrap();
    assert_eq!(old, img);
}

#[test]
fn rebalance_picks_partitions_of_brokers_above_the_imbalance_ratio() {
    let img = cluster(&[1, 2, 3]);
    // Broker 1 prefers 10 partitions, broker 2 prefers 1, broker 3 prefers 1.
    let mut assignment: Vec<Vec<i32>> = (0..10).map(|_| vec![1, 2, 3]).collect();
    assignment.push(vec![2, 3, 1]);
    assignment.push(vec![3, 1, 2]);
    let mut img = topic(&img, "t", assignment, None);
    for i in 0..12 {
        set_isr(&mut img, "t", i, vec![1, 2, 3]);
    }
    assert!(imbalanced_partitions(&img, 10, 100).is_empty());
    // Broker 1 loses leadership of one partition out of 10: 10% is not above 10%.
    img.topics.get_mut("t").unwrap().partitions[0].leader = 2;
    assert!(imbalanced_partitions(&img, 10, 100).is_empty());
    // Two out of 10: 20% > 10%; but partition 1's preferred replica is not in its ISR.
    img.topics.get_mut("t").unwrap().partitions[1].leader = 3;
    set_isr(&mut img, "t", 1, vec![2, 3]);
    assert_eq!(imbalanced_partitions(&img, 10, 100), vec![("t".into(), 0)]);
    assert_eq!(
        imbalanced_partitions(&img, 0, 100),
        vec![("t".into(), 0)],
        "0%: any imbalance counts"
    );
    assert!(imbalanced_partitions(&img, 20, 100).is_empty());
    // Broker 3 prefers one partition and does not lead it: 100% > 10%.
    img.topics.get_mut("t").unwrap().partitions[11].leader = 1;
    assert_eq!(
        imbalanced_partitions(&img, 10, 100),
        vec![("t".into(), 0), ("t".into(), 11)]
    );
    assert_eq!(imbalanced_partitions(&img, 10, 1), vec![("t".into(), 0)]);
    // A fenced preferred replica is not chosen.
    let fenced = fence(&img, 3);
    assert!(!imbalanced_partitions(&fenced, 10, 100).contains(&("t".into(), 11)));

    // The chosen partitions, elected, leave nothing to choose.
    let chosen = imbalanced_partitions(&img, 10, 100);
    let cmd = ControllerCommand::ElectLeaders {
        election_type: ElectionType::Preferred,
        partitions: Some(chosen),
    };
    let (balanced, _) = ok(&img, &cmd);
    assert_eq!(part(&balanced, "t", 0).leader, 1);
    assert_eq!(part(&balanced, "t", 11).leader, 3);
    assert!(imbalanced_partitions(&balanced, 10, 100).is_empty());
}

#[test]
fn broker_defaults_are_only_what_the_configuration_sets() {
    use crate::config::BrokerConfig;
    let plain = BrokerConfig::build(Some("node.id=1\n"), &[], &[], Some(1)).unwrap();
    assert!(election::broker_defaults(&plain).is_empty());
    let set = BrokerConfig::build(
        Some("node.id=1\nunclean.leader.election.enable = true\n"),
        &[],
        &[],
        Some(1),
    )
    .unwrap();
    let defaults = election::broker_defaults(&set);
    assert_eq!(
        defaults.get(election::UNCLEAN_LEADER_ELECTION_ENABLE),
        Some(&"true".to_string())
    );
    // What the controller records from them is accepted by apply.
    let (img, _) = ok(
        &cluster(&[1]),
        &ControllerCommand::SetBrokerDefaults { configs: defaults },
    );
    assert!(election::unclean_enabled(
        &img,
        "any-topic-without-override"
    ));
}
