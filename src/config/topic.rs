//! Topic-level configuration: Kafka's topic property names, their broker-level
//! synonyms (where the default comes from), and validation.

use std::collections::BTreeMap;

use super::{validate_kind, BrokerConfig, Kind};

/// One topic property and the broker property that supplies its default.
pub struct TopicKey {
    pub name: &'static str,
    pub kind: Kind,
    /// Broker synonym; `None` means the default is `fixed_default`.
    pub broker_synonym: Option<&'static str>,
    pub fixed_default: &'static str,
}

const fn tk(
    name: &'static str,
    kind: Kind,
    syn: Option<&'static str>,
    d: &'static str,
) -> TopicKey {
    TopicKey {
        name,
        kind,
        broker_synonym: syn,
        fixed_default: d,
    }
}

pub const TOPIC_KEYS: &[TopicKey] = &[
    tk(
        "cleanup.policy",
        Kind::List,
        Some("log.cleanup.policy"),
        "delete",
    ),
    tk(
        "compression.type",
        Kind::String,
        Some("compression.type"),
        "producer",
    ),
    tk(
        "delete.retention.ms",
        Kind::Long,
        Some("log.cleaner.delete.retention.ms"),
        "86400000",
    ),
    tk(
        "file.delete.delay.ms",
        Kind::Long,
        Some("log.segment.delete.delay.ms"),
        "60000",
    ),
    tk(
        "flush.messages",
        Kind::Long,
        Some("log.flush.interval.messages"),
        "9223372036854775807",
    ),
    tk(
        "flush.ms",
        Kind::Long,
        Some("log.flush.interval.ms"),
        "9223372036854775807",
    ),
    tk(
        "index.interval.bytes",
        Kind::Int,
        Some("log.index.interval.bytes"),
        "4096",
    ),
    tk(
        "max.message.bytes",
        Kind::Int,
        Some("message.max.bytes"),
        "1048588",
    ),
    tk(
        "message.timestamp.type",
        Kind::String,
        Some("log.message.timestamp.type"),
        "CreateTime",
    ),
    tk(
        "max.compaction.lag.ms",
        Kind::Long,
        Some("log.cleaner.max.compaction.lag.ms"),
        "9223372036854775807",
    ),
    tk(
        "min.cleanable.dirty.ratio",
        Kind::Double,
        Some("log.cleaner.min.cleanable.ratio"),
        "0.5",
    ),
    tk(
        "min.compaction.lag.ms",
        Kind::Long,
        Some("log.cleaner.min.compaction.lag.ms"),
        "0",
    ),
    tk(
        "min.insync.replicas",
        Kind::Int,
        Some("min.insync.replicas"),
        "1",
    ),
    tk(
        "retention.bytes",
        Kind::Long,
        Some("log.retention.bytes"),
        "-1",
    ),
    tk("retention.ms", Kind::Long, None, "604800000"),
    tk(
        "retention.disk.percent",
        Kind::Double,
        Some("log.retention.disk.percent"),
        "-1",
    ),
    tk(
        "segment.bytes",
        Kind::Int,
        Some("log.segment.bytes"),
        "1073741824",
    ),
    tk(
        "segment.index.bytes",
        Kind::Int,
        Some("log.index.size.max.bytes"),
        "10485760",
    ),
    tk("segment.ms", Kind::Long, None, "604800000"),
    tk("segment.jitter.ms", Kind::Long, None, "0"),
    tk(
        "unclean.leader.election.enable",
        Kind::Bool,
        Some("unclean.leader.election.enable"),
        "false",
    ),
    tk(
        "message.timestamp.before.max.ms",
        Kind::Long,
        None,
        "9223372036854775807",
    ),
    tk(
        "message.timestamp.after.max.ms",
        Kind::Long,
        None,
        "3600000",
    ),
];

pub fn find(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// Where an effective topic value came from (DescribeConfigs `config_source`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Topic,
    BrokerStatic,
    Default,
}

