//! The controller: the one place that changes the metadata image.
//!
//! `apply` is the state machine of the metadata log: commands are applied one at a time to
//! the current image, giving a new image (or an error) without side effects. It is pure and
//! deterministic — no clock, no random numbers, no I/O — so every node that applies the same
//! commands gets the same image; ids and timestamps are chosen by the proposer and carried in
//! the command. In single-node mode shard 0 applies commands directly, persists the image and
//! broadcasts it to every shard before answering.

mod brokers;
pub mod election;
#[cfg(test)]
mod election_tests;
mod isr;
pub mod reassign;
pub mod rebalance;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::image::{MetadataImage, PartitionImage, TopicImage};
use super::placement;
use crate::config::topic;
use crate::limits;
use crate::model::TopicId;
pub use election::{ElectionError, ElectionResult, ElectionType};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AlterMode {
    /// AlterConfigs: the given map replaces every override.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: (key, op, value); op 0 set, 1 delete, 2 append, 3 subtract.
    Incremental(Vec<(String, i8, Option<String>)>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// Registers a broker fenced, or re-registers it: a new incarnation replaces the old one,
    /// gets a new epoch, and loses leadership like a fenced broker until it is unfenced.
    RegisterBroker {
        node_id: i32,
        incarnation_id: uuid::Uuid,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    UnfenceBroker {
        node_id: i32,
        epoch: i64,
    },
    FenceBroker {
        node_id: i32,
        epoch: i64,
    },
    /// Moves leadership away like a fence; the broker stays listed until it is fenced.
    BeginControlledShutdown {
        node_id: i32,
        epoch: i64,
    },
    /// Sets the cluster id of an image that has none (refused when a different one is set).
    SetClusterId {
        cluster_id: String,
    },
    CreateTopic {
        name: String,
        /// Chosen by the proposer (a random v4 uuid).
        id: TopicId,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        internal: bool,
        /// A manual replica assignment (CreateTopics' `assignments`), index = partition.
        assignment: Option<Vec<Vec<i32>>>,
    },
    DeleteTopic {
        name: String,
        /// When the client named the topic by id: delete only if the name still has this id.
        id: Option<TopicId>,
    },
    CreatePartitions {
        name: String,
        count: i32,
        /// Replicas of each new partition, in order.
        assignment: Option<Vec<Vec<i32>>>,
    },
    AlterTopicConfigs {
        name: String,
        mode: AlterMode,
    },
    AllocateProducerIds,
    /// A partition leader's ISR change (Kafka's AlterPartition), checked against the leader
    /// epoch and partition epoch it was made at.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// ElectLeaders (API 43), or the active controller's automatic preferred election.
    ElectLeaders {
        election_type: ElectionType,
        /// `None`: every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Replaces the broker-level defaults the controller decides with (see
    /// `MetadataImage::broker_defaults`); proposed by the active controller from its config.
    SetBrokerDefaults {
        configs: BTreeMap<String, String>,
    },
    /// AlterPartitionReassignments (KIP-455): each partition's target replicas, or `None` to
    /// cancel its reassignment. Answered per partition (`Outcome::Reassignments`).
    AlterPartitionReassignments {
        reassignments: Vec<reassign::Reassignment>,
        /// KIP-860: when false, a target with another replica count than the partition's
        /// (original) replicas is refused (INVALID_REPLICATION_FACTOR).
        allow_replication_factor_change: bool,
    },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Broker {0} is not registered.")]
    BrokerNotRegistered(i32),
    #[error("Expected broker epoch {expected} for broker {node_id}, but got {got}.")]
    StaleBrokerEpoch {
        node_id: i32,
        expected: i64,
        got: i64,
    },
    #[error("The cluster id {got} does not match this cluster's id {ours}.")]
    InconsistentClusterId { ours: String, got: String },
    /// No quorum to commit the change (retriable: NOT_CONTROLLER).
    #[error("no active controller could take the change: {0}")]
    NotController(String),
    /// The quorum did not commit in time (retriable: REQUEST_TIMED_OUT).
    #[error("the change was not committed in time: {0}")]
    Timeout(String),
    #[error("metadata could not be persisted: {0}")]
    Persist(String),
    #[error("{0}")]
    FencedLeaderEpoch(String),
    #[error("{0}")]
    InvalidUpdateVersion(String),
    #[error("{0}")]
    IneligibleReplica(String),
    #[error("No partition reassignment is in progress.")]
    NoReassignmentInProgress,
}

/// What a command produced besides the new image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Topic(TopicImage),
    ProducerIdBlock {
        first: i64,
        len: i64,
    },
    /// RegisterBroker: the broker epoch of the (new) registration.
    BrokerRegistered {
        node_id: i32,
        epoch: i64,
    },
    /// AlterPartition: the ISR and partition epoch now committed.
    PartitionAltered {
        isr: Vec<i32>,
        partition_epoch: i32,
    },
    /// ElectLeaders: one result per partition.
    Elected(Vec<ElectionResult>),
    /// AlterPartitionReassignments: one result per requested partition, in request order.
    Reassignments(Vec<Result<(), ControllerError>>),
    Done,
}

/// Applies `cmd` to `image`, returning the next image. Pure and deterministic: no I/O, no
/// clock, no randomness. On an error the image is unchanged (the caller keeps `image`).
pub fn apply(
    image: &MetadataImage,
    cmd: &ControllerCommand,
) -> Result<(MetadataImage, Outcome), ControllerError> {
    let mut next = image.clone();
    next.version += 1;
    let outcome = match cmd {
        ControllerCommand::RegisterBroker {
            node_id,
            incarnation_id,
            host,
            port,
            rack,
        } => brokers::register(&mut next, *node_id, *incarnation_id, host, *port, rack),
        ControllerCommand::UnfenceBroker { node_id, epoch } => {
            brokers::unfence(&mut next, *node_id, *epoch)?
        }
        ControllerCommand::FenceBroker { node_id, epoch } => {
            brokers::fence(&mut next, *node_id, *epoch)?
        }
        ControllerCommand::BeginControlledShutdown { node_id, epoch } => {
            brokers::begin_controlled_shutdown(&mut next, *node_id, *epoch)?
        }
        ControllerCommand::AlterPartition {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            new_isr,
        } => isr::alter_partition(
            &mut next,
            topic,
            *partition,
            *leader,
            *leader_epoch,
            *partition_epoch,
            new_isr,
        )?,
        ControllerCommand::AlterPartitionReassignments {
            reassignments,
            allow_replication_factor_change,
        } => reassign::alter(&mut next, reassignments, *allow_replication_factor_change),
        ControllerCommand::SetClusterId { cluster_id } => {
            if cluster_id.is_empty() {
                return Err(ControllerError::InvalidRequest(
                    "the cluster id must not be empty".into(),
                ));
            }
            if !image.cluster_id.is_empty() && image.cluster_id != *cluster_id {
                return Err(ControllerError::InconsistentClusterId {
                    ours: image.cluster_id.clone(),
                    got: cluster_id.clone(),
                });
            }
            next.cluster_id = cluster_id.clone();
            Outcome::Done
        }
        ControllerCommand::CreateTopic {
            name,
            id,
            partitions,
            replication_factor,
            configs,
            internal,
            assignment,
        } => {
            let t = create_topic(
                image,
                name,
                id,
                *partitions,
                *replication_factor,
                configs,
                *internal,
                assignment.as_deref(),
            )?;
            next.topics.insert(name.clone(), t.clone());
            Outcome::Topic(t)
        }
        ControllerCommand::DeleteTopic { name, id } => {
            if let Some(id) = id {
                if next.topics.get(name).map(|t| t.id) != Some(*id) {
                    return Err(ControllerError::UnknownTopicId);
                }
            }
            let t = next
                .topics
                .remove(name)
                .ok_or(ControllerError::UnknownTopic)?;
            if t.internal {
                return Err(ControllerError::InvalidRequest(format!(
                    "Cannot delete internal topic {name}"
                )));
            }
            Outcome::Topic(t)
        }
        ControllerCommand::CreatePartitions {
            name,
            count,
            assignment,
        } => {
            let added = create_partitions(image, name, *count, assignment.as_deref())?;
            let t = next
                .topics
                .get_mut(name)
                .ok_or(ControllerError::UnknownTopic)?;
            t.partitions.extend(added);
            Outcome::Topic(t.clone())
        }
        ControllerCommand::AlterTopicConfigs { name, mode } => {
            let t = next
                .topics
                .get_mut(name)
                .ok_or(ControllerError::UnknownTopic)?;
            let configs = altered(&t.configs, mode)?;
            for (k, v) in &configs {
                topic::validate(k, v).map_err(ControllerError::InvalidConfig)?;
            }
            topic::validate_together(&configs).map_err(ControllerError::InvalidConfig)?;
            t.configs = configs;
            election::elect_unclean_where_leaderless(&mut next);
            let t = next.topics.get(name).ok_or(ControllerError::UnknownTopic)?;
            Outcome::Topic(t.clone())
        }
        ControllerCommand::ElectLeaders {
            election_type,
            partitions,
        } => {
            if partitions
                .as_ref()
                .is_some_and(|p| p.len() > limits::ELECT_LEADERS_PARTITIONS_MAX)
            {
                return Err(ControllerError::InvalidRequest(format!(
                    "an election may name at most {} partitions",
                    limits::ELECT_LEADERS_PARTITIONS_MAX
                )));
            }
            election::elect_leaders(&mut next, *election_type, partitions.as_deref())
        }
        ControllerCommand::SetBrokerDefaults { configs } => {
            election::set_broker_defaults(&mut next, configs)?
        }
        ControllerCommand::AllocateProducerIds => {
            let first = next.next_producer_id;
            next.next_producer_id += limits::PRODUCER_ID_BLOCK_SIZE;
            Outcome::ProducerIdBlock {
                first,
                len: limits::PRODUCER_ID_BLOCK_SIZE,
            }
        }
    };
    Ok((next, outcome))
}

/// A new topic, validated against `image`, its replicas placed (or the manual assignment
/// checked).
#[allow(clippy::too_many_arguments)]
fn create_topic(
    image: &MetadataImage,
    name: &str,
    id: &TopicId,
    partitions: i32,
    replication_factor: i16,
    configs: &BTreeMap<String, String>,
    internal: bool,
    assignment: Option<&[Vec<i32>]>,
) -> Result<TopicImage, ControllerError> {
    validate_topic_name(name)?;
    if image.topics.contains_key(name) {
        return Err(ControllerError::TopicAlreadyExists(name.to_string()));
    }
    if let Some(other) = image.topics.keys().find(|n| collides(n, name)) {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic '{name}' collides with existing topic: {other}"
        )));
    }
    if id.is_nil() || image.topic_by_id(id).is_some() {
        return Err(ControllerError::InvalidRequest(format!(
            "topic id {id} is nil or already in use"
        )));
    }
    if !(1..=limits::TOPIC_PARTITIONS_MAX).contains(&partitions) {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions must be between 1 and {}, was {partitions}.",
            limits::TOPIC_PARTITIONS_MAX
        )));
    }
    if replication_factor < 1 && assignment.is_none() {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0.".into(),
        ));
    }
    for (k, v) in configs {
        topic::validate(k, v).map_err(ControllerError::InvalidConfig)?;
    }
    topic::validate_together(configs).map_err(ControllerError::InvalidConfig)?;
    let replicas = match assignment {
        Some(manual) => {
            if manual.len() != usize::try_from(partitions).unwrap_or(0) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment has {} partition(s), but {partitions} were requested.",
                    manual.len()
                )));
            }
            validate_assignment(image, manual, usize::try_from(replication_factor).ok())?;
            manual.to_vec()
        }
        None => placement::assign(id, 0, partitions, replication_factor, &candidates(image))?,
    };
    Ok(TopicImage {
        name: name.to_string(),
        id: *id,
        configs: configs.clone(),
        internal,
        partitions: new_partitions(image, 0, replicas)?,
    })
}

