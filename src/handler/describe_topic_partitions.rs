//! DescribeTopicPartitions (API 75, v0; KIP-966): topic and partition metadata, paged.
//!
//! Answered from this shard's image, following Kafka's `DescribeTopicPartitionsRequestHandler`
//! and `KRaftMetadataCache.describeTopicResponse`: topics sorted by name (every topic when the
//! list is empty), starting at the cursor, at most `response_partition_limit` partitions (capped
//! at Kafka's `max.request.partition.size.limit` default), and a `next_cursor` where it stopped.
//! Each partition's leader (LEADER_NOT_AVAILABLE without one), leader epoch, replicas, ISR and
//! offline replicas come from the image; eligible leader replicas are empty lists (no KIP-966
//! ELR yet).

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};

use super::create_topics::AdminError;
use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::controller;
use crate::cluster::{MetadataImage, TopicImage};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response carries.
const RESPONSE_PARTITIONS_MAX: i32 = 2000;

/// Every operation Kafka supports on a TOPIC resource, as an `AclOperation` bitfield (READ 3,
/// WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11).
/// Sluice has no authorizer; Kafka without one answers all of them, and always fills this field.
const TOPIC_OPERATIONS_ALL: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

pub fn handle(
    ctx: &RequestContext,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    describe(&ctx.shard.metadata(), &req)
}

fn describe(
    image: &MetadataImage,
    req: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let all_topics = req.topics.is_empty();
    let cursor = req
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.as_str(), c.partition_index));
    let after = cursor.map_or("", |(name, _)| name);
    let names: BTreeSet<&str> = if all_topics {
        image
            .topics
            .keys()
            .map(String::as_str)
            .filter(|n| *n >= after)
            .collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| *n >= after)
            .collect()
    };
    if let Some((name, index)) = cursor {
        let refused = if !all_topics && !names.contains(name) {
            Some(format!(
                "DescribeTopicPartitionsRequest topic list should contain the cursor topic: {name}"
            ))
        } else if index < 0 {
            Some(format!(
                "DescribeTopicPartitionsRequest cursor partition must be valid: {name}-{index}"
            ))
        } else {
            None
        };
        if let Some(message) = refused {
            return refuse_all(req, AdminError::new(code::INVALID_REQUEST, message));
        }
    }
    let mut remaining = req
        .response_partition_limit
        .clamp(1, RESPONSE_PARTITIONS_MAX);
    let mut resp = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // The previous topic filled the page exactly: resume at the start of this one.
            resp.next_cursor = Some(cursor_at(name, 0));
            break;
        }
        let Some(topic) = image.topic(name) else {
            // Named topics that do not exist are reported; with an empty list there are none.
            resp.topics.push(missing_topic(name));
            continue;
        };
        let start = match cursor {
            Some((at, index)) if at == name => index,
            _ => 0,
        };
        let end = topic.partition_count().min(start.saturating_add(remaining));
        let partitions: Vec<_> = (start..end)
            .filter_map(|p| partition(image, topic, p))
            .collect();
        let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        resp.topics.push(topic_entry(topic, partitions));
        if end < topic.partition_count() {
            resp.next_cursor = Some(cursor_at(name, end));
            break;
        }
        remaining -= count;
    }
    resp
}

fn topic_entry(
    topic: &TopicImage,
    partitions: Vec<DescribeTopicPartitionsResponsePartition>,
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code::NONE)
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(TOPIC_OPERATIONS_ALL)
}

fn partition(
    image: &MetadataImage,
    topic: &TopicImage,
    index: i32,
) -> Option<DescribeTopicPartitionsResponsePartition> {
    let p = topic.partition_image(index)?;
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let error = if image.leader_available(p) {
        code::NONE
    } else {
        code::LEADER_NOT_AVAILABLE
    };
    Some(
        DescribeTopicPartitionsResponsePartition::default()
            .with_error_code(error)
            .with_partition_index(index)
            .with_leader_id(BrokerId(p.leader))
            .with_leader_epoch(p.leader_epoch)
            .with_replica_nodes(ids(&p.replicas))
            .with_isr_nodes(ids(&p.isr))
            .with_eligible_leader_replicas(Some(Vec::new()))
            .with_last_known_elr(Some(Vec::new()))
            .with_offline_replicas(ids(&image.offline_replicas(p))),
    )
}

/// A requested topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION, or INVALID_TOPIC_EXCEPTION
/// when its name could never exist.
fn missing_topic(name: &str) -> DescribeTopicPartitionsResponseTopic {
    let error = match controller::validate_topic_name(name) {
        Ok(()) => code::UNKNOWN_TOPIC_OR_PARTITION,
        Err(e) => AdminError::controller(&e).code,
    };
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error)
        .with_name(Some(TopicName(str_bytes(name))))
        .with_is_internal(name == crate::cluster::image::CONSUMER_OFFSETS_TOPIC)
        .with_topic_authorized_operations(TOPIC_OPERATIONS_ALL)
}

/// Kafka's answer when it refuses the whole request: every requested topic with the error.
fn refuse_all(
    req: &DescribeTopicPartitionsRequest,
    e: AdminError,
) -> DescribeTopicPartitionsResponse {
    tracing::debug!(error = %e.message, "DescribeTopicPartitions refused");
    let topics = req
        .topics
        .iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(e.code)
                .with_name(Some(t.name.clone()))
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}

