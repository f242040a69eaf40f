use super::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as ReqTopicPartitions;

struct Topics;
const T: TopicId = TopicId::from_u128(7);

impl TopicLookup for Topics {
    fn topic_id_and_partitions(&self, name: &str) -> Option<(TopicId, i32)> {
        (name == "t").then_some((T, 4))
    }
    fn topic_name(&self, id: &TopicId) -> Option<String> {
        (*id == T).then(|| "t".to_owned())
    }
    fn topic_names(&self) -> Vec<String> {
        vec!["t".to_owned()]
    }
}

fn hb(member: &str, epoch: i32, owned: Option<&[i32]>) -> ConsumerGroupHeartbeatRequest {
    let mut r = ConsumerGroupHeartbeatRequest::default()
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(30_000);
    if epoch == 0 {
        r.subscribed_topic_names = Some(vec![TopicName(StrBytes::from_static_str("t"))]);
    }
    r.topic_partitions = owned.map(|ps| {
        vec![ReqTopicPartitions::default()
            .with_topic_id(T)
            .with_partitions(ps.to_vec())]
    });
    r
}

fn parts(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .flat_map(|t| t.partitions.clone())
            .collect()
    })
}

#[test]
fn two_members_converge_through_revocation() {
    let cfg = GroupConfig::default();
    let mut g = ConsumerGroup::new("g".into(), 0);
    let c = ClientInfo::default;
    let r = g.heartbeat(1, c(), &hb("a", 0, Some(&[])), &Topics, &cfg, 0);
    assert_eq!(r.error_code, 0);
    assert_eq!(parts(&r), Some(vec![0, 1, 2, 3]));
    let ea = r.member_epoch;
    // b joins: b gets nothing until a releases two partitions.
    let r = g.heartbeat(1, c(), &hb("b", 0, Some(&[])), &Topics, &cfg, 1);
    assert_eq!(parts(&r), Some(vec![]));
    let eb = r.member_epoch;
    let r = g.heartbeat(1, c(), &hb("a", ea, Some(&[0, 1, 2, 3])), &Topics, &cfg, 2);
    let kept = parts(&r).unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        r.member_epoch, ea,
        "epoch moves only after the revocation is acked"
    );
    let r = g.heartbeat(1, c(), &hb("a", ea, Some(&kept)), &Topics, &cfg, 3);
    assert!(r.member_epoch > ea);
    let r = g.heartbeat(1, c(), &hb("b", eb, Some(&[])), &Topics, &cfg, 4);
    let got = parts(&r).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| !kept.contains(p)));
    assert_eq!(g.state_name(), "Stable");
    // Stale epochs are fenced; unknown members are told so.
    let r = g.heartbeat(1, c(), &hb("b", 99, None), &Topics, &cfg, 5);
    assert_eq!(r.error_code, ResponseError::FencedMemberEpoch.code());
    let r = g.heartbeat(1, c(), &hb("zz", 3, None), &Topics, &cfg, 5);
    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code());
    // b leaves: a gets everything back.
    g.heartbeat(1, c(), &hb("b", -1, None), &Topics, &cfg, 6);
    let r = g.heartbeat(
        1,
        c(),
        &hb("a", g.members["a"].member_epoch, Some(&kept)),
        &Topics,
        &cfg,
        7,
    );
    assert_eq!(parts(&r).map(|p| p.len()), Some(4));
}

#[test]
fn session_timeout_fences_member() {
    let cfg = GroupConfig::default();
    let mut g = ConsumerGroup::new("g".into(), 0);
    g.heartbeat(
        1,
        ClientInfo::default(),
        &hb("a", 0, Some(&[])),
        &Topics,
        &cfg,
        0,
    );
    g.tick(i64::from(cfg.consumer_session_timeout_ms) - 1, &cfg);
    assert!(!g.is_empty());
    g.tick(i64::from(cfg.consumer_session_timeout_ms), &cfg);
    assert!(g.is_empty());
    assert_eq!(g.state_name(), "Empty");
}

