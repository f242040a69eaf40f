//! Broker liveness, kept by the active controller (Kafka's BrokerHeartbeatManager).
//!
//! Heartbeats are not log entries: the controller that leads the quorum keeps, in memory,
//! when it last heard from each registered broker. A broker not heard from for
//! `broker.session.timeout.ms` is fenced by a `FenceBroker` command (which moves its
//! leaderships away); a fenced broker whose heartbeats show it has applied the metadata log
//! up to its own registration is unfenced. A controller that has just become leader knows
//! nothing of the past, so it gives every broker a fresh session first.
//!
//! Lives on shard 0 of a controller node, beside the Raft handle; pure: time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::image::MetadataImage;
use super::ControllerCommand;

/// A broker's heartbeat (Kafka's BrokerHeartbeatRequest, in Sluice's control RPC).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Heartbeat {
    pub node_id: i32,
    pub epoch: i64,
    /// The metadata image version the broker has applied.
    pub applied_version: u64,
}

/// The controller's answer (Kafka's BrokerHeartbeatResponse fields).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The broker is unknown or its epoch is not the registered one: it must register again.
    pub stale: bool,
    pub fenced: bool,
    pub caught_up: bool,
}

/// Last time the active controller heard from each broker.
#[derive(Debug)]
pub struct Liveness {
    session_timeout: Duration,
    last_heard: HashMap<i32, Instant>,
}

impl Liveness {
    pub fn new(session_timeout: Duration) -> Liveness {
        Liveness {
            session_timeout,
            last_heard: HashMap::new(),
        }
    }

    /// On becoming the active controller: every registered broker gets a full session.
    pub fn become_leader(&mut self, image: &MetadataImage, now: Instant) {
        self.last_heard = image.brokers.keys().map(|id| (*id, now)).collect();
    }

    /// Records a heartbeat and says what the broker's state is, and which command (if any)
    /// the controller should propose for it.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        hb: &Heartbeat,
        now: Instant,
    ) -> (HeartbeatReply, Option<ControllerCommand>) {
        let Some(reg) = image.brokers.get(&hb.node_id).filter(|r| r.epoch == hb.epoch) else {
            return (
                HeartbeatReply {
                    stale: true,
                    fenced: true,
                    caught_up: false,
                },
                None,
            );
        };
        self.last_heard.insert(hb.node_id, now);
        // Caught up: the broker has applied the log at least to its own registration.
        let caught_up = hb.applied_version >= reg.epoch as u64;
        let command = (reg.fenced && caught_up && !reg.in_controlled_shutdown).then_some(
            ControllerCommand::UnfenceBroker {
                node_id: hb.node_id,
                epoch: hb.epoch,
            },
        );
        (
            HeartbeatReply {
                stale: false,
                fenced: reg.fenced,
                caught_up,
            },
            command,
        )
    }

    /// `FenceBroker` for every unfenced broker whose session has expired.
    pub fn expired(&mut self, image: &MetadataImage, now: Instant) -> Vec<ControllerCommand> {
        let mut out = Vec::new();
        for (id, reg) in &image.brokers {
            // A broker registered after this controller took over starts its session now.
            let last = *self.last_heard.entry(*id).or_insert(now);
            if !reg.fenced && now.duration_since(last) > self.session_timeout {
                out.push(ControllerCommand::FenceBroker {
                    node_id: *id,
                    epoch: reg.epoch,
                });
            }
        }
        self.last_heard.retain(|id, _| image.brokers.contains_key(id));
        out
    }
}
