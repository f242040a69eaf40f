//! The cross-core messages of the group coordinator: a handler on any shard builds a
//! [`GroupRequest`], the runtime carries it to the owning shard (inside
//! `ShardRequest::Group`), and [`crate::group::GroupCoordinator::handle`] answers with a
//! [`GroupResponse`]. Both are `Send`: plain Kafka message structs plus the version.

use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetDeleteResponse, SyncGroupRequest, SyncGroupResponse,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;

/// Who sent the request (for DescribeGroups' client id / host columns).
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}

/// A request for the coordinator that owns the group (or, for the list variants, for
/// the groups owned by one shard).
#[derive(Debug)]
pub enum GroupRequest {
    Join(i16, ClientInfo, JoinGroupRequest),
    Sync(i16, SyncGroupRequest),
    Heartbeat(i16, HeartbeatRequest),
    Leave(i16, LeaveGroupRequest),
    /// Per-partition errors already decided by the handler (unknown topics) are
    /// filtered out of the request and merged back into the response by the handler.
    OffsetCommit(i16, OffsetCommitRequest),
    /// TxnOffsetCommit, filtered by the handler as OffsetCommit is.
    TxnOffsetCommit(i16, TxnOffsetCommitRequest),
    /// One group of an OffsetFetch (v8+ batches are split per group by the handler).
    OffsetFetch(i16, OffsetFetchRequestGroup, bool),
    /// Lists the groups owned by the receiving shard.
    ListGroups(i16, ListGroupsRequest),
    DescribeGroup(i16, String),
    DeleteGroup(i16, String),
    OffsetDelete(i16, OffsetDeleteRequest),
    ConsumerGroupHeartbeat(i16, ClientInfo, ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(i16, String),
    /// An end-transaction marker for `__consumer_offsets` partition `partition` (owned by the
    /// receiving shard), from WriteTxnMarkers: the coordinator writes it and applies it (see
    /// `group::txn_hook::complete_transaction`).
    CompleteTransaction {
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    },
}

impl GroupRequest {
    /// The group this request addresses; `None` for shard-wide requests (ListGroups).
    pub fn group_id(&self) -> Option<&str> {
        match self {
            GroupRequest::Join(_, _, r) => Some(r.group_id.0.as_str()),
            GroupRequest::Sync(_, r) => Some(r.group_id.0.as_str()),
            GroupRequest::Heartbeat(_, r) => Some(r.group_id.0.as_str()),
            GroupRequest::Leave(_, r) => Some(r.group_id.0.as_str()),
            GroupRequest::OffsetCommit(_, r) => Some(r.group_id.0.as_str()),
            GroupRequest::TxnOffsetCommit(_, r) => Some(r.group_id.0.as_str()),
            GroupRequest::OffsetFetch(_, g, _) => Some(g.group_id.0.as_str()),
            GroupRequest::ListGroups(..) => None,
            GroupRequest::DescribeGroup(_, g) => Some(g.as_str()),
            GroupRequest::DeleteGroup(_, g) => Some(g.as_str()),
            GroupRequest::OffsetDelete(_, r) => Some(r.group_id.0.as_str()),
            GroupRequest::ConsumerGroupHeartbeat(_, _, r) => Some(r.group_id.0.as_str()),
            GroupRequest::ConsumerGroupDescribe(_, g) => Some(g.as_str()),
            GroupRequest::CompleteTransaction { .. } => None,
        }
    }
}

/// The answer to a [`GroupRequest`], variant for variant.
#[derive(Debug)]
pub enum GroupResponse {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
    OffsetFetch(OffsetFetchResponseGroup),
    ListGroups(ListGroupsResponse),
    DescribeGroup(DescribedGroup),
    DeleteGroup(DeletableGroupResult),
    OffsetDelete(OffsetDeleteResponse),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerGroupDescribe(ConsumerDescribedGroup),
    /// How many pending offsets became committed, or why the marker was not written.
    CompleteTransaction(Result<usize, super::GroupError>),
}
