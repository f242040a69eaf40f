//! Broker configuration with Kafka's property names.
//!
//! Precedence, lowest first: built-in defaults, the `--config` properties file,
//! `SLUICE_*` environment variables (`SLUICE_LOG_DIRS` is `log.dirs`), then
//! command-line flags and `--override key=value`. Unknown keys warn; invalid
//! values stop start-up with a message naming the key.

pub mod kraft;
pub mod topic;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// The type of a property, used to validate values and to answer DescribeConfigs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Long,
    Double,
    String,
    List,
}

/// One known broker property.
pub struct BrokerKey {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
}

const fn key(name: &'static str, kind: Kind, default: &'static str) -> BrokerKey {
    BrokerKey {
        name,
        kind,
        default,
    }
}

/// Every broker property Sluice reads. Keys of Kafka's that Sluice accepts
/// but has no use for yet (e.g. `num.network.threads`) are in `IGNORED_KEYS`.
pub const BROKER_KEYS: &[BrokerKey] = &[
    key("node.id", Kind::Int, "0"),
    key("broker.id", Kind::Int, "-1"),
    key("log.dirs", Kind::List, "./data"),
    key("log.dir", Kind::String, ""),
    key("listeners", Kind::List, "PLAINTEXT://0.0.0.0:9092"),
    key("advertised.listeners", Kind::List, ""),
    key("num.partitions", Kind::Int, "1"),
    key("default.replication.factor", Kind::Int, "1"),
    key("auto.create.topics.enable", Kind::Bool, "true"),
    key("delete.topic.enable", Kind::Bool, "true"),
    key("log.segment.bytes", Kind::Int, "1073741824"),
    key("log.roll.ms", Kind::Long, ""),
    key("log.roll.hours", Kind::Int, "168"),
    key("log.roll.jitter.ms", Kind::Long, ""),
    key("log.roll.jitter.hours", Kind::Int, "0"),
    key("log.retention.ms", Kind::Long, ""),
    key("log.retention.minutes", Kind::Int, ""),
    key("log.retention.hours", Kind::Int, "168"),
    key("log.retention.bytes", Kind::Long, "-1"),
    key("log.retention.disk.percent", Kind::Double, "-1"),
    key("log.retention.check.interval.ms", Kind::Long, "300000"),
    key("log.index.interval.bytes", Kind::Int, "4096"),
    key("log.index.size.max.bytes", Kind::Int, "10485760"),
    key(
        "log.flush.interval.messages",
        Kind::Long,
        "9223372036854775807",
    ),
    key("log.flush.interval.ms", Kind::Long, ""),
    key("log.message.timestamp.type", Kind::String, "CreateTime"),
    key("log.cleanup.policy", Kind::List, "delete"),
    // Log compaction (see storage::cleaner).
    key("log.cleaner.enable", Kind::Bool, "true"),
    key("log.cleaner.threads", Kind::Int, "1"),
    key("log.cleaner.dedupe.buffer.size", Kind::Long, "134217728"),
    key("log.cleaner.io.buffer.size", Kind::Int, "524288"),
    key("log.cleaner.io.buffer.load.factor", Kind::Double, "0.9"),
    key(
        "log.cleaner.io.max.bytes.per.second",
        Kind::Double,
        "1.7976931348623157E308",
    ),
    key("log.cleaner.backoff.ms", Kind::Long, "15000"),
    key("log.cleaner.min.cleanable.ratio", Kind::Double, "0.5"),
    key("log.cleaner.min.compaction.lag.ms", Kind::Long, "0"),
    key(
        "log.cleaner.max.compaction.lag.ms",
        Kind::Long,
        "9223372036854775807",
    ),
    key("log.cleaner.delete.retention.ms", Kind::Long, "86400000"),
    key("log.segment.delete.delay.ms", Kind::Long, "60000"),
    key("log.dir.min.free.bytes", Kind::Long, "-1"),
    key("log.dir.min.free.percent", Kind::Double, "-1"),
    key("log.dir.capacity.bytes", Kind::Long, "-1"),
    key("message.max.bytes", Kind::Int, "1048588"),
    key("socket.request.max.bytes", Kind::Int, "104857600"),
    key("max.connections", Kind::Int, "4096"),
    key("max.connections.per.ip", Kind::Int, "2147483647"),
    key("max.connections.per.ip.overrides", Kind::String, ""),
    key("connections.max.idle.ms", Kind::Long, "600000"),
    key("socket.request.read.timeout.ms", Kind::Long, "30000"),
    key("queued.max.request.bytes", Kind::Long, "536870912"),
    key("queued.max.requests", Kind::Int, "32"),
    key(
        "max.incremental.fetch.session.cache.slots",
        Kind::Int,
        "1000",
    ),
    key("offsets.topic.num.partitions", Kind::Int, "50"),
    key("offsets.topic.segment.bytes", Kind::Int, "104857600"),
    key("offsets.retention.minutes", Kind::Int, "10080"),
    key("offsets.retention.check.interval.ms", Kind::Long, "600000"),
    key("group.min.session.timeout.ms", Kind::Int, "6000"),
    key("group.max.session.timeout.ms", Kind::Int, "1800000"),
    key("group.initial.rebalance.delay.ms", Kind::Int, "3000"),
    key("group.max.size", Kind::Int, "2147483647"),
    key("group.consumer.session.timeout.ms", Kind::Int, "45000"),
    key("group.consumer.heartbeat.interval.ms", Kind::Int, "5000"),
    key("group.consumer.assignors", Kind::List, "uniform,range"),
    key("compression.type", Kind::String, "producer"),
    key("cluster.id", Kind::String, ""),
    // KRaft (see config::kraft): roles, the quorum, named listeners, broker sessions.
    key("process.roles", Kind::List, "broker,controller"),
    key("controller.quorum.voters", Kind::List, ""),
    key("controller.quorum.bootstrap.servers", Kind::List, ""),
    key("controller.listener.names", Kind::List, ""),
    key("inter.broker.listener.name", Kind::String, ""),
    key(
        "listener.security.protocol.map",
        Kind::List,
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    ),
    key("broker.rack", Kind::String, ""),
    key("broker.session.timeout.ms", Kind::Int, "9000"),
    key("broker.heartbeat.interval.ms", Kind::Int, "2000"),
    key("controller.quorum.election.timeout.ms", Kind::Int, "1000"),
    key("controller.quorum.fetch.timeout.ms", Kind::Int, "2000"),
    key("controller.quorum.request.timeout.ms", Kind::Int, "2000"),
    key("offsets.topic.replication.factor", Kind::Int, "3"),
    // Replication (see replica/).
    key("min.insync.replicas", Kind::Int, "1"),
    key("replica.lag.time.max.ms", Kind::Int, "30000"),
    key("replica.fetch.wait.max.ms", Kind::Int, "500"),
    key("replica.fetch.min.bytes", Kind::Int, "1"),
    key("replica.fetch.max.bytes", Kind::Int, "1048576"),
    key("replica.fetch.response.max.bytes", Kind::Int, "10485760"),
    key("replica.fetch.backoff.ms", Kind::Int, "1000"),
    key("replica.socket.timeout.ms", Kind::Int, "30000"),
    key("num.replica.fetchers", Kind::Int, "1"),
    key("replica.selector.class", Kind::String, ""),
    // Leader election (the active controller's; see cluster::controller::election).
    key("unclean.leader.election.enable", Kind::Bool, "false"),
    key("auto.leader.rebalance.enable", Kind::Bool, "true"),
    key("leader.imbalance.check.interval.seconds", Kind::Long, "300"),
    key("leader.imbalance.per.broker.percentage", Kind::Int, "10"),
    // Transactions (the transaction coordinator; see txn/).
    key("transaction.state.log.num.partitions", Kind::Int, "50"),
    key("transaction.state.log.replication.factor", Kind::Int, "3"),
    key("transaction.state.log.min.isr", Kind::Int, "2"),
    key(
        "transaction.state.log.segment.bytes",
        Kind::Int,
        "104857600",
    ),
    key("transaction.max.timeout.ms", Kind::Int, "900000"),
    key(
        "transaction.partition.verification.enable",
        Kind::Bool,
        "true",
    ),
    key("transactional.id.expiration.ms", Kind::Int, "604800000"),
    key(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        Kind::Int,
        "10000",
    ),
    key(
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        Kind::Int,
        "3600000",
    ),
    // Operations (see admin/ and metrics/).
    key("admin.listener", Kind::String, "127.0.0.1:9644"),
    key("metrics.partition.series.max", Kind::Int, "1000"),
    key("log.format", Kind::String, "plain"),
];