#[test]
fn static_member_temporary_leave_keeps_partitions_for_its_successor() {
    let cfg = GroupConfig::default();
    let mut g = ConsumerGroup::new("g".into(), 0);
    let mut join = hb("a1", 0, Some(&[]));
    join.instance_id = Some(StrBytes::from_static_str("i"));
    let r = g.heartbeat(1, ClientInfo::default(), &join, &Topics, &cfg, 0);
    assert_eq!(parts(&r).map(|p| p.len()), Some(4));
    let epoch = r.member_epoch;
    let r = g.heartbeat(
        1,
        ClientInfo::default(),
        &hb("a1", -2, None),
        &Topics,
        &cfg,
        1,
    );
    assert_eq!(r.member_epoch, -2);
    assert_eq!(
        g.group_epoch(),
        epoch,
        "no rebalance on a static member's temporary leave"
    );
    let mut back = hb("a2", 0, Some(&[]));
    back.instance_id = Some(StrBytes::from_static_str("i"));
    let r = g.heartbeat(1, ClientInfo::default(), &back, &Topics, &cfg, 2);
    assert_eq!(parts(&r).map(|p| p.len()), Some(4));
    assert_eq!(g.group_epoch(), epoch);
    assert!(!g.members.contains_key("a1"));
}

fn hb_regex(member: &str, regex: &str) -> ConsumerGroupHeartbeatRequest {
    let mut r = hb(member, 0, Some(&[]));
    r.subscribed_topic_names = None;
    r.subscribed_topic_regex = Some(StrBytes::from_string(regex.to_owned()));
    r
}

/// KIP-848 `SubscribedTopicRegex`: matched against whole topic names (never internal
/// topics), resolved from the member's next heartbeat on (Kafka resolves asynchronously);
/// an invalid one is INVALID_REGULAR_EXPRESSION (librdkafka test 0045's regex
/// subscriptions with group.protocol=consumer).
#[test]
fn regex_subscription_matches_whole_topic_names() {
    let cfg = GroupConfig::default();
    let c = ClientInfo::default;
    let mut g = ConsumerGroup::new("g".into(), 0);
    let r = g.heartbeat(1, c(), &hb_regex("a", "^t$|other"), &Topics, &cfg, 0);
    assert_eq!(r.error_code, 0);
    assert_eq!(parts(&r), Some(vec![]));
    let epoch = r.member_epoch;
    let r = g.heartbeat(1, c(), &hb("a", epoch, Some(&[])), &Topics, &cfg, 1);
    assert_eq!(r.error_code, 0);
    assert_eq!(parts(&r), Some(vec![0, 1, 2, 3]));
    let mut g = ConsumerGroup::new("g".into(), 0);
    // An empty pattern finds a match inside every name; it matches no whole name.
    let r = g.heartbeat(1, c(), &hb_regex("a", "(?:)"), &Topics, &cfg, 0);
    let r = g.heartbeat(
        1,
        c(),
        &hb("a", r.member_epoch, Some(&[])),
        &Topics,
        &cfg,
        1,
    );
    assert_eq!(r.error_code, 0);
    assert_ne!(parts(&r), Some(vec![0, 1, 2, 3]));
    let r = g.heartbeat(1, c(), &hb_regex("b", "(t"), &Topics, &cfg, 0);
    assert_eq!(r.error_code, ResponseError::InvalidRegularExpression.code());
}

#[test]
fn txn_commit_rules() {
    let cfg = GroupConfig::default();
    let mut g = ConsumerGroup::new("g".into(), 0);
    // An empty group, or no member fields at all: accepted.
    assert_eq!(g.validate_txn_commit("", None, -1), Ok(()));
    let r = g.heartbeat(
        1,
        ClientInfo::default(),
        &hb("a", 0, Some(&[])),
        &Topics,
        &cfg,
        0,
    );
    assert_eq!(r.error_code, 0);
    let epoch = r.member_epoch;
    assert_eq!(g.validate_txn_commit("", None, -1), Ok(()));
    assert_eq!(g.validate_txn_commit("a", None, epoch), Ok(()));
    assert_eq!(
        g.validate_txn_commit("a", None, epoch + 1),
        Err(ResponseError::FencedMemberEpoch)
    );
    assert_eq!(
        g.validate_txn_commit("a", None, epoch - 1),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_txn_commit("x", None, epoch),
        Err(ResponseError::UnknownMemberId)
    );
}
