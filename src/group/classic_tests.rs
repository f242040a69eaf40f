use super::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::GroupId;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn join_req(member: &str, instance: Option<&str>, protocols: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_group_instance_id(instance.map(|s| StrBytes::from_string(s.to_owned())))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|p| {
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_string(p.to_string()))
                        .with_metadata(Bytes::from(p.to_string()))
                })
                .collect(),
        )
}

fn now<T>(r: Reply<T>) -> T {
    match r {
        Reply::Now(t) => t,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
    match r {
        Reply::Later(rx) => rx,
        Reply::Now(_) => panic!("expected a parked answer"),
    }
}

fn client() -> ClientInfo {
    ClientInfo {
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
    }
}

/// Joins a dynamic member through the MEMBER_ID_REQUIRED handshake; returns its id and parked join.
fn handshake(
    g: &mut ClassicGroup,
    protocols: &[&str],
    t: i64,
) -> (String, oneshot::Receiver<JoinGroupResponse>) {
    let r = now(g.join(5, client(), &join_req("", None, protocols), &config(), t));
    assert_eq!(r.error_code, ResponseError::MemberIdRequired.code());
    let id = r.member_id.as_str().to_owned();
    let rx = later(g.join(5, client(), &join_req(&id, None, protocols), &config(), t));
    (id, rx)
}

fn sync_req(member: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_generation_id(generation)
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(m.to_string()))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        )
}

#[test]
fn two_members_rebalance_and_sync() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let (a, mut rx_a) = handshake(&mut g, &["range", "roundrobin"], 0);
    // First member of an Empty group waits for the (zero) initial delay.
    g.tick(1, &config());
    let ja = rx_a.try_recv().unwrap().unwrap();
    assert_eq!(ja.generation_id, 1);
    assert_eq!(ja.leader.as_str(), a);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let sa = later(g.sync(5, &sync_req(&a, 1, &[(&a, "A")]), 2));
    assert!(g.take_dirty());
    g.assignment_persisted(1, true, 2, &config());
    assert_eq!(g.state(), GroupState::Stable);
    drop(sa);

    // A second member joins: the leader must rejoin; then both get generation 2.
    let (b, mut rx_b) = handshake(&mut g, &["roundrobin"], 3);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&a, None, 1, 4),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut rx_a = later(g.join(
        5,
        client(),
        &join_req(&a, None, &["range", "roundrobin"]),
        &config(),
        5,
    ));
    let ja = rx_a.try_recv().unwrap().unwrap();
    let jb = rx_b.try_recv().unwrap().unwrap();
    assert_eq!(ja.generation_id, 2);
    assert_eq!(ja.protocol_name.as_ref().unwrap().as_str(), "roundrobin");
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty());
    let mut sb = later(g.sync(5, &sync_req(&b, 2, &[]), 6));
    assert!(sb.try_recv().unwrap().is_none());
    let mut sa = later(g.sync(5, &sync_req(&a, 2, &[(&a, "A2"), (&b, "B2")]), 7));
    assert!(
        sb.try_recv().unwrap().is_none(),
        "followers wait for the durable assignment"
    );
    assert!(g.take_dirty());
    g.assignment_persisted(2, true, 7, &config());
    assert_eq!(sb.try_recv().unwrap().unwrap().assignment.as_ref(), b"B2");
    assert_eq!(sa.try_recv().unwrap().unwrap().assignment.as_ref(), b"A2");
    assert_eq!(
        g.heartbeat(&b, None, 1, 8),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(g.heartbeat(&b, None, 2, 8), Ok(()));
    assert_eq!(
        g.heartbeat("nobody", None, 2, 8),
        Err(ResponseError::UnknownMemberId)
    );

    // b stops heartbeating: after its session timeout the group rebalances without it.
    g.heartbeat(&a, None, 2, 9_000).unwrap();
    g.tick(10_009, &config());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.member_count(), 1);
    let mut rx_a = later(g.join(
        5,
        client(),
        &join_req(&a, None, &["range", "roundrobin"]),
        &config(),
        10_010,
    ));
    let ja = rx_a.try_recv().unwrap().unwrap();
    assert_eq!(ja.generation_id, 3);
    assert_eq!(ja.protocol_name.as_ref().unwrap().as_str(), "range");
}

