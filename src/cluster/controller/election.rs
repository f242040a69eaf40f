//! Leader elections besides those of broker departures: ElectLeaders (preferred and unclean,
//! Kafka's `ReplicationControlManager.electLeaders`), the unclean election that
//! `unclean.leader.election.enable` allows, and the broker-level defaults that decide it.
//! Called only from `apply` (and `brokers`), on the next image.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ControllerError, Outcome};
use crate::cluster::image::{MetadataImage, PartitionImage, NO_LEADER};
use crate::config::topic;

/// The topic config (and broker default) that lets a replica outside the ISR lead.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Broker-level defaults the controller records in the image (`SetBrokerDefaults`).
pub const CONTROLLER_DEFAULT_KEYS: &[&str] = &[UNCLEAN_LEADER_ELECTION_ENABLE];

/// ElectLeaders' `election_type` (Kafka's `ElectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// 0: the first replica leads, if it is active and in the ISR.
    Preferred,
    /// 1: a leaderless partition gets a leader from the ISR, else any active replica.
    Unclean,
}

impl ElectionType {
    pub fn from_code(code: i8) -> Option<ElectionType> {
        match code {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// Why one partition's election changed nothing (each a Kafka error code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionError {
    /// The topic or the partition does not exist.
    UnknownTopicOrPartition,
    /// The preferred replica already leads (preferred), or an active leader exists (unclean).
    ElectionNotNeeded,
    /// The preferred replica is not active or not in the ISR.
    PreferredLeaderNotAvailable,
    /// No replica of the partition is active.
    EligibleLeadersNotAvailable,
}

/// One partition's election result, in request order (or image order for "all partitions").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: i32,
    pub error: Option<ElectionError>,
}

/// ElectLeaders on `next`. `partitions: None` means every partition, answered (as Kafka does)
/// without those whose election was not needed.
pub fn elect_leaders(
    next: &mut MetadataImage,
    election_type: ElectionType,
    partitions: Option<&[(String, i32)]>,
) -> Outcome {
    let active = active_brokers(next);
    let targets: Vec<(String, i32)> = match partitions {
        Some(list) => list.to_vec(),
        None => next
            .topics
            .values()
            .flat_map(|t| (0..t.partition_count()).map(|p| (t.name.clone(), p)))
            .collect(),
    };
    let mut results = Vec::with_capacity(targets.len());
    for (topic, partition) in targets {
        let p = next.topics.get_mut(&topic).and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get_mut(i))
        });
        let error = match p {
            None => Some(ElectionError::UnknownTopicOrPartition),
            Some(p) => elect_one(p, election_type, &active).err(),
        };
        if partitions.is_none() && error == Some(ElectionError::ElectionNotNeeded) {
            continue;
        }
        results.push(ElectionResult {
            topic,
            partition,
            error,
        });
    }
    Outcome::Elected(results)
}

/// Records the broker-level defaults the controller decides with, replacing the previous ones.
pub fn set_broker_defaults(
    next: &mut MetadataImage,
    configs: &BTreeMap<String, String>,
) -> Result<Outcome, ControllerError> {
    for (k, v) in configs {
        if !CONTROLLER_DEFAULT_KEYS.contains(&k.as_str()) {
            return Err(ControllerError::InvalidConfig(format!(
                "{k} is not a broker default the controller keeps"
            )));
        }
        topic::validate(k, v).map_err(ControllerError::InvalidConfig)?;
    }
    next.broker_defaults = configs.clone();
    elect_unclean_where_leaderless(next);
    Ok(Outcome::Done)
}

/// The broker-level defaults this node's configuration gives (what the active controller
/// records with `SetBrokerDefaults`): only the keys set explicitly, so an image of a
/// cluster whose brokers keep Kafka's defaults records nothing.
pub fn broker_defaults(config: &crate::config::BrokerConfig) -> BTreeMap<String, String> {
    CONTROLLER_DEFAULT_KEYS
        .iter()
        .filter_map(|k| {
            config
                .explicit
                .get(*k)
                .map(|v| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Whether `topic` allows unclean leader election: its override, else the recorded broker
/// default, else Kafka's default (false).
pub fn unclean_enabled(image: &MetadataImage, topic: &str) -> bool {
    let value = image
        .topic(topic)
        .and_then(|t| t.configs.get(UNCLEAN_LEADER_ELECTION_ENABLE))
        .or_else(|| image.broker_defaults.get(UNCLEAN_LEADER_ELECTION_ENABLE));
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// An unclean election on `p`: its first active replica (in replica order) other than
/// `leaving` leads, alone in the ISR; both epochs are bumped. False (nothing changed) when no
/// replica is active. Records that only the old ISR held are lost: the price the topic's
/// config accepted for availability.
pub fn elect_unclean(p: &mut PartitionImage, active: &BTreeSet<i32>, leaving: i32) -> bool {
    let Some(leader) = p
        .replicas
        .iter()
        .copied()
        .find(|r| *r != leaving && active.contains(r))
    else {
        return false;
    };
    p.leader = leader;
    p.isr = vec![leader];
    p.leader_epoch += 1;
    p.partition_epoch += 1;
    true
}

/// After unclean election was enabled (a topic's override or the broker default): every
/// partition of such a topic with no active leader and no active ISR member gets an unclean
/// leader, as Kafka's controller does when the config changes.
pub fn elect_unclean_where_leaderless(next: &mut MetadataImage) {
    let active = active_brokers(next);
    let enabled: Vec<String> = next
        .topics
        .keys()
        .filter(|t| unclean_enabled(next, t))
        .cloned()
        .collect();
    for name in enabled {
        let Some(t) = next.topics.get_mut(&name) else {
            continue;
        };
        for p in &mut t.partitions {
            let led = active.contains(&p.leader);
            if !led && !p.isr.iter().any(|r| active.contains(r)) {
                elect_unclean(p, &active, NO_LEADER);
            }
        }
    }
}

/// Brokers that may lead: registered, unfenced, not shutting down.
pub fn active_brokers(image: &MetadataImage) -> BTreeSet<i32> {
    image
        .brokers
        .values()
        .filter(|b| b.is_active())
        .map(|b| b.node_id)
        .collect()
}

/// One partition's election (Kafka's `electLeader` with `PartitionChangeBuilder`).
fn elect_one(
    p: &mut PartitionImage,
    election_type: ElectionType,
    active: &BTreeSet<i32>,
) -> Result<(), ElectionError> {
    match election_type {
        ElectionType::Preferred => {
            let Some(preferred) = p.replicas.first().copied() else {
                return Err(ElectionError::PreferredLeaderNotAvailable);
            };
            if p.leader == preferred {
                return Err(ElectionError::ElectionNotNeeded);
            }
            if !active.contains(&preferred) || !p.isr.contains(&preferred) {
                return Err(ElectionError::PreferredLeaderNotAvailable);
            }
            p.leader = preferred;
            p.leader_epoch += 1;
            p.partition_epoch += 1;
            Ok(())
        }
        ElectionType::Unclean => {
            if active.contains(&p.leader) {
                return Err(ElectionError::ElectionNotNeeded);
            }
            let clean = p
                .replicas
                .iter()
                .copied()
                .find(|r| p.isr.contains(r) && active.contains(r));
            if let Some(leader) = clean {
                p.leader = leader;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
                return Ok(());
            }
            if elect_unclean(p, active, NO_LEADER) {
                Ok(())
            } else {
                Err(ElectionError::EligibleLeadersNotAvailable)
            }
        }
    }
}