/// The partitions to append to `name` to reach `count`.
fn create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignment: Option<&[Vec<i32>]>,
) -> Result<Vec<PartitionImage>, ControllerError> {
    let t = image.topic(name).ok_or(ControllerError::UnknownTopic)?;
    if t.internal {
        // Growing __consumer_offsets would move every group to another partition.
        return Err(ControllerError::InvalidRequest(format!(
            "Cannot add partitions to internal topic {name}"
        )));
    }
    let current = t.partition_count();
    if count <= current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {count}."
        )));
    }
    if count > limits::TOPIC_PARTITIONS_MAX {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions must be at most {}.",
            limits::TOPIC_PARTITIONS_MAX
        )));
    }
    let added = count - current;
    let rf = t.replication_factor();
    let replicas = match assignment {
        Some(manual) => {
            if manual.len() != usize::try_from(added).unwrap_or(0) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                    manual.len()
                )));
            }
            validate_assignment(image, manual, usize::try_from(rf).ok())?;
            manual.to_vec()
        }
        None => placement::assign(&t.id, current, added, rf, &candidates(image))?,
    };
    new_partitions(image, current, replicas)
}

/// Brokers new replicas may go to: registered, unfenced, not shutting down.
fn candidates(image: &MetadataImage) -> Vec<placement::Candidate> {
    image
        .brokers
        .values()
        .filter(|b| b.is_active())
        .map(|b| placement::Candidate {
            node_id: b.node_id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Kafka's `validateManualPartitionAssignment`: replicas distinct and registered, every
/// partition with the same count (`replication_factor` when one is known).
fn validate_assignment(
    image: &MetadataImage,
    assignment: &[Vec<i32>],
    replication_factor: Option<usize>,
) -> Result<(), ControllerError> {
    let bad = |m: String| Err(ControllerError::InvalidReplicaAssignment(m));
    let expected = replication_factor.or(assignment.first().map(Vec::len));
    for replicas in assignment {
        if replicas.is_empty() {
            return bad("The manual partition assignment includes an empty replica list.".into());
        }
        for (i, r) in replicas.iter().enumerate() {
            if replicas[..i].contains(r) {
                return bad(format!(
                    "The manual partition assignment includes the broker {r} more than once."
                ));
            }
            if image.broker(*r).is_none() {
                return bad(format!(
                    "The manual partition assignment includes broker {r}, but no such broker is registered."
                ));
            }
        }
        if let Some(n) = expected.filter(|n| *n != replicas.len()) {
            return bad(format!(
                "The manual partition assignment includes a partition with {} replica(s), but \
                 this is not consistent with previous partitions, which have {n} replica(s).",
                replicas.len()
            ));
        }
    }
    Ok(())
}

/// Fresh partitions (numbered from `first_index`) for these replica lists: the leader is the
/// first active replica (Kafka refuses a partition none of whose replicas is active), and the
/// ISR is every active replica, as in Kafka: all of them hold the same (empty) log, and the
/// followers start fetching from the leader at once. A fenced replica joins the ISR through
/// AlterPartition once it has caught up.
fn new_partitions(
    image: &MetadataImage,
    first_index: i32,
    replicas: Vec<Vec<i32>>,
) -> Result<Vec<PartitionImage>, ControllerError> {
    (first_index..)
        .zip(replicas)
        .map(|(index, replicas)| {
            let Some(leader) = replicas.iter().copied().find(|r| image.is_active(*r)) else {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "All brokers specified in the manual partition assignment for partition \
                     {index} are fenced or in controlled shutdown."
                )));
            };
            let isr = replicas
                .iter()
                .copied()
                .filter(|r| image.is_active(*r))
                .collect();
            Ok(PartitionImage {
                replicas,
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
        })
        .collect()
}

fn altered(
    current: &BTreeMap<String, String>,
    mode: &AlterMode,
) -> Result<BTreeMap<String, String>, ControllerError> {
    match mode {
        AlterMode::Replace(map) => Ok(map.clone()),
        AlterMode::Incremental(ops) => {
            let mut out = current.clone();
            for (key, op, value) in ops {
                let kind = topic::find(key).map(|k| k.kind).ok_or_else(|| {
                    ControllerError::InvalidConfig(format!("Unknown topic config name: {key}"))
                })?;
                match (op, value) {
                    (0, Some(v)) => {
                        out.insert(key.clone(), v.clone());
                    }
                    (1, _) => {
                        out.remove(key);
                    }
                    (2 | 3, Some(v)) if kind == crate::config::Kind::List => {
                        // Kafka appends to (subtracts from) the current value, which is the
                        // default where the topic has no override.
                        let mut items: Vec<String> = out
                            .get(key)
                            .map(String::as_str)
                            .or_else(|| topic::find(key).map(|k| k.fixed_default))
                            .map(|s| {
                                s.split(',')
                                    .map(|x| x.trim().to_string())
                                    .filter(|x| !x.is_empty())
                                    .collect()
                            })
                            .unwrap_or_default();
                        for item in v.split(',').map(|x| x.trim()) {
                            if *op == 2 && !items.iter().any(|i| i == item) {
                                items.push(item.to_string());
                            } else if *op == 3 {
                                items.retain(|i| i != item);
                            }
                        }
                        out.insert(key.clone(), items.join(","));
                    }
                    (2 | 3, _) => {
                        return Err(ControllerError::InvalidConfig(format!(
                            "Config value append/subtract is not allowed for config key {key}"
                        )))
                    }
                    _ => {
                        return Err(ControllerError::InvalidRequest(format!(
                            "invalid operation {op} for {key}"
                        )))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Kafka treats `.` and `_` alike when checking for colliding topic names (metrics names).
fn collides(existing: &str, new: &str) -> bool {
    existing != new && existing.replace('.', "_") == new.replace('.', "_")
}

/// Kafka's rule: 1..=249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let bad = |why: String| Err(ControllerError::InvalidTopic(why));
    if name.is_empty() {
        return bad("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return bad("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > limits::TOPIC_NAME_BYTES_MAX {
        return bad(format!(
            "Topic name is illegal, it can't be longer than {} characters, topic name: {name}",
            limits::TOPIC_NAME_BYTES_MAX
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}
