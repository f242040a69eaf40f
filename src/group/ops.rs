//! One function per [`GroupRequest`] variant, run on the group's coordinator shard.
//! Each borrows the group map only between awaits: mutate, collect records, release,
//! then write and wait.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatResponse, GroupId, HeartbeatResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::classic::{join_error, sync_error, ClassicGroup, GroupState, Reply};
use super::consumer::ConsumerGroup;
use super::coordinator::{Group, GroupCoordinator};
use super::now_ms;
use super::offsets::CommittedOffset;
use super::records::OffsetsRecord;
use super::request::{GroupRequest, GroupResponse};
use crate::model::{LeaderEpoch, Offset, TopicPartition};

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) async fn handle(
    c: &Rc<GroupCoordinator>,
    partition: i32,
    group_id: String,
    req: GroupRequest,
) -> GroupResponse {
    let now = now_ms();
    match req {
        GroupRequest::Join(v, client, r) => {
            let reply = {
                let mut groups = c.groups.borrow_mut();
                let g = groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::Classic(ClassicGroup::new(group_id.clone(), now)));
                match g {
                    Group::Classic(g) => g.join(v, client, &r, &c.config, now),
                    Group::Consumer(cg) if cg.is_empty() => {
                        // Kafka converts an empty consumer group to a classic one.
                        let mut cl = ClassicGroup::new(group_id.clone(), now);
                        cl.offsets = cg.offsets.clone();
                        let reply = cl.join(v, client, &r, &c.config, now);
                        *g = Group::Classic(cl);
                        reply
                    }
                    Group::Consumer(_) => Reply::Now(join_error(
                        v,
                        r.member_id.as_str(),
                        ResponseError::InconsistentGroupProtocol,
                    )),
                }
            };
            persist_dirty(c, partition, &group_id).await;
            tracing::debug!(group = %group_id, version = v, member = %r.member_id.as_str(),
                instance = ?r.group_instance_id, parked = matches!(reply, Reply::Later(_)), "JoinGroup");
            GroupResponse::Join(match reply {
                Reply::Now(r) => r,
                Reply::Later(rx) => rx.await.unwrap_or_else(|_| {
                    join_error(v, r.member_id.as_str(), ResponseError::RebalanceInProgress)
                }),
            })
        }
        GroupRequest::Sync(v, r) => {
            let reply = match c.groups.borrow_mut().get_mut(&group_id) {
                Some(Group::Classic(g)) => g.sync(v, &r, now),
                _ => Reply::Now(sync_error(v, ResponseError::UnknownMemberId)),
            };
            let persisted = persist_dirty(c, partition, &group_id).await;
            if let Some(Group::Classic(g)) = c.groups.borrow_mut().get_mut(&group_id) {
                g.assignment_persisted(r.generation_id, persisted, now_ms(), &c.config);
            }
            tracing::debug!(group = %group_id, version = v, member = %r.member_id.as_str(),
                generation = r.generation_id, parked = matches!(reply, Reply::Later(_)), "SyncGroup");
            GroupResponse::Sync(match reply {
                Reply::Now(r) => r,
                Reply::Later(rx) => rx
                    .await
                    .unwrap_or_else(|_| sync_error(v, ResponseError::RebalanceInProgress)),
            })
        }
        GroupRequest::Heartbeat(_, r) => {
            let result = match c.groups.borrow_mut().get_mut(&group_id) {
                Some(Group::Classic(g)) => g.heartbeat(
                    r.member_id.as_str(),
                    r.group_instance_id.as_ref().map(|s| s.as_str()),
                    r.generation_id,
                    now,
                ),
                _ => Err(ResponseError::UnknownMemberId),
            };
            GroupResponse::Heartbeat(HeartbeatResponse::default().with_error_code(code(result)))
        }
        GroupRequest::Leave(v, r) => {
            let resp = leave(c, &group_id, v, &r, now);
            persist_dirty(c, partition, &group_id).await;
            GroupResponse::Leave(resp)
        }
        GroupRequest::OffsetCommit(v, r) => {
            GroupResponse::OffsetCommit(commit(c, partition, &group_id, v, r, now).await)
        }
        GroupRequest::TxnOffsetCommit(v, r) => GroupResponse::TxnOffsetCommit(
            super::txn::txn_commit(c, partition, &group_id, v, r).await,
        ),
        GroupRequest::OffsetFetch(v, g, require_stable) => {
            GroupResponse::OffsetFetch(fetch(c, v, g, require_stable))
        }
        GroupRequest::DescribeGroup(v, _) => {
            GroupResponse::DescribeGroup(describe(c, v, &group_id))
        }
        GroupRequest::DeleteGroup(_, _) => {
            GroupResponse::DeleteGroup(delete(c, partition, &group_id).await)
        }
        GroupRequest::OffsetDelete(_, r) => {
            GroupResponse::OffsetDelete(offset_delete(c, partition, &group_id, r).await)
        }
        GroupRequest::ConsumerGroupHeartbeat(v, client, r) => {
            let image = c.metadata();
            let resp = {
                let mut groups = c.groups.borrow_mut();
                let member_epoch = r.member_epoch;
                let g = match groups.get_mut(&group_id) {
                    Some(g) => g,
                    None if member_epoch == 0 => {
                        groups.entry(group_id.clone()).or_insert_with(|| {
                            Group::Consumer(ConsumerGroup::new(group_id.clone(), 0))
                        })
                    }
                    None => {
                        return GroupResponse::ConsumerGroupHeartbeat(
                            ConsumerGroupHeartbeatResponse::default()
                                .with_error_code(ResponseError::UnknownMemberId.code()),
                        )
                    }
                };
                if let Group::Classic(cl) = g {
                    if cl.state() == GroupState::Empty {
                        let mut cg = ConsumerGroup::new(group_id.clone(), cl.generation());
                        cg.offsets = cl.offsets.clone();
                        *g = Group::Consumer(cg);
                    }
                }
                match (g, image.as_deref()) {
                    (Group::Consumer(cg), Some(image)) => {
                        cg.heartbeat(v, client, &r, image, &c.config, now)
                    }
                    (Group::Consumer(_), None) => ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
                    (Group::Classic(_), _) => ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(sb(format!(
                            "Group {group_id} is not a consumer group."
                        )))),
                }
            };
            persist_dirty(c, partition, &group_id).await;
            GroupResponse::ConsumerGroupHeartbeat(resp)
        }
        GroupRequest::ConsumerGroupDescribe(_, _) => {
            let image = c.metadata();
            let groups = c.groups.borrow();
            let d = match (groups.get(&group_id), image.as_deref()) {
                (Some(Group::Consumer(cg)), Some(image)) => cg.describe(image),
                (Some(Group::Classic(_)), _) => ConsumerDescribedGroup::default()
                    .with_group_id(GroupId(sb(group_id.clone())))
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!(
                        "Group {group_id} is not a consumer group."
                    )))),
                _ => ConsumerDescribedGroup::default()
                    .with_group_id(GroupId(sb(group_id.clone())))
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!("Group {group_id} not found.")))),
            };
            GroupResponse::ConsumerGroupDescribe(d)
        }
        GroupRequest::ListGroups(..) => GroupResponse::ListGroups(
            ListGroupsResponse::default().with_error_code(ResponseError::InvalidRequest.code()),
        ),
        GroupRequest::CompleteTransaction { .. } => GroupResponse::CompleteTransaction(Err(
            super::GroupError::Append("a marker is not a group request".into()),
        )),
    }
}

