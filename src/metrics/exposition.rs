//! The Prometheus text exposition format (version 0.0.4) of a node's metrics: every shard's
//! [`ShardSnapshot`] plus what shard 0 knows of the node and the cluster ([`NodeView`]).
//!
//! Names follow Prometheus conventions: a `sluice_` prefix, base units (seconds, bytes),
//! `_total` on counters. Series that vary by shard carry a `shard` label; latency summaries are
//! merged across shards (HDR histograms add exactly). Per-partition series are emitted only
//! while the node hosts at most `metrics.partition.series.max` partitions.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::ShardSnapshot;

/// Reads one series' value out of a shard's snapshot.
type ShardValue = fn(&ShardSnapshot) -> f64;
type ShardCount = fn(&ShardSnapshot) -> u64;
type PartitionValue = fn(&super::gather::PartitionSnapshot) -> f64;

/// What shard 0 adds to the shards' snapshots: the node's and the cluster's state.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    pub node_id: i32,
    pub controller_id: i32,
    /// `(term, committed index + 1, leader)` of the metadata quorum; `None` on a single node.
    pub raft: Option<(i32, i64, i32)>,
    pub brokers_active: usize,
    pub brokers_fenced: usize,
    /// Partitions of the cluster without a leader.
    pub partitions_offline: usize,
    pub log_dir_capacity_bytes: u64,
    pub log_dir_free_bytes: u64,
    /// The free-space floor from `log.dir.min.free.bytes` / `.percent` (0: none).
    pub log_dir_min_free_bytes: u64,
    /// Topics with `retention.disk.percent` set: (topic, budget bytes, bytes used here).
    pub retention_disk_budgets: Vec<(String, u64, u64)>,
    /// `metrics.partition.series.max`.
    pub partition_series_max: usize,
}

