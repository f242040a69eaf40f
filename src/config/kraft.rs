//! Kafka's KRaft settings, read unchanged from a Kafka 4 `server.properties`: roles, the
//! controller quorum, named listeners, and the broker's session with the controller.
//!
//! With no `controller.quorum.voters` (and no `controller.quorum.bootstrap.servers`) the
//! broker runs alone, as before the cluster existed: `QuorumConfig` is then `None` and the
//! node is its own controller.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{invalid, resolve, split_host_port, ConfigError};

/// What a node does (`process.roles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// One entry of `listeners` / `advertised.listeners`: `NAME://HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// A voter of `controller.quorum.voters` (`ID@HOST:PORT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

/// The controller quorum this node belongs to or talks to.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub roles: Roles,
    /// `controller.quorum.voters`, by node id.
    pub voters: BTreeMap<i32, Voter>,
    /// Where this node's controller listener binds (controller role only).
    pub controller_listen: Option<SocketAddr>,
    /// `broker.session.timeout.ms`: a broker without a heartbeat this long is fenced.
    pub broker_session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval: Duration,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout: Duration,
    /// `controller.quorum.fetch.timeout.ms`.
    pub fetch_timeout: Duration,
    /// `controller.quorum.request.timeout.ms`: bound on one RPC to another node.
    pub request_timeout: Duration,
}

impl QuorumConfig {
    /// The voters' controller addresses, resolved.
    pub fn voter_addrs(&self) -> Result<BTreeMap<i32, SocketAddr>, ConfigError> {
        let mut out = BTreeMap::new();
        for v in self.voters.values() {
            let text = format!("{}:{}", v.host, v.port);
            let addr = resolve(&text).ok_or_else(|| {
                invalid(
                    "controller.quorum.voters",
                    &text,
                    "cannot resolve this voter",
                )
            })?;
            out.insert(v.node_id, addr);
        }
        Ok(out)
    }
}

/// Parses `process.roles`.
pub fn parse_roles(text: &str) -> Result<Roles, ConfigError> {
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for r in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match r {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            _ => {
                return Err(invalid(
                    "process.roles",
                    text,
                    "expected broker, controller, or both",
                ))
            }
        }
    }
    if !roles.broker && !roles.controller {
        // Kafka 4 requires process.roles; Sluice's default is the combined node.
        roles = Roles {
            broker: true,
            controller: true,
        };
    }
    Ok(roles)
}

/// Parses `listeners`-style text: `NAME://HOST:PORT,...` (a missing host means all addresses).
pub fn parse_listeners(key: &str, text: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out: Vec<Listener> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, addr) = match entry.split_once("://") {
            Some((n, a)) => (n.trim().to_ascii_uppercase(), a.trim()),
            None => ("PLAINTEXT".to_string(), entry),
        };
        let (host, port) =
            split_host_port(addr).ok_or_else(|| invalid(key, text, "expected NAME://HOST:PORT"))?;
        if out.iter().any(|l| l.name == name) {
            return Err(invalid(
                key,
                text,
                &format!("listener {name} appears twice"),
            ));
        }
        out.push(Listener { name, host, port });
    }
    Ok(out)
}

/// Parses `controller.quorum.voters`: `ID@HOST:PORT,...`.
pub fn parse_voters(text: &str) -> Result<BTreeMap<i32, Voter>, ConfigError> {
    let key = "controller.quorum.voters";
    let mut out = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| invalid(key, text, "expected ID@HOST:PORT[,ID@HOST:PORT...]"))?;
        let node_id: i32 = id
            .trim()
            .parse()
            .map_err(|_| invalid(key, text, &format!("{id:?} is not a node id")))?;
        if node_id < 0 {
            return Err(invalid(key, text, "node ids are not negative"));
        }
        let (host, port) = split_host_port(addr.trim())
            .ok_or_else(|| invalid(key, text, "expected ID@HOST:PORT"))?;
        if out
            .insert(
                node_id,
                Voter {
                    node_id,
                    host,
                    port,
                },
            )
            .is_some()
        {
            return Err(invalid(
                key,
                text,
                &format!("voter {node_id} appears twice"),
            ));
        }
    }
    Ok(out)
}

