//! KIP-848 consumer groups (ConsumerGroupHeartbeat): the server computes the target
//! assignment and walks each member to it in steps the member acknowledges:
//!
//! 1. group epoch bumps when membership, subscriptions or subscribed topics change;
//! 2. the assignor computes a target for the new epoch (assignment epoch);
//! 3. a member first gives up partitions not in its target (same member epoch, the
//!    member acks by heartbeating without them), then moves to the new epoch and gets
//!    the target partitions that no other member still owns; the rest follow on later
//!    heartbeats once released.
//!
//! Pure logic over explicit `now_ms`. Lives on the group's coordinator shard.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribeAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribeTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::assignor::{self, AssignorMember, TopicIdPartition};
use super::offsets::GroupOffsets;
use super::request::ClientInfo;
use super::GroupConfig;
use crate::model::TopicId;

/// The topic metadata a consumer group needs (implemented by the metadata image).
pub trait TopicLookup {
    /// (id, partition count) of a topic by name.
    fn topic_id_and_partitions(&self, name: &str) -> Option<(TopicId, i32)>;
    /// Name of a topic by id.
    fn topic_name(&self, id: &TopicId) -> Option<String>;
    /// Every topic's name (what a subscription regex is matched against).
    fn topic_names(&self) -> Vec<String>;
}

/// Internal topics, which a subscription regex never matches (Kafka's `Topic.isInternal`).
const INTERNAL_TOPICS: [&str; 3] = [
    super::OFFSETS_TOPIC,
    "__transaction_state",
    "__share_group_state",
];

/// A KIP-848 `SubscribedTopicRegex` (RE2 syntax, as Kafka's RE2/J), matched against whole
/// topic names.
#[derive(Clone, Debug)]
struct TopicRegex {
    source: String,
    compiled: regex_automata::meta::Regex,
}

impl TopicRegex {
    fn new(source: &str) -> Result<TopicRegex, String> {
        regex_automata::meta::Regex::new(&format!("^(?:{source})$"))
            .map(|compiled| TopicRegex {
                source: source.to_owned(),
                compiled,
            })
            .map_err(|e| e.to_string())
    }

    fn matches(&self, topic: &str) -> bool {
        !INTERNAL_TOPICS.contains(&topic) && self.compiled.is_match(topic)
    }
}

struct Member {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client: ClientInfo,
    rebalance_timeout_ms: i32,
    subscribed: Vec<String>,
    regex: Option<TopicRegex>,
    /// The topics `regex` matched when last resolved (empty until then).
    regex_matches: Vec<String>,
    server_assignor: Option<String>,
    member_epoch: i32,
    previous_epoch: i32,
    assigned: BTreeSet<TopicIdPartition>,
    pending_revocation: BTreeSet<TopicIdPartition>,
    revocation_deadline_ms: Option<i64>,
    last_sent: Option<BTreeSet<TopicIdPartition>>,
    last_heartbeat_ms: i64,
}

impl Member {
    /// The topic names this member subscribes to: its names, plus its regex's matches as
    /// last resolved.
    fn topics(&self) -> impl Iterator<Item = &String> {
        let matched = self
            .regex_matches
            .iter()
            .filter(|t| !self.subscribed.contains(t));
        self.subscribed.iter().chain(matched)
    }
}

/// A KIP-848 consumer group and its committed offsets.
pub struct ConsumerGroup {
    pub group_id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<TopicIdPartition>>,
    /// (topic id, partitions) of every subscribed topic at the last epoch bump.
    subscribed_metadata: BTreeMap<TopicId, i32>,
    empty_since_ms: i64,
    dirty: bool,
    pub offsets: GroupOffsets,
}

type HbResult = Result<ConsumerGroupHeartbeatResponse, (ResponseError, Option<String>)>;