#[test]
fn new_member_waiting_in_join_outlives_its_session_timeout() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let (a, _rx_a) = handshake(&mut g, &["range"], 0);
    g.tick(1, &config());
    drop(later(g.sync(5, &sync_req(&a, 1, &[(&a, "A")]), 2)));
    g.assignment_persisted(1, true, 2, &config());
    // b joins; a is slow to notice (its heartbeats say REBALANCE_IN_PROGRESS) and rejoins
    // only after b's 10 s session timeout: b's parked JoinGroup keeps it in (KIP-394).
    let (b, mut rx_b) = handshake(&mut g, &["range"], 3);
    for t in [5_000, 10_000, 15_000] {
        assert_eq!(
            g.heartbeat(&a, None, 1, t),
            Err(ResponseError::RebalanceInProgress)
        );
        g.tick(t, &config());
    }
    assert_eq!(g.member_count(), 2);
    assert!(rx_b.try_recv().unwrap().is_none());
    // A stale generation is ILLEGAL_GENERATION even while the group rebalances.
    assert_eq!(
        g.heartbeat(&a, None, 0, 15_000),
        Err(ResponseError::IllegalGeneration)
    );
    let mut rx_a = later(g.join(
        5,
        client(),
        &join_req(&a, None, &["range"]),
        &config(),
        15_001,
    ));
    let ja = rx_a.try_recv().unwrap().unwrap();
    let jb = rx_b.try_recv().unwrap().unwrap();
    assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
    assert_eq!(jb.member_id.as_str(), b);
    assert_eq!(ja.members.len(), 2);
}

#[test]
fn lone_leader_rejoining_a_stable_group_completes_at_once() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let (a, _rx_a) = handshake(&mut g, &["range"], 0);
    g.tick(1, &config());
    drop(later(g.sync(5, &sync_req(&a, 1, &[(&a, "A")]), 2)));
    g.assignment_persisted(1, true, 2, &config());
    assert_eq!(g.state(), GroupState::Stable);
    // Every member has joined: no waiting for the 30 s rebalance timeout.
    let mut rx = later(g.join(5, client(), &join_req(&a, None, &["range"]), &config(), 3));
    let j = rx.try_recv().unwrap().unwrap();
    assert_eq!(j.generation_id, 2);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn leave_and_commit_rules() {
    let mut g = ClassicGroup::new("g".into(), 0);
    assert_eq!(g.validate_commit("", None, -1, 0), Ok(()));
    let (a, mut rx) = handshake(&mut g, &["range"], 0);
    g.tick(1, &config());
    rx.try_recv().unwrap().unwrap();
    assert_eq!(
        g.validate_commit(&a, None, 1, 2),
        Err(ResponseError::RebalanceInProgress)
    );
    drop(later(g.sync(5, &sync_req(&a, 1, &[]), 2)));
    assert!(g.take_dirty());
    g.assignment_persisted(1, true, 2, &config());
    assert_eq!(g.validate_commit(&a, None, 1, 2), Ok(()));
    assert_eq!(
        g.validate_commit(&a, None, 0, 2),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_commit("x", None, 1, 2),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(g.leave(&a, None, 3), Ok(()));
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation(), 2);
    assert_eq!(g.leave(&a, None, 3), Err(ResponseError::UnknownMemberId));
}