/// Renders the whole exposition.
pub fn render(shards: &[ShardSnapshot], node: &NodeView) -> String {
    let mut w = Exposition::default();
    w.gauge("sluice_build_info", "Always 1; labels name the build.");
    w.sample(
        "sluice_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    requests(&mut w, shards);
    bytes(&mut w, shards);
    storage(&mut w, shards, node);
    partitions(&mut w, shards, node);
    cluster(&mut w, node);
    per_partition(&mut w, shards, node);
    w.text
}

fn requests(w: &mut Exposition, shards: &[ShardSnapshot]) {
    w.counter("sluice_requests_total", "Kafka requests answered, by API.");
    for s in shards {
        for (api, n) in &s.requests {
            w.sample(
                "sluice_requests_total",
                &[("shard", &s.shard.to_string()), ("api", &api_name(*api))],
                *n as f64,
            );
        }
    }
    w.counter(
        "sluice_request_errors_total",
        "Error codes answered (top-level and per partition), by API and Kafka error name.",
    );
    for s in shards {
        for (api, code, n) in &s.errors {
            w.sample(
                "sluice_request_errors_total",
                &[
                    ("shard", &s.shard.to_string()),
                    ("api", &api_name(*api)),
                    ("error", &error_name(*code)),
                    ("code", &code.to_string()),
                ],
                *n as f64,
            );
        }
    }
    let mut merged: std::collections::BTreeMap<i16, Histogram<u64>> = Default::default();
    for s in shards {
        for (api, h) in &s.latency {
            match merged.get_mut(api) {
                // Same bounds on every shard, so adding cannot fail; a failure would only
                // drop that shard's part of this summary.
                Some(into) => drop(into.add(h)),
                None => drop(merged.insert(*api, h.clone())),
            }
        }
    }
    w.summary(
        "sluice_request_latency_seconds",
        "Time from a request's decode to its response, by API (fetch includes its wait).",
    );
    for (api, h) in &merged {
        w.summary_samples(
            "sluice_request_latency_seconds",
            &[("api", &api_name(*api))],
            h,
        );
    }
}

fn bytes(w: &mut Exposition, shards: &[ShardSnapshot]) {
    let per_shard: &[(&str, &str, &str, ShardValue)] = &[
        (
            "sluice_request_bytes_total",
            "counter",
            "Request frame bytes read from clients.",
            |s| s.request_bytes as f64,
        ),
        (
            "sluice_response_bytes_total",
            "counter",
            "Response bytes sent to clients (sendfile ranges included).",
            |s| s.response_bytes as f64,
        ),
        (
            "sluice_produced_bytes_total",
            "counter",
            "Record batch bytes appended by Produce.",
            |s| s.produced_bytes as f64,
        ),
        (
            "sluice_records_in_total",
            "counter",
            "Records appended by Produce.",
            |s| s.records_in as f64,
        ),
        (
            "sluice_fetched_bytes_total",
            "counter",
            "Record bytes answered to fetches.",
            |s| s.fetched_bytes as f64,
        ),
        (
            "sluice_fetch_sendfile_bytes_total",
            "counter",
            "Fetched record bytes sent by sendfile (never in user space).",
            |s| s.sendfile_bytes as f64,
        ),
        (
            "sluice_fetch_copied_bytes_total",
            "counter",
            "Fetched record bytes read into memory first (not in the page cache).",
            |s| s.copied_bytes as f64,
        ),
        (
            "sluice_replica_fetch_sendfile_bytes_total",
            "counter",
            "Of those, followers' fetches answered as file ranges.",
            |s| s.replica_file_bytes as f64,
        ),
        (
            "sluice_replica_fetch_copied_bytes_total",
            "counter",
            "Of those, followers' fetches read into memory first.",
            |s| s.replica_copied_bytes as f64,
        ),
        (
            "sluice_connections",
            "gauge",
            "Open client connections.",
            |s| s.connections as f64,
        ),
        (
            "sluice_request_budget_in_use_bytes",
            "gauge",
            "Request bytes held (queued.max.request.bytes share in use).",
            |s| s.request_budget_in_use as f64,
        ),
        (
            "sluice_request_budget_bytes",
            "gauge",
            "This shard's share of queued.max.request.bytes.",
            |s| s.request_budget_capacity as f64,
        ),
    ];
    for (name, kind, help, value) in per_shard {
        w.family(name, kind, help);
        for s in shards {
            w.sample(name, &[("shard", &s.shard.to_string())], value(s));
        }
    }
}

fn storage(w: &mut Exposition, shards: &[ShardSnapshot], node: &NodeView) {
    w.counter(
        "sluice_group_commit_flushes_total",
        "Group commits (one write and fdatasync round over the queued logs).",
    );
    for s in shards {
        w.sample(
            "sluice_group_commit_flushes_total",
            &[("shard", &s.shard.to_string())],
            s.flushes as f64,
        );
    }
    let mut fdatasync: Option<Histogram<u64>> = None;
    for s in shards {
        match fdatasync.as_mut() {
            Some(into) => drop(into.add(&s.fdatasync)),
            None => fdatasync = Some(s.fdatasync.clone()),
        }
    }
    w.summary(
        "sluice_fdatasync_seconds",
        "fdatasync latency of segment files.",
    );
    if let Some(h) = &fdatasync {
        w.summary_samples("sluice_fdatasync_seconds", &[], h);
    }
    w.gauge(
        "sluice_log_bytes",
        "Bytes of the partition logs of this shard.",
    );
    for s in shards {
        w.sample(
            "sluice_log_bytes",
            &[("shard", &s.shard.to_string())],
            s.log_bytes as f64,
        );
    }
    let node_gauges: &[(&str, &str, f64)] = &[
        (
            "sluice_log_dir_capacity_bytes",
            "Capacity of the data directory's file system (or log.dir.capacity.bytes).",
            node.log_dir_capacity_bytes as f64,
        ),
        (
            "sluice_log_dir_free_bytes",
            "Free bytes of the data directory's file system.",
            node.log_dir_free_bytes as f64,
        ),
        (
            "sluice_log_dir_min_free_bytes",
            "The free-space floor (log.dir.min.free.bytes / .percent); 0: none.",
            node.log_dir_min_free_bytes as f64,
        ),
        (
            "sluice_disk_pressure",
            "1 while any shard is read-only because free space is below the floor.",
            f64::from(u8::from(shards.iter().any(|s| s.disk_pressure))),
        ),
    ];
    for (name, help, value) in node_gauges {
        w.gauge(name, help);
        w.sample(name, &[], *value);
    }
    w.gauge(
        "sluice_retention_disk_budget_bytes",
        "retention.disk.percent of the capacity, for topics that set it.",
    );
    for (topic, budget, _) in &node.retention_disk_budgets {
        w.sample(
            "sluice_retention_disk_budget_bytes",
            &[("topic", topic)],
            *budget as f64,
        );
    }
    w.gauge(
        "sluice_retention_disk_used_bytes",
        "Bytes this node holds of topics that set retention.disk.percent.",
    );
    for (topic, _, used) in &node.retention_disk_budgets {
        w.sample(
            "sluice_retention_disk_used_bytes",
            &[("topic", topic)],
            *used as f64,
        );
    }
}

fn partitions(w: &mut Exposition, shards: &[ShardSnapshot], node: &NodeView) {
    let per_shard: &[(&str, &str, ShardValue)] = &[
        (
            "sluice_partitions_assigned",
            "Partition replicas the metadata places on this shard.",
            |s| s.partitions_assigned as f64,
        ),
        (
            "sluice_partitions_open",
            "Of those, opened (recovered) logs.",
            |s| s.partitions_open as f64,
        ),
        (
            "sluice_partitions_leader",
            "Partitions this shard leads.",
            |s| s.partitions_led as f64,
        ),
        (
            "sluice_partitions_follower",
            "Partitions this shard follows.",
            |s| s.partitions_followed as f64,
        ),
        (
            "sluice_partitions_under_replicated",
            "Led partitions whose ISR is smaller than their replica set.",
            |s| s.under_replicated as f64,
        ),
        (
            "sluice_partitions_under_min_isr",
            "Led partitions whose ISR is below min.insync.replicas.",
            |s| s.under_min_isr as f64,
        ),
        (
            "sluice_follower_lag_offsets_max",
            "The largest lag of a follower of a partition this shard leads (offsets).",
            |s| {
                s.partitions
                    .iter()
                    .flat_map(|p| p.follower_lag.iter().map(|l| l.1))
                    .max()
                    .unwrap_or(0) as f64
            },
        ),
    ];
    for (name, help, value) in per_shard {
        w.gauge(name, help);
        for s in shards {
            w.sample(name, &[("shard", &s.shard.to_string())], value(s));
        }
    }
    w.gauge(
        "sluice_partitions_offline",
        "Partitions of the cluster without a leader.",
    );
    w.sample(
        "sluice_partitions_offline",
        &[],
        node.partitions_offline as f64,
    );
    let counters: &[(&str, &str, ShardCount)] = &[
        (
            "sluice_isr_shrinks_total",
            "ISR shrinks in the metadata this node applied (cluster-wide).",
            |s| s.isr_shrinks,
        ),
        (
            "sluice_isr_expands_total",
            "ISR expansions in the metadata this node applied (cluster-wide).",
            |s| s.isr_expands,
        ),
        (
            "sluice_leader_elections_total",
            "Leader changes in the metadata this node applied (cluster-wide).",
            |s| s.leader_elections,
        ),
    ];
    for (name, help, value) in counters {
        w.counter(name, help);
        w.sample(name, &[], shards.iter().map(value).sum::<u64>() as f64);
    }
}

fn cluster(w: &mut Exposition, node: &NodeView) {
    let node_id = node.node_id.to_string();
    w.gauge(
        "sluice_controller_id",
        "The active controller's node id as this node knows it (-1: none).",
    );
    w.sample(
        "sluice_controller_id",
        &[("node", &node_id)],
        node.controller_id as f64,
    );
    w.gauge("sluice_brokers", "Registered brokers by state.");
    w.sample(
        "sluice_brokers",
        &[("state", "active")],
        node.brokers_active as f64,
    );
    w.sample(
        "sluice_brokers",
        &[("state", "fenced")],
        node.brokers_fenced as f64,
    );
    if let Some((term, committed, leader)) = node.raft {
        let raft: &[(&str, &str, f64)] = &[
            (
                "sluice_raft_term",
                "The metadata quorum's Raft term.",
                term as f64,
            ),
            (
                "sluice_raft_commit_index",
                "The metadata log's committed index + 1 (-1: none).",
                committed as f64,
            ),
            (
                "sluice_raft_leader_id",
                "The metadata quorum's leader (-1: none).",
                leader as f64,
            ),
        ];
        for (name, help, value) in raft {
            w.gauge(name, help);
            w.sample(name, &[("node", &node_id)], *value);
        }
    }
}

fn per_partition(w: &mut Exposition, shards: &[ShardSnapshot], node: &NodeView) {
    let hosted: usize = shards
        .iter()
        .map(|s| s.partitions.len() + s.partitions_left_out)
        .sum();
    if hosted == 0 || hosted > node.partition_series_max {
        return;
    }
    let series: &[(&str, &str, PartitionValue)] = &[
        (
            "sluice_partition_log_start_offset",
            "A hosted partition's log start offset.",
            |p| p.log_start_offset as f64,
        ),
        (
            "sluice_partition_log_end_offset",
            "A hosted partition's log end offset.",
            |p| p.log_end_offset as f64,
        ),
        (
            "sluice_partition_high_watermark",
            "A hosted partition's high watermark.",
            |p| p.high_watermark as f64,
        ),
        (
            "sluice_partition_size_bytes",
            "A hosted partition's log bytes.",
            |p| p.size_bytes as f64,
        ),
        (
            "sluice_partition_under_replicated",
            "1 for a partition led here whose ISR is smaller than its replica set.",
            |p| f64::from(u8::from(p.under_replicated)),
        ),
    ];
    for (name, help, value) in series {
        w.gauge(name, help);
        for s in shards {
            for p in &s.partitions {
                let partition = p.tp.partition.to_string();
                w.sample(
                    name,
                    &[("topic", &p.tp.topic), ("partition", &partition)],
                    value(p),
                );
            }
        }
    }
    for (name, help, seconds) in [
        (
            "sluice_follower_lag_offsets",
            "A follower's lag behind this leader's log end (offsets; -1 before its first fetch).",
            false,
        ),
        (
            "sluice_follower_lag_seconds",
            "Time since a follower was last caught up with this leader.",
            true,
        ),
    ] {
        w.gauge(name, help);
        for s in shards {
            for p in &s.partitions {
                let partition = p.tp.partition.to_string();
                for (follower, offsets, ms) in &p.follower_lag {
                    let value = if seconds {
                        *ms as f64 / 1000.0
                    } else {
                        *offsets as f64
                    };
                    let follower = follower.to_string();
                    w.sample(
                        name,
                        &[
                            ("topic", &p.tp.topic),
                            ("partition", &partition),
                            ("follower", &follower),
                        ],
                        value,
                    );
                }
            }
        }
    }
}

/// The API's name as Kafka spells it (`Produce`, `Fetch`, …), or its key.
pub fn api_name(api: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api) {
        Ok(key) => format!("{key:?}"),
        Err(_) => api.to_string(),
    }
}

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`), as Kafka's tools print it.
pub fn error_name(code: i16) -> String {
    if code == super::OVERFLOW_ERROR_CODE {
        return "OTHER".to_string();
    }
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        Some(kafka_protocol::error::ResponseError::Unknown(c)) => format!("UNKNOWN_{c}"),
        Some(e) => upper_snake(&e.to_string()),
        None => "NONE".to_string(),
    }
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Builds the text: a family's `# HELP`/`# TYPE` once, then its samples.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn counter(&mut self, name: &str, help: &str) {
        self.family(name, "counter", help);
    }
    fn gauge(&mut self, name: &str, help: &str) {
        self.family(name, "gauge", help);
    }
    fn summary(&mut self, name: &str, help: &str) {
        self.family(name, "summary", help);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"");
                escape_label(&mut self.text, v);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// p50, p99 and p999 of a microsecond histogram, in seconds, with `_sum` and `_count`.
    fn summary_samples(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram<u64>) {
        for (q, text) in [(0.5, "0.5"), (0.99, "0.99"), (0.999, "0.999")] {
            let mut with_q: Vec<(&str, &str)> = labels.to_vec();
            with_q.push(("quantile", text));
            let value = h.value_at_quantile(q) as f64 / 1e6;
            self.sample(name, &with_q, value);
        }
        // HDR keeps no exact sum: the mean times the count (within the histogram's 1 %).
        let sum = h.mean() * h.len() as f64 / 1e6;
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, h.len() as f64);
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
    }

    #[test]
    fn labels_are_escaped_and_families_typed() {
        let mut w = Exposition::default();
        w.gauge("sluice_x", "help");
        w.sample("sluice_x", &[("topic", "a\"b\\c")], 1.5);
        assert_eq!(
            w.text,
            "# HELP sluice_x help\n# TYPE sluice_x gauge\nsluice_x{topic=\"a\\\"b\\\\c\"} 1.5\n"
        );
    }
}
