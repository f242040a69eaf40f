//! DescribeConfigs (API 32, v1–4): the effective configuration of a topic or of this broker.
//!
//! Topic entries are the topic's overrides over the broker's defaults (`config::topic::effective`);
//! broker entries are the static properties this broker started with. Sluice has no dynamic broker
//! configuration yet, so every broker entry is read-only and `""` (the cluster-wide dynamic
//! defaults) describes as an empty list, as it does on a Kafka cluster with none set.
//!
//! The entry builders here are shared with CreateTopics, whose v5+ response carries the new
//! topic's configuration.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::create_topics::AdminError;
use super::errors::code;
use super::{str_bytes, RequestContext};
use crate::cluster::controller;
use crate::cluster::{ControllerError, MetadataImage};
use crate::config::topic::{self, Source, TopicKey, TOPIC_KEYS};
use crate::config::{BrokerConfig, Kind, BROKER_KEYS};

/// Kafka's `ConfigResource.Type` ids.
pub mod resource_type {
    pub const TOPIC: i8 = 2;
    pub const BROKER: i8 = 4;
    pub const BROKER_LOGGER: i8 = 8;
}

/// Kafka's `ConfigSource` ids this file uses besides `Source::code()`.
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// One configuration entry as DescribeConfigs and CreateTopics report it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    pub name: &'static str,
    /// `None` where Kafka reports null: a property with no value (e.g. `log.retention.ms` unset).
    pub value: Option<String>,
    /// Kafka's `ConfigSource` id.
    pub source: i8,
    pub read_only: bool,
    pub kind: Kind,
    /// Where the value could come from, most specific first (only when asked for).
    pub synonyms: Vec<Synonym>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Synonym {
    pub name: &'static str,
    pub value: Option<String>,
    pub source: i8,
}

pub fn handle(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let image = ctx.shard.metadata();
    let broker = &ctx.shard.config;
    // `include_documentation` (v3+) is honoured by sending null: Sluice keeps no documentation strings.
    let version = ctx.api_version;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let keys = r.configuration_keys.as_deref();
            let described = describe(
                broker,
                &image,
                r.resource_type,
                &r.resource_name,
                keys,
                req.include_synonyms,
            );
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match described {
                Ok(entries) => result
                    .with_error_code(code::NONE)
                    .with_error_message(None)
                    .with_configs(
                        entries
                            .iter()
                            .map(|e| resource_result(e, version))
                            .collect(),
                    ),
                Err(e) => result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message)))
                    .with_configs(Vec::new()),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The entries of one resource, filtered by `keys` (`None` = all).
pub fn describe(
    broker: &BrokerConfig,
    image: &MetadataImage,
    resource_type: i8,
    resource_name: &str,
    keys: Option<&[StrBytes]>,
    synonyms: bool,
) -> Result<Vec<ConfigEntry>, AdminError> {
    let wanted = |name: &str| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == name));
    match resource_type {
        resource_type::TOPIC => {
            controller::validate_topic_name(resource_name).map_err(|e| AdminError::controller(&e))?;
            let t = image
                .topic(resource_name)
                .ok_or_else(|| AdminError::controller(&ControllerError::UnknownTopic))?;
            Ok(topic_entries(broker, &t.configs, synonyms)
                .into_iter()
                .filter(|e| wanted(e.name))
                .collect())
        }
        resource_type::BROKER => {
            if resource_name.is_empty() {
                // Cluster-wide dynamic defaults: Sluice has none.
                return Ok(Vec::new());
            }
            check_broker_name(resource_name, broker.node_id)?;
            Ok(broker_entries(broker, synonyms)
                .into_iter()
                .filter(|e| wanted(e.name))
                .collect())
        }
        resource_type::BROKER_LOGGER => Err(AdminError::new(
            code::INVALID_REQUEST,
            "Unsupported resource type: BROKER_LOGGER (Sluice's log levels are set at start-up through RUST_LOG)",
        )),
        other => Err(AdminError::new(
            code::INVALID_REQUEST,
            format!("Unsupported resource type: {other}"),
        )),
    }
}

/// A broker resource must name this node, as Kafka checks it.
pub fn check_broker_name(resource_name: &str, node_id: i32) -> Result<(), AdminError> {
    let id: i32 = resource_name.trim().parse().map_err(|_| {
        AdminError::new(
            code::INVALID_REQUEST,
            format!("Broker id must be an integer, but it is: {resource_name}"),
        )
    })?;
    if id != node_id {
        return Err(AdminError::new(
            code::INVALID_REQUEST,
            format!("Unexpected broker id, expected {node_id} or empty string, but received {resource_name}"),
        ));
    }
    Ok(())
}

