//! The controller: the one place that changes the metadata image.
//!
//! Lives on shard 0. Commands are applied one at a time to the current image,
//! giving a new image (or an error) without side effects; the runtime then
//! persists it and broadcasts it to every shard before answering. With
//! replication these commands become openraft log entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::image::{MetadataImage, TopicImage};
use crate::config::topic;
use crate::limits;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AlterMode {
    /// AlterConfigs: the given map replaces every override.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: (key, op, value); op 0 set, 1 delete, 2 append, 3 subtract.
    Incremental(Vec<(String, i8, Option<String>)>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerCommand {
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        internal: bool,
    },
    DeleteTopic {
        name: String,
        /// When the client named the topic by id: delete only if the name still has this id.
        id: Option<crate::model::TopicId>,
    },
    CreatePartitions {
        name: String,
        count: i32,
    },
    AlterTopicConfigs {
        name: String,
        mode: AlterMode,
    },
    AllocateProducerIds,
}

#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
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
    InvalidConfig(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("metadata could not be persisted: {0}")]
    Persist(String),
}

/// What a command produced besides the new image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Outcome {
    Topic(TopicImage),
    ProducerIdBlock { first: i64, len: i64 },
    Done,
}

/// Applies `cmd` to `image`, returning the next image. Pure: no I/O.
pub fn apply(
    image: &MetadataImage,
    cmd: &ControllerCommand,
) -> Result<(MetadataImage, Outcome), ControllerError> {
    let mut next = image.clone();
    next.version += 1;
    let outcome = match cmd {
        ControllerCommand::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
            internal,
        } => {
            validate_topic_name(name)?;
            if image.topics.contains_key(name) {
                return Err(ControllerError::TopicAlreadyExists(name.clone()));
            }
            if *partitions < 1 || *partitions > limits::TOPIC_PARTITIONS_MAX {
                return Err(ControllerError::InvalidPartitions(format!(
                    "Number of partitions must be between 1 and {}, was {partitions}.",
                    limits::TOPIC_PARTITIONS_MAX
                )));
            }
            if *replication_factor < 1 {
                return Err(ControllerError::InvalidReplicationFactor(
                    "Replication factor must be larger than 0.".into(),
                ));
            }
            if let Some(other) = image.topics.keys().find(|n| collides(n, name)) {
                return Err(ControllerError::InvalidTopic(format!(
                    "Topic '{name}' collides with existing topic: {other}"
                )));
            }
            if *replication_factor < 1 {
                return Err(ControllerError::InvalidReplicationFactor(
                    "Replication factor must be larger than 0.".into(),
                ));
            }
            if let Some(other) = image.topics.keys().find(|n| collides(n, name)) {
                return Err(ControllerError::InvalidTopic(format!(
                    "Topic '{name}' collides with existing topic: {other}"
                )));
            }
            if *replication_factor != 1 {
                return Err(ControllerError::InvalidReplicationFactor(format!(
                    "Replication factor: {replication_factor} larger than available brokers: 1."
                )));
            }
            for (k, v) in configs {
                topic::validate(k, v).map_err(ControllerError::InvalidConfig)?;
            }
            let t = TopicImage {
                name: name.clone(),
                id: uuid::Uuid::new_v4(),
                partitions: *partitions,
                configs: configs.clone(),
                internal: *internal,
                leader_epoch: 0,
            };
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
        ControllerCommand::CreatePartitions { name, count } => {
            let t = next
                .topics
                .get_mut(name)
                .ok_or(ControllerError::UnknownTopic)?;
            if t.internal {
                // Growing __consumer_offsets would move every group to another partition.
                return Err(ControllerError::InvalidRequest(format!(
                    "Cannot add partitions to internal topic {name}"
                )));
            }
            if *count <= t.partitions {
                return Err(ControllerError::InvalidPartitions(format!(
                    "Topic currently has {} partitions, which is higher than the requested {count}.",
                    t.partitions
                )));
            }
            if *count > limits::TOPIC_PARTITIONS_MAX {
                return Err(ControllerError::InvalidPartitions(format!(
                    "Number of partitions must be at most {}.",
                    limits::TOPIC_PARTITIONS_MAX
                )));
            }
            t.partitions = *count;
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
            t.configs = configs;
            Outcome::Topic(t.clone())
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
                        let mut items: Vec<String> = out
                            .get(key)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::image::BrokerImage;

    fn empty() -> MetadataImage {
        MetadataImage {
            cluster_id: "c".into(),
            version: 0,
            broker: BrokerImage {
                node_id: 0,
                host: "h".into(),
                port: 1,
                rack: None,
            },
            topics: BTreeMap::new(),
            next_producer_id: 0,
        }
    }

    fn create(name: &str, partitions: i32) -> ControllerCommand {
        ControllerCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: BTreeMap::new(),
            internal: false,
        }
    }

    #[test]
    fn create_then_duplicate_fails() {
        let (img, _) = apply(&empty(), &create("a", 3)).unwrap();
        assert_eq!(img.topics["a"].partitions, 3);
        assert!(matches!(
            apply(&img, &create("a", 1)),
            Err(ControllerError::TopicAlreadyExists(_))
        ));
    }

    #[test]
    fn colliding_names_and_stale_ids_are_refused() {
        let (img, _) = apply(&empty(), &create("a.b", 1)).unwrap();
        assert!(matches!(
            apply(&img, &create("a_b", 1)),
            Err(ControllerError::InvalidTopic(_))
        ));
        let stale = ControllerCommand::DeleteTopic {
            name: "a.b".into(),
            id: Some(uuid::Uuid::new_v4()),
        };
        assert!(matches!(
            apply(&img, &stale),
            Err(ControllerError::UnknownTopicId)
        ));
        let current = ControllerCommand::DeleteTopic {
            name: "a.b".into(),
            id: Some(img.topics["a.b"].id),
        };
        assert!(apply(&img, &current).is_ok());
    }

    #[test]
    fn invalid_names_and_counts() {
        assert!(apply(&empty(), &create("bad name", 1)).is_err());
        assert!(apply(&empty(), &create("ok", 0)).is_err());
    }

    #[test]
    fn incremental_alter_sets_and_deletes() {
        let (img, _) = apply(&empty(), &create("a", 1)).unwrap();
        let cmd = ControllerCommand::AlterTopicConfigs {
            name: "a".into(),
            mode: AlterMode::Incremental(vec![("retention.ms".into(), 0, Some("1000".into()))]),
        };
        let (img, _) = apply(&img, &cmd).unwrap();
        assert_eq!(img.topics["a"].configs["retention.ms"], "1000");
        let cmd = ControllerCommand::AlterTopicConfigs {
            name: "a".into(),
            mode: AlterMode::Incremental(vec![("retention.ms".into(), 1, None)]),
        };
        let (img, _) = apply(&img, &cmd).unwrap();
        assert!(img.topics["a"].configs.is_empty());
    }

    #[test]
    fn producer_id_blocks_do_not_overlap() {
        let (img, a) = apply(&empty(), &ControllerCommand::AllocateProducerIds).unwrap();
        let (_, b) = apply(&img, &ControllerCommand::AllocateProducerIds).unwrap();
        match (a, b) {
            (
                Outcome::ProducerIdBlock { first: x, len },
                Outcome::ProducerIdBlock { first: y, .. },
            ) => {
                assert_eq!(y, x + len)
            }
            _ => panic!("expected blocks"),
        }
    }
}
