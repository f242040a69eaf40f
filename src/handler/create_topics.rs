//! CreateTopics (API 19, v2–7). Each topic becomes a `ControllerCommand::CreateTopic` for the
//! controller on shard 0; with `validate_only` the command is checked against this shard's image
//! by the same pure `controller::apply` and never sent.
//!
//! Also home of what every admin handler shares: [`AdminError`], [`submit`] and [`duplicates`].
//!
//! The topic id is chosen here (the controller's `apply` is deterministic); a manual replica
//! assignment goes to the controller as it came, which checks it against the registered brokers,
//! and so does the replication factor (`default.replication.factor` when the request says -1).

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs;
use super::errors::{self, code};
use super::{str_bytes, RequestContext};
use crate::cluster::controller::{self, Outcome};
use crate::cluster::{ControllerCommand, ControllerError, TopicImage};
use crate::config::BrokerConfig;
use crate::model::ShardId;
use crate::runtime::messages::{ShardRequest, ShardResponse};
use crate::runtime::Shard;

/// Why one item of an admin request failed: the Kafka error code and the message sent with it.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminError {
    pub code: i16,
    pub message: String,
}

impl AdminError {
    pub fn new(code: i16, message: impl Into<String>) -> AdminError {
        AdminError {
            code,
            message: message.into(),
        }
    }

    pub fn controller(e: &ControllerError) -> AdminError {
        AdminError::new(errors::controller(e), e.to_string())
    }
}

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let shard = &ctx.shard;
    let duplicated = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let mut answered: HashSet<&str> = HashSet::new();
    let mut plans = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.name.as_str();
        if duplicated.contains(name) {
            // Kafka answers a repeated name once, and creates none of its copies.
            if answered.insert(name) {
                plans.push((
                    topic.name.clone(),
                    Err(AdminError::new(
                        code::INVALID_REQUEST,
                        "Duplicate topic name.",
                    )),
                ));
            }
            continue;
        }
        plans.push((topic.name.clone(), command_for(&shard.config, topic)));
    }
    let version = ctx.api_version;
    let validate_only = req.validate_only;
    let results = futures::future::join_all(plans.into_iter().map(|(name, plan)| async move {
        let outcome = match plan {
            Ok(cmd) => submit(shard, cmd, validate_only).await,
            Err(e) => Err(e),
        };
        topic_result(&shard.config, version, name, outcome)
    }))
    .await;
    CreateTopicsResponse::default().with_topics(results)
}

/// Runs `cmd` on the controller (shard 0) and waits until every shard has the new image; with
/// `validate_only`, applies it to this shard's image and drops the result.
pub async fn submit(
    shard: &Rc<Shard>,
    cmd: ControllerCommand,
    validate_only: bool,
) -> Result<Outcome, AdminError> {
    if validate_only {
        return controller::apply(&shard.metadata(), &cmd)
            .map(|(_, outcome)| outcome)
            .map_err(|e| AdminError::controller(&e));
    }
    match shard.call(ShardId(0), ShardRequest::Controller(cmd)).await {
        ShardResponse::Controller(Ok(outcome)) => Ok(outcome),
        ShardResponse::Controller(Err(e)) => {
            if let ControllerError::Persist(_) = e {
                tracing::error!(error = %e, "metadata change failed");
            }
            Err(AdminError::controller(&e))
        }
        // Retriable for clients; the command may or may not have been applied, as with Kafka's timeouts.
        ShardResponse::Unavailable => Err(AdminError::new(
            code::REQUEST_TIMED_OUT,
            "the controller shard is unavailable (the broker is shutting down)",
        )),
        _ => Err(unexpected_answer()),
    }
}

pub fn unexpected_answer() -> AdminError {
    tracing::error!("the controller answered an admin command with an unexpected response");
    AdminError::new(
        code::UNKNOWN_SERVER_ERROR,
        "unexpected answer from the controller",
    )
}

/// Names that occur more than once.
pub fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    names.filter(|n| !seen.insert(*n)).collect()
}

/// Kafka's INVALID_REPLICA_ASSIGNMENT.
pub fn invalid_assignment(message: String) -> AdminError {
    AdminError::new(code::INVALID_REPLICA_ASSIGNMENT, message)
}

