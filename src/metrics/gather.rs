//! A shard's metrics copied out for a scrape: its counters and histograms, and gauges read
//! from the state it owns (its partition logs and replica roles). Made on the shard itself
//! (`ShardRequest::Metrics`), sent to shard 0 by value.

use hdrhistogram::Histogram;

use crate::limits;
use crate::model::TopicPartition;
use crate::runtime::Shard;

/// One partition this shard hosts, for per-partition series and `/v1/partitions`.
#[derive(Clone, Debug)]
pub struct PartitionSnapshot {
    pub tp: TopicPartition,
    pub leader: bool,
    /// Led here, with an ISR smaller than the replica set.
    pub under_replicated: bool,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    /// Leader only: each follower's lag behind this log end (offsets, ms since caught up).
    pub follower_lag: Vec<(i32, i64, i64)>,
}

/// Everything one shard reports on a scrape (plain data, so it may cross cores).
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub requests: Vec<(i16, u64)>,
    pub latency: Vec<(i16, Histogram<u64>)>,
    pub errors: Vec<(i16, i16, u64)>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub records_in: u64,
    pub produced_bytes: u64,
    pub fetched_bytes: u64,
    pub sendfile_bytes: u64,
    pub copied_bytes: u64,
    pub replica_file_bytes: u64,
    pub replica_copied_bytes: u64,
    pub flushes: u64,
    pub fdatasync: Histogram<u64>,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub leader_elections: u64,
    pub connections: usize,
    pub request_budget_in_use: usize,
    pub request_budget_capacity: usize,
    /// Partitions the metadata image places on this shard, and of those how many are open.
    pub partitions_assigned: usize,
    pub partitions_open: usize,
    pub partitions_led: usize,
    pub partitions_followed: usize,
    pub under_replicated: usize,
    pub under_min_isr: usize,
    pub disk_pressure: bool,
    pub log_bytes: u64,
    /// At most `METRICS_PARTITION_SNAPSHOTS_MAX` partitions, in no particular order.
    pub partitions: Vec<PartitionSnapshot>,
    /// Partitions left out of `partitions` by that bound.
    pub partitions_left_out: usize,
}

/// Copies this shard's metrics and reads its gauges. Runs on the shard `shard` lives on.
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let image = shard.metadata();
    let assigned = crate::runtime::shard::partitions_of_shard(
        &image,
        shard.node_id(),
        shard.id,
        shard.nr_shards,
    );
    let logs = shard.logs.partitions();
    let now_ms = crate::replica::now_ms();
    let mut out = super::with(|m| copy_counters(shard, m));
    out.partitions_assigned = assigned.len();
    out.partitions_open = logs
        .iter()
        .filter(|l| assigned.contains(l.topic_partition()))
        .count();
    out.disk_pressure = shard.logs.is_read_only();
    for log in &logs {
        let tp = log.topic_partition();
        let size = log.size_bytes();
        out.log_bytes += size;
        let Some(part) = image.partition(tp) else {
            continue;
        };
        let leader = part.leader == shard.node_id();
        let lag = shard.replicas.with_role(tp, |role| match role {
            Some(crate::replica::Role::Leader(state)) => {
                state.follower_lag(log.log_end_offset().get(), now_ms)
            }
            _ => Vec::new(),
        });
        if leader {
            out.partitions_led += 1;
            if part.isr.len() < part.replicas.len() {
                out.under_replicated += 1;
            }
            if part.isr.len() < min_insync(shard, &tp.topic) {
                out.under_min_isr += 1;
            }
        } else if part.replicas.contains(&shard.node_id()) {
            out.partitions_followed += 1;
        }
        if out.partitions.len() >= limits::METRICS_PARTITION_SNAPSHOTS_MAX {
            out.partitions_left_out += 1;
            continue;
        }
        out.partitions.push(PartitionSnapshot {
            tp: tp.clone(),
            leader,
            under_replicated: leader && part.isr.len() < part.replicas.len(),
            log_start_offset: log.log_start_offset().get(),
            log_end_offset: log.log_end_offset().get(),
            high_watermark: log.high_watermark().get(),
            size_bytes: size,
            follower_lag: lag,
        });
    }
    out
}

fn min_insync(shard: &Shard, topic: &str) -> usize {
    let image = shard.metadata();
    image
        .topic(topic)
        .and_then(|t| crate::config::topic::value(&shard.config, &t.configs, "min.insync.replicas"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1)
}

fn copy_counters(shard: &Shard, m: &super::ShardMetrics) -> ShardSnapshot {
    let s = &shard.stats;
    let requests = (0..)
        .zip(m.requests.iter())
        .filter(|(_, c)| c.get() > 0)
        .map(|(k, c)| (k, c.get()))
        .collect();
    let latency = (0..)
        .zip(m.latency.borrow().iter())
        .filter_map(|(k, h)| h.as_ref().map(|h| (k, h.clone())))
        .collect();
    let errors = m
        .errors
        .borrow()
        .iter()
        .map(|((api, code), n)| (*api, *code, *n))
        .collect();
    let budget = m.budget.borrow();
    ShardSnapshot {
        shard: shard.id.0,
        requests,
        latency,
        errors,
        request_bytes: m.request_bytes.get(),
        response_bytes: m.response_bytes.get(),
        records_in: m.records_in.get(),
        produced_bytes: s.produced_bytes.get(),
        fetched_bytes: s.fetched_bytes.get(),
        sendfile_bytes: s.sendfile_bytes.get(),
        copied_bytes: s.copied_bytes.get(),
        replica_file_bytes: s.replica_file_bytes.get(),
        replica_copied_bytes: s.replica_copied_bytes.get(),
        flushes: m.flushes.get(),
        fdatasync: m.fdatasync.borrow().clone(),
        isr_shrinks: m.isr_shrinks.get(),
        isr_expands: m.isr_expands.get(),
        leader_elections: m.leader_elections.get(),
        connections: shard.connections.get(),
        request_budget_in_use: budget.as_ref().map_or(0, |b| b.in_use()),
        request_budget_capacity: budget.as_ref().map_or(0, |b| b.capacity()),
        partitions_assigned: 0,
        partitions_open: 0,
        partitions_led: 0,
        partitions_followed: 0,
        under_replicated: 0,
        under_min_isr: 0,
        disk_pressure: false,
        log_bytes: 0,
        partitions: Vec::new(),
        partitions_left_out: 0,
    }
}
