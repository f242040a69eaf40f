//! The classic group state machine (JoinGroup / SyncGroup / Heartbeat / LeaveGroup),
//! after Kafka's `GroupCoordinator` + `GroupMetadata`:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / deadline──▶ CompletingRebalance
//!   ▲                  ▲      │ (no members left)                   │ leader SyncGroup
//!   └──────────────────┼──────┘                                     ▼
//!                      └──── member joins/leaves/expires ────── Stable
//! ```
//! (`Dead` is a deleted group; the coordinator drops it from its map.)
//!
//! Pure logic: every entry point takes `now_ms`; long-poll JoinGroup/SyncGroup answers
//! are local oneshot channels completed by later calls or by [`ClassicGroup::tick`].
//! Owned by the coordinator shard of the group; never borrowed across an `.await`.

use std::collections::HashMap;

use bytes::Bytes;
use futures::channel::oneshot;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{
    JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::offsets::GroupOffsets;
use super::records::{GroupMetadataRecord, MemberRecord};
use super::request::ClientInfo;
use super::GroupConfig;

mod liveness;
mod persist;
mod responses;

use responses::{build_sync, fail_waiters};
pub use responses::{join_error, sync_error};

/// The state of a classic group (Kafka's names, as DescribeGroups/ListGroups show them).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup/SyncGroup answer: now, or later through the channel.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// One member of a classic group.
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client: ClientInfo,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    is_new: bool,
    join_waiter: Option<(i16, oneshot::Sender<JoinGroupResponse>)>,
    sync_waiter: Option<(i16, oneshot::Sender<SyncGroupResponse>)>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A classic group and its committed offsets. Lives on the group's coordinator shard.
pub struct ClassicGroup {
    pub group_id: String,
    state: GroupState,
    state_timestamp_ms: i64,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: HashMap<String, i64>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    join_deadline_ms: Option<i64>,
    sync_deadline_ms: Option<i64>,
    /// Some(remaining rebalance budget) while the initial rebalance delay runs.
    initial_delay_remaining_ms: Option<i64>,
    new_member_added: bool,
    /// The metadata record must be (re)written.
    dirty: bool,
    /// The leader's assignment waits for its metadata record to be durable before the
    /// members get it (Kafka's order); see [`ClassicGroup::assignment_persisted`].
    assignment_persisting: bool,
    pub offsets: GroupOffsets,
}

/// How long a new member's first parked JoinGroup keeps it in the group while the join
/// phase waits for others (Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`, KIP-394).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// Answers that do not long-poll.
pub type GroupResult = Result<(), ResponseError>;

impl ClassicGroup {
    pub fn new(group_id: String, now_ms: i64) -> Self {
        ClassicGroup {
            group_id,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline_ms: None,
            sync_deadline_ms: None,
            initial_delay_remaining_ms: None,
            new_member_added: false,
            dirty: false,
            assignment_persisting: false,
            offsets: GroupOffsets::default(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
    /// When the group entered its current state (offset retention counts from Empty).
    pub fn state_timestamp_ms(&self) -> i64 {
        self.state_timestamp_ms
    }
    /// Takes the "metadata record must be written" flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Handles JoinGroup. Validation of session timeouts is done here too.
    pub fn join(
        &mut self,
        version: i16,
        client: ClientInfo,
        req: &JoinGroupRequest,
        config: &GroupConfig,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let member_id = req.member_id.as_str().to_owned();
        let fail = |e: ResponseError| Reply::Now(join_error(version, &member_id, e));
        if req.session_timeout_ms < config.min_session_timeout_ms
            || req.session_timeout_ms > config.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata.clone()))
            .collect();
        if !self.supports_protocols(req.protocol_type.as_str(), &protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let instance_id = req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned());
        // Rebalance timeout defaults to the session timeout before v1. Capped by
        // group.max.session.timeout.ms, so no client can park the group's joins (and
        // every other member's parked JoinGroup) for longer than that.
        let rebalance_timeout_ms = if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        }
        .clamp(0, config.max_session_timeout_ms.max(0));
        let join = JoinParams {
            version,
            client,
            instance_id,
            protocol_type: req.protocol_type.as_str().to_owned(),
            protocols,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms,
        };
        if member_id.is_empty() {
            self.join_unknown(join, config, now_ms)
        } else {
            self.join_known(member_id, join, config, now_ms)
        }
    }

    fn join_unknown(
        &mut self,
        join: JoinParams,
        config: &GroupConfig,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let version = join.version;
        if let Some(instance) = join.instance_id.clone() {
            let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(old_id, new_id, join, now_ms);
            }
            if self.members.len() >= config.max_group_size {
                return Reply::Now(join_error(version, "", ResponseError::GroupMaxSizeReached));
            }
            return self.add_member_and_rebalance(new_id, join, config, now_ms);
        }
        let new_id = format!("{}-{}", join.client.client_id, uuid::Uuid::new_v4());
        if self.members.len() + self.pending_members.len() >= config.max_group_size {
            return Reply::Now(join_error(version, "", ResponseError::GroupMaxSizeReached));
        }
        if version >= 4 {
            // KIP-394: hand out the id first, so a client that times out can rejoin
            // with it instead of leaving an orphan member behind.
            self.pending_members
                .insert(new_id.clone(), now_ms + i64::from(join.session_timeout_ms));
            return Reply::Now(join_error(
                version,
                &new_id,
                ResponseError::MemberIdRequired,
            ));
        }
        self.add_member_and_rebalance(new_id, join, config, now_ms)
    }

    fn join_known(
        &mut self,
        member_id: String,
        join: JoinParams,
        config: &GroupConfig,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let version = join.version;
        if self.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(member_id, join, config, now_ms);
        }
        if let Err(e) = self.check_member(&member_id, join.instance_id.as_deref()) {
            return Reply::Now(join_error(version, &member_id, e));
        }
        match self.state {
            GroupState::PreparingRebalance => {
                let rx = self.update_member(&member_id, join, now_ms);
                self.try_complete_join(now_ms);
                rx
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let unchanged = self
                    .members
                    .get(&member_id)
                    .is_some_and(|m| m.protocols == join.protocols);
                let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                let stable_follower = self.state == GroupState::Stable && !is_leader;
                if unchanged && (self.state == GroupState::CompletingRebalance || stable_follower) {
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.last_heartbeat_ms = now_ms;
                    }
                    Reply::Now(self.join_response(version, &member_id, false))
                } else {
                    let rx = self.update_member(&member_id, join, now_ms);
                    self.prepare_rebalance(now_ms, config);
                    // Kafka tries the join at once: a lone leader's rejoin completes it.
                    self.try_complete_join(now_ms);
                    rx
                }
            }
            GroupState::Empty | GroupState::Dead => Reply::Now(join_error(
                version,
                &member_id,
                ResponseError::UnknownMemberId,
            )),
        }
    }

    /// A static member rejoined with an unknown member id: it takes the old member's
    /// place. When nothing it subscribes to changed, no rebalance (KIP-345).
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        join: JoinParams,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        let version = join.version;
        let Some(mut member) = self.members.shift_remove(&old_id) else {
            return Reply::Now(join_error(version, "", ResponseError::UnknownMemberId));
        };
        if let Some((v, tx)) = member.join_waiter.take() {
            let _ = tx.send(join_error(v, &old_id, ResponseError::FencedInstanceId));
        }
        if let Some((v, tx)) = member.sync_waiter.take() {
            let _ = tx.send(sync_error(v, ResponseError::FencedInstanceId));
        }
        member.member_id = new_id.clone();
        member.client = join.client.clone();
        member.last_heartbeat_ms = now_ms;
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.protocols = join.protocols.clone();
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &join.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        self.dirty = true;
        // Kafka's rule (KIP-345): no rebalance unless the protocol the group would select
        // changes; subscription metadata may differ between incarnations.
        let protocol_unchanged = self.select_protocol() == self.protocol;
        match self.state {
            GroupState::Stable if protocol_unchanged => {
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                // v9+: the leader must not reassign (KIP-814); older leaders get the
                // members and their SyncGroup in Stable just returns the assignment.
                Reply::Now(self.join_response(version, &new_id, is_leader && version >= 9))
            }
            GroupState::PreparingRebalance => {
                let rx = self.set_join_waiter(&new_id, version);
                self.try_complete_join(now_ms);
                rx
            }
            _ => {
                let rx = self.set_join_waiter(&new_id, version);
                // Not Empty (the member is here), so the initial delay setting is unused.
                let config = GroupConfig::default();
                self.prepare_rebalance(now_ms, &config);
                self.try_complete_join(now_ms);
                rx
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        join: JoinParams,
        config: &GroupConfig,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        if self.members.is_empty() {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        if let Some(instance) = &join.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: join.instance_id.clone(),
            client: join.client,
            session_timeout_ms: join.session_timeout_ms,
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            protocols: join.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            is_new: true,
            join_waiter: None,
            sync_waiter: None,
        };
        self.members.insert(member_id.clone(), member);
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if self.state == GroupState::PreparingRebalance && self.initial_delay_remaining_ms.is_some()
        {
            self.new_member_added = true;
        }
        let rx = self.set_join_waiter(&member_id, join.version);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now_ms, config);
        }
        // Waits out the initial delay of a group that was Empty; otherwise completes as
        // soon as every member has joined (Kafka's DelayedJoin, tried at once).
        self.try_complete_join(now_ms);
        rx
    }

    fn update_member(
        &mut self,
        member_id: &str,
        join: JoinParams,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        if let Some(m) = self.members.get_mut(member_id) {
            m.protocols = join.protocols;
            m.session_timeout_ms = join.session_timeout_ms;
            m.rebalance_timeout_ms = join.rebalance_timeout_ms;
            m.client = join.client;
            m.last_heartbeat_ms = now_ms;
        }
        self.set_join_waiter(member_id, join.version)
    }

    fn set_join_waiter(&mut self, member_id: &str, version: i16) -> Reply<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some((v, old)) = m.join_waiter.replace((version, tx)) {
                // A client retried while its earlier JoinGroup was parked.
                let _ = old.send(join_error(v, member_id, ResponseError::UnknownMemberId));
            }
        }
        Reply::Later(rx)
    }

    /// Handles SyncGroup.
    pub fn sync(
        &mut self,
        version: i16,
        req: &SyncGroupRequest,
        now_ms: i64,
    ) -> Reply<SyncGroupResponse> {
        let member_id = req.member_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        let fail = |e| Reply::Now(sync_error(version, e));
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(e) = self.check_member(member_id, instance) {
            return fail(e);
        }
        if req.generation_id != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t.as_str()) != self.protocol_type.as_deref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n.as_str()) != self.protocol.as_deref());
        if type_mismatch || name_mismatch {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let Some(m) = self.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                m.last_heartbeat_ms = now_ms;
                let assignment = m.assignment.clone();
                Reply::Now(self.sync_response(version, assignment))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let Some(m) = self.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                m.last_heartbeat_ms = now_ms;
                m.sync_waiter = Some((version, tx));
                if self.leader.as_deref() == Some(member_id) && !self.assignment_persisting {
                    let mut given: HashMap<&str, &Bytes> = HashMap::new();
                    for a in &req.assignments {
                        given.insert(a.member_id.as_str(), &a.assignment);
                    }
                    for m in self.members.values_mut() {
                        m.assignment = given
                            .get(m.member_id.as_str())
                            .map(|b| (*b).clone())
                            .unwrap_or_default();
                    }
                    self.assignment_persisting = true;
                    self.dirty = true;
                }
                Reply::Later(rx)
            }
        }
    }

    /// The leader's assignment for `generation` was written (`ok`) or not: answer the
    /// parked SyncGroups and become Stable, or start over with a new rebalance.
    pub fn assignment_persisted(
        &mut self,
        generation: i32,
        ok: bool,
        now_ms: i64,
        config: &GroupConfig,
    ) {
        let current =
            self.state == GroupState::CompletingRebalance && self.generation == generation;
        if !std::mem::take(&mut self.assignment_persisting) || !current {
            return;
        }
        if ok {
            self.transition(GroupState::Stable, now_ms);
            self.sync_deadline_ms = None;
            self.complete_syncs();
        } else {
            self.prepare_rebalance(now_ms, config);
        }
    }

    /// Handles one member of a LeaveGroup.
    pub fn leave(&mut self, member_id: &str, instance: Option<&str>, now_ms: i64) -> GroupResult {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let member_id = match instance {
            Some(instance) => match self.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(known) if !member_id.is_empty() && known != member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(known) => known.clone(),
            },
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    // Kafka's `removePendingMemberAndUpdateGroup`: the join phase may
                    // have been waiting only for this one.
                    self.try_complete_join(now_ms);
                    return Ok(());
                }
                if !self.members.contains_key(member_id) {
                    return Err(ResponseError::UnknownMemberId);
                }
                member_id.to_owned()
            }
        };
        self.remove_member_and_rebalance(&member_id, now_ms);
        Ok(())
    }

    /// Whether an OffsetCommit with this identity may commit (Kafka's rules; a
    /// generation < 0 is the "simple consumer"/admin commit, allowed only when Empty).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> GroupResult {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let (Some(instance), false) = (instance, member_id.is_empty()) {
            if self
                .static_members
                .get(instance)
                .is_some_and(|m| m != member_id)
            {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        self.touch(member_id, now_ms);
        Ok(())
    }

    /// TxnOffsetCommit's member check (Kafka's `validateOffsetCommit` for a transactional
    /// commit): the member fields are checked only when one is given (v0-2 send none), and a
    /// rebalance in progress does not refuse it.
    pub fn validate_txn_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> GroupResult {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() && instance.is_none() {
            return Ok(());
        }
        match instance {
            Some(instance) => match self.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(known) if known != member_id => return Err(ResponseError::FencedInstanceId),
                Some(_) => {}
            },
            None if !self.members.contains_key(member_id) => {
                return Err(ResponseError::UnknownMemberId)
            }
            None => {}
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    // ---- helpers ----

    fn check_member(&self, member_id: &str, instance: Option<&str>) -> GroupResult {
        if let Some(instance) = instance {
            match self.static_members.get(instance) {
                Some(known) if known != member_id => return Err(ResponseError::FencedInstanceId),
                Some(_) => {}
                None => return Err(ResponseError::UnknownMemberId),
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    fn touch(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// The protocols every member supports (candidates for selection).
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return vec![];
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Kafka's vote: each member votes for its most preferred candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = candidates.iter().map(|c| (c.as_str(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.get_mut(name.as_str()) {
                    *v += 1;
                }
            }
        }
        // Ties go to the earliest candidate in the first member's preference order.
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name, count));
            }
        }
        best.map(|(n, _)| n.to_owned())
    }

    fn prepare_rebalance(&mut self, now_ms: i64, config: &GroupConfig) {
        self.assignment_persisting = false;
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some((v, tx)) = m.sync_waiter.take() {
                    let _ = tx.send(sync_error(v, ResponseError::RebalanceInProgress));
                }
            }
        }
        let rebalance_timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        if self.state == GroupState::Empty {
            let delay = config.initial_rebalance_delay_ms.min(rebalance_timeout);
            self.initial_delay_remaining_ms = Some((rebalance_timeout - delay).max(0));
            self.new_member_added = false;
            self.join_deadline_ms = Some(now_ms + delay);
        } else {
            self.initial_delay_remaining_ms = None;
            self.join_deadline_ms = Some(now_ms + rebalance_timeout);
        }
        self.sync_deadline_ms = None;
        self.transition(GroupState::PreparingRebalance, now_ms);
        tracing::debug!(group = %self.group_id, generation = self.generation, "preparing rebalance");
    }

    fn try_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay_remaining_ms.is_some()
        {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        if all_joined && self.pending_members.is_empty() {
            self.complete_join(now_ms);
        }
    }

    fn complete_join(&mut self, now_ms: i64) {
        // Dynamic members that did not rejoin in time are out; static ones keep their seat.
        let not_joined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in not_joined {
            self.remove_member(&id);
        }
        self.join_deadline_ms = None;
        self.initial_delay_remaining_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.transition(GroupState::Empty, now_ms);
            self.dirty = true;
            return;
        }
        self.protocol = self.select_protocol();
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join_waiter.is_some());
        if !leader_joined {
            self.leader = self
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        let sync_timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        self.sync_deadline_ms = Some(now_ms + sync_timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let waiter = self.members.get_mut(&id).and_then(|m| {
                m.is_new = false;
                m.last_heartbeat_ms = now_ms;
                m.join_waiter.take()
            });
            if let Some((version, tx)) = waiter {
                let _ = tx.send(self.join_response(version, &id, false));
            }
        }
        tracing::info!(group = %self.group_id, generation = self.generation,
            protocol = ?self.protocol, members = self.members.len(), "join phase complete");
    }

    fn complete_syncs(&mut self) {
        let protocol_type = self.protocol_type.clone();
        let protocol = self.protocol.clone();
        for m in self.members.values_mut() {
            if let Some((version, tx)) = m.sync_waiter.take() {
                let _ = tx.send(build_sync(
                    version,
                    &protocol_type,
                    &protocol,
                    m.assignment.clone(),
                ));
            }
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut m) = self.members.shift_remove(member_id) {
            fail_waiters(&mut m, ResponseError::UnknownMemberId);
            if let Some(instance) = &m.group_instance_id {
                if self
                    .static_members
                    .get(instance)
                    .is_some_and(|id| id == member_id)
                {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.member_id.clone());
        }
    }

    fn remove_member_and_rebalance(&mut self, member_id: &str, now_ms: i64) {
        self.remove_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, &GroupConfig::default());
                // Not the initial delay: that applies only to a group that was Empty.
                self.try_complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}

struct JoinParams {
    version: i16,
    client: ClientInfo,
    instance_id: Option<String>,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
}

#[cfg(test)]
#[path = "classic_tests.rs"]
mod tests;
