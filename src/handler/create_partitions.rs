//! CreatePartitions (API 37, v0–3): raises a topic's partition count through
//! `ControllerCommand::CreatePartitions` on shard 0 (`validate_only`: the pure check only).
//!
//! A manual assignment goes to the controller, which checks it against the registered brokers
//! and the topic's replication factor; without one the controller places the new replicas.
//! The partition count of an internal topic is fixed: consumer groups are placed by hashing onto
//! `__consumer_offsets`' partitions, so growing it would move every group's committed offsets.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::create_topics::{duplicates, invalid_assignment, submit, unexpected_answer, AdminError};
use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::controller::Outcome;
use crate::cluster::{ControllerCommand, MetadataImage};

pub async fn handle(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let shard = &ctx.shard;
    let image = shard.metadata();
    let duplicated = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    // Kafka answers each repeated name once, first, and changes none of them.
    let mut repeated: Vec<&str> = duplicated.iter().copied().collect();
    repeated.sort_unstable();
    for name in repeated {
        results.push(result(
            name,
            Err(AdminError::new(
                code::INVALID_REQUEST,
                "Duplicate topic name.",
            )),
        ));
    }
    let validate_only = req.validate_only;
    let changes = req
        .topics
        .iter()
        .filter(|t| !duplicated.contains(t.name.as_str()))
        .map(|t| {
            let check = check_topic(&image, t);
            async move {
                let outcome = match check {
                    Ok(()) => {
                        let cmd = ControllerCommand::CreatePartitions {
                            name: t.name.to_string(),
                            count: t.count,
                            assignment: t.assignments.as_ref().map(|a| {
                                a.iter()
                                    .map(|r| r.broker_ids.iter().map(|b| b.0).collect())
                                    .collect()
                            }),
                        };
                        submit(shard, cmd, validate_only)
                            .await
                            .and_then(|o| match o {
                                Outcome::Topic(_) => Ok(()),
                                _ => Err(unexpected_answer()),
                            })
                    }
                    Err(e) => Err(e),
                };
                result(t.name.as_str(), outcome)
            }
        });
    results.extend(futures::future::join_all(changes).await);
    CreatePartitionsResponse::default().with_results(results)
}

/// What is answered before the controller: internal topics, and an assignment count that does
/// not match the increase. An unknown topic, a count that is no increase and the assigned
/// brokers are the controller's to check.
fn check_topic(image: &MetadataImage, t: &CreatePartitionsTopic) -> Result<(), AdminError> {
    let Some(topic) = image.topic(t.name.as_str()) else {
        return Ok(());
    };
    if topic.internal {
        return Err(AdminError::new(
            code::INVALID_REQUEST,
            format!(
                "Cannot change the partition count of internal topic {}.",
                topic.name
            ),
        ));
    }
    let Some(assignments) = &t.assignments else {
        return Ok(());
    };
    let added = i64::from(t.count) - i64::from(topic.partition_count());
    if added > 0 && added != assignments.len() as i64 {
        return Err(invalid_assignment(format!(
            "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
            assignments.len()
        )));
    }
    Ok(())
}

fn result(name: &str, outcome: Result<(), AdminError>) -> CreatePartitionsTopicResult {
    let r = CreatePartitionsTopicResult::default()
        .with_name(kafka_protocol::messages::TopicName(str_bytes(name)));
    match outcome {
        Ok(()) => r.with_error_code(code::NONE).with_error_message(None),
        Err(e) => r
            .with_error_code(e.code)
            .with_error_message(Some(str_bytes(e.message))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::cluster::image::CONSUMER_OFFSETS_TOPIC;
    use crate::cluster::{PartitionImage, TopicImage};

    fn image() -> MetadataImage {
        let p = PartitionImage {
            replicas: vec![5],
            isr: vec![5],
            leader: 5,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        let topic = |name: &str, internal| TopicImage {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions: vec![p.clone(); 2],
            configs: BTreeMap::new(),
            internal,
        };
        MetadataImage {
            cluster_id: "c".into(),
            version: 1,
            brokers: BTreeMap::new(),
            topics: BTreeMap::from([
                ("t".to_string(), topic("t", false)),
                (
                    CONSUMER_OFFSETS_TOPIC.to_string(),
                    topic(CONSUMER_OFFSETS_TOPIC, true),
                ),
            ]),
            next_producer_id: 0,
            broker_defaults: Default::default(),
        }
    }

    fn request(
        name: &'static str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
    ) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_count(count)
            .with_assignments(assignments.map(|a| {
                a.into_iter()
                    .map(|ids| {
                        CreatePartitionsAssignment::default()
                            .with_broker_ids(ids.into_iter().map(BrokerId).collect())
                    })
                    .collect()
            }))
    }

    #[test]
    fn assignments_must_match_the_increase() {
        let img = image();
        assert!(check_topic(&img, &request("t", 4, None)).is_ok());
        assert!(check_topic(&img, &request("t", 4, Some(vec![vec![5], vec![5]]))).is_ok());
        let e = check_topic(&img, &request("t", 4, Some(vec![vec![5]]))).unwrap_err();
        assert!(e.message.contains("add 2 additional"));
        // Unknown topics and decreases are the controller's to answer.
        assert!(check_topic(&img, &request("nope", 4, Some(vec![vec![6]]))).is_ok());
    }

    #[test]
    fn internal_topics_keep_their_partition_count() {
        let e = check_topic(&image(), &request(CONSUMER_OFFSETS_TOPIC, 10, None)).unwrap_err();
        assert_eq!(e.code, code::INVALID_REQUEST);
    }
}