/// The listener names of `controller.listener.names`.
pub fn controller_listener_names(text: &str) -> Vec<String> {
    text.split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Checks `listener.security.protocol.map`: every listener must map to PLAINTEXT, the only
/// protocol Sluice speaks so far (TLS and SASL come later); an SSL or SASL listener is
/// refused at start rather than served in clear.
pub fn check_security_protocols(listeners: &[Listener], map_text: &str) -> Result<(), ConfigError> {
    let key = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    for entry in map_text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, proto) = entry
            .split_once(':')
            .ok_or_else(|| invalid(key, map_text, "expected NAME:PROTOCOL[,NAME:PROTOCOL...]"))?;
        map.insert(
            name.trim().to_ascii_uppercase(),
            proto.trim().to_ascii_uppercase(),
        );
    }
    for l in listeners {
        // Kafka's default map names each protocol after itself (PLAINTEXT:PLAINTEXT, SSL:SSL...).
        let proto = map.get(&l.name).cloned().unwrap_or_else(|| l.name.clone());
        if proto != "PLAINTEXT" {
            return Err(invalid(
                key,
                map_text,
                &format!(
                    "listener {} uses {proto}; only PLAINTEXT listeners are supported yet",
                    l.name
                ),
            ));
        }
    }
    Ok(())
}