#[test]
fn static_member_rejoin_without_rebalance() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let mut rx = later(g.join(
        5,
        client(),
        &join_req("", Some("i1"), &["range"]),
        &config(),
        0,
    ));
    g.tick(1, &config());
    let j = rx.try_recv().unwrap().unwrap();
    let old = j.member_id.as_str().to_owned();
    drop(later(g.sync(5, &sync_req(&old, 1, &[(&old, "A")]), 2)));
    assert!(g.take_dirty());
    g.assignment_persisted(1, true, 2, &config());
    assert_eq!(g.state(), GroupState::Stable);
    // Restart: same instance id, no member id → same generation, no rebalance.
    let j = now(g.join(
        5,
        client(),
        &join_req("", Some("i1"), &["range"]),
        &config(),
        3,
    ));
    assert_eq!(j.error_code, 0);
    assert_eq!(j.generation_id, 1);
    assert_eq!(g.state(), GroupState::Stable);
    let new = j.member_id.as_str().to_owned();
    assert_ne!(new, old);
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&old, Some("i1"), 1, 4),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(g.heartbeat(&new, Some("i1"), 1, 4), Ok(()));
    let s = now(g.sync(5, &sync_req(&new, 1, &[]), 5));
    assert_eq!(s.assignment.as_ref(), b"A");
}

#[test]
fn inconsistent_protocols_and_bad_timeouts_are_rejected() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let (_a, _rx) = handshake(&mut g, &["range"], 0);
    let r = now(g.join(
        5,
        client(),
        &join_req("", None, &["roundrobin"]),
        &config(),
        1,
    ));
    assert_eq!(
        r.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let mut bad = join_req("", None, &["range"]);
    bad.session_timeout_ms = 10;
    let r = now(g.join(5, client(), &bad, &config(), 1));
    assert_eq!(r.error_code, ResponseError::InvalidSessionTimeout.code());
}

#[test]
fn metadata_record_round_trip_restores_stable_group() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let (a, mut rx) = handshake(&mut g, &["range"], 0);
    g.tick(1, &config());
    rx.try_recv().unwrap().unwrap();
    drop(later(g.sync(5, &sync_req(&a, 1, &[(&a, "A")]), 2)));
    assert!(g.take_dirty());
    g.assignment_persisted(1, true, 2, &config());
    let rec = g.to_record();
    let mut h = ClassicGroup::new("g".into(), 100);
    h.load_record(rec, 100);
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat(&a, None, 1, 101), Ok(()));
    assert_eq!(
        now(h.sync(5, &sync_req(&a, 1, &[]), 102))
            .assignment
            .as_ref(),
        b"A"
    );
}

#[test]
fn a_huge_rebalance_timeout_is_capped_by_the_max_session_timeout() {
    let cfg = GroupConfig {
        max_session_timeout_ms: 60_000,
        ..config()
    };
    let mut g = ClassicGroup::new("g".into(), 0);
    let (a, _rx_a) = handshake(&mut g, &["range"], 0);
    g.tick(1, &cfg);
    drop(later(g.sync(5, &sync_req(&a, 1, &[(&a, "A")]), 2)));
    g.assignment_persisted(1, true, 2, &cfg);
    // b asks for a rebalance timeout of 24 days; a never rejoins.
    let hostile = join_req("", None, &["range"]).with_rebalance_timeout_ms(i32::MAX);
    let r = now(g.join(5, client(), &hostile, &cfg, 3));
    let b = r.member_id.as_str().to_owned();
    let hostile = hostile.with_member_id(StrBytes::from_string(b.clone()));
    let mut rx_b = later(g.join(5, client(), &hostile, &cfg, 3));
    // a stays alive (its heartbeats hear REBALANCE_IN_PROGRESS) but never rejoins.
    for t in (5_000..=55_000).step_by(5_000) {
        assert_eq!(
            g.heartbeat(&a, None, 1, t),
            Err(ResponseError::RebalanceInProgress)
        );
        g.tick(t, &cfg);
    }
    g.tick(3 + 59_999, &cfg);
    assert!(rx_b.try_recv().unwrap().is_none());
    g.tick(3 + 60_000, &cfg);
    let jb = rx_b
        .try_recv()
        .unwrap()
        .expect("join answered within the cap");
    assert_eq!(jb.member_id.as_str(), b);
    assert_eq!(jb.generation_id, 2);
}

