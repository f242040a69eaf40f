//! The admin endpoints. Each runs on shard 0; those that need other shards' state gather every
//! shard's [`ShardSnapshot`] over the mesh once per request.

use std::rc::Rc;

use serde_json::json;

use super::http::{Request, Response};
use crate::metrics::exposition::{self, NodeView};
use crate::metrics::ShardSnapshot;
use crate::runtime::messages::{ShardRequest, ShardResponse};
use crate::runtime::Shard;

pub async fn answer(shard: &Rc<Shard>, request: &Request) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, "only GET and HEAD are served\n");
    }
    match request.path.as_str() {
        "/metrics" => {
            let shards = gather(shard).await;
            let node = node_view(shard, &shards).await;
            let mut response = Response::text(200, exposition::render(&shards, &node));
            response.content_type = "text/plain; version=0.0.4; charset=utf-8";
            response
        }
        "/v1/health" => Response::json(200, &json!({"status": "up", "node_id": shard.node_id()})),
        "/v1/ready" => {
            let shards = gather(shard).await;
            let reasons = not_ready(shard, &shards);
            let status = if reasons.is_empty() { 200 } else { 503 };
            Response::json(
                status,
                &json!({"ready": reasons.is_empty(), "reasons": reasons}),
            )
        }
        "/v1/cluster" => Response::json(200, &cluster(shard)),
        "/v1/partitions" => {
            let shards = gather(shard).await;
            Response::json(200, &partitions(shard, &shards))
        }
        _ => Response::text(404, format!("no such endpoint: {}\n", request.path)),
    }
}

/// Every shard's snapshot, in shard order (a shard that is gone is left out).
async fn gather(shard: &Rc<Shard>) -> Vec<ShardSnapshot> {
    shard
        .broadcast(|| ShardRequest::Metrics)
        .await
        .into_iter()
        .filter_map(|r| match r {
            ShardResponse::Metrics(s) => Some(*s),
            _ => None,
        })
        .collect()
}

/// Why this node is not ready (empty: ready): partitions not yet opened, no quorum leader or
/// this broker not registered and unfenced, or disk pressure.
fn not_ready(shard: &Rc<Shard>, shards: &[ShardSnapshot]) -> Vec<String> {
    let mut reasons = Vec::new();
    if shards.len() < shard.nr_shards {
        reasons.push(format!(
            "{} of {} shards answered",
            shards.len(),
            shard.nr_shards
        ));
    }
    let (open, assigned) = shards.iter().fold((0, 0), |(o, a), s| {
        (o + s.partitions_open, a + s.partitions_assigned)
    });
    if open < assigned {
        reasons.push(format!("{open} of {assigned} partitions opened"));
    }
    if shard.config.quorum.is_some() {
        if shard.controller() < 0 {
            reasons.push("the metadata quorum has no leader".to_string());
        }
        let image = shard.metadata();
        match image.brokers.get(&shard.node_id()) {
            Some(b) if b.fenced => reasons.push("this broker is fenced".to_string()),
            Some(_) => {}
            None => reasons.push("this broker is not registered".to_string()),
        }
    }
    if shards.iter().any(|s| s.disk_pressure) {
        reasons.push("disk pressure: free space below log.dir.min.free.* (read-only)".to_string());
    }
    reasons
}

fn cluster(shard: &Rc<Shard>) -> serde_json::Value {
    let image = shard.metadata();
    let brokers: Vec<_> = image
        .brokers
        .values()
        .map(|b| {
            json!({"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
                   "fenced": b.fenced, "in_controlled_shutdown": b.in_controlled_shutdown})
        })
        .collect();
    let quorum = raft_state(shard).map(|q| {
        json!({"leader_id": q.leader_id, "term": q.leader_epoch, "high_watermark": q.high_watermark,
               "voters": q.voters.iter().map(|v| json!({"node_id": v.replica_id, "log_end_offset": v.log_end_offset})).collect::<Vec<_>>()})
    });
    json!({
        "cluster_id": image.cluster_id,
        "node_id": shard.node_id(),
        "controller_id": shard.controller(),
        "metadata_version": image.version,
        "topics": image.topics.len(),
        "brokers": brokers,
        "quorum": quorum,
    })
}