/// The controller command for one requested topic, with the broker's defaults filled in.
fn command_for(
    broker: &BrokerConfig,
    topic: &CreatableTopic,
) -> Result<ControllerCommand, AdminError> {
    let mut partitions = topic.num_partitions;
    let mut replication_factor = topic.replication_factor;
    let mut assignment = None;
    if !topic.assignments.is_empty() {
        if partitions != -1 || replication_factor != -1 {
            return Err(AdminError::new(
                code::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. \
                 Both cannot be used at the same time.",
            ));
        }
        let replicas = assigned_replicas(&topic.assignments)?;
        partitions = i32::try_from(replicas.len()).unwrap_or(i32::MAX);
        replication_factor = replicas
            .first()
            .map_or(0, |r| i16::try_from(r.len()).unwrap_or(i16::MAX));
        assignment = Some(replicas);
    }
    if partitions == -1 {
        partitions = i32::try_from(broker.int("num.partitions", 1)).unwrap_or(i32::MAX);
    }
    if replication_factor == -1 {
        replication_factor =
            i16::try_from(broker.int("default.replication.factor", 1)).unwrap_or(i16::MAX);
    }
    let mut configs = BTreeMap::new();
    for c in &topic.configs {
        let Some(value) = &c.value else {
            return Err(AdminError::new(
                code::INVALID_CONFIG,
                format!(
                    "Null value not supported for topic configs: {}",
                    c.name.as_str()
                ),
            ));
        };
        configs.insert(c.name.to_string(), value.to_string());
    }
    Ok(ControllerCommand::CreateTopic {
        name: topic.name.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions,
        replication_factor,
        configs,
        internal: false,
        assignment,
    })
}

