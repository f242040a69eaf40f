//! AlterConfigs (API 33, v0–2) and IncrementalAlterConfigs (API 44, v0–1).
//!
//! Topic resources become `ControllerCommand::AlterTopicConfigs` on shard 0: `AlterMode::Replace`
//! (the legacy API replaces every override) or `AlterMode::Incremental` (set, delete, append,
//! subtract per key); `validate_only` runs the same pure check without sending it.
//!
//! Sluice has no dynamic broker configuration yet: a broker resource with any change is refused
//! with INVALID_REQUEST ("dynamic broker configs are not supported yet"), as is BROKER_LOGGER.
//! An empty change to a broker resource succeeds, since it asks for nothing.
//!
//! Requests are checked first as Kafka's `ConfigAdminManager.preprocess` does: a resource named
//! twice, a config key named twice in one resource, or a null value where one is needed.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::create_topics::{submit, unexpected_answer, AdminError};
use super::describe_configs::{check_broker_name, resource_type};
use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::controller::{AlterMode, Outcome};
use crate::cluster::ControllerCommand;
use crate::runtime::Shard;

/// Kafka's `AlterConfigOp.OpType::DELETE`.
const OP_DELETE: i8 = 1;

/// One resource of either request, in the form the checks need.
#[derive(Clone, Debug)]
struct Resource {
    resource_type: i8,
    name: String,
    /// Config names in request order.
    keys: Vec<String>,
    /// Names whose value is null where a value is needed.
    null_values: Vec<String>,
    mode: AlterMode,
}

/// What answering one resource takes.
#[derive(Debug)]
enum Action {
    /// Nothing to change (an empty change to a broker resource).
    Nothing,
    Command(ControllerCommand),
}