impl Source {
    /// Kafka's ConfigSource numbers: 1 dynamic topic, 4 static broker, 5 default.
    pub fn code(self) -> i8 {
        match self {
            Source::Topic => 1,
            Source::BrokerStatic => 4,
            Source::Default => 5,
        }
    }
}

/// The default a topic gets for `key` on this broker, with its source.
pub fn broker_default(broker: &BrokerConfig, key: &TopicKey) -> (String, Source) {
    match key.name {
        "retention.ms" => {
            let explicit = [
                "log.retention.ms",
                "log.retention.minutes",
                "log.retention.hours",
            ]
            .iter()
            .any(|k| broker.explicit.contains_key(*k));
            let src = if explicit {
                Source::BrokerStatic
            } else {
                Source::Default
            };
            return (broker.log_retention_ms().to_string(), src);
        }
        "segment.ms" => {
            let explicit = broker.explicit.contains_key("log.roll.ms")
                || broker.explicit.contains_key("log.roll.hours");
            let src = if explicit {
                Source::BrokerStatic
            } else {
                Source::Default
            };
            return (broker.log_roll_ms().to_string(), src);
        }
        "segment.jitter.ms" => {
            let explicit = broker.explicit.contains_key("log.roll.jitter.ms")
                || broker.explicit.contains_key("log.roll.jitter.hours");
            let src = if explicit {
                Source::BrokerStatic
            } else {
                Source::Default
            };
            return (broker.log_roll_jitter_ms().to_string(), src);
        }
        _ => {}
    }
    match key.broker_synonym {
        Some(syn) if broker.explicit.contains_key(syn) => {
            (broker.get(syn).to_string(), Source::BrokerStatic)
        }
        Some(syn) if !broker.get(syn).is_empty() && syn != "log.flush.interval.ms" => {
            (broker.get(syn).to_string(), Source::Default)
        }
        _ => (key.fixed_default.to_string(), Source::Default),
    }
}

/// The effective value of every topic key, with its source.
pub fn effective(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<&'static str, (String, Source)> {
    let mut out = BTreeMap::new();
    for key in TOPIC_KEYS {
        let entry = match overrides.get(key.name) {
            Some(v) => (v.clone(), Source::Topic),
            None => broker_default(broker, key),
        };
        out.insert(key.name, entry);
    }
    out
}

/// The effective value of one topic key (its override, else the broker's default).
pub fn value(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    key: &str,
) -> Option<String> {
    match overrides.get(key) {
        Some(v) => Some(v.clone()),
        None => find(key).map(|k| broker_default(broker, k).0),
    }
}

/// Validates one topic override as Kafka would (INVALID_CONFIG on failure).
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let key = find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    validate_kind(name, value, key.kind).map_err(|e| e.to_string())?;
    let v = value.trim();
    let bad = |why: &str| Err(format!("Invalid value {v} for configuration {name}: {why}"));
    match name {
        "cleanup.policy" => {
            for p in v.split(',') {
                if !matches!(p.trim(), "delete" | "compact") {
                    return bad("must be delete and/or compact");
                }
            }
        }
        "min.cleanable.dirty.ratio" => {
            let r = v.parse::<f64>().unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&r) {
                return bad("must be in [0, 1]");
            }
        }
        "min.compaction.lag.ms" | "delete.retention.ms" if v.parse::<i64>().unwrap_or(-1) < 0 => {
            return bad("must be >= 0")
        }
        "max.compaction.lag.ms" if v.parse::<i64>().unwrap_or(0) < 1 => return bad("must be >= 1"),
        "compression.type"
            if !matches!(
                v,
                "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
            ) =>
        {
            return bad("unknown compression type");
        }
        "message.timestamp.type" if !matches!(v, "CreateTime" | "LogAppendTime") => {
            return bad("must be CreateTime or LogAppendTime");
        }
        "segment.bytes" if v.parse::<i64>().unwrap_or(0) < 14 => return bad("must be >= 14"),
        "segment.index.bytes" if v.parse::<i64>().unwrap_or(0) < 4 => return bad("must be >= 4"),
        "max.message.bytes" | "index.interval.bytes" if v.parse::<i64>().unwrap_or(-1) < 0 => {
            return bad("must be >= 0")
        }
        "segment.jitter.ms" if v.parse::<i64>().unwrap_or(-1) < 0 => return bad("must be >= 0"),
        "segment.ms" | "flush.messages" | "flush.ms" if v.parse::<i64>().unwrap_or(0) < 1 => {
            return bad("must be >= 1")
        }
        "retention.ms" | "retention.bytes" if v.parse::<i64>().unwrap_or(-2) < -1 => {
            return bad("must be >= -1")
        }
        "retention.disk.percent" => {
            let p = v.parse::<f64>().unwrap_or(f64::NAN);
            if !(p == -1.0 || (p > 0.0 && p <= 100.0)) {
                return bad("must be -1 (off) or in (0, 100]");
            }
        }
        "min.insync.replicas" if v.parse::<i64>().unwrap_or(0) < 1 => return bad("must be >= 1"),
        _ => {}
    }
    Ok(())
}

