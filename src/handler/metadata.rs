//! Metadata: every unfenced broker, cluster id, controller, topics with ids and each partition's
//! leader, leader epoch, replicas, ISR and offline replicas.
//! Unknown topics are created when `auto.create.topics.enable` and the request allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::errors::{self, code};
use super::{str_bytes, RequestContext};
use crate::cluster::{ControllerCommand, MetadataImage, TopicImage};
use crate::model::ShardId;
use crate::runtime::messages::{ShardRequest, ShardResponse};

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let v = ctx.api_version;
    let image = ctx.shard.metadata();
    let req_cluster_ops = req.include_cluster_authorized_operations;
    let req_topic_ops = req.include_topic_authorized_operations;
    let mut topics = Vec::new();
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && v == 0,
    };
    if all {
        for t in image.topics.values() {
            topics.push(topic_entry(&image, t, v));
        }
    } else {
        let allow_create = v < 4 || req.allow_auto_topic_creation;
        for requested in req.topics.unwrap_or_default() {
            // A request by topic id (v10+) carries the id and a null or empty name (the Java
            // client sends ""); Kafka looks up by id whenever the id is not zero.
            let by_name = requested
                .name
                .as_ref()
                .filter(|_| requested.topic_id.is_nil())
                .map(|n| n.0.to_string());
            let found = match &by_name {
                Some(name) => image.topic(name).cloned(),
                None => image.topic_by_id(&requested.topic_id).cloned(),
            };
            match (found, by_name) {
                (Some(t), _) => topics.push(topic_entry(&image, &t, v)),
                (None, Some(name))
                    if allow_create && ctx.shard.config.flag("auto.create.topics.enable") =>
                {
                    topics.push(auto_create(ctx, &name, v).await)
                }
                (None, name) => {
                    let mut e = MetadataResponseTopic::default()
                        .with_error_code(if name.is_some() {
                            code::UNKNOWN_TOPIC_OR_PARTITION
                        } else {
                            code::UNKNOWN_TOPIC_ID
                        })
                        .with_name(name.map(|n| TopicName(str_bytes(n))));
                    if v >= 10 {
                        e = e.with_topic_id(requested.topic_id);
                    }
                    topics.push(e);
                }
            }
        }
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(broker_entries(&image))
        .with_topics(topics);
    if v >= 1 {
        resp = resp.with_controller_id(BrokerId(ctx.shard.controller()));
    }
    if v >= 2 {
        resp = resp.with_cluster_id(Some(str_bytes(image.cluster_id.clone())));
    }
    // No authorizer yet: every operation is allowed, as Kafka reports without one.
    if (8..=10).contains(&v) && req_cluster_ops {
        resp = resp.with_cluster_authorized_operations(CLUSTER_OPERATIONS_ALL);
    }
    if v >= 8 && req_topic_ops {
        for t in resp
            .topics
            .iter_mut()
            .filter(|t| t.error_code == code::NONE)
        {
            t.topic_authorized_operations = TOPIC_OPERATIONS_ALL;
        }
    }
    resp
}

async fn auto_create(ctx: &RequestContext, name: &str, v: i16) -> MetadataResponseTopic {
    let cmd = ControllerCommand::CreateTopic {
        name: name.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions: ctx.shard.config.int("num.partitions", 1) as i32,
        replication_factor: ctx.shard.config.int("default.replication.factor", 1) as i16,
        configs: Default::default(),
        internal: false,
        assignment: None,
    };
    let outcome = ctx
        .shard
        .call(ShardId(0), ShardRequest::Controller(cmd))
        .await;
    let image = ctx.shard.metadata();
    match (outcome, image.topic(name)) {
        (_, Some(t)) => {
            tracing::info!(topic = name, "auto-created topic");
            topic_entry(&image, t, v)
        }
        (ShardResponse::Controller(Err(e)), None) => MetadataResponseTopic::default()
            .with_error_code(errors::controller(&e))
            .with_name(Some(TopicName(str_bytes(name)))),
        _ => MetadataResponseTopic::default()
            .with_error_code(code::LEADER_NOT_AVAILABLE)
            .with_name(Some(TopicName(str_bytes(name)))),
    }
}

/// Bit sets of Kafka's AclOperation codes a client may perform, as Kafka's
/// broker reports them when no authorizer is configured.
const CLUSTER_OPERATIONS_ALL: i32 = 8096;
const TOPIC_OPERATIONS_ALL: i32 = 3576;

/// Every unfenced broker (Kafka lists the brokers that are alive).
pub fn broker_entries(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .unfenced_brokers()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect()
}