pub(crate) fn handle_shard_wide(c: &Rc<GroupCoordinator>, req: GroupRequest) -> GroupResponse {
    match req {
        GroupRequest::ListGroups(_, r) => GroupResponse::ListGroups(list(c, &r)),
        other => error_response(&other, ResponseError::InvalidRequest),
    }
}

fn code(r: Result<(), ResponseError>) -> i16 {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// Writes the group's metadata record if the state machine marked it changed; false when
/// that write failed.
async fn persist_dirty(c: &Rc<GroupCoordinator>, partition: i32, group_id: &str) -> bool {
    let record = match c.groups.borrow_mut().get_mut(group_id) {
        Some(Group::Classic(g)) => g.take_dirty().then(|| OffsetsRecord::Group {
            group: group_id.to_owned(),
            value: Some(g.to_record()),
        }),
        Some(Group::Consumer(g)) => g.take_dirty().then(|| OffsetsRecord::ConsumerGroup {
            group: group_id.to_owned(),
            epoch: Some(g.group_epoch()),
        }),
        None => None,
    };
    if let Some(r) = record {
        if let Err(e) = c.write(partition, vec![r]).await {
            tracing::warn!(group = group_id, error = %e, "persisting group metadata failed");
            return false;
        }
    }
    true
}

fn leave(
    c: &Rc<GroupCoordinator>,
    group_id: &str,
    v: i16,
    r: &LeaveGroupRequest,
    now: i64,
) -> LeaveGroupResponse {
    // v0-2 name one member at top level; v3+ a batch.
    let identities: Vec<(String, Option<String>)> = if v >= 3 {
        r.members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_owned(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_owned()),
                )
            })
            .collect()
    } else {
        vec![(r.member_id.as_str().to_owned(), None)]
    };
    let mut groups = c.groups.borrow_mut();
    let results: Vec<(String, Option<String>, i16)> = match groups.get_mut(group_id) {
        Some(Group::Classic(g)) => identities
            .into_iter()
            .map(|(m, i)| {
                let e = code(g.leave(&m, i.as_deref(), now));
                (m, i, e)
            })
            .collect(),
        _ => identities
            .into_iter()
            .map(|(m, i)| (m, i, ResponseError::UnknownMemberId.code()))
            .collect(),
    };
    if v >= 3 {
        LeaveGroupResponse::default().with_members(
            results
                .into_iter()
                .map(|(m, i, e)| {
                    MemberResponse::default()
                        .with_member_id(sb(m))
                        .with_group_instance_id(i.map(sb))
                        .with_error_code(e)
                })
                .collect(),
        )
    } else {
        let e = results.first().map(|(_, _, e)| *e).unwrap_or(0);
        LeaveGroupResponse::default().with_error_code(e)
    }
}

