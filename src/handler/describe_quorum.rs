//! DescribeQuorum (API 55, v0–2): the metadata quorum's leader, epoch, high watermark and each
//! voter's progress, as `kafka-metadata-quorum describe --status/--replication` shows them.
//! The state is shard 0's Raft member's (the leader's view is the complete one: a follower
//! knows no other voter's progress). A single node without a quorum configured answers as a
//! one-voter quorum of itself at its image version.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};

use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::raft;
use crate::model::ShardId;
use crate::runtime::messages::{ShardRequest, ShardResponse};

/// The metadata log's topic-partition, as Kafka names it.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(ctx: &RequestContext, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let state = match ctx
        .shard
        .call(ShardId(0), ShardRequest::DescribeQuorum)
        .await
    {
        ShardResponse::Quorum(state) => state,
        _ => None,
    };
    let node = ctx.shard.node_id();
    let state = state.unwrap_or_else(|| {
        let end = ctx.shard.metadata().version as i64;
        raft::QuorumState {
            leader_id: node,
            leader_epoch: 0,
            high_watermark: end,
            voters: vec![raft::ReplicaState {
                replica_id: node,
                log_end_offset: end,
                last_fetch_timestamp: -1,
                last_caught_up_timestamp: -1,
            }],
            observers: vec![],
        }
    });
    let replica = |r: &raft::ReplicaState| {
        let mut out = ReplicaState::default()
            .with_replica_id(BrokerId(r.replica_id))
            .with_log_end_offset(r.log_end_offset);
        if ctx.api_version >= 1 {
            out = out
                .with_last_fetch_timestamp(r.last_fetch_timestamp)
                .with_last_caught_up_timestamp(r.last_caught_up_timestamp);
        }
        out
    };
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        return PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_leader_id(BrokerId(-1));
                    }
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(state.leader_id))
                        .with_leader_epoch(state.leader_epoch)
                        .with_high_watermark(state.high_watermark)
                        .with_current_voters(state.voters.iter().map(replica).collect())
                        .with_observers(state.observers.iter().map(replica).collect())
                })
                .collect();
            TopicData::default()
                .with_topic_name(TopicName(str_bytes(t.topic_name.0.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    let mut resp = DescribeQuorumResponse::default().with_topics(topics);
    if ctx.api_version >= 2 {
        resp = resp.with_nodes(voter_nodes(ctx, &state));
    }
    resp
}

/// v2's `nodes`: each voter's CONTROLLER listener (from `controller.quorum.voters`).
fn voter_nodes(ctx: &RequestContext, state: &raft::QuorumState) -> Vec<Node> {
    let Some(quorum) = &ctx.shard.config.quorum else {
        return vec![];
    };
    state
        .voters
        .iter()
        .filter_map(|r| quorum.voters.get(&r.replica_id))
        .map(|v| {
            Node::default()
                .with_node_id(BrokerId(v.node_id))
                .with_listeners(vec![Listener::default()
                    .with_name(str_bytes("CONTROLLER".to_string()))
                    .with_host(str_bytes(v.host.clone()))
                    .with_port(v.port)])
        })
        .collect()
}