/// Kafka's checks of a KRaft node's listeners against its roles, and the quorum settings.
/// Returns `None` when no quorum is configured (a single node that is its own controller).
pub fn quorum_from(
    node_id: i32,
    get: &dyn Fn(&str) -> String,
    listeners: &[Listener],
) -> Result<Option<QuorumConfig>, ConfigError> {
    let roles = parse_roles(&get("process.roles"))?;
    let voters_text = get("controller.quorum.voters");
    let bootstrap = get("controller.quorum.bootstrap.servers");
    let voters = parse_voters(&voters_text)?;
    if voters.is_empty() {
        if !bootstrap.trim().is_empty() {
            // KIP-853's dynamic quorum (voters recorded by `format --initial-controllers` and
            // changed by AddRaftVoter) is not supported yet: the voter set must be static.
            return Err(invalid(
                "controller.quorum.bootstrap.servers",
                &bootstrap,
                "a dynamic quorum is not supported yet; set controller.quorum.voters",
            ));
        }
        return Ok(None);
    }
    let names = controller_listener_names(&get("controller.listener.names"));
    if names.is_empty() {
        return Err(invalid(
            "controller.listener.names",
            "",
            "must name the controller listener when controller.quorum.voters is set",
        ));
    }
    let controller_listener = listeners.iter().find(|l| names.contains(&l.name));
    let controller_listen = if roles.controller {
        if !voters.contains_key(&node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                &voters_text,
                &format!("node.id {node_id} has the controller role and must be one of the voters"),
            ));
        }
        let l = controller_listener.ok_or_else(|| {
            invalid(
                "listeners",
                &get("listeners"),
                &format!(
                    "a controller must listen on its controller listener ({})",
                    names.join(",")
                ),
            )
        })?;
        let text = format!("{}:{}", l.host, l.port);
        Some(resolve(&text).ok_or_else(|| invalid("listeners", &text, "cannot resolve"))?)
    } else {
        if voters.contains_key(&node_id) {
            return Err(invalid(
                "process.roles",
                &get("process.roles"),
                &format!("node.id {node_id} is a voter, so it needs the controller role"),
            ));
        }
        if controller_listener.is_some() {
            return Err(invalid(
                "listeners",
                &get("listeners"),
                "a node without the controller role must not listen on a controller listener",
            ));
        }
        None
    };
    let ms = |key: &str, default: u64| -> Result<Duration, ConfigError> {
        let text = get(key);
        let v = if text.trim().is_empty() {
            default
        } else {
            text.trim()
                .parse::<u64>()
                .map_err(|e| invalid(key, &text, &e.to_string()))?
        };
        if v == 0 {
            return Err(invalid(key, &text, "must be positive"));
        }
        Ok(Duration::from_millis(v))
    };
    let q = QuorumConfig {
        roles,
        voters,
        controller_listen,
        broker_session_timeout: ms("broker.session.timeout.ms", 9_000)?,
        broker_heartbeat_interval: ms("broker.heartbeat.interval.ms", 2_000)?,
        election_timeout: ms("controller.quorum.election.timeout.ms", 1_000)?,
        fetch_timeout: ms("controller.quorum.fetch.timeout.ms", 2_000)?,
        request_timeout: ms("controller.quorum.request.timeout.ms", 2_000)?,
    };
    if q.broker_heartbeat_interval >= q.broker_session_timeout {
        return Err(invalid(
            "broker.heartbeat.interval.ms",
            &get("broker.heartbeat.interval.ms"),
            "must be below broker.session.timeout.ms",
        ));
    }
    Ok(Some(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(text: &str) -> impl Fn(&str) -> String {
        let map: BTreeMap<String, String> =
            super::super::parse_properties(text).into_iter().collect();
        move |k: &str| map.get(k).cloned().unwrap_or_default()
    }

    #[test]
    fn voters_and_listeners_parse_as_kafka_writes_them() {
        let v = parse_voters("1@localhost:9093, 2@127.0.0.1:9094,3@[::1]:9095").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[&2].port, 9094);
        assert_eq!(v[&3].host, "::1");
        assert!(parse_voters("1@h:1,1@h:2").is_err());
        assert!(parse_voters("x@h:1").is_err());
        let l =
            parse_listeners("listeners", "PLAINTEXT://:9092,CONTROLLER://localhost:9093").unwrap();
        assert_eq!(l[0].host, "");
        assert_eq!(l[1].name, "CONTROLLER");
    }

    #[test]
    fn a_kafka4_combined_node_config_carries_over() {
        let text = "process.roles=broker,controller\nnode.id=2\n\
            controller.quorum.voters=1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093\n\
            listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093\n\
            controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
            listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n";
        let get = props(text);
        let listeners = parse_listeners("listeners", &get("listeners")).unwrap();
        check_security_protocols(&listeners, &get("listener.security.protocol.map")).unwrap();
        let q = quorum_from(2, &get, &listeners).unwrap().unwrap();
        assert!(q.roles.broker && q.roles.controller);
        assert_eq!(q.controller_listen.unwrap().port(), 29093);
        assert_eq!(q.voter_addrs().unwrap().len(), 3);
        assert_eq!(q.broker_session_timeout, Duration::from_millis(9000));
    }

    #[test]
    fn inconsistent_roles_and_listeners_are_refused() {
        let base =
            "controller.quorum.voters=1@127.0.0.1:9093\ncontroller.listener.names=CONTROLLER\n";
        // A controller that is not a voter.
        let get = props(&format!("{base}process.roles=controller\n"));
        let l = parse_listeners("listeners", "CONTROLLER://127.0.0.1:9093").unwrap();
        assert!(quorum_from(5, &get, &l).is_err());
        // A broker-only node that is a voter.
        let get = props(&format!("{base}process.roles=broker\n"));
        let l = parse_listeners("listeners", "PLAINTEXT://127.0.0.1:9092").unwrap();
        assert!(quorum_from(1, &get, &l).is_err());
        // A broker-only node is fine without a controller listener.
        assert!(quorum_from(4, &get, &l)
            .unwrap()
            .unwrap()
            .controller_listen
            .is_none());
        // No voters: a single node.
        assert!(quorum_from(1, &props(""), &l).unwrap().is_none());
        // SASL is refused, not served in clear.
        let l = parse_listeners("listeners", "SASL_PLAINTEXT://:9092").unwrap();
        assert!(check_security_protocols(&l, "").is_err());
    }
}
