//! AlterPartitionReassignments (API 45, v0–1; KIP-455, v1 KIP-860's
//! `allow_replication_factor_change`): sets or cancels (`replicas` null) partitions' target
//! replicas through one `ControllerCommand::AlterPartitionReassignments` on shard 0.
//!
//! The controller answers each partition (UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT
//! for duplicates or unregistered brokers, INVALID_REPLICATION_FACTOR when v1 forbids a change
//! of replica count, NO_REASSIGNMENT_IN_PROGRESS for a cancel of none); a failure to commit at
//! all is answered, as Kafka does, with its code at the top and on every partition.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use super::create_topics::{submit, unexpected_answer, AdminError};
use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::controller::reassign::Reassignment;
use crate::cluster::controller::Outcome;
use crate::cluster::ControllerCommand;
use crate::limits;

pub async fn handle(
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let reassignments = reassignments(&req);
    let resp = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change);
    if reassignments.len() > limits::REASSIGNMENT_PARTITIONS_PER_REQUEST_MAX {
        let e = AdminError::new(
            code::INVALID_REQUEST,
            format!(
                "A request may reassign at most {} partitions; this one names {}.",
                limits::REASSIGNMENT_PARTITIONS_PER_REQUEST_MAX,
                reassignments.len()
            ),
        );
        tracing::info!(
            partitions = reassignments.len(),
            "reassignment request refused: too many partitions"
        );
        return fail_all(resp, &req, &e);
    }
    let count = reassignments.len();
    let cmd = ControllerCommand::AlterPartitionReassignments {
        reassignments,
        allow_replication_factor_change: req.allow_replication_factor_change,
    };
    let results = match submit(&ctx.shard, cmd, false).await {
        Ok(Outcome::Reassignments(results)) if results.len() == count => results,
        Ok(_) => return fail_all(resp, &req, &unexpected_answer()),
        Err(e) => {
            tracing::info!(code = e.code, error = %e.message, "reassignment not committed");
            return fail_all(resp, &req, &e);
        }
    };
    let mut results = results.into_iter();
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let outcome = results
                        .next()
                        .unwrap_or(Err(crate::cluster::ControllerError::UnknownTopic));
                    let r = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match outcome {
                        Ok(()) => r.with_error_code(code::NONE).with_error_message(None),
                        Err(e) => {
                            tracing::info!(topic = %t.name.as_str(), partition = p.partition_index,
                                error = %e, "partition reassignment refused");
                            let e = AdminError::controller(&e);
                            r.with_error_code(e.code)
                                .with_error_message(Some(str_bytes(e.message)))
                        }
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    resp.with_error_code(code::NONE)
        .with_error_message(None)
        .with_responses(responses)
}

/// The request's partitions in order, as the controller takes them.
fn reassignments(req: &AlterPartitionReassignmentsRequest) -> Vec<Reassignment> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassignment {
                topic: t.name.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect()
}

/// `e` at the top and on every partition (Kafka's `getErrorResponse`).
fn fail_all(
    resp: AlterPartitionReassignmentsResponse,
    req: &AlterPartitionReassignmentsRequest,
    e: &AdminError,
) -> AlterPartitionReassignmentsResponse {
    let responses = req
        .topics
        .iter()
        .map(|t| {
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ReassignablePartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(e.code)
                                .with_error_message(Some(str_bytes(e.message.clone())))
                        })
                        .collect(),
                )
        })
        .collect();
    resp.with_error_code(e.code)
        .with_error_message(Some(str_bytes(e.message.clone())))
        .with_responses(responses)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn request() -> AlterPartitionReassignmentsRequest {
        AlterPartitionReassignmentsRequest::default().with_topics(vec![
            ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("a")))
                .with_partitions(vec![
                    ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(Some(vec![BrokerId(3), BrokerId(1)])),
                    ReassignablePartition::default()
                        .with_partition_index(2)
                        .with_replicas(None),
                ]),
            ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("b")))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(1)
                    .with_replicas(Some(vec![BrokerId(2)]))]),
        ])
    }

    #[test]
    fn partitions_go_to_the_controller_in_request_order() {
        let r = reassignments(&request());
        let got: Vec<(&str, i32, Option<Vec<i32>>)> = r
            .iter()
            .map(|r| (r.topic.as_str(), r.partition, r.target.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 0, Some(vec![3, 1])),
                ("a", 2, None),
                ("b", 1, Some(vec![2]))
            ]
        );
    }

    #[test]
    fn a_failure_to_commit_is_answered_at_the_top_and_on_every_partition() {
        let e = AdminError::new(code::NOT_CONTROLLER, "no quorum");
        let resp = fail_all(
            AlterPartitionReassignmentsResponse::default(),
            &request(),
            &e,
        );
        assert_eq!(resp.error_code, code::NOT_CONTROLLER);
        let codes: Vec<(i32, i16)> = resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.error_code))
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                (0, code::NOT_CONTROLLER),
                (2, code::NOT_CONTROLLER),
                (1, code::NOT_CONTROLLER)
            ]
        );
    }
}