async fn commit(
    c: &Rc<GroupCoordinator>,
    partition: i32,
    group_id: &str,
    v: i16,
    r: OffsetCommitRequest,
    now: i64,
) -> OffsetCommitResponse {
    let member = r.member_id.as_str();
    let instance = r.group_instance_id.as_ref().map(|s| s.as_str());
    let generation = r.generation_id_or_member_epoch;
    let allowed: Result<(), ResponseError> = {
        let mut groups = c.groups.borrow_mut();
        match groups.get_mut(group_id) {
            Some(Group::Classic(g)) => g.validate_commit(member, instance, generation, now),
            Some(Group::Consumer(g)) => g.validate_commit(member, generation, v),
            None if generation < 0 => {
                groups.insert(
                    group_id.to_owned(),
                    Group::Classic(ClassicGroup::new(group_id.to_owned(), now)),
                );
                Ok(())
            }
            None => Err(ResponseError::IllegalGeneration),
        }
    };
    tracing::debug!(group = group_id, version = v, member, generation, result = ?allowed, "OffsetCommit");
    let mut records = Vec::new();
    let mut codes: Vec<Vec<i16>> = Vec::new();
    for t in &r.topics {
        let mut tcodes = Vec::new();
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.as_str())
                .unwrap_or("");
            let e = match allowed {
                Err(e) => e.code(),
                Ok(()) if metadata.len() > c.config.offset_metadata_max_bytes => {
                    ResponseError::OffsetMetadataTooLarge.code()
                }
                Ok(()) => {
                    // The retention time is the client's: i64::MAX must not wrap (or panic).
                    let expire = (v <= 4 && r.retention_time_ms >= 0)
                        .then(|| now.saturating_add(r.retention_time_ms));
                    records.push(OffsetsRecord::Offset {
                        group: group_id.to_owned(),
                        tp: TopicPartition::new(t.name.0.as_str(), p.partition_index),
                        value: Some(CommittedOffset {
                            offset: Offset(p.committed_offset),
                            leader_epoch: LeaderEpoch(if v >= 6 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            }),
                            metadata: metadata.to_owned(),
                            commit_timestamp_ms: now,
                            expire_timestamp_ms: expire,
                        }),
                    });
                    0
                }
            };
            tcodes.push(e);
        }
        codes.push(tcodes);
    }
    if let Err(e) = c.write(partition, records).await {
        tracing::warn!(group = group_id, error = %e, "offset commit append failed");
        for t in codes.iter_mut() {
            for code in t.iter_mut() {
                if *code == 0 {
                    *code = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        r.topics
            .iter()
            .zip(codes)
            .map(|(t, tcodes)| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .zip(tcodes)
                            .map(|(p, e)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// OffsetFetch of one group. Pending transactional offsets are never shown; with
/// `require_stable` (v7+, KIP-447) a partition that has one answers UNSTABLE_OFFSET_COMMIT
/// (the client retries until the transaction ends).
fn fetch(
    c: &Rc<GroupCoordinator>,
    v: i16,
    req: OffsetFetchRequestGroup,
    require_stable: bool,
) -> OffsetFetchResponseGroup {
    let group_id = req.group_id.0.as_str().to_owned();
    let groups = c.groups.borrow();
    let group = groups.get(&group_id);
    // v9 (KIP-848): a member fetching for a consumer group must be current.
    if let (Some(Group::Consumer(cg)), Some(member)) = (group, req.member_id.as_ref()) {
        if let Err(e) = cg.validate_fetch(member.as_str(), req.member_epoch) {
            return OffsetFetchResponseGroup::default()
                .with_group_id(req.group_id.clone())
                .with_error_code(e.code());
        }
    }
    let offsets = group.map(|g| g.offsets());
    let one = |topic: &str, p: i32| {
        let tp = TopicPartition::new(topic, p);
        if require_stable && offsets.is_some_and(|o| o.has_pending(&tp)) {
            return OffsetFetchResponsePartitions::default()
                .with_partition_index(p)
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(StrBytes::new()))
                .with_error_code(ResponseError::UnstableOffsetCommit.code());
        }
        match offsets.and_then(|o| o.get(&tp)) {
            Some(o) => OffsetFetchResponsePartitions::default()
                .with_partition_index(p)
                .with_committed_offset(o.offset.get())
                .with_committed_leader_epoch(if v >= 5 { o.leader_epoch.0 } else { -1 })
                .with_metadata(Some(sb(o.metadata.clone()))),
            None => OffsetFetchResponsePartitions::default()
                .with_partition_index(p)
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(StrBytes::new())),
        }
    };
    let topics: Vec<OffsetFetchResponseTopics> = match &req.topics {
        Some(topics) => topics
            .iter()
            .map(|t| {
                OffsetFetchResponseTopics::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| one(t.name.0.as_str(), *p))
                            .collect(),
                    )
            })
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            if let Some(o) = offsets {
                for (tp, _) in o.iter() {
                    by_topic
                        .entry(tp.topic.clone())
                        .or_default()
                        .push(tp.partition);
                }
            }
            by_topic
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(kafka_protocol::messages::TopicName(sb(name.clone())))
                        .with_partitions(ps.into_iter().map(|p| one(&name, p)).collect())
                })
                .collect()
        }
    };
    OffsetFetchResponseGroup::default()
        .with_group_id(req.group_id.clone())
        .with_topics(topics)
}