/// The replica lists of a manual assignment, by partition (indexes must be 0..n). The brokers
/// in them are the controller's to check.
fn assigned_replicas(
    assignments: &[CreatableReplicaAssignment],
) -> Result<Vec<Vec<i32>>, AdminError> {
    let mut sorted: Vec<&CreatableReplicaAssignment> = assignments.iter().collect();
    sorted.sort_unstable_by_key(|a| a.partition_index);
    if sorted.iter().zip(0..).any(|(a, i)| a.partition_index != i) {
        return Err(invalid_assignment(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    Ok(sorted
        .iter()
        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
        .collect())
}

fn topic_result(
    broker: &BrokerConfig,
    version: i16,
    name: TopicName,
    outcome: Result<Outcome, AdminError>,
) -> CreatableTopicResult {
    let result = CreatableTopicResult::default().with_name(name);
    let topic = match outcome {
        Ok(Outcome::Topic(t)) => t,
        Ok(_) => return failed(result, unexpected_answer()),
        Err(e) => return failed(result, e),
    };
    let mut result = result.with_error_code(code::NONE).with_error_message(None);
    if version >= 5 {
        result = result
            .with_num_partitions(topic.partition_count())
            .with_replication_factor(topic.replication_factor())
            .with_configs(Some(topic_configs(broker, &topic)));
    }
    if version >= 7 {
        result = result.with_topic_id(topic.id);
    }
    result
}

fn failed(result: CreatableTopicResult, e: AdminError) -> CreatableTopicResult {
    result
        .with_error_code(e.code)
        .with_error_message(Some(str_bytes(e.message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_configs(Some(Vec::new()))
}

/// The new topic's effective configuration, as DescribeConfigs would report it (v5+).
fn topic_configs(broker: &BrokerConfig, topic: &TopicImage) -> Vec<CreatableTopicConfigs> {
    describe_configs::topic_entries(broker, &topic.configs, false)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(e.name))
                .with_value(e.value.map(str_bytes))
                .with_read_only(e.read_only)
                .with_config_source(e.source)
                .with_is_sensitive(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    use kafka_protocol::messages::BrokerId;

    fn one_replica() -> crate::cluster::PartitionImage {
        crate::cluster::PartitionImage {
            replicas: vec![0],
            isr: vec![0],
            leader: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        }
    }

    fn broker(props: &str) -> BrokerConfig {
        BrokerConfig::build(Some(props), &[], &[], Some(1)).unwrap()
    }

    fn topic(name: &'static str, partitions: i32, rf: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    }

    fn assignment(index: i32, ids: &[i32]) -> CreatableReplicaAssignment {
        CreatableReplicaAssignment::default()
            .with_partition_index(index)
            .with_broker_ids(ids.iter().map(|i| BrokerId(*i)).collect())
    }

    fn partitions_of(cmd: ControllerCommand) -> (i32, i16, BTreeMap<String, String>) {
        match cmd {
            ControllerCommand::CreateTopic {
                partitions,
                replication_factor,
                configs,
                ..
            } => (partitions, replication_factor, configs),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn assignment_of(cmd: ControllerCommand) -> Option<Vec<Vec<i32>>> {
        match cmd {
            ControllerCommand::CreateTopic { assignment, .. } => assignment,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_come_from_the_broker() {
        let b = broker("num.partitions=4\ndefault.replication.factor=1");
        let cmd = command_for(&b, &topic("t", -1, -1)).unwrap();
        assert_eq!(partitions_of(cmd).0, 4);
        let cmd = command_for(&b, &topic("t", 2, 3)).unwrap();
        assert_eq!(partitions_of(cmd).0, 2);
    }

    #[test]
    fn configs_map_and_null_values_are_refused() {
        let b = broker("");
        let t = topic("t", 1, 1).with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(Some(StrBytes::from_static_str("1000")))]);
        let (_, _, configs) = partitions_of(command_for(&b, &t).unwrap());
        assert_eq!(configs["retention.ms"], "1000");
        let t = topic("t", 1, 1).with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(None)]);
        assert_eq!(command_for(&b, &t).unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn manual_assignments_go_to_the_controller_by_partition() {
        let b = broker("");
        let t = topic("t", -1, -1)
            .with_assignments(vec![assignment(1, &[4, 3]), assignment(0, &[3, 4])]);
        let cmd = command_for(&b, &t).unwrap();
        assert_eq!(partitions_of(cmd.clone()).0, 2);
        assert_eq!(partitions_of(cmd.clone()).1, 2);
        assert_eq!(assignment_of(cmd), Some(vec![vec![3, 4], vec![4, 3]]));
        let t = topic("t", -1, -1).with_assignments(vec![assignment(0, &[3]), assignment(2, &[3])]);
        assert_eq!(
            command_for(&b, &t).unwrap_err().code,
            code::INVALID_REPLICA_ASSIGNMENT
        );
        let t = topic("t", 2, -1).with_assignments(vec![assignment(0, &[3])]);
        assert!(command_for(&b, &t).unwrap_err().message.contains("Both"));
        assert_eq!(
            assignment_of(command_for(&b, &topic("t", 1, 1)).unwrap()),
            None
        );
    }

    #[test]
    fn duplicate_names_are_found() {
        let d = duplicates(["a", "b", "a", "c", "a"].into_iter());
        assert_eq!(d, HashSet::from(["a"]));
    }

    #[test]
    fn result_fields_follow_the_version() {
        let b = broker("");
        let t = TopicImage {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            partitions: vec![one_replica(); 3],
            configs: BTreeMap::from([("retention.ms".to_string(), "5".to_string())]),
            internal: false,
        };
        let name = TopicName(StrBytes::from_static_str("t"));
        let r = topic_result(&b, 4, name.clone(), Ok(Outcome::Topic(t.clone())));
        assert_eq!(
            (r.error_code, r.num_partitions, r.topic_id),
            (0, -1, uuid::Uuid::nil())
        );
        let r = topic_result(&b, 7, name.clone(), Ok(Outcome::Topic(t.clone())));
        assert_eq!(
            (r.num_partitions, r.replication_factor, r.topic_id),
            (3, 1, t.id)
        );
        let configs = r.configs.unwrap();
        let retention = configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(
            (retention.value.as_deref(), retention.config_source),
            (Some("5"), 1)
        );
        let r = topic_result(
            &b,
            7,
            name,
            Err(AdminError::new(code::TOPIC_ALREADY_EXISTS, "x")),
        );
        assert_eq!(
            (r.error_code, r.num_partitions),
            (code::TOPIC_ALREADY_EXISTS, -1)
        );
    }

    #[test]
    fn encodes_at_every_served_version() {
        use kafka_protocol::protocol::Encodable;
        let b = broker("");
        let t = TopicImage {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            partitions: vec![one_replica()],
            configs: BTreeMap::new(),
            internal: false,
        };
        for version in 2..=7 {
            let name = TopicName(StrBytes::from_static_str("t"));
            let ok = topic_result(&b, version, name.clone(), Ok(Outcome::Topic(t.clone())));
            let err = topic_result(
                &b,
                version,
                name,
                Err(AdminError::new(code::INVALID_REQUEST, "x")),
            );
            let resp = CreateTopicsResponse::default().with_topics(vec![ok, err]);
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, version).unwrap();
        }
    }
}