fn partitions(shard: &Rc<Shard>, shards: &[ShardSnapshot]) -> serde_json::Value {
    let image = shard.metadata();
    let mut list = Vec::new();
    let mut left_out = 0;
    for s in shards {
        left_out += s.partitions_left_out;
        for p in &s.partitions {
            let Some(part) = image.partition(&p.tp) else {
                continue;
            };
            list.push(json!({
                "topic": p.tp.topic, "partition": p.tp.partition, "shard": s.shard,
                "leader": part.leader, "leader_epoch": part.leader_epoch,
                "replicas": part.replicas, "isr": part.isr,
                "under_replicated": part.isr.len() < part.replicas.len(),
                "log_start_offset": p.log_start_offset, "log_end_offset": p.log_end_offset,
                "high_watermark": p.high_watermark, "size_bytes": p.size_bytes,
            }));
        }
    }
    json!({"node_id": shard.node_id(), "partitions": list, "left_out": left_out})
}

fn raft_state(shard: &Rc<Shard>) -> Option<crate::cluster::raft::QuorumState> {
    let node = shard.cluster.borrow().clone();
    node.map(|n| n.raft.quorum_state())
}

/// What shard 0 knows of the node and the cluster, plus the data directory's space.
async fn node_view(shard: &Rc<Shard>, shards: &[ShardSnapshot]) -> NodeView {
    let image = shard.metadata();
    let config = &shard.config;
    let (capacity, free) = disk_space(shard).await;
    let min_bytes = u64::try_from(config.int("log.dir.min.free.bytes", -1)).unwrap_or(0);
    let percent = config.float("log.dir.min.free.percent", -1.0).max(0.0);
    let min_free = min_bytes.max((capacity as f64 * percent / 100.0) as u64);
    let mut budgets = Vec::new();
    for t in image.topics.values() {
        let pct = crate::config::topic::value(config, &t.configs, "retention.disk.percent")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|p| *p > 0.0);
        if let Some(pct) = pct {
            let used = shards
                .iter()
                .flat_map(|s| s.partitions.iter())
                .filter(|p| p.tp.topic == t.name)
                .map(|p| p.size_bytes)
                .sum();
            budgets.push((t.name.clone(), (capacity as f64 * pct / 100.0) as u64, used));
        }
    }
    NodeView {
        node_id: shard.node_id(),
        controller_id: shard.controller(),
        raft: raft_state(shard).map(|q| (q.leader_epoch, q.high_watermark, q.leader_id)),
        brokers_active: image.brokers.values().filter(|b| b.is_active()).count(),
        brokers_fenced: image.brokers.values().filter(|b| b.fenced).count(),
        partitions_offline: image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| !p.has_leader())
            .count(),
        log_dir_capacity_bytes: capacity,
        log_dir_free_bytes: free,
        log_dir_min_free_bytes: min_free,
        retention_disk_budgets: budgets,
        partition_series_max: usize::try_from(config.int("metrics.partition.series.max", 1000))
            .unwrap_or(0),
    }
}

/// (capacity, free) of the data directory's file system, with `log.dir.capacity.bytes`
/// applied as the storage layer applies it. statvfs runs off the executor (it may block).
async fn disk_space(shard: &Rc<Shard>) -> (u64, u64) {
    let dir = shard.config.data_dir.clone();
    let stat = glommio::executor()
        .spawn_blocking(move || nix::sys::statvfs::statvfs(&dir))
        .await;
    let (mut capacity, mut free) = match stat {
        Ok(s) => (
            s.blocks() * s.fragment_size(),
            s.blocks_available() * s.fragment_size(),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "statvfs of the data dir failed");
            (0, 0)
        }
    };
    if let Ok(cap) = u64::try_from(shard.config.int("log.dir.capacity.bytes", -1)) {
        if cap > 0 {
            capacity = cap;
            free = free.min(cap);
        }
    }
    (capacity, free)
}