fn list(c: &Rc<GroupCoordinator>, r: &ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = r
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let types: Vec<String> = r
        .types_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let groups = c.groups.borrow();
    let listed = groups
        .iter()
        .filter_map(|(id, g)| {
            let (state, protocol_type, group_type) = match g {
                Group::Classic(g) => (
                    g.state().as_str().to_owned(),
                    g.protocol_type().unwrap_or("").to_owned(),
                    "classic",
                ),
                Group::Consumer(g) => {
                    (g.state_name().to_owned(), "consumer".to_owned(), "consumer")
                }
            };
            let state_ok = states.is_empty() || states.contains(&state.to_lowercase());
            let type_ok = types.is_empty() || types.iter().any(|t| t == group_type);
            (state_ok && type_ok).then(|| {
                ListedGroup::default()
                    .with_group_id(GroupId(sb(id.clone())))
                    .with_protocol_type(sb(protocol_type))
                    .with_group_state(sb(state))
                    .with_group_type(sb(group_type))
            })
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

fn describe(c: &Rc<GroupCoordinator>, v: i16, group_id: &str) -> DescribedGroup {
    let groups = c.groups.borrow();
    let base = DescribedGroup::default().with_group_id(GroupId(sb(group_id.to_owned())));
    match groups.get(group_id) {
        Some(Group::Classic(g)) => {
            let stable = g.state() == GroupState::Stable;
            let protocol = g.protocol().unwrap_or("").to_owned();
            let members = g
                .members()
                .map(|m| {
                    let mut d = DescribedGroupMember::default()
                        .with_member_id(sb(m.member_id.clone()))
                        .with_client_id(sb(m.client.client_id.clone()))
                        .with_client_host(sb(m.client.client_host.clone()));
                    if v >= 4 {
                        d.group_instance_id = m.group_instance_id.clone().map(sb);
                    }
                    if stable {
                        d.member_metadata = m
                            .protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default();
                        d.member_assignment = m.assignment.clone();
                    }
                    d
                })
                .collect();
            base.with_group_state(sb(g.state().as_str()))
                .with_protocol_type(sb(g.protocol_type().unwrap_or("")))
                .with_protocol_data(sb(if stable { protocol } else { String::new() }))
                .with_members(members)
        }
        Some(Group::Consumer(_)) if v >= 6 => base
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(sb(format!(
                "Group {group_id} is not a classic group."
            ))))
            .with_group_state(sb("Dead")),
        Some(Group::Consumer(g)) => base
            .with_group_state(sb(g.state_name()))
            .with_protocol_type(sb("consumer")),
        None if v >= 6 => base
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(sb(format!("Group {group_id} not found."))))
            .with_group_state(sb("Dead")),
        None => base.with_group_state(sb("Dead")),
    }
}

async fn delete(c: &Rc<GroupCoordinator>, partition: i32, group_id: &str) -> DeletableGroupResult {
    let result = DeletableGroupResult::default().with_group_id(GroupId(sb(group_id.to_owned())));
    let records = {
        let groups = c.groups.borrow();
        let Some(g) = groups.get(group_id) else {
            return result.with_error_code(ResponseError::GroupIdNotFound.code());
        };
        let empty = match g {
            Group::Classic(g) => matches!(g.state(), GroupState::Empty | GroupState::Dead),
            Group::Consumer(g) => g.is_empty(),
        };
        if !empty {
            return result.with_error_code(ResponseError::NonEmptyGroup.code());
        }
        let mut records: Vec<OffsetsRecord> = g
            .offsets()
            .iter()
            .map(|(tp, _)| OffsetsRecord::Offset {
                group: group_id.to_owned(),
                tp: tp.clone(),
                value: None,
            })
            .collect();
        records.push(match g {
            Group::Classic(_) => OffsetsRecord::Group {
                group: group_id.to_owned(),
                value: None,
            },
            Group::Consumer(_) => OffsetsRecord::ConsumerGroup {
                group: group_id.to_owned(),
                epoch: None,
            },
        });
        records
    };
    match c.write(partition, records).await {
        Ok(()) => {
            if let Some(Group::Classic(g)) = c.groups.borrow_mut().get_mut(group_id) {
                g.mark_dead(now_ms());
            }
            c.groups.borrow_mut().remove(group_id);
            result
        }
        Err(e) => {
            tracing::warn!(group = group_id, error = %e, "group deletion append failed");
            result.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}

async fn offset_delete(
    c: &Rc<GroupCoordinator>,
    partition: i32,
    group_id: &str,
    r: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let mut records = Vec::new();
    let topics: Vec<OffsetDeleteResponseTopic> = {
        let groups = c.groups.borrow();
        let Some(g) = groups.get(group_id) else {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupIdNotFound.code());
        };
        r.topics
            .iter()
            .map(|t| {
                let topic = t.name.0.as_str();
                let subscribed = match g {
                    Group::Classic(g) => classic_subscribed(g, topic),
                    Group::Consumer(g) => g.is_subscribed(topic),
                };
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let e = if subscribed {
                            ResponseError::GroupSubscribedToTopic.code()
                        } else {
                            records.push(OffsetsRecord::Offset {
                                group: group_id.to_owned(),
                                tp: TopicPartition::new(topic, p.partition_index),
                                value: None,
                            });
                            0
                        };
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(e)
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect()
    };
    if let Err(e) = c.write(partition, records).await {
        tracing::warn!(group = group_id, error = %e, "offset delete append failed");
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    OffsetDeleteResponse::default().with_topics(topics)
}

/// Whether a non-empty classic "consumer" group subscribes to `topic` (parsed from the
/// members' ConsumerProtocolSubscription); non-consumer protocols count as subscribed.
fn classic_subscribed(g: &ClassicGroup, topic: &str) -> bool {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if g.state() == GroupState::Empty || g.state() == GroupState::Dead {
        return false;
    }
    if g.protocol_type() != Some("consumer") {
        return true;
    }
    let protocol = g.protocol().unwrap_or("");
    g.members().any(|m| {
        let Some((_, meta)) = m.protocols.iter().find(|(n, _)| n == protocol) else {
            return true;
        };
        let mut buf = meta.clone();
        if buf.len() < 2 {
            return true;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]);
        let _ = bytes::Buf::get_i16(&mut buf);
        match ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
            Ok(s) => s.topics.iter().any(|t| t.as_str() == topic),
            Err(_) => true,
        }
    })
}

/// The answer to `req` when it cannot be served at all (e.g. NOT_COORDINATOR).
pub fn error_response(req: &GroupRequest, e: ResponseError) -> GroupResponse {
    use kafka_protocol::messages::{
        ConsumerGroupHeartbeatResponse as Cgh, HeartbeatResponse as Hb,
    };
    let code = e.code();
    match req {
        GroupRequest::Join(v, _, r) => GroupResponse::Join(join_error(*v, r.member_id.as_str(), e)),
        GroupRequest::Sync(v, _) => GroupResponse::Sync(sync_error(*v, e)),
        GroupRequest::Heartbeat(..) => {
            GroupResponse::Heartbeat(Hb::default().with_error_code(code))
        }
        GroupRequest::Leave(v, r) => {
            if *v >= 3 {
                GroupResponse::Leave(
                    LeaveGroupResponse::default()
                        .with_error_code(code)
                        .with_members(
                            r.members
                                .iter()
                                .map(|m| {
                                    MemberResponse::default()
                                        .with_member_id(m.member_id.clone())
                                        .with_group_instance_id(m.group_instance_id.clone())
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                )
            } else {
                GroupResponse::Leave(LeaveGroupResponse::default().with_error_code(code))
            }
        }
        GroupRequest::OffsetCommit(_, r) => GroupResponse::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        GroupRequest::TxnOffsetCommit(_, r) => {
            GroupResponse::TxnOffsetCommit(super::txn::error_response(r, e))
        }
        GroupRequest::OffsetFetch(_, g, _) => GroupResponse::OffsetFetch(
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(code),
        ),
        GroupRequest::ListGroups(..) => {
            GroupResponse::ListGroups(ListGroupsResponse::default().with_error_code(code))
        }
        GroupRequest::DescribeGroup(_, g) => GroupResponse::DescribeGroup(
            DescribedGroup::default()
                .with_group_id(GroupId(sb(g.clone())))
                .with_error_code(code),
        ),
        GroupRequest::DeleteGroup(_, g) => GroupResponse::DeleteGroup(
            DeletableGroupResult::default()
                .with_group_id(GroupId(sb(g.clone())))
                .with_error_code(code),
        ),
        GroupRequest::OffsetDelete(..) => {
            GroupResponse::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
        }
        GroupRequest::ConsumerGroupHeartbeat(..) => {
            GroupResponse::ConsumerGroupHeartbeat(Cgh::default().with_error_code(code))
        }
        GroupRequest::ConsumerGroupDescribe(_, g) => GroupResponse::ConsumerGroupDescribe(
            ConsumerDescribedGroup::default()
                .with_group_id(GroupId(sb(g.clone())))
                .with_error_code(code),
        ),
        GroupRequest::CompleteTransaction { .. } => GroupResponse::CompleteTransaction(Err(
            super::GroupError::Append(format!("refused: {e:?}")),
        )),
    }
}
