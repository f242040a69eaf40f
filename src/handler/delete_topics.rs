//! DeleteTopics (API 20, v1–6): by name (`topic_names`, v1–5) or by name or topic id (`topics`, v6).
//!
//! Requests are checked as Kafka's controller checks them (duplicates, both or neither of name and
//! id), ids are resolved to names against this shard's image, and each deletion is one
//! `ControllerCommand::DeleteTopic` on shard 0. The controller refuses internal topics.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::create_topics::{submit, unexpected_answer, AdminError};
use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::controller::Outcome;
use crate::cluster::{ControllerCommand, ControllerError, MetadataImage};
use crate::model::TopicId;

/// What the client asked to delete: a name, or (v6) an id. Both or neither is an error.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: Option<String>,
    pub id: TopicId,
}

/// One line of the response.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub name: Option<String>,
    pub id: TopicId,
    pub error: Option<AdminError>,
}

pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let shard = &ctx.shard;
    let targets: Vec<Target> = if ctx.api_version >= 6 {
        req.topics
            .iter()
            .map(|t| Target {
                name: t.name.as_ref().map(|n| n.to_string()),
                id: t.topic_id,
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| Target {
                name: Some(n.to_string()),
                id: TopicId::nil(),
            })
            .collect()
    };
    if !shard.config.flag("delete.topic.enable") {
        // Kafka: INVALID_REQUEST before v3, TOPIC_DELETION_DISABLED from v3.
        let refused_code = if ctx.api_version >= 3 {
            code::TOPIC_DELETION_DISABLED
        } else {
            code::INVALID_REQUEST
        };
        let refused = AdminError::new(refused_code, "Topic deletion is disabled.");
        let answers = targets.into_iter().map(|t| Answer {
            name: t.name,
            id: t.id,
            error: Some(refused.clone()),
        });
        return response(answers.collect());
    }
    let (mut answers, names) = resolve(&shard.metadata(), &targets);
    let deletions = names.into_iter().map(|(name, id)| async move {
        let outcome = submit(
            shard,
            ControllerCommand::DeleteTopic {
                name: name.clone(),
                id: (!id.is_nil()).then_some(id),
            },
            false,
        )
        .await;
        match outcome {
            Ok(Outcome::Topic(t)) => Answer {
                name: Some(name),
                id: t.id,
                error: None,
            },
            Ok(_) => Answer {
                name: Some(name),
                id,
                error: Some(unexpected_answer()),
            },
            Err(e) => Answer {
                name: Some(name),
                id,
                error: Some(e),
            },
        }
    });
    answers.extend(futures::future::join_all(deletions).await);
    response(answers)
}

/// Splits the request into answers already known (errors) and the topics to delete, as
/// `(name, id)`. Follows Kafka's `ControllerApis.deleteTopics`: a repeated name or id is refused
/// once per repetition and not deleted; an id that names a topic also named is refused.
///
/// Ids are resolved against this shard's image: a topic deleted and re-created under the same
/// name in between would be deleted by name (the controller command has no id yet).
pub fn resolve(image: &MetadataImage, targets: &[Target]) -> (Vec<Answer>, Vec<(String, TopicId)>) {
    let refuse = |name: Option<&String>, id: TopicId, code: i16, message: &str| Answer {
        name: name.cloned(),
        id,
        error: Some(AdminError::new(code, message)),
    };
    let mut answers = Vec::new();
    let mut names: Vec<&String> = Vec::new();
    let mut repeated_names: HashSet<&String> = HashSet::new();
    let mut ids: Vec<TopicId> = Vec::new();
    let mut repeated_ids: HashSet<TopicId> = HashSet::new();
    for t in targets {
        match &t.name {
            Some(name) if !t.id.is_nil() => answers.push(refuse(
                Some(name),
                t.id,
                code::INVALID_REQUEST,
                "You may not specify both topic name and topic id.",
            )),
            Some(name) => {
                if repeated_names.contains(name) || names.contains(&name) {
                    answers.push(refuse(
                        Some(name),
                        TopicId::nil(),
                        code::INVALID_REQUEST,
                        "Duplicate topic name.",
                    ));
                    names.retain(|n| *n != name);
                    repeated_names.insert(name);
                } else {
                    names.push(name);
                }
            }
            None => {
                if repeated_ids.contains(&t.id) || ids.contains(&t.id) {
                    answers.push(refuse(
                        None,
                        t.id,
                        code::INVALID_REQUEST,
                        "Duplicate topic ID.",
                    ));
                    ids.retain(|i| *i != t.id);
                    repeated_ids.insert(t.id);
                } else {
                    ids.push(t.id);
                }
            }
        }
    }
    let mut to_delete: Vec<(String, TopicId)> = Vec::new();
    let mut by_id: HashMap<TopicId, usize> = HashMap::new();
    for name in names {
        match image.topic(name) {
            Some(topic) => {
                by_id.insert(topic.id, to_delete.len());
                to_delete.push((name.clone(), topic.id));
            }
            None => {
                let e = AdminError::controller(&ControllerError::UnknownTopic);
                answers.push(refuse(Some(name), TopicId::nil(), e.code, &e.message));
            }
        }
    }
    for id in ids {
        match image.topic_by_id(&id) {
            Some(topic) if by_id.contains_key(&id) => answers.push(refuse(
                Some(&topic.name),
                id,
                code::INVALID_REQUEST,
                "The provided topic name maps to an ID that was already supplied.",
            )),
            Some(topic) => {
                by_id.insert(id, to_delete.len());
                to_delete.push((topic.name.clone(), id));
            }
            None => answers.push(refuse(
                None,
                id,
                code::UNKNOWN_TOPIC_ID,
                "This server does not host this topic ID.",
            )),
        }
    }
    (answers, to_delete)
}