fn cursor_at(name: &str, index: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(str_bytes(name)))
        .with_partition_index(index)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::describe_topic_partitions_request::{
        self as request, TopicRequest,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::cluster::image::NO_LEADER;
    use crate::cluster::{BrokerRegistration, PartitionImage};

    fn image(topics: &[(&str, i32)]) -> MetadataImage {
        let p = PartitionImage {
            replicas: vec![9],
            isr: vec![9],
            leader: 9,
            leader_epoch: 3,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        let topics = topics
            .iter()
            .map(|(name, partitions)| {
                let t = TopicImage {
                    name: name.to_string(),
                    id: uuid::Uuid::new_v4(),
                    partitions: vec![p.clone(); *partitions as usize],
                    configs: BTreeMap::new(),
                    internal: false,
                };
                (name.to_string(), t)
            })
            .collect();
        let broker = BrokerRegistration {
            node_id: 9,
            incarnation_id: uuid::Uuid::nil(),
            epoch: 1,
            host: "h".into(),
            port: 1,
            rack: None,
            fenced: false,
            in_controlled_shutdown: false,
        };
        MetadataImage {
            cluster_id: "c".into(),
            version: 1,
            brokers: BTreeMap::from([(9, broker)]),
            topics,
            next_producer_id: 0,
            broker_defaults: Default::default(),
        }
    }

    #[test]
    fn partitions_carry_replicas_isr_and_offline_replicas() {
        let mut img = image(&[("t", 2)]);
        let t = img.topics.get_mut("t").unwrap();
        t.partitions[1] = PartitionImage {
            replicas: vec![9, 7],
            isr: vec![7],
            leader: NO_LEADER,
            leader_epoch: 5,
            partition_epoch: 6,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        let r = describe(&img, &request(&["t"], 10, None));
        let p = &r.topics[0].partitions[1];
        assert_eq!(
            (p.error_code, p.leader_id.0, p.leader_epoch),
            (code::LEADER_NOT_AVAILABLE, -1, 5)
        );
        assert_eq!(p.replica_nodes, vec![BrokerId(9), BrokerId(7)]);
        assert_eq!(p.isr_nodes, vec![BrokerId(7)]);
        // 7 is not registered.
        assert_eq!(p.offline_replicas, vec![BrokerId(7)]);
        assert_eq!(r.topics[0].partitions[0].error_code, code::NONE);
    }

    fn request(
        names: &[&'static str],
        limit: i32,
        cursor: Option<(&'static str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        TopicRequest::default().with_name(TopicName(StrBytes::from_static_str(n)))
                    })
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(n, p)| {
                request::Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_static_str(n)))
                    .with_partition_index(p)
            }))
    }

    /// (topic, error, partition indexes) per topic.
    type Topics = Vec<(String, i16, Vec<i32>)>;

    /// The topics of a response and its next cursor.
    fn summary(r: &DescribeTopicPartitionsResponse) -> (Topics, Option<(String, i32)>) {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                (
                    name,
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let next = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.to_string(), c.partition_index));
        (topics, next)
    }

    #[test]
    fn all_topics_sorted_with_node_as_leader() {
        let img = image(&[("b", 2), ("a", 1)]);
        let r = describe(&img, &request(&[], 2000, None));
        let (topics, next) = summary(&r);
        assert_eq!(
            topics,
            vec![("a".into(), 0, vec![0]), ("b".into(), 0, vec![0, 1])]
        );
        assert_eq!(next, None);
        let p = &r.topics[1].partitions[1];
        assert_eq!(
            (p.leader_id.0, p.leader_epoch, p.replica_nodes.clone()),
            (9, 3, vec![BrokerId(9)])
        );
        assert_eq!(p.eligible_leader_replicas, Some(Vec::new()));
        assert_eq!(r.topics[0].topic_id, img.topics["a"].id);
    }

    #[test]
    fn pages_by_partition_limit_and_resumes_at_the_cursor() {
        let img = image(&[("a", 3), ("b", 2), ("c", 1)]);
        let (topics, next) = summary(&describe(&img, &request(&[], 2, None)));
        assert_eq!(topics, vec![("a".into(), 0, vec![0, 1])]);
        assert_eq!(next, Some(("a".into(), 2)));
        let (topics, next) = summary(&describe(&img, &request(&[], 3, Some(("a", 2)))));
        assert_eq!(
            topics,
            vec![("a".into(), 0, vec![2]), ("b".into(), 0, vec![0, 1])]
        );
        assert_eq!(next, Some(("c".into(), 0)));
        let (topics, next) = summary(&describe(&img, &request(&[], 3, Some(("c", 0)))));
        assert_eq!(topics, vec![("c".into(), 0, vec![0])]);
        assert_eq!(next, None);
    }

    #[test]
    fn named_topics_report_unknown_and_invalid() {
        let img = image(&[("a", 1)]);
        let (topics, _) = summary(&describe(
            &img,
            &request(&["zz", "a", "bad name"], 10, None),
        ));
        assert_eq!(
            topics,
            vec![
                ("a".into(), 0, vec![0]),
                ("bad name".into(), code::INVALID_TOPIC_EXCEPTION, vec![]),
                ("zz".into(), code::UNKNOWN_TOPIC_OR_PARTITION, vec![]),
            ]
        );
    }

    #[test]
    fn cursor_must_be_listed_and_valid() {
        let img = image(&[("a", 1), ("b", 1)]);
        let (topics, _) = summary(&describe(&img, &request(&["a"], 10, Some(("b", 0)))));
        assert_eq!(topics, vec![("a".into(), code::INVALID_REQUEST, vec![])]);
        let (topics, _) = summary(&describe(&img, &request(&[], 10, Some(("a", -1)))));
        assert!(topics.is_empty());
    }
}