pub async fn handle(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let resources: Vec<Resource> = req
        .resources
        .iter()
        .map(|r| {
            let keys = r.configs.iter().map(|c| c.name.to_string()).collect();
            let null_values = r
                .configs
                .iter()
                .filter(|c| c.value.is_none())
                .map(|c| c.name.to_string())
                .collect();
            let map: BTreeMap<String, String> = r
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            Resource {
                resource_type: r.resource_type,
                name: r.resource_name.to_string(),
                keys,
                null_values,
                mode: AlterMode::Replace(map),
            }
        })
        .collect();
    let answers = run(&ctx.shard, resources, req.validate_only).await;
    let responses = answers
        .into_iter()
        .map(|(r, outcome)| {
            let out = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(str_bytes(r.name));
            match outcome {
                Ok(()) => out.with_error_code(code::NONE).with_error_message(None),
                Err(e) => out
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn handle_incremental(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let resources: Vec<Resource> = req
        .resources
        .iter()
        .map(|r| {
            let keys = r.configs.iter().map(|c| c.name.to_string()).collect();
            let null_values = r
                .configs
                .iter()
                .filter(|c| c.value.is_none() && c.config_operation != OP_DELETE)
                .map(|c| c.name.to_string())
                .collect();
            let ops = r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.to_string()),
                    )
                })
                .collect();
            Resource {
                resource_type: r.resource_type,
                name: r.resource_name.to_string(),
                keys,
                null_values,
                mode: AlterMode::Incremental(ops),
            }
        })
        .collect();
    let answers = run(&ctx.shard, resources, req.validate_only).await;
    let responses = answers
        .into_iter()
        .map(|(r, outcome)| {
            let out = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(str_bytes(r.name));
            match outcome {
                Ok(()) => out.with_error_code(code::NONE).with_error_message(None),
                Err(e) => out
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Checks every resource, then applies the topic changes (concurrently; the controller
/// serialises them). Answers come back in request order.
async fn run(
    shard: &Rc<Shard>,
    resources: Vec<Resource>,
    validate_only: bool,
) -> Vec<(Resource, Result<(), AdminError>)> {
    let node_id = shard.node_id();
    let plans = plan(&resources, node_id);
    let applied = plans.into_iter().map(|p| async move {
        match p? {
            Action::Nothing => Ok(()),
            Action::Command(cmd) => match submit(shard, cmd, validate_only).await? {
                Outcome::Topic(_) => Ok(()),
                _ => Err(unexpected_answer()),
            },
        }
    });
    let outcomes = futures::future::join_all(applied).await;
    resources.into_iter().zip(outcomes).collect()
}

/// What each resource asks for, or why it is refused. Pure.
fn plan(resources: &[Resource], node_id: i32) -> Vec<Result<Action, AdminError>> {
    let mut seen: HashMap<(i8, &str), usize> = HashMap::new();
    for r in resources {
        *seen.entry((r.resource_type, r.name.as_str())).or_default() += 1;
    }
    resources
        .iter()
        .map(|r| {
            if seen[&(r.resource_type, r.name.as_str())] > 1 {
                return Err(AdminError::new(
                    code::INVALID_REQUEST,
                    "Each resource must appear at most once.",
                ));
            }
            plan_one(r, node_id)
        })
        .collect()
}

fn plan_one(r: &Resource, node_id: i32) -> Result<Action, AdminError> {
    let keys: Vec<&str> = r.keys.iter().map(String::as_str).collect();
    if super::create_topics::duplicates(keys.iter().copied())
        .into_iter()
        .next()
        .is_some()
    {
        return Err(AdminError::new(
            code::INVALID_REQUEST,
            "Error due to duplicate config keys",
        ));
    }
    if !r.null_values.is_empty() {
        return Err(AdminError::new(
            code::INVALID_REQUEST,
            format!(
                "Null value not supported for : {}",
                r.null_values.join(", ")
            ),
        ));
    }
    match r.resource_type {
        resource_type::TOPIC => Ok(Action::Command(ControllerCommand::AlterTopicConfigs {
            name: r.name.clone(),
            mode: r.mode.clone(),
        })),
        resource_type::BROKER => {
            if !r.name.is_empty() {
                check_broker_name(&r.name, node_id)?;
            }
            if r.keys.is_empty() {
                return Ok(Action::Nothing);
            }
            Err(AdminError::new(
                code::INVALID_REQUEST,
                "dynamic broker configs are not supported yet",
            ))
        }
        resource_type::BROKER_LOGGER => Err(AdminError::new(
            code::INVALID_REQUEST,
            "dynamic log levels are not supported yet (Sluice's log levels are set at start-up through RUST_LOG)",
        )),
        other => Err(AdminError::new(
            code::INVALID_REQUEST,
            format!("Unknown resource type {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(resource_type: i8, name: &str, ops: &[(&str, i8, Option<&str>)]) -> Resource {
        Resource {
            resource_type,
            name: name.into(),
            keys: ops.iter().map(|(k, _, _)| k.to_string()).collect(),
            null_values: ops
                .iter()
                .filter(|(_, op, v)| v.is_none() && *op != OP_DELETE)
                .map(|(k, _, _)| k.to_string())
                .collect(),
            mode: AlterMode::Incremental(
                ops.iter()
                    .map(|(k, op, v)| (k.to_string(), *op, v.map(str::to_string)))
                    .collect(),
            ),
        }
    }

    fn codes(plans: &[Result<Action, AdminError>]) -> Vec<i16> {
        plans
            .iter()
            .map(|p| p.as_ref().map_or_else(|e| e.code, |_| 0))
            .collect()
    }

    #[test]
    fn topic_changes_become_commands() {
        let plans = plan(
            &[resource(
                resource_type::TOPIC,
                "t",
                &[("retention.ms", 0, Some("1"))],
            )],
            0,
        );
        match &plans[0] {
            Ok(Action::Command(ControllerCommand::AlterTopicConfigs {
                name,
                mode: AlterMode::Incremental(ops),
            })) => {
                assert_eq!(name, "t");
                assert_eq!(
                    ops,
                    &vec![("retention.ms".to_string(), 0, Some("1".to_string()))]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn preprocessing_refuses_like_kafka() {
        let t = |ops: &[(&str, i8, Option<&str>)]| resource(resource_type::TOPIC, "t", ops);
        let plans = plan(
            &[
                t(&[("a", 0, Some("1"))]),
                resource(
                    resource_type::TOPIC,
                    "u",
                    &[("a", 0, Some("1")), ("a", 1, None)],
                ),
                resource(resource_type::TOPIC, "v", &[("a", 0, None), ("b", 1, None)]),
                t(&[]),
            ],
            0,
        );
        assert_eq!(codes(&plans), vec![code::INVALID_REQUEST; 4]);
        assert!(plans[2].as_ref().unwrap_err().message.ends_with(": a"));
    }

    #[test]
    fn broker_resources() {
        let plans = plan(
            &[
                resource(resource_type::BROKER, "3", &[]),
                resource(
                    resource_type::BROKER,
                    "",
                    &[("log.retention.ms", 0, Some("1"))],
                ),
                resource(resource_type::BROKER, "4", &[]),
                resource(
                    resource_type::BROKER_LOGGER,
                    "3",
                    &[("root", 0, Some("DEBUG"))],
                ),
                resource(99, "x", &[]),
            ],
            3,
        );
        assert!(matches!(plans[0], Ok(Action::Nothing)));
        assert_eq!(codes(&plans[1..]), vec![code::INVALID_REQUEST; 4]);
        assert_eq!(
            plans[1].as_ref().unwrap_err().message,
            "dynamic broker configs are not supported yet"
        );
    }
}