/// Kafka keys with no meaning in Sluice's design; accepted without a warning.
pub const IGNORED_KEYS: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
];

/// The broker's configuration: the effective properties, and typed fields read from them.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Effective value of every known key (defaults included), by Kafka name.
    pub properties: BTreeMap<String, String>,
    /// Keys set explicitly (file, environment or flag), for DescribeConfigs' `source`.
    pub explicit: BTreeMap<String, String>,
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to; `None` means "the bound address".
    pub advertised: Option<(String, u16)>,
    pub cores: usize,
    /// The controller quorum (`controller.quorum.voters`); `None`: a single node that is its
    /// own controller, as before clusters existed.
    pub quorum: Option<kraft::QuorumConfig>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

impl BrokerConfig {
    /// Builds the configuration from a file's text, the environment and flag overrides.
    pub fn build(
        file_text: Option<&str>,
        env: &[(String, String)],
        overrides: &[(String, String)],
        cores: Option<usize>,
    ) -> Result<BrokerConfig, ConfigError> {
        let mut explicit = BTreeMap::new();
        if let Some(text) = file_text {
            for (k, v) in parse_properties(text) {
                explicit.insert(k, v);
            }
        }
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix("SLUICE_") {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                if key == "cores" || key == "log" {
                    continue;
                }
                explicit.insert(key, value.clone());
            }
        }
        for (k, v) in overrides {
            explicit.insert(k.clone(), v.clone());
        }
        let mut properties = BTreeMap::new();
        for k in BROKER_KEYS {
            properties.insert(k.name.to_string(), k.default.to_string());
        }
        for (k, v) in &explicit {
            match BROKER_KEYS.iter().find(|b| b.name == k) {
                Some(b) => validate_kind(k, v, b.kind)?,
                None if IGNORED_KEYS.contains(&k.as_str()) => {}
                None if topic::TOPIC_KEYS.iter().any(|t| t.name == k) => {}
                None => tracing::warn!(key = %k, "unknown broker property, ignored"),
            }
            properties.insert(k.clone(), v.clone());
        }
        let mut config = BrokerConfig {
            properties,
            explicit,
            node_id: 0,
            data_dir: PathBuf::from("./data"),
            listen: "0.0.0.0:9092"
                .parse()
                .map_err(|_| invalid("listeners", "", "bad"))?,
            advertised: None,
            cores: cores.unwrap_or_else(online_cpus),
            quorum: None,
            rack: None,
        };
        config.derive_typed()?;
        Ok(config)
    }

    fn derive_typed(&mut self) -> Result<(), ConfigError> {
        let node = self.get_i64("node.id")?;
        let broker = self.get_i64("broker.id")?;
        self.node_id = if self.explicit.contains_key("node.id") || broker < 0 {
            node as i32
        } else {
            broker as i32
        };
        let dirs = self.get("log.dirs").to_string();
        let dir =
            if self.explicit.contains_key("log.dir") && !self.explicit.contains_key("log.dirs") {
                self.get("log.dir").to_string()
            } else {
                dirs.split(',')
                    .next()
                    .unwrap_or("./data")
                    .trim()
                    .to_string()
            };
        if dirs.contains(',') {
            tracing::warn!("log.dirs lists several directories; Sluice uses the first: {dir}");
        }
        self.data_dir = PathBuf::from(dir);
        let listeners = kraft::parse_listeners("listeners", self.get("listeners"))?;
        kraft::check_security_protocols(&listeners, self.get("listener.security.protocol.map"))?;
        let controller_names =
            kraft::controller_listener_names(self.get("controller.listener.names"));
        // The Kafka listener: the first that is not a controller listener.
        let client = listeners
            .iter()
            .find(|l| !controller_names.contains(&l.name))
            .ok_or_else(|| {
                invalid(
                    "listeners",
                    self.get("listeners"),
                    "expected a client listener, e.g. PLAINTEXT://HOST:PORT",
                )
            })?;
        let text = format!("{}:{}", client.host, client.port);
        self.listen = resolve(&text)
            .ok_or_else(|| invalid("listeners", self.get("listeners"), "cannot resolve"))?;
        let adv_text = self.get("advertised.listeners").to_string();
        let advertised = kraft::parse_listeners("advertised.listeners", &adv_text)?;
        self.advertised = advertised
            .iter()
            .find(|l| l.name == client.name)
            .or_else(|| {
                advertised
                    .iter()
                    .find(|l| !controller_names.contains(&l.name))
            })
            .map(|l| (l.host.clone(), l.port));
        let inter = self
            .get("inter.broker.listener.name")
            .trim()
            .to_ascii_uppercase();
        if !inter.is_empty() && !listeners.iter().any(|l| l.name == inter) {
            return Err(invalid(
                "inter.broker.listener.name",
                &inter,
                "must name one of the listeners",
            ));
        }
        let log_format = self.get("log.format").trim().to_ascii_lowercase();
        if log_format != "plain" && log_format != "json" {
            return Err(invalid("log.format", &log_format, "expected plain or json"));
        }
        let rack = self.get("broker.rack").trim().to_string();
        self.rack = (!rack.is_empty()).then_some(rack);
        let get = |k: &str| self.get(k).to_string();
        self.quorum = kraft::quorum_from(self.node_id, &get, &listeners)?;
        if self.node_id < 0 {
            return Err(invalid(
                "node.id",
                self.get("node.id"),
                "must not be negative",
            ));
        }
        if self.cores == 0 {
            return Err(invalid("cores", "0", "must be at least 1"));
        }
        for k in [
            "message.max.bytes",
            "socket.request.max.bytes",
            "log.segment.bytes",
        ] {
            if self.get_i64(k)? <= 0 {
                return Err(invalid(k, self.get(k), "must be positive"));
            }
        }
        if self.get_i64("message.max.bytes")? >= self.get_i64("socket.request.max.bytes")? {
            return Err(invalid(
                "message.max.bytes",
                self.get("message.max.bytes"),
                "must be below socket.request.max.bytes",
            ));
        }
        if self.get_i64("socket.request.read.timeout.ms")? <= 0 {
            return Err(invalid(
                "socket.request.read.timeout.ms",
                self.get("socket.request.read.timeout.ms"),
                "must be positive",
            ));
        }
        if self.get_i64("max.connections.per.ip")? < 1 {
            return Err(invalid(
                "max.connections.per.ip",
                self.get("max.connections.per.ip"),
                "must be >= 1",
            ));
        }
        self.connections_per_ip_overrides()?;
        if self.get_i64("leader.imbalance.check.interval.seconds")? < 1 {
            return Err(invalid(
                "leader.imbalance.check.interval.seconds",
                self.get("leader.imbalance.check.interval.seconds"),
                "must be >= 1",
            ));
        }
        if self.get_i64("num.partitions")? < 1 {
            return Err(invalid(
                "num.partitions",
                self.get("num.partitions"),
                "must be >= 1",
            ));
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> &str {
        self.properties.get(key).map(|s| s.as_str()).unwrap_or("")
    }

    pub fn get_i64(&self, key: &str) -> Result<i64, ConfigError> {
        let v = self.get(key);
        v.trim()
            .parse::<i64>()
            .map_err(|e| invalid(key, v, &e.to_string()))
    }

    /// Like `get_i64`, for keys validated at build time; falls back to `default`.
    /// `admin.listener`: `HOST:PORT` of the HTTP admin listener, `None` for `-1` (off).
    pub fn admin_listener(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.get("admin.listener").trim();
        if text == "-1" || text.is_empty() {
            return Ok(None);
        }
        resolve(text)
            .map(Some)
            .ok_or_else(|| invalid("admin.listener", text, "expected HOST:PORT or -1"))
    }

    pub fn int(&self, key: &str, default: i64) -> i64 {
        self.get(key).trim().parse().unwrap_or(default)
    }

    pub fn float(&self, key: &str, default: f64) -> f64 {
        self.get(key).trim().parse().unwrap_or(default)
    }

    pub fn flag(&self, key: &str) -> bool {
        self.get(key).trim().eq_ignore_ascii_case("true")
    }

    /// Retention in ms from `log.retention.ms`/`.minutes`/`.hours`, as Kafka resolves them.
    pub fn log_retention_ms(&self) -> i64 {
        if !self.get("log.retention.ms").is_empty() {
            return self.int("log.retention.ms", -1);
        }
        if !self.get("log.retention.minutes").is_empty() {
            return self.int("log.retention.minutes", 10080) * 60_000;
        }
        self.int("log.retention.hours", 168) * 3_600_000
    }

    pub fn log_roll_ms(&self) -> i64 {
        if !self.get("log.roll.ms").is_empty() {
            return self.int("log.roll.ms", 604_800_000);
        }
        self.int("log.roll.hours", 168) * 3_600_000
    }

    /// `log.roll.jitter.ms`, else `log.roll.jitter.hours`, as Kafka resolves them.
    pub fn log_roll_jitter_ms(&self) -> i64 {
        if !self.get("log.roll.jitter.ms").is_empty() {
            return self.int("log.roll.jitter.ms", 0);
        }
        self.int("log.roll.jitter.hours", 0) * 3_600_000
    }

    pub fn message_max_bytes(&self) -> usize {
        self.int(
            "message.max.bytes",
            limits::MESSAGE_BYTES_MAX_DEFAULT as i64,
        ) as usize
    }

    /// `queued.max.request.bytes`: request bytes the broker holds in memory at once.
    /// Kafka's -1 ("no bound") and other non-positive values mean Sluice's default,
    /// because every buffer is bounded here.
    pub fn queued_max_request_bytes(&self) -> usize {
        match self.int(
            "queued.max.request.bytes",
            limits::QUEUED_REQUEST_BYTES_DEFAULT as i64,
        ) {
            v if v > 0 => usize::try_from(v).unwrap_or(usize::MAX),
            _ => limits::QUEUED_REQUEST_BYTES_DEFAULT,
        }
    }

    /// `connections.max.idle.ms`; `None` (never close) when set to -1, as in Kafka.
    pub fn connections_max_idle(&self) -> Option<std::time::Duration> {
        let ms = self.int("connections.max.idle.ms", 600_000);
        (ms >= 0).then(|| std::time::Duration::from_millis(ms as u64))
    }

    /// `socket.request.read.timeout.ms`: how long the rest of a frame may take to
    /// arrive once its size has been read.
    pub fn socket_request_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.int("socket.request.read.timeout.ms", 30_000).max(1) as u64
        )
    }

    /// `max.connections.per.ip`.
    pub fn max_connections_per_ip(&self) -> usize {
        self.int("max.connections.per.ip", i32::MAX as i64).max(1) as usize
    }

    /// `max.connections.per.ip.overrides`: `ip:count,ip:count` (Kafka's format; only
    /// IP literals, not host names, since nothing is resolved per connection).
    pub fn connections_per_ip_overrides(
        &self,
    ) -> Result<Vec<(std::net::IpAddr, usize)>, ConfigError> {
        let key = "max.connections.per.ip.overrides";
        let text = self.get(key);
        let mut out = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parsed = entry.rsplit_once(':').and_then(|(ip, n)| {
                let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
                Some((ip.parse().ok()?, n.trim().parse::<usize>().ok()?))
            });
            match parsed {
                Some(pair) => out.push(pair),
                None => return Err(invalid(key, text, "expected IP:COUNT[,IP:COUNT...]")),
            }
        }
        Ok(out)
    }

    pub fn socket_request_max_bytes(&self) -> usize {
        self.int(
            "socket.request.max.bytes",
            limits::SOCKET_REQUEST_BYTES_DEFAULT as i64,
        ) as usize
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks that `value` parses as `kind`.
pub fn validate_kind(key: &str, value: &str, kind: Kind) -> Result<(), ConfigError> {
    let v = value.trim();
    let ok = match kind {
        Kind::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        Kind::Int => v.is_empty() || v.parse::<i32>().is_ok(),
        Kind::Long => v.is_empty() || v.parse::<i64>().is_ok(),
        Kind::Double => v.is_empty() || v.parse::<f64>().map(|f| f.is_finite()).unwrap_or(false),
        Kind::String | Kind::List => true,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(key, value, &format!("expected {kind:?}")))
    }
}

