//! ListPartitionReassignments (API 46, v0; KIP-455): the partitions with a reassignment in
//! progress, from this node's metadata image: every one when `topics` is null, else those of the
//! named partitions. As Kafka's controller does, unknown topics and partitions, and partitions
//! without a reassignment, are left out (no error), and so are topics left with no partition.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::{MetadataImage, PartitionImage, TopicImage};

pub fn handle(
    ctx: &RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    list(&ctx.shard.metadata(), &req)
}

fn list(
    image: &MetadataImage,
    req: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let topics = match &req.topics {
        None => image
            .topics
            .values()
            .filter_map(|t| ongoing(t, 0..t.partition_count()))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|w| {
                let t = image.topic(w.name.as_str())?;
                ongoing(t, w.partition_indexes.iter().copied())
            })
            .collect(),
    };
    ListPartitionReassignmentsResponse::default()
        .with_error_code(code::NONE)
        .with_error_message(None)
        .with_topics(topics)
}

/// The reassignments in progress among `partitions` of `t`, if there is one.
fn ongoing(
    t: &TopicImage,
    partitions: impl Iterator<Item = i32>,
) -> Option<OngoingTopicReassignment> {
    let found: Vec<OngoingPartitionReassignment> = partitions
        .filter_map(|i| {
            let p = t.partition_image(i).filter(|p| p.is_reassigning())?;
            Some(describe(i, p))
        })
        .collect();
    (!found.is_empty()).then(|| {
        OngoingTopicReassignment::default()
            .with_name(TopicName(str_bytes(t.name.clone())))
            .with_partitions(found)
    })
}

fn describe(index: i32, p: &PartitionImage) -> OngoingPartitionReassignment {
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect();
    OngoingPartitionReassignment::default()
        .with_partition_index(index)
        .with_replicas(ids(&p.replicas))
        .with_adding_replicas(ids(&p.adding_replicas))
        .with_removing_replicas(ids(&p.removing_replicas))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn image() -> MetadataImage {
        let steady = PartitionImage {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        let moving = PartitionImage {
            replicas: vec![1, 3, 2],
            adding_replicas: vec![3],
            removing_replicas: vec![2],
            ..steady.clone()
        };
        let topic = |name: &str, partitions: Vec<PartitionImage>| TopicImage {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            configs: BTreeMap::new(),
            internal: false,
            partitions,
        };
        let mut img = MetadataImage::empty();
        for t in [
            topic("a", vec![steady.clone(), moving.clone()]),
            topic("b", vec![steady.clone()]),
            topic("c", vec![moving, steady]),
        ] {
            img.topics.insert(t.name.clone(), t);
        }
        img
    }

    fn listed(resp: &ListPartitionReassignmentsResponse) -> Vec<(String, i32, Vec<i32>)> {
        resp.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.adding_replicas.iter().map(|b| b.0).collect(),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn null_topics_lists_every_reassignment_in_progress() {
        let resp = list(&image(), &ListPartitionReassignmentsRequest::default());
        assert_eq!(resp.error_code, code::NONE);
        assert_eq!(
            listed(&resp),
            vec![("a".into(), 1, vec![3]), ("c".into(), 0, vec![3])]
        );
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.replicas, vec![BrokerId(1), BrokerId(3), BrokerId(2)]);
        assert_eq!(p.removing_replicas, vec![BrokerId(2)]);
    }

    #[test]
    fn named_partitions_skip_unknown_and_steady_ones() {
        let want = |name: &'static str, parts: Vec<i32>| {
            ListPartitionReassignmentsTopics::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_partition_indexes(parts)
        };
        let req = ListPartitionReassignmentsRequest::default().with_topics(Some(vec![
            want("a", vec![0, 1, 7]),
            want("b", vec![0]),
            want("nope", vec![0]),
            want("c", vec![1]),
        ]));
        let resp = list(&image(), &req);
        assert_eq!(listed(&resp), vec![("a".into(), 1, vec![3])]);
    }
}