impl ConsumerGroup {
    pub fn new(group_id: String, epoch: i32) -> Self {
        ConsumerGroup {
            group_id,
            group_epoch: epoch,
            assignment_epoch: epoch,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_metadata: BTreeMap::new(),
            empty_since_ms: 0,
            dirty: false,
            offsets: GroupOffsets::default(),
        }
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }
    pub fn set_epoch_at_least(&mut self, epoch: i32) {
        self.group_epoch = self.group_epoch.max(epoch);
        self.assignment_epoch = self.assignment_epoch.max(epoch);
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    pub fn empty_since_ms(&self) -> i64 {
        self.empty_since_ms
    }
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Kafka's ConsumerGroupState names.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || !m.pending_revocation.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.members
            .values()
            .any(|m| m.subscribed.iter().any(|t| t == topic))
    }

    /// OffsetCommit rules for consumer groups (KIP-848).
    pub fn validate_commit(
        &self,
        member_id: &str,
        epoch: i32,
        _version: i16,
    ) -> Result<(), ResponseError> {
        if member_id.is_empty() && epoch < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        let m = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// TxnOffsetCommit's member check (Kafka's `validateOffsetCommit` for a transactional
    /// commit): without member fields it is accepted; a member epoch ahead of the member's is
    /// FENCED_MEMBER_EPOCH, one behind ILLEGAL_GENERATION (Kafka maps the stale epoch so).
    pub fn validate_txn_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        if epoch < 0 && member_id.is_empty() && instance.is_none() {
            return Ok(());
        }
        let m = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        match epoch.cmp(&m.member_epoch) {
            std::cmp::Ordering::Greater => Err(ResponseError::FencedMemberEpoch),
            std::cmp::Ordering::Less => Err(ResponseError::IllegalGeneration),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// OffsetFetch v9 rules: a named member must exist with the current epoch.
    pub fn validate_fetch(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if epoch < 0 {
            return Ok(());
        }
        let m = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Handles one ConsumerGroupHeartbeat.
    pub fn heartbeat(
        &mut self,
        version: i16,
        client: ClientInfo,
        req: &ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicLookup,
        config: &GroupConfig,
        now_ms: i64,
    ) -> ConsumerGroupHeartbeatResponse {
        match self.heartbeat_inner(version, client, req, topics, config, now_ms) {
            Ok(r) => r.with_heartbeat_interval_ms(config.consumer_heartbeat_interval_ms),
            Err((e, msg)) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(msg.map(StrBytes::from_string))
                .with_member_epoch(-1),
        }
    }

    fn heartbeat_inner(
        &mut self,
        version: i16,
        client: ClientInfo,
        req: &ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicLookup,
        config: &GroupConfig,
        now_ms: i64,
    ) -> HbResult {
        let epoch = req.member_epoch;
        let mut member_id = req.member_id.as_str().to_owned();
        let invalid = |m: &str| (ResponseError::InvalidRequest, Some(m.to_owned()));
        if member_id.is_empty() {
            if version >= 1 || epoch != 0 {
                return Err(invalid("MemberId can't be empty."));
            }
            member_id = uuid::Uuid::new_v4().simple().to_string();
        }
        let static_leave = epoch == -2
            && self
                .members
                .get(&member_id)
                .is_some_and(|m| m.instance_id.is_some());
        if static_leave {
            // KIP-848 temporary leave: the static member keeps its partitions until its
            // next incarnation joins (taking them over) or its session times out.
            return Ok(ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(member_id)))
                .with_member_epoch(epoch));
        }
        if epoch == -1 || epoch == -2 {
            if self.members.remove(&member_id).is_some() {
                self.target.remove(&member_id);
                self.bump_epoch(now_ms);
            }
            return Ok(ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(member_id)))
                .with_member_epoch(epoch));
        }
        self.resolve_regexes(topics);
        let regex = match req.subscribed_topic_regex.as_ref().map(|r| r.as_str()) {
            Some(r) if !r.is_empty() => Some(Some(TopicRegex::new(r).map_err(|e| {
                (
                    ResponseError::InvalidRegularExpression,
                    Some(format!(
                        "SubscribedTopicRegex `{r}` is not a valid regular expression: {e}"
                    )),
                )
            })?)),
            Some(_) => Some(None),
            None => None,
        };
        if epoch == 0 {
            if req.rebalance_timeout_ms < 0 && !self.members.contains_key(&member_id) {
                return Err(invalid(
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return Err(invalid(
                    "SubscribedTopicNames must be set in first request.",
                ));
            }
            if self.members.len() >= config.consumer_max_group_size
                && !self.members.contains_key(&member_id)
            {
                return Err((ResponseError::GroupMaxSizeReached, None));
            }
            self.join(&member_id, client.clone(), req, now_ms);
        } else {
            let m = self
                .members
                .get(&member_id)
                .ok_or((ResponseError::UnknownMemberId, None))?;
            if epoch != m.member_epoch {
                let owned = owned_of(req);
                let lost_response = epoch == m.previous_epoch
                    && owned.as_ref().is_some_and(|o| o.is_subset(&m.assigned));
                if !lost_response {
                    return Err((ResponseError::FencedMemberEpoch, None));
                }
            }
        }
        let changed = self.update_member(&member_id, req, regex, now_ms);
        if changed {
            self.bump_epoch(now_ms);
        }
        self.refresh_metadata(topics, now_ms);
        if self.assignment_epoch < self.group_epoch {
            self.compute_target(topics);
        }
        self.reconcile(&member_id, owned_of(req), now_ms);
        let Some(m) = self.members.get_mut(&member_id) else {
            return Err((ResponseError::UnknownMemberId, None));
        };
        let reported_differs = owned_of(req).is_some_and(|o| o != m.assigned);
        let send = epoch == 0 || reported_differs || m.last_sent.as_ref() != Some(&m.assigned);
        let mut resp = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id.clone())))
            .with_member_epoch(m.member_epoch);
        if send {
            m.last_sent = Some(m.assigned.clone());
            resp.assignment =
                Some(Assignment::default().with_topic_partitions(group_by_topic(&m.assigned)));
        }
        Ok(resp)
    }

    fn join(
        &mut self,
        member_id: &str,
        client: ClientInfo,
        req: &ConsumerGroupHeartbeatRequest,
        now_ms: i64,
    ) {
        let instance = req.instance_id.as_ref().map(|s| s.as_str().to_owned());
        // A static member coming back takes over its previous incarnation's place.
        let previous = instance.as_ref().and_then(|i| {
            self.members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(i) && m.member_id != member_id)
                .map(|m| m.member_id.clone())
        });
        if let Some(old) = previous {
            if let Some(mut m) = self.members.remove(&old) {
                m.member_id = member_id.to_owned();
                m.client = client;
                m.last_heartbeat_ms = now_ms;
                m.last_sent = None;
                if let Some(t) = self.target.remove(&old) {
                    self.target.insert(member_id.to_owned(), t);
                }
                self.members.insert(member_id.to_owned(), m);
                return;
            }
        }
        let fresh = Member {
            member_id: member_id.to_owned(),
            instance_id: instance,
            rack_id: req.rack_id.as_ref().map(|s| s.as_str().to_owned()),
            client,
            rebalance_timeout_ms: req.rebalance_timeout_ms.max(0),
            subscribed: vec![],
            regex: None,
            regex_matches: vec![],
            server_assignor: None,
            member_epoch: 0,
            previous_epoch: 0,
            assigned: BTreeSet::new(),
            pending_revocation: BTreeSet::new(),
            revocation_deadline_ms: None,
            last_sent: None,
            last_heartbeat_ms: now_ms,
        };
        // A rejoin (epoch 0 with a known id) starts over with nothing owned.
        self.members.insert(member_id.to_owned(), fresh);
        self.bump_epoch(now_ms);
    }

    /// Applies the optional fields of a heartbeat; true when the subscription changed.
    fn update_member(
        &mut self,
        member_id: &str,
        req: &ConsumerGroupHeartbeatRequest,
        regex: Option<Option<TopicRegex>>,
        now_ms: i64,
    ) -> bool {
        let Some(m) = self.members.get_mut(member_id) else {
            return false;
        };
        m.last_heartbeat_ms = now_ms;
        let mut changed = false;
        if let Some(names) = &req.subscribed_topic_names {
            let mut names: Vec<String> = names.iter().map(|n| n.0.as_str().to_owned()).collect();
            names.sort();
            names.dedup();
            if names != m.subscribed {
                m.subscribed = names;
                changed = true;
            }
        }
        if let Some(regex) = regex {
            if regex.as_ref().map(|r| &r.source) != m.regex.as_ref().map(|r| &r.source) {
                m.regex = regex;
                // Resolved from the next heartbeat on (see `resolve_regexes`).
                m.regex_matches.clear();
                changed = true;
            }
        }
        if let Some(a) = &req.server_assignor {
            let a = Some(a.as_str().to_owned());
            if a != m.server_assignor {
                m.server_assignor = a;
                changed = true;
            }
        }
        if req.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(rack) = &req.rack_id {
            m.rack_id = Some(rack.as_str().to_owned());
        }
        changed
    }

    fn bump_epoch(&mut self, now_ms: i64) {
        self.group_epoch += 1;
        self.dirty = true;
        if self.members.is_empty() {
            self.empty_since_ms = now_ms;
            self.assignment_epoch = self.group_epoch;
            self.target.clear();
        }
    }

    /// Bumps the epoch when a subscribed topic appeared, vanished or grew.
    fn refresh_metadata(&mut self, topics: &dyn TopicLookup, now_ms: i64) {
        let current = self.subscribed_topics(topics);
        if current != self.subscribed_metadata {
            self.subscribed_metadata = current;
            if self.assignment_epoch == self.group_epoch {
                self.bump_epoch(now_ms);
            }
        }
    }

    fn subscribed_topics(&self, topics: &dyn TopicLookup) -> BTreeMap<TopicId, i32> {
        self.members
            .values()
            .flat_map(|m| m.topics())
            .filter_map(|name| topics.topic_id_and_partitions(name))
            .collect()
    }

    /// Matches every member's regex against the current topics. Run when a heartbeat
    /// arrives, before it changes anything: a regex a heartbeat brings is resolved from the
    /// next heartbeat on, as Kafka resolves regexes asynchronously (its members get their
    /// named topics first and the matches in a later assignment).
    fn resolve_regexes(&mut self, topics: &dyn TopicLookup) {
        if self.members.values().all(|m| m.regex.is_none()) {
            return;
        }
        let all = topics.topic_names();
        for m in self.members.values_mut() {
            m.regex_matches = match &m.regex {
                Some(r) => all.iter().filter(|t| r.matches(t)).cloned().collect(),
                None => vec![],
            };
        }
    }

    fn compute_target(&mut self, topics: &dyn TopicLookup) {
        let empty = BTreeSet::new();
        let subs: Vec<BTreeSet<TopicId>> = self
            .members
            .values()
            .map(|m| {
                m.topics()
                    .filter_map(|n| topics.topic_id_and_partitions(n).map(|(id, _)| id))
                    .collect()
            })
            .collect();
        let input: Vec<AssignorMember<'_>> = self
            .members
            .values()
            .zip(subs)
            .map(|(m, topics)| AssignorMember {
                member_id: &m.member_id,
                topics,
                current: self.target.get(&m.member_id).unwrap_or(&empty),
            })
            .collect();
        let name = self
            .members
            .values()
            .find_map(|m| m.server_assignor.clone())
            .filter(|a| assignor::ASSIGNORS.contains(&a.as_str()))
            .unwrap_or_else(|| assignor::ASSIGNORS[0].to_owned());
        self.target = assignor::assign(&name, &input, &self.subscribed_metadata);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member one step toward its target.
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<BTreeSet<TopicIdPartition>>,
        now_ms: i64,
    ) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        // Partitions still held (or being released) by the other members.
        let held_by_others: BTreeSet<TopicIdPartition> = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .flat_map(|m| m.assigned.iter().chain(m.pending_revocation.iter()))
            .copied()
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if !m.pending_revocation.is_empty() {
            match owned {
                Some(o) if o.is_disjoint(&m.pending_revocation) => {
                    m.pending_revocation.clear();
                    m.revocation_deadline_ms = None;
                }
                _ => return,
            }
        }
        let to_revoke: BTreeSet<TopicIdPartition> =
            m.assigned.difference(&target).copied().collect();
        if !to_revoke.is_empty() {
            m.assigned.retain(|tp| !to_revoke.contains(tp));
            m.pending_revocation = to_revoke;
            m.revocation_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms));
            return;
        }
        let available: Vec<TopicIdPartition> = target
            .difference(&m.assigned)
            .filter(|tp| !held_by_others.contains(tp))
            .copied()
            .collect();
        m.assigned.extend(available);
        if m.member_epoch != assignment_epoch {
            m.previous_epoch = m.member_epoch;
            m.member_epoch = assignment_epoch;
        }
    }

    /// Session and revocation deadlines.
    pub fn tick(&mut self, now_ms: i64, config: &GroupConfig) {
        let session = i64::from(config.consumer_session_timeout_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.last_heartbeat_ms + session <= now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.group_id, member = %id, "consumer group member fenced (session or revocation timeout)");
            self.members.remove(&id);
            self.target.remove(&id);
            self.bump_epoch(now_ms);
        }
    }

    pub fn describe(&self, topics: &dyn TopicLookup) -> DescribedGroup {
        let to_describe = |set: &BTreeSet<TopicIdPartition>| {
            let mut by_topic: BTreeMap<TopicId, Vec<i32>> = BTreeMap::new();
            for (t, p) in set {
                by_topic.entry(*t).or_default().push(*p);
            }
            DescribeAssignment::default().with_topic_partitions(
                by_topic
                    .into_iter()
                    .map(|(id, ps)| {
                        DescribeTopicPartitions::default()
                            .with_topic_id(id)
                            .with_topic_name(TopicName(StrBytes::from_string(
                                topics.topic_name(&id).unwrap_or_default(),
                            )))
                            .with_partitions(ps)
                    })
                    .collect(),
            )
        };
        let empty = BTreeSet::new();
        let members = self
            .members
            .values()
            .map(|m| {
                DescribedMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                    .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(StrBytes::from_string(m.client.client_id.clone()))
                    .with_client_host(StrBytes::from_string(m.client.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed
                            .iter()
                            .map(|s| TopicName(StrBytes::from_string(s.clone())))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(
                        m.regex
                            .as_ref()
                            .map(|r| StrBytes::from_string(r.source.clone())),
                    )
                    .with_assignment(to_describe(&m.assigned))
                    .with_target_assignment(to_describe(
                        self.target.get(&m.member_id).unwrap_or(&empty),
                    ))
                    .with_member_type(-1)
            })
            .collect();
        let assignor_name = self
            .members
            .values()
            .find_map(|m| m.server_assignor.clone())
            .unwrap_or_else(|| assignor::ASSIGNORS[0].to_owned());
        DescribedGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group_id.clone())))
            .with_group_state(StrBytes::from_static_str(self.state_name()))
            .with_group_epoch(self.group_epoch)
            .with_assignment_epoch(self.assignment_epoch)
            .with_assignor_name(StrBytes::from_string(assignor_name))
            .with_members(members)
    }
}

fn owned_of(req: &ConsumerGroupHeartbeatRequest) -> Option<BTreeSet<TopicIdPartition>> {
    req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
            .collect()
    })
}

fn group_by_topic(set: &BTreeSet<TopicIdPartition>) -> Vec<TopicPartitions> {
    let mut by_topic: BTreeMap<TopicId, Vec<i32>> = BTreeMap::new();
    for (t, p) in set {
        by_topic.entry(*t).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(id, ps)| {
            TopicPartitions::default()
                .with_topic_id(id)
                .with_partitions(ps)
        })
        .collect()
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
