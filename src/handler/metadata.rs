//! Metadata: brokers, cluster id, controller, topics with partitions and ids.
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
    let b = &image.broker;
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(b.node_id))
        .with_host(str_bytes(b.host.clone()))
        .with_port(i32::from(b.port))
        .with_rack(b.rack.clone().map(str_bytes));
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_topics(topics);
    if v >= 1 {
        resp = resp.with_controller_id(BrokerId(b.node_id));
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
        partitions: ctx.shard.config.int("num.partitions", 1) as i32,
        replication_factor: ctx.shard.config.int("default.replication.factor", 1) as i16,
        configs: Default::default(),
        internal: false,
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

pub fn topic_entry(image: &MetadataImage, t: &TopicImage, v: i16) -> MetadataResponseTopic {
    let node = BrokerId(image.broker.node_id);
    let partitions = (0..t.partitions)
        .map(|p| {
            let mut part = MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if v >= 7 {
                part = part.with_leader_epoch(t.leader_epoch);
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