/// Every topic key with its effective value: the override, else the broker's default.
pub fn topic_entries(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    synonyms: bool,
) -> Vec<ConfigEntry> {
    let effective = topic::effective(broker, overrides);
    TOPIC_KEYS
        .iter()
        .map(|key| {
            let (value, source) = effective
                .get(key.name)
                .cloned()
                .unwrap_or_else(|| topic::broker_default(broker, key));
            ConfigEntry {
                name: key.name,
                value: Some(value),
                source: source.code(),
                read_only: false,
                kind: key.kind,
                synonyms: if synonyms {
                    topic_synonyms(broker, overrides, key)
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

/// Every broker property Sluice reads. None can be changed at run time.
pub fn broker_entries(broker: &BrokerConfig, synonyms: bool) -> Vec<ConfigEntry> {
    BROKER_KEYS
        .iter()
        .map(|key| {
            let explicit = broker.explicit.get(key.name);
            let value = Some(broker.get(key.name))
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            let mut entry = ConfigEntry {
                name: key.name,
                value,
                source: if explicit.is_some() {
                    SOURCE_STATIC_BROKER_CONFIG
                } else {
                    SOURCE_DEFAULT_CONFIG
                },
                read_only: true,
                kind: key.kind,
                synonyms: Vec::new(),
            };
            if synonyms {
                if let Some(v) = explicit {
                    entry.synonyms.push(Synonym {
                        name: key.name,
                        value: Some(v.clone()),
                        source: SOURCE_STATIC_BROKER_CONFIG,
                    });
                }
                if !key.default.is_empty() {
                    entry.synonyms.push(Synonym {
                        name: key.name,
                        value: Some(key.default.to_string()),
                        source: SOURCE_DEFAULT_CONFIG,
                    });
                }
            }
            entry
        })
        .collect()
}

/// Kafka's order: the topic override, then every broker synonym set in the broker's
/// properties, then the built-in defaults of those synonyms.
fn topic_synonyms(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    key: &'static TopicKey,
) -> Vec<Synonym> {
    let mut out = Vec::new();
    if let Some(v) = overrides.get(key.name) {
        out.push(Synonym {
            name: key.name,
            value: Some(v.clone()),
            source: Source::Topic.code(),
        });
    }
    let names = broker_synonyms(key);
    for name in names {
        if let Some(v) = broker.explicit.get(*name) {
            out.push(Synonym {
                name,
                value: Some(v.clone()),
                source: SOURCE_STATIC_BROKER_CONFIG,
            });
        }
    }
    for name in names {
        if let Some(k) = BROKER_KEYS
            .iter()
            .find(|k| k.name == *name && !k.default.is_empty())
        {
            out.push(Synonym {
                name,
                value: Some(k.default.to_string()),
                source: SOURCE_DEFAULT_CONFIG,
            });
        }
    }
    out
}

/// The broker properties a topic key's default comes from, most specific first
/// (`topic::broker_default` resolves `retention.ms` and `segment.ms` from several).
fn broker_synonyms(key: &'static TopicKey) -> &'static [&'static str] {
    match key.name {
        "retention.ms" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "segment.ms" => &["log.roll.ms", "log.roll.hours"],
        "segment.jitter.ms" => &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        _ => key.broker_synonym.as_slice(),
    }
}

/// Kafka's `ConfigEntry.ConfigType` ids (DescribeConfigs v3+).
pub fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Bool => 1,
        Kind::String => 2,
        Kind::Int => 3,
        Kind::Long => 5,
        Kind::Double => 6,
        Kind::List => 7,
    }
}

fn resource_result(e: &ConfigEntry, version: i16) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(e.name))
        .with_value(e.value.clone().map(str_bytes))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_is_sensitive(false)
        .with_synonyms(
            e.synonyms
                .iter()
                .map(|s| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_static_str(s.name))
                        .with_value(s.value.clone().map(str_bytes))
                        .with_source(s.source)
                })
                .collect(),
        );
    if version >= 3 {
        r = r
            .with_config_type(config_type(e.kind))
            .with_documentation(None);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::TopicImage;

    /// Node 7 with `props`.
    fn broker(props: &str) -> BrokerConfig {
        let text = format!("node.id=7\n{props}");
        BrokerConfig::build(Some(&text), &[], &[], Some(1)).unwrap()
    }

    fn image(configs: &[(&str, &str)]) -> MetadataImage {
        let mut topics = BTreeMap::new();
        topics.insert(
            "t".to_string(),
            TopicImage {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                partitions: Vec::new(),
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                internal: false,
            },
        );
        MetadataImage {
            cluster_id: "c".into(),
            version: 1,
            brokers: BTreeMap::new(),
            topics,
            next_producer_id: 0,
            broker_defaults: Default::default(),
        }
    }

    fn find<'a>(entries: &'a [ConfigEntry], name: &str) -> &'a ConfigEntry {
        entries.iter().find(|e| e.name == name).unwrap()
    }

    #[test]
    fn topic_override_then_static_broker_then_default() {
        let b = broker("log.segment.bytes=2048\nlog.retention.hours=2");
        let img = image(&[("retention.bytes", "100")]);
        let all = describe(&b, &img, resource_type::TOPIC, "t", None, true).unwrap();
        assert_eq!(all.len(), TOPIC_KEYS.len());

        let rb = find(&all, "retention.bytes");
        assert_eq!((rb.value.as_deref(), rb.source), (Some("100"), 1));
        assert_eq!(
            rb.synonyms[0],
            Synonym {
                name: "retention.bytes",
                value: Some("100".into()),
                source: 1
            }
        );
        assert_eq!(rb.synonyms.last().unwrap().name, "log.retention.bytes");

        let sb = find(&all, "segment.bytes");
        assert_eq!((sb.value.as_deref(), sb.source), (Some("2048"), 4));
        let names: Vec<_> = sb.synonyms.iter().map(|s| (s.name, s.source)).collect();
        assert_eq!(
            names,
            vec![("log.segment.bytes", 4), ("log.segment.bytes", 5)]
        );

        let rm = find(&all, "retention.ms");
        assert_eq!((rm.value.as_deref(), rm.source), (Some("7200000"), 4));
        let names: Vec<_> = rm.synonyms.iter().map(|s| (s.name, s.source)).collect();
        assert_eq!(
            names,
            vec![("log.retention.hours", 4), ("log.retention.hours", 5)]
        );

        let ct = find(&all, "compression.type");
        assert_eq!(
            (ct.source, ct.read_only, config_type(ct.kind)),
            (5, false, 2)
        );
    }

    #[test]
    fn keys_filter_and_no_synonyms_unless_asked() {
        let b = broker("");
        let img = image(&[]);
        let keys = [
            StrBytes::from_static_str("retention.ms"),
            StrBytes::from_static_str("nope"),
        ];
        let some = describe(&b, &img, resource_type::TOPIC, "t", Some(&keys), false).unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].name, "retention.ms");
        assert!(some[0].synonyms.is_empty());
        let none = describe(&b, &img, resource_type::TOPIC, "t", Some(&[]), false).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn topic_errors() {
        let b = broker("");
        let img = image(&[]);
        let e = describe(&b, &img, resource_type::TOPIC, "missing", None, false).unwrap_err();
        assert_eq!(e.code, code::UNKNOWN_TOPIC_OR_PARTITION);
        let e = describe(&b, &img, resource_type::TOPIC, "bad name", None, false).unwrap_err();
        assert_eq!(e.code, code::INVALID_TOPIC_EXCEPTION);
    }

    #[test]
    fn broker_resource_names_this_node_or_defaults() {
        let b = broker("num.partitions=3");
        let img = image(&[]);
        let all = describe(&b, &img, resource_type::BROKER, "7", None, true).unwrap();
        let np = find(&all, "num.partitions");
        assert_eq!(
            (np.value.as_deref(), np.source, np.read_only),
            (Some("3"), 4, true)
        );
        assert_eq!(np.synonyms.len(), 2);
        let lr = find(&all, "log.retention.ms");
        assert_eq!((lr.value.as_deref(), lr.source), (None, 5));
        assert!(describe(&b, &img, resource_type::BROKER, "", None, false)
            .unwrap()
            .is_empty());
        let e = describe(&b, &img, resource_type::BROKER, "8", None, false).unwrap_err();
        assert_eq!(e.code, code::INVALID_REQUEST);
        let e = describe(&b, &img, resource_type::BROKER, "x", None, false).unwrap_err();
        assert_eq!(e.code, code::INVALID_REQUEST);
        let e = describe(&b, &img, resource_type::BROKER_LOGGER, "7", None, false).unwrap_err();
        assert_eq!(e.code, code::INVALID_REQUEST);
    }

    #[test]
    fn wire_fields_follow_the_version() {
        let b = broker("");
        let entries = topic_entries(&b, &BTreeMap::new(), false);
        let v1 = resource_result(&entries[0], 1);
        assert_eq!(v1.config_type, 0);
        let v3 = resource_result(&entries[0], 3);
        assert_eq!(v3.config_type, config_type(entries[0].kind));
        assert_eq!(v3.documentation, None);
    }

    #[test]
    fn encodes_at_every_served_version() {
        use kafka_protocol::protocol::Encodable;
        let b = broker("num.partitions=2");
        let img = image(&[("retention.ms", "1")]);
        for version in 1..=4 {
            let topic = describe(&b, &img, resource_type::TOPIC, "t", None, true).unwrap();
            let brokers = describe(&b, &img, resource_type::BROKER, "7", None, true).unwrap();
            let configs = topic
                .iter()
                .chain(&brokers)
                .map(|e| resource_result(e, version))
                .collect();
            let result = DescribeConfigsResult::default().with_configs(configs);
            let resp = DescribeConfigsResponse::default().with_results(vec![result]);
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, version).unwrap();
        }
    }
}