/// Parses Java-properties text: `key=value` or `key: value`, `#`/`!` comments.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line.find(['=', ':']).unwrap_or(line.len());
        let (k, v) = line.split_at(split);
        let v = v.get(1..).unwrap_or("");
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

fn resolve(addr: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let (host, port) = split_host_port(addr)?;
    let host = if host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        host
    };
    (host.as_str(), port).to_socket_addrs().ok()?.next()
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_env_and_overrides_apply_in_order() {
        let file =
            "# comment\nnum.partitions=3\nlisteners=PLAINTEXT://127.0.0.1:9999\nlog.dirs=/tmp/a\n";
        let env = vec![("SLUICE_NUM_PARTITIONS".to_string(), "4".to_string())];
        let ov = vec![("log.dirs".to_string(), "/tmp/b".to_string())];
        let c = BrokerConfig::build(Some(file), &env, &ov, Some(1)).unwrap();
        assert_eq!(c.int("num.partitions", 0), 4);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/b"));
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn leader_imbalance_check_interval_is_at_least_a_second() {
        let ok = BrokerConfig::build(
            Some("leader.imbalance.check.interval.seconds=1\n"),
            &[],
            &[],
            Some(1),
        );
        assert!(ok.is_ok());
        for bad in ["0", "-5", "soon"] {
            let text = format!("leader.imbalance.check.interval.seconds={bad}\n");
            assert!(
                BrokerConfig::build(Some(&text), &[], &[], Some(1)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn kraft_listeners_pick_the_client_listener_and_its_advertised_address() {
        let file = "process.roles=broker,controller\nnode.id=1\n\
            controller.quorum.voters=1@127.0.0.1:19093\n\
            listeners=CONTROLLER://127.0.0.1:19093,PLAINTEXT://127.0.0.1:19092\n\
            advertised.listeners=CONTROLLER://h:19093,PLAINTEXT://broker1.example:9092\n\
            controller.listener.names=CONTROLLER\nbroker.rack=r1\n";
        let c = BrokerConfig::build(Some(file), &[], &[], Some(1)).unwrap();
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.advertised, Some(("broker1.example".to_string(), 9092)));
        assert_eq!(c.rack.as_deref(), Some("r1"));
        let q = c.quorum.unwrap();
        assert_eq!(q.controller_listen.unwrap().port(), 19093);
        // No quorum configured: a single node, as before.
        let c = BrokerConfig::build(None, &[], &[], Some(1)).unwrap();
        assert!(c.quorum.is_none());
        assert_eq!(c.listen.port(), 9092);
    }

    #[test]
    fn invalid_value_names_the_key() {
        let err = BrokerConfig::build(Some("num.partitions=abc"), &[], &[], Some(1)).unwrap_err();
        assert!(err.to_string().contains("num.partitions"));
    }

    #[test]
    fn per_ip_overrides_parse_and_bad_ones_are_refused() {
        let c = BrokerConfig::build(
            Some("max.connections.per.ip.overrides=127.0.0.1:3, [::1]:0"),
            &[],
            &[],
            Some(1),
        )
        .unwrap();
        let o = c.connections_per_ip_overrides().unwrap();
        assert_eq!(
            o,
            vec![
                ("127.0.0.1".parse().unwrap(), 3),
                ("::1".parse().unwrap(), 0)
            ]
        );
        let err = BrokerConfig::build(
            Some("max.connections.per.ip.overrides=somehost"),
            &[],
            &[],
            Some(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("max.connections.per.ip.overrides"));
    }

    #[test]
    fn queued_request_bytes_is_always_bounded() {
        let c =
            BrokerConfig::build(Some("queued.max.request.bytes=-1"), &[], &[], Some(1)).unwrap();
        assert_eq!(
            c.queued_max_request_bytes(),
            limits::QUEUED_REQUEST_BYTES_DEFAULT
        );
        let c =
            BrokerConfig::build(Some("queued.max.request.bytes=1000"), &[], &[], Some(1)).unwrap();
        assert_eq!(c.queued_max_request_bytes(), 1000);
    }

    #[test]
    fn retention_resolution_prefers_ms() {
        let c = BrokerConfig::build(
            Some("log.retention.hours=1\nlog.retention.ms=5"),
            &[],
            &[],
            Some(1),
        )
        .unwrap();
        assert_eq!(c.log_retention_ms(), 5);
        let c = BrokerConfig::build(Some("log.retention.hours=2"), &[], &[], Some(1)).unwrap();
        assert_eq!(c.log_retention_ms(), 7_200_000);
    }
}