/// A topic's partitions: leader (LEADER_NOT_AVAILABLE without one), leader epoch (v7+),
/// replicas, ISR and offline replicas (v5+: fenced or unregistered).
pub fn topic_entry(image: &MetadataImage, t: &TopicImage, v: i16) -> MetadataResponseTopic {
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = (0..)
        .zip(&t.partitions)
        .map(|(index, p)| {
            let error = if image.leader_available(p) {
                code::NONE
            } else {
                code::LEADER_NOT_AVAILABLE
            };
            let mut part = MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr));
            if v >= 5 {
                part = part.with_offline_replicas(ids(&image.offline_replicas(p)));
            }
            if v >= 7 {
                part = part.with_leader_epoch(p.leader_epoch);
            }
            part
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_is_internal(t.internal)
        .with_partitions(partitions);
    if v >= 10 {
        entry = entry.with_topic_id(t.id);
    }
    entry
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::controller::{apply, Outcome};

    /// Three registered, unfenced brokers (racks r1, r2, r1) and a topic `t` of 6 partitions, RF 3.
    fn three_brokers() -> MetadataImage {
        let mut img = MetadataImage::empty();
        for id in 1..=3 {
            let register = ControllerCommand::RegisterBroker {
                node_id: id,
                incarnation_id: uuid::Uuid::from_u128(id as u128),
                host: format!("host{id}"),
                port: 9090 + id as u16,
                rack: Some(if id == 2 { "r2" } else { "r1" }.to_string()),
            };
            let (next, outcome) = apply(&img, &register).unwrap();
            let Outcome::BrokerRegistered { epoch, .. } = outcome else {
                panic!("no epoch")
            };
            img = apply(
                &next,
                &ControllerCommand::UnfenceBroker { node_id: id, epoch },
            )
            .unwrap()
            .0;
        }
        let create = ControllerCommand::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::from_u128(42),
            partitions: 6,
            replication_factor: 3,
            configs: BTreeMap::new(),
            internal: false,
            assignment: None,
        };
        let mut img = apply(&img, &create).unwrap().0;
        // Every replica in sync, as follower replication will make them (new partitions
        // start with the leader alone in the ISR).
        for t in img.topics.values_mut() {
            for p in &mut t.partitions {
                p.isr = p.replicas.clone();
            }
        }
        img
    }

    fn ids(b: &[BrokerId]) -> Vec<i32> {
        b.iter().map(|b| b.0).collect()
    }

    #[test]
    fn three_brokers_then_a_fence() {
        let img = three_brokers();
        let brokers = broker_entries(&img);
        let listed: Vec<(i32, String, i32)> = brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        assert_eq!(
            listed,
            vec![
                (1, "host1".into(), 9091),
                (2, "host2".into(), 9092),
                (3, "host3".into(), 9093)
            ]
        );
        let t = topic_entry(&img, &img.topics["t"], 12);
        let mut led = BTreeMap::new();
        for p in &t.partitions {
            assert_eq!((p.error_code, p.leader_epoch), (code::NONE, 0));
            assert_eq!(ids(&p.replica_nodes).len(), 3);
            assert_eq!(ids(&p.isr_nodes), ids(&p.replica_nodes));
            assert_eq!(p.leader_id, p.replica_nodes[0]);
            assert!(p.offline_replicas.is_empty());
            *led.entry(p.leader_id.0).or_insert(0) += 1;
        }
        assert_eq!(led, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));

        // Broker 2 is fenced: it leaves Metadata, every ISR, and its leadership moves on.
        let epoch = img.brokers[&2].epoch;
        let (fenced, _) =
            apply(&img, &ControllerCommand::FenceBroker { node_id: 2, epoch }).unwrap();
        let listed: Vec<i32> = broker_entries(&fenced)
            .iter()
            .map(|b| b.node_id.0)
            .collect();
        assert_eq!(listed, vec![1, 3]);
        let before = topic_entry(&img, &img.topics["t"], 12);
        let after = topic_entry(&fenced, &fenced.topics["t"], 12);
        for (old, new) in before.partitions.iter().zip(&after.partitions) {
            assert_eq!(new.replica_nodes, old.replica_nodes);
            assert_eq!(ids(&new.offline_replicas), vec![2]);
            let isr: Vec<i32> = ids(&old.isr_nodes)
                .into_iter()
                .filter(|r| *r != 2)
                .collect();
            assert_eq!(ids(&new.isr_nodes), isr);
            if old.leader_id.0 == 2 {
                assert_eq!((new.leader_id.0, new.leader_epoch), (isr[0], 1));
            } else {
                assert_eq!((new.leader_id, new.leader_epoch), (old.leader_id, 0));
            }
            assert_eq!(new.error_code, code::NONE);
        }
    }

    #[test]
    fn a_partition_without_leader_is_leader_not_available() {
        let img = three_brokers();
        let mut img = img;
        for id in [1, 2, 3] {
            let epoch = img.brokers[&id].epoch;
            img = apply(&img, &ControllerCommand::FenceBroker { node_id: id, epoch })
                .unwrap()
                .0;
        }
        assert!(broker_entries(&img).is_empty());
        let t = topic_entry(&img, &img.topics["t"], 12);
        for p in &t.partitions {
            assert_eq!(
                (p.error_code, p.leader_id.0),
                (code::LEADER_NOT_AVAILABLE, -1)
            );
            assert_eq!(ids(&p.isr_nodes).len(), 1, "the last ISR member stays");
            assert_eq!(ids(&p.offline_replicas).len(), 3);
        }
    }

    #[test]
    fn encodes_at_every_served_version() {
        use kafka_protocol::protocol::Encodable;
        let img = three_brokers();
        for v in 0..=13 {
            let resp = MetadataResponse::default()
                .with_brokers(broker_entries(&img))
                .with_topics(vec![topic_entry(&img, &img.topics["t"], v)]);
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, v).unwrap();
        }
    }
}