/// Cleanup policy flags of one `cleanup.policy` value (`delete`, `compact`, or both).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub fn parse(value: &str) -> CleanupPolicy {
        let has = |name: &str| value.split(',').any(|p| p.trim() == name);
        CleanupPolicy {
            delete: has("delete"),
            compact: has("compact"),
        }
    }
}

/// Checks between keys of one topic's overrides, as Kafka's `LogConfig.validateValues`:
/// `min.compaction.lag.ms` may not exceed `max.compaction.lag.ms`. Keys not overridden take
/// Kafka's defaults here (the controller applies commands without a broker's configuration).
pub fn validate_together(overrides: &BTreeMap<String, String>) -> Result<(), String> {
    let long = |key: &str| {
        overrides
            .get(key)
            .map(String::as_str)
            .or_else(|| find(key).map(|k| k.fixed_default))
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let (Some(min), Some(max)) = (long("min.compaction.lag.ms"), long("max.compaction.lag.ms")) {
        if min > max {
            return Err(format!(
                "conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_kafka_names_and_ranges() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate("retention.disk.percent", "12.5").is_ok());
        assert!(validate("retention.disk.percent", "150").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
    }

    #[test]
    fn compaction_keys_are_accepted_with_kafka_ranges() {
        for policy in ["delete", "compact", "compact,delete", "delete, compact"] {
            assert!(validate("cleanup.policy", policy).is_ok(), "{policy}");
        }
        assert!(validate("cleanup.policy", "compacted").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.01").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("min.compaction.lag.ms", "0").is_ok());
        assert!(validate("min.compaction.lag.ms", "-1").is_err());
        assert!(validate("max.compaction.lag.ms", "0").is_err());
        assert!(validate("delete.retention.ms", "100").is_ok());
        assert_eq!(
            CleanupPolicy::parse("compact, delete"),
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        let mut o = BTreeMap::new();
        o.insert("min.compaction.lag.ms".to_string(), "10".to_string());
        assert!(validate_together(&o).is_ok());
        o.insert("max.compaction.lag.ms".to_string(), "5".to_string());
        assert!(validate_together(&o).is_err());
    }

    #[test]
    fn defaults_come_from_broker_synonyms() {
        let b = BrokerConfig::build(
            Some("log.segment.bytes=1234\nlog.retention.hours=1"),
            &[],
            &[],
            Some(1),
        )
        .unwrap();
        let eff = effective(&b, &BTreeMap::new());
        assert_eq!(
            eff["segment.bytes"],
            ("1234".to_string(), Source::BrokerStatic)
        );
        assert_eq!(eff["retention.ms"].0, "3600000");
    }
}
