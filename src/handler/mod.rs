//! One file per Kafka API. Handlers take the decoded request and return the
//! response; partition work runs on the owning shard through `local`.
//!
//! Architecture Invariant: this is the only layer that turns module errors into
//! Kafka error codes (`errors`).

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod api_versions;
// Group coordinator APIs (owned by the group work; dispatched from crate::group::dispatch).
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod errors;
pub mod fetch;
pub mod fetch_session;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod local;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod route;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::protocol::frame;
use crate::runtime::Shard;

/// What the connection writes back for one request.
pub enum Reply {
    Response(Bytes),
    /// A response whose record data goes out by sendfile from segment files.
    Pieces(Vec<frame::Piece<crate::storage::slice::FileSlice>>),
    /// acks=0 Produce: Kafka sends nothing.
    NoResponse,
    /// The request could not be served; close the connection (Kafka does the same).
    Close,
}

/// Everything a handler knows about the request besides its body.
pub struct RequestContext {
    pub shard: Rc<Shard>,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub client_host: String,
    /// This request's place in its connection's order (see [`dispatch`]); taken by the
    /// handler that needs it, dropped (passing the turn on) by everything else.
    turn: std::cell::RefCell<Option<crate::order::Ticket>>,
    /// Where a handler reserves the bytes it copies into its response (see `net::responses`).
    response_gate: Option<Rc<crate::net::responses::ResponseGate>>,
}

impl RequestContext {
    pub fn new(
        shard: Rc<Shard>,
        header: &RequestHeader,
        peer: &str,
        turn: Option<crate::order::Ticket>,
    ) -> RequestContext {
        RequestContext {
            turn: std::cell::RefCell::new(turn),
            response_gate: None,
            shard,
            api_version: header.request_api_version,
            correlation_id: header.correlation_id,
            client_id: header.client_id.as_ref().map(|s| s.to_string()),
            client_host: peer
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default(),
        }
    }

    /// Attaches the connection's response bound to this request.
    pub fn with_response_gate(
        mut self,
        gate: Rc<crate::net::responses::ResponseGate>,
    ) -> RequestContext {
        self.response_gate = Some(gate);
        self
    }

    /// The connection's response bound, if the request came from a client connection.
    pub fn response_gate(&self) -> Option<&crate::net::responses::ResponseGate> {
        self.response_gate.as_deref()
    }

    /// Takes this request's connection ticket (at most once).
    pub fn take_turn(&self) -> Option<crate::order::Ticket> {
        self.turn.borrow_mut().take()
    }
}

/// How a request keeps its connection's order. Kafka serves a connection's requests one at a
/// time, so clients may rely on their effects landing in send order; Sluice runs them
/// concurrently and keeps that promise where it is visible:
/// - Produce hands its batches to their partitions' owners in its turn and passes the turn on
///   once they are queued there (pipelined, yet appended in arrival order);
/// - every other request that changes state (groups, offsets, admin) runs whole in its turn;
/// - requests that only read pass the turn on at once.
enum Ordering {
    Pipelined,
    Serial,
    Unordered,
}

fn ordering(key: ApiKey) -> Ordering {
    use ApiKey::*;
    match key {
        Produce | WriteTxnMarkers => Ordering::Pipelined,
        OffsetCommit
        | TxnOffsetCommit
        | OffsetDelete
        | JoinGroup
        | SyncGroup
        | LeaveGroup
        | Heartbeat
        | ConsumerGroupHeartbeat
        | DeleteGroups
        | CreateTopics
        | DeleteTopics
        | CreatePartitions
        | AlterConfigs
        | IncrementalAlterConfigs
        | DeleteRecords
        | ElectLeaders
        | InitProducerId
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | AlterPartitionReassignments => Ordering::Serial,
        _ => Ordering::Unordered,
    }
}

pub async fn dispatch(ctx: RequestContext, header: RequestHeader, request: RequestKind) -> Reply {
    let Ok(key) = ApiKey::try_from(header.request_api_key) else {
        return Reply::Close;
    };
    // Held until the response is made for serial requests; dropped at once for reads.
    let _serial_turn = match ordering(key) {
        Ordering::Pipelined => None,
        Ordering::Serial => match ctx.take_turn() {
            Some(turn) => {
                turn.turn().await;
                Some(turn)
            }
            None => None,
        },
        Ordering::Unordered => {
            drop(ctx.take_turn());
            None
        }
    };
    let response = match request {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(&ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(&ctx, r).await),
        RequestKind::Produce(r) => match produce::handle(&ctx, r).await {
            Some(resp) => ResponseKind::Produce(resp),
            None => return Reply::NoResponse,
        },
        RequestKind::Fetch(r) => {
            let (response, files) = fetch::handle(&ctx, r).await;
            return fetch_reply(&ctx, ResponseKind::Fetch(response), files);
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(&ctx, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(&ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(&ctx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(&ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(&ctx, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle(&ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(alter_configs::handle_incremental(&ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(&ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(&ctx, r))
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(&ctx, r).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(&ctx, r).await)
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(&ctx, r))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(&ctx, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(&ctx, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(&ctx, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(list_partition_reassignments::handle(&ctx, r))
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(&ctx, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(&ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(&ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(&ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(&ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(end_txn::handle(&ctx, r).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(&ctx, r).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(list_transactions::handle(&ctx, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(&ctx, r).await)
        }
        other => match crate::group::dispatch(&ctx, other).await {
            Some(resp) => resp,
            None => {
                tracing::warn!(api = ?key, version = ctx.api_version, "API not served; closing connection");
                return Reply::Close;
            }
        },
    };
    crate::metrics::count_response_errors(header.request_api_key, &response);
    match frame::encode_response(ctx.correlation_id, key, ctx.api_version, &response) {
        Ok(bytes) => Reply::Response(bytes),
        Err(e) => {
            tracing::error!(api = ?key, version = ctx.api_version, error = %e, "response encoding failed; closing connection");
            Reply::Close
        }
    }
}

fn fetch_reply(ctx: &RequestContext, response: ResponseKind, files: fetch::FileParts) -> Reply {
    crate::metrics::count_response_errors(ApiKey::Fetch as i16, &response);
    let encoded = match frame::encode_response(
        ctx.correlation_id,
        ApiKey::Fetch,
        ctx.api_version,
        &response,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(version = ctx.api_version, error = %e, "fetch response encoding failed; closing connection");
            return Reply::Close;
        }
    };
    if files.is_empty() {
        return Reply::Response(encoded);
    }
    match frame::splice_markers(encoded, ctx.api_version, files) {
        Ok(pieces) => Reply::Pieces(
            pieces
                .into_iter()
                .map(|piece| match piece {
                    frame::Piece::File(fetch::Spliced::File(f)) => frame::Piece::File(f),
                    frame::Piece::File(fetch::Spliced::Bytes(b)) | frame::Piece::Bytes(b) => {
                        frame::Piece::Bytes(b)
                    }
                })
                .collect(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "fetch response splicing failed; closing connection");
            Reply::Close
        }
    }
}

/// Kafka's nullable string helper.
pub fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}
