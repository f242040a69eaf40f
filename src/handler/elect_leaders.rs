//! ElectLeaders (API 43, v0–2): preferred or unclean leader election through
//! `ControllerCommand::ElectLeaders` on shard 0 (and, in cluster mode, the metadata quorum).
//!
//! The controller answers per partition (Kafka's `ReplicationControlManager.electLeaders`):
//! PREFERRED moves leadership to the first replica when it is active and in the ISR
//! (PREFERRED_LEADER_NOT_AVAILABLE otherwise, ELECTION_NOT_NEEDED when it already leads);
//! UNCLEAN gives a partition without an active leader one from its ISR, else any active
//! replica, which alone forms the new ISR (ELECTION_NOT_NEEDED when an active leader exists).
//! `topic_partitions` null means every partition, answered without those that needed nothing.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::create_topics::{submit, unexpected_answer, AdminError};
use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::controller::{ElectionError, ElectionResult, ElectionType, Outcome};
use crate::cluster::ControllerCommand;

pub async fn handle(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let requested: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let Some(election_type) = ElectionType::from_code(req.election_type) else {
        let message = format!("unknown election type {}", req.election_type);
        tracing::warn!(election_type = req.election_type, "ElectLeaders refused");
        return failed(
            ctx,
            requested.as_deref(),
            AdminError::new(code::INVALID_REQUEST, message),
        );
    };
    // Refused here too, so that an oversized election never reaches the metadata log.
    let max = crate::limits::ELECT_LEADERS_PARTITIONS_MAX;
    if requested.as_ref().is_some_and(|r| r.len() > max) {
        tracing::warn!(max, "ElectLeaders names too many partitions");
        let message = format!("an election may name at most {max} partitions");
        return failed(
            ctx,
            requested.as_deref(),
            AdminError::new(code::INVALID_REQUEST, message),
        );
    }
    let cmd = ControllerCommand::ElectLeaders {
        election_type,
        partitions: requested.clone(),
    };
    let results = match submit(&ctx.shard, cmd, false).await {
        Ok(Outcome::Elected(results)) => results,
        Ok(_) => return failed(ctx, requested.as_deref(), unexpected_answer()),
        Err(e) => return failed(ctx, requested.as_deref(), e),
    };
    let elected: Vec<_> = results
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| format!("{}-{}", r.topic, r.partition))
        .collect();
    if !elected.is_empty() {
        tracing::info!(?election_type, partitions = ?elected, "leaders elected");
    }
    let grouped = group_by_topic(results.into_iter().map(|r| {
        let (code, message) = result_code(&r);
        (r.topic, r.partition, code, message)
    }));
    response(ctx, code::NONE, grouped)
}

/// Kafka's error code and default message for one partition's result.
fn result_code(r: &ElectionResult) -> (i16, Option<&'static str>) {
    match r.error {
        None => (code::NONE, None),
        Some(ElectionError::UnknownTopicOrPartition) => (
            code::UNKNOWN_TOPIC_OR_PARTITION,
            Some("This server does not host this topic-partition."),
        ),
        Some(ElectionError::ElectionNotNeeded) => (
            code::ELECTION_NOT_NEEDED,
            Some("Leader election not needed for topic partition."),
        ),
        Some(ElectionError::PreferredLeaderNotAvailable) => (
            code::PREFERRED_LEADER_NOT_AVAILABLE,
            Some("The preferred leader was not available."),
        ),
        Some(ElectionError::EligibleLeadersNotAvailable) => (
            code::ELIGIBLE_LEADERS_NOT_AVAILABLE,
            Some("Eligible topic partition leaders are not available."),
        ),
    }
}

/// The whole request failed: `error` for every partition it named (Kafka's error response),
/// and as the top-level error from v1.
fn failed(
    ctx: &RequestContext,
    requested: Option<&[(String, i32)]>,
    error: AdminError,
) -> ElectLeadersResponse {
    let message = error.message.clone();
    let rows = requested
        .unwrap_or_default()
        .iter()
        .map(|(t, p)| (t.clone(), *p, error.code, Some(message.as_str())));
    let grouped = group_by_topic(rows);
    response(ctx, error.code, grouped)
}

fn response(
    ctx: &RequestContext,
    error_code: i16,
    results: Vec<ReplicaElectionResult>,
) -> ElectLeadersResponse {
    let mut resp = ElectLeadersResponse::default().with_replica_election_results(results);
    if ctx.api_version >= 1 {
        resp = resp.with_error_code(error_code);
    }
    resp
}

/// One `ReplicaElectionResult` per run of the same topic, in order.
fn group_by_topic<'a>(
    rows: impl Iterator<Item = (String, i32, i16, Option<&'a str>)>,
) -> Vec<ReplicaElectionResult> {
    let mut out: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, partition, error_code, message) in rows {
        let result = PartitionResult::default()
            .with_partition_id(partition)
            .with_error_code(error_code)
            .with_error_message(message.map(str_bytes));
        match out.last_mut() {
            Some(last) if last.topic.0.as_str() == topic => last.partition_result.push(result),
            _ => out.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    out
}