/// librdkafka's test 0045 (subscribe_many_updates): a client that changes its subscription
/// while its first JoinGroup is in flight drops that answer, member id included, and joins
/// again with an empty id. The orphaned id holds a later rebalance for its session timeout
/// (Kafka's pending-member expiry), not for the rebalance timeout.
#[test]
fn pending_member_id_that_never_returns_holds_a_rebalance_for_its_session_timeout_only() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let orphan = now(g.join(5, client(), &join_req("", None, &["range"]), &config(), 0));
    assert_eq!(orphan.error_code, ResponseError::MemberIdRequired.code());
    let (a, mut rx) = handshake(&mut g, &["range"], 0);
    // The Empty group's initial delay ends the first join phase, orphan or not.
    g.tick(1, &config());
    assert_eq!(rx.try_recv().unwrap().unwrap().generation_id, 1);
    drop(later(g.sync(5, &sync_req(&a, 1, &[(&a, "A")]), 2)));
    g.assignment_persisted(1, true, 2, &config());
    assert_eq!(g.state(), GroupState::Stable);

    // The leader rejoins (as after a subscription change): every member is in, but the
    // orphan's id is still pending, so the join phase waits ...
    let mut rx = later(g.join(5, client(), &join_req(&a, None, &["range"]), &config(), 3));
    g.tick(9_999, &config());
    assert_eq!(rx.try_recv().unwrap(), None);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // ... until the orphan's session timeout (10 s from its JoinGroup), far short of the
    // 30 s rebalance timeout.
    assert!(g.next_deadline_ms().is_some_and(|d| d <= 10_000));
    g.tick(10_000, &config());
    let j = rx.try_recv().unwrap().unwrap();
    assert_eq!(j.generation_id, 2);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

/// A pending member id that leaves (LeaveGroup) releases a join phase waiting for it.
#[test]
fn pending_member_leaving_completes_the_join_phase() {
    let mut g = ClassicGroup::new("g".into(), 0);
    let (a, mut rx) = handshake(&mut g, &["range"], 0);
    g.tick(1, &config());
    assert_eq!(rx.try_recv().unwrap().unwrap().generation_id, 1);
    drop(later(g.sync(5, &sync_req(&a, 1, &[(&a, "A")]), 2)));
    g.assignment_persisted(1, true, 2, &config());
    let pending = now(g.join(5, client(), &join_req("", None, &["range"]), &config(), 3));
    let mut rx = later(g.join(5, client(), &join_req(&a, None, &["range"]), &config(), 3));
    assert_eq!(rx.try_recv().unwrap(), None);
    assert_eq!(g.leave(pending.member_id.as_str(), None, 4), Ok(()));
    assert_eq!(rx.try_recv().unwrap().unwrap().generation_id, 2);
}

#[test]
fn txn_commit_rules() {
    let mut g = ClassicGroup::new("g".into(), 0);
    // No member fields (TxnOffsetCommit v0-2, or a producer outside the group): accepted.
    assert_eq!(g.validate_txn_commit("", None, -1), Ok(()));
    let (a, mut rx) = handshake(&mut g, &["range"], 0);
    g.tick(1, &config());
    rx.try_recv().unwrap().unwrap();
    // A rebalance in progress does not refuse a transactional commit (it does a plain one).
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.validate_txn_commit(&a, None, 1), Ok(()));
    assert_eq!(g.validate_txn_commit("", None, -1), Ok(()));
    assert_eq!(
        g.validate_txn_commit(&a, None, 0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_txn_commit("x", None, 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_txn_commit(&a, Some("i9"), 1),
        Err(ResponseError::UnknownMemberId)
    );
    // A static member's old incarnation is fenced.
    let mut s = ClassicGroup::new("s".into(), 0);
    let mut rx = later(s.join(
        5,
        client(),
        &join_req("", Some("i1"), &["range"]),
        &config(),
        0,
    ));
    s.tick(1, &config());
    let member = rx
        .try_recv()
        .unwrap()
        .unwrap()
        .member_id
        .as_str()
        .to_owned();
    assert_eq!(s.validate_txn_commit(&member, Some("i1"), 1), Ok(()));
    assert_eq!(
        s.validate_txn_commit("old", Some("i1"), 1),
        Err(ResponseError::FencedInstanceId)
    );
    g.mark_dead(2);
    assert_eq!(
        g.validate_txn_commit(&a, None, 1),
        Err(ResponseError::CoordinatorNotAvailable)
    );
}