fn response(answers: Vec<Answer>) -> DeleteTopicsResponse {
    let responses = answers
        .into_iter()
        .map(|a| {
            let r = DeletableTopicResult::default()
                .with_name(a.name.map(|n| TopicName(str_bytes(n))))
                .with_topic_id(a.id);
            match a.error {
                None => r.with_error_code(code::NONE).with_error_message(None),
                Some(e) => r
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::TopicImage;

    fn image(names: &[&str]) -> MetadataImage {
        let topics = names
            .iter()
            .map(|n| {
                let t = TopicImage {
                    name: n.to_string(),
                    id: uuid::Uuid::new_v4(),
                    partitions: Vec::new(),
                    configs: BTreeMap::new(),
                    internal: false,
                };
                (n.to_string(), t)
            })
            .collect();
        MetadataImage {
            cluster_id: "c".into(),
            version: 1,
            brokers: BTreeMap::new(),
            topics,
            next_producer_id: 0,
            broker_defaults: Default::default(),
        }
    }

    fn by_name(n: &str) -> Target {
        Target {
            name: Some(n.into()),
            id: TopicId::nil(),
        }
    }

    fn by_id(id: TopicId) -> Target {
        Target { name: None, id }
    }

    fn codes(answers: &[Answer]) -> Vec<(Option<&str>, i16)> {
        answers
            .iter()
            .map(|a| (a.name.as_deref(), a.error.as_ref().map_or(0, |e| e.code)))
            .collect()
    }

    #[test]
    fn names_and_ids_resolve() {
        let img = image(&["a", "b"]);
        let b = img.topics["b"].id;
        let (answers, todo) = resolve(
            &img,
            &[
                by_name("a"),
                by_id(b),
                by_name("zz"),
                by_id(uuid::Uuid::new_v4()),
            ],
        );
        assert_eq!(
            todo,
            vec![("a".to_string(), img.topics["a"].id), ("b".to_string(), b)]
        );
        assert_eq!(
            codes(&answers),
            vec![
                (Some("zz"), code::UNKNOWN_TOPIC_OR_PARTITION),
                (None, code::UNKNOWN_TOPIC_ID)
            ]
        );
    }

    #[test]
    fn duplicates_and_ambiguity_are_refused() {
        let img = image(&["a", "b"]);
        let a = img.topics["a"].id;
        let both = Target {
            name: Some("b".into()),
            id: img.topics["b"].id,
        };
        // As in Kafka, `a` by id still goes ahead: its repeated name was dropped before ids resolve.
        let (answers, todo) = resolve(&img, &[by_name("a"), by_name("a"), both, by_id(a)]);
        assert_eq!(todo, vec![("a".to_string(), a)]);
        assert_eq!(
            codes(&answers),
            vec![
                (Some("a"), code::INVALID_REQUEST),
                (Some("b"), code::INVALID_REQUEST)
            ]
        );
        let (answers, todo) = resolve(&img, &[by_name("a"), by_id(a)]);
        assert_eq!(todo.len(), 1);
        assert_eq!(codes(&answers), vec![(Some("a"), code::INVALID_REQUEST)]);
        let (answers, todo) = resolve(&img, &[by_id(a), by_id(a), by_id(a)]);
        assert!(todo.is_empty());
        assert_eq!(answers.len(), 2);
    }

    #[test]
    fn encodes_at_every_served_version() {
        use kafka_protocol::protocol::Encodable;
        let answers = vec![
            Answer {
                name: Some("a".into()),
                id: uuid::Uuid::new_v4(),
                error: None,
            },
            Answer {
                name: None,
                id: uuid::Uuid::new_v4(),
                error: Some(AdminError::new(code::UNKNOWN_TOPIC_ID, "x")),
            },
        ];
        for version in 1..=6 {
            let mut buf = bytes::BytesMut::new();
            response(answers.clone()).encode(&mut buf, version).unwrap();
        }
    }
}
