//! Fetch (v4+): sessions (KIP-227), topic ids (v13+), long poll on
//! `max_wait_ms`/`min_bytes`, and the response and partition byte limits.
//! Partitions are read on their owning shards in parallel.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};

use super::errors::{self, code};
use super::fetch_session::{SessionError, SessionPartition};
use super::route::scatter;
use super::{str_bytes, RequestContext};
use crate::limits;
use crate::model::{Offset, TopicPartition};
use crate::runtime::messages::{FetchItem, FetchRecords, FetchResult, ShardRequest, ShardResponse};

/// A partition as this request resolved it.
struct Wanted {
    tp: TopicPartition,
    part: SessionPartition,
    /// Set when the topic could not be resolved.
    error: Option<i16>,
    /// KIP-392: the replica this consumer should fetch the partition from instead.
    redirect: Option<i32>,
}

/// What goes out in place of a record field's marker: a file range (by sendfile), or bytes
/// already in memory (cold ranges read in), so those are not copied again into the frame.
pub enum Spliced {
    File(crate::storage::slice::FileSlice),
    Bytes(bytes::Bytes),
}

/// Record bytes in memory at least this long are spliced rather than encoded into the frame.
const SPLICE_BYTES_MIN: usize = 64 * 1024;

/// A part to splice into the encoded response in place of its marker.
pub type FilePart = ([u8; 16], Spliced, usize);
/// The file ranges of a response, in the order their markers appear in it.
pub type FileParts = Vec<FilePart>;

pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> (FetchResponse, FileParts) {
    let v = ctx.api_version;
    let image = ctx.shard.metadata();
    // Resolve the request's partitions.
    let mut listed: IndexMap<TopicPartition, Wanted> = IndexMap::new();
    for t in &req.topics {
        let topic = if v >= 13 {
            image.topic_by_id(&t.topic_id)
        } else {
            image.topic(t.topic.0.as_str())
        };
        for p in &t.partitions {
            let (tp, error) = match topic {
                Some(ti) if ti.partition(p.partition).is_some() => {
                    (TopicPartition::new(ti.name.clone(), p.partition), None)
                }
                Some(ti) => (
                    TopicPartition::new(ti.name.clone(), p.partition),
                    Some(code::UNKNOWN_TOPIC_OR_PARTITION),
                ),
                None if v >= 13 => (
                    TopicPartition::new(t.topic_id.to_string(), p.partition),
                    Some(code::UNKNOWN_TOPIC_ID),
                ),
                None => (
                    TopicPartition::new(t.topic.0.to_string(), p.partition),
                    Some(code::UNKNOWN_TOPIC_OR_PARTITION),
                ),
            };
            let part = SessionPartition {
                topic_id: topic.map(|ti| ti.id).unwrap_or(t.topic_id),
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: if v >= 12 { p.last_fetched_epoch } else { -1 },
                last_high_watermark: -1,
                last_log_start_offset: -1,
            };
            listed.insert(
                tp.clone(),
                Wanted {
                    tp,
                    part,
                    error,
                    redirect: None,
                },
            );
        }
    }
    let forgotten: Vec<TopicPartition> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|f| {
            let name = if v >= 13 {
                image
                    .topic_by_id(&f.topic_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default()
            } else {
                f.topic.0.to_string()
            };
            f.partitions
                .iter()
                .map(move |p| TopicPartition::new(name.clone(), *p))
        })
        .collect();

    // Session bookkeeping: which partitions to fetch, and whether the answer is incremental.
    let (session_id, incremental, mut wanted) = match session_plan(ctx, &req, listed, &forgotten) {
        Ok(plan) => plan,
        Err(e) => {
            let code = match e {
                SessionError::NotFound => code::FETCH_SESSION_ID_NOT_FOUND,
                SessionError::InvalidEpoch => code::INVALID_FETCH_SESSION_EPOCH,
            };
            return (
                FetchResponse::default()
                    .with_error_code(code)
                    .with_session_id(0),
                Vec::new(),
            );
        }
    };

    // Consumers and followers read from the leader only. Checked on every request, so a
    // session's partitions follow leadership changes. A follower (replica id >= 0) must be a
    // replica of each partition it fetches; it is served up to the written end, not the high
    // watermark (see `local::fetch_one`).
    let replica_id = if v >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let replica = (replica_id >= 0).then_some(replica_id);
    let node = ctx.shard.node_id();
    // KIP-392: a consumer that sends its rack (v11+) may read from a follower, which serves it
    // up to its own high watermark; the leader names a replica in the consumer's rack when
    // `replica.selector.class` is the rack-aware selector.
    let rack = (v >= 11 && replica.is_none())
        .then(|| req.rack_id.to_string())
        .filter(|r| !r.is_empty());
    let rack_aware = rack.is_some() && rack_aware_selector(&ctx.shard.config);
    for w in wanted.iter_mut().filter(|w| w.error.is_none()) {
        let is_replica = |r: i32| {
            image
                .partition(&w.tp)
                .is_some_and(|p| p.replicas.contains(&r))
        };
        let leads = image.leads(node, &w.tp);
        let from_follower = !leads && v >= 11 && replica.is_none() && is_replica(node);
        if (!leads && !from_follower) || replica.is_some_and(|r| !is_replica(r)) {
            w.error = Some(code::NOT_LEADER_OR_FOLLOWER);
        } else if leads && rack_aware {
            w.redirect = rack
                .as_deref()
                .and_then(|rack| preferred_read_replica(&image, &w.tp, rack));
        }
    }
    let max_bytes = (req.max_bytes.max(0) as usize).min(limits::FETCH_RESPONSE_BYTES_MAX);
    let wait =
        Duration::from_millis(req.max_wait_ms.clamp(0, limits::FETCH_WAIT_MS_MAX as i32) as u64);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    // isolation_level (v4+): 1 = read_committed (up to the last stable offset).
    let read_committed = v >= 4 && req.isolation_level == 1 && replica.is_none();
    let mut results = read_all(ctx, &wanted, max_bytes, replica, read_committed).await;
    loop {
        let total: usize = results.values().map(|r| r.records.len()).sum();
        // A partition with an error, or whose owner did not answer, is answered at once.
        // So is one this node does not lead (Kafka answers at once; the client looks again).
        let errored = results.len() < wanted.iter().filter(|w| w.error.is_none()).count()
            || results.values().any(|r| r.error_code != code::NONE)
            || wanted.iter().any(|w| w.redirect.is_some())
            || wanted
                .iter()
                .any(|w| w.error == Some(code::NOT_LEADER_OR_FOLLOWER));
        let now = Instant::now();
        if total >= min_bytes || errored || now >= deadline || wanted.is_empty() {
            break;
        }
        // Sleep until a high watermark moves past the one just read (Kafka's
        // DelayedFetch), not merely past the fetch offset: that is already true
        // whenever some data exists, and re-reading it would spin.
        wait_for_data(
            ctx,
            &wanted,
            &results,
            deadline - now,
            replica.is_some(),
            read_committed,
        )
        .await;
        results = read_all(ctx, &wanted, max_bytes, replica, read_committed).await;
    }
    if replica.is_some() {
        // What replication costs the leader: file ranges (sendfile) against copied ranges.
        let (files, cold) = results.values().fold((0, 0), |(f, c), r| match &r.records {
            FetchRecords::File(x) => (f + x.len as u64, c),
            FetchRecords::Cold(x) => (f, c + x.len as u64),
            FetchRecords::Bytes(_) => (f, c),
        });
        let stats = &ctx.shard.stats;
        stats
            .replica_file_bytes
            .set(stats.replica_file_bytes.get() + files);
        stats
            .replica_copied_bytes
            .set(stats.replica_copied_bytes.get() + cold);
    }
    read_cold_ranges(ctx, &mut results).await;
    build_response(ctx, v, session_id, incremental, &wanted, results)
}

/// Reads the ranges that are not in the page cache (only those that survived the
/// response's byte limit) through io_uring on this shard, concurrently.
async fn read_cold_ranges(
    ctx: &RequestContext,
    results: &mut HashMap<TopicPartition, FetchResult>,
) {
    // The copies live until the response is written: reserve them in the connection's
    // response bound first (a connection that does not read its answers waits here).
    let cold: usize = results
        .values()
        .filter(|r| matches!(r.records, FetchRecords::Cold(_)))
        .map(|r| r.records.len())
        .sum();
    if cold > 0 {
        if let Some(gate) = ctx.response_gate() {
            gate.reserve(cold).await;
        }
    }
    let reads = results
        .values_mut()
        .filter(|r| matches!(r.records, FetchRecords::Cold(_)))
        .map(|r| async move {
            let FetchRecords::Cold(range) = &r.records else {
                return;
            };
            match crate::storage::slice::read_cold(range).await {
                Ok(bytes) => {
                    let stats = &ctx.shard.stats;
                    stats
                        .copied_bytes
                        .set(stats.copied_bytes.get() + bytes.len() as u64);
                    r.records = FetchRecords::Bytes(bytes);
                }
                Err(e) => {
                    let e = crate::storage::StorageError::Io(e);
                    tracing::error!(partition = %r.tp, error = %e, "read failed");
                    r.error_code = super::errors::storage(&e);
                    r.records = FetchRecords::Bytes(bytes::Bytes::new());
                }
            }
        });
    futures::future::join_all(reads).await;
    let stats = &ctx.shard.stats;
    let sent: usize = results.values().map(|r| r.records.len()).sum();
    stats
        .fetched_bytes
        .set(stats.fetched_bytes.get() + sent as u64);
}

type Plan = (i32, bool, Vec<Wanted>);

fn session_plan(
    ctx: &RequestContext,
    req: &FetchRequest,
    listed: IndexMap<TopicPartition, Wanted>,
    forgotten: &[TopicPartition],
) -> Result<Plan, SessionError> {
    let mut sessions = ctx.shard.fetch_sessions.borrow_mut();
    let (id, epoch) = (req.session_id, req.session_epoch);
    if ctx.api_version < 7 || epoch == -1 {
        if id != 0 {
            sessions.remove(id);
        }
        return Ok((0, false, listed.into_values().collect()));
    }
    if epoch == 0 {
        if id != 0 {
            sessions.remove(id);
        }
        let parts = listed
            .values()
            .filter(|w| w.error.is_none())
            .map(|w| (w.tp.clone(), w.part.clone()))
            .collect();
        let new_id = sessions.create(parts);
        return Ok((new_id, false, listed.into_values().collect()));
    }
    let session = sessions.begin_incremental(id, epoch)?;
    for tp in forgotten {
        session.partitions.shift_remove(tp);
    }
    let mut errors = Vec::new();
    for (tp, w) in listed {
        if w.error.is_some() {
            errors.push(w);
            continue;
        }
        match session.partitions.get_mut(&tp) {
            Some(p) => {
                p.fetch_offset = w.part.fetch_offset;
                p.max_bytes = w.part.max_bytes;
                p.current_leader_epoch = w.part.current_leader_epoch;
                p.last_fetched_epoch = w.part.last_fetched_epoch;
            }
            None => {
                session.partitions.insert(tp, w.part);
            }
        }
    }
    let mut wanted: Vec<Wanted> = session
        .partitions
        .iter()
        .map(|(tp, p)| Wanted {
            tp: tp.clone(),
            part: p.clone(),
            error: None,
            redirect: None,
        })
        .collect();
    wanted.extend(errors);
    Ok((id, true, wanted))
}

/// Asks each owner for its partitions with the response's whole budget (owners read
/// in parallel, each within the budget), then applies the budget across owners in
/// request order. Owners return file ranges, so nothing dropped here was read.
async fn read_all(
    ctx: &RequestContext,
    wanted: &[Wanted],
    max_bytes: usize,
    replica: Option<i32>,
    read_committed: bool,
) -> HashMap<TopicPartition, FetchResult> {
    let items: Vec<FetchItem> = wanted
        .iter()
        .filter(|w| w.error.is_none())
        .map(|w| FetchItem {
            tp: w.tp.clone(),
            fetch_offset: w.part.fetch_offset,
            max_bytes: w.part.max_bytes.min(max_bytes),
            current_leader_epoch: w.part.current_leader_epoch,
            min_one_batch: true,
            replica: replica.map(|replica_id| crate::runtime::messages::ReplicaFetch {
                replica_id,
                last_fetched_epoch: w.part.last_fetched_epoch,
            }),
            read_committed: read_committed && replica.is_none(),
        })
        .collect();
    let results = scatter(
        &ctx.shard,
        items,
        |i| &i.tp,
        |items| ShardRequest::Fetch { items, max_bytes },
        |r| match r {
            ShardResponse::Fetch(v) => Some(v),
            _ => None,
        },
    )
    .await;
    let mut by_tp: HashMap<TopicPartition, FetchResult> =
        results.into_iter().map(|r| (r.tp.clone(), r)).collect();
    // Enforce the response limit in request order; the first data always goes out
    // so a consumer makes progress past a batch larger than its limits.
    let mut total = 0usize;
    for w in wanted {
        if let Some(r) = by_tp.get_mut(&w.tp) {
            let len = r.records.len();
            if len == 0 {
                continue;
            }
            if total > 0 && total + len > max_bytes {
                r.records = FetchRecords::Bytes(bytes::Bytes::new());
            } else {
                total += len;
            }
        }
    }
    by_tp
}

/// Waits until a high watermark moves above the one `seen` in the last read (or the
/// fetch offset, where nothing was read), or `left` passes.
async fn wait_for_data(
    ctx: &RequestContext,
    wanted: &[Wanted],
    seen: &HashMap<TopicPartition, FetchResult>,
    left: Duration,
    replica: bool,
    read_committed: bool,
) {
    let wait_ms = left.as_millis() as u64;
    let mut by_shard: HashMap<usize, Vec<(TopicPartition, Offset)>> = HashMap::new();
    for w in wanted.iter().filter(|w| w.error.is_none()) {
        // A follower waits for data past its fetch offset (it reads up to the written end);
        // a consumer for the high watermark to pass the one it saw.
        let hwm = if replica {
            -1
        } else if read_committed {
            seen.get(&w.tp).map_or(-1, |r| r.last_stable_offset)
        } else {
            seen.get(&w.tp).map_or(-1, |r| r.high_watermark)
        };
        let above = Offset(hwm.max(w.part.fetch_offset));
        by_shard
            .entry(ctx.shard.shard_for(&w.tp).0)
            .or_default()
            .push((w.tp.clone(), above));
    }
    if by_shard.is_empty() {
        glommio::timer::sleep(left).await;
        return;
    }
    let waits: Vec<_> = by_shard
        .into_iter()
        .map(|(s, items)| {
            let shard = ctx.shard.clone();
            Box::pin(async move {
                shard
                    .call(
                        crate::model::ShardId(s),
                        ShardRequest::WaitForData {
                            items,
                            wait_ms,
                            replica,
                            read_committed,
                        },
                    )
                    .await;
            })
        })
        .collect();
    futures::future::select_all(waits).await;
}

fn build_response(
    ctx: &RequestContext,
    v: i16,
    session_id: i32,
    incremental: bool,
    wanted: &[Wanted],
    mut results: HashMap<TopicPartition, FetchResult>,
) -> (FetchResponse, FileParts) {
    // File ranges with the index of their topic in the response: the codec writes
    // partitions grouped by topic, and the splice wants markers in frame order.
    let mut files: Vec<(usize, FilePart)> = Vec::new();
    let mut topics: IndexMap<String, FetchableTopicResponse> = IndexMap::new();
    let mut sessions = ctx.shard.fetch_sessions.borrow_mut();
    let mut session = if session_id != 0 {
        sessions.get_mut(session_id)
    } else {
        None
    };
    for w in wanted {
        let mut pd = PartitionData::default().with_partition_index(w.tp.partition);
        match (w.error, results.remove(&w.tp)) {
            (Some(code), _) => {
                pd = pd
                    .with_error_code(code)
                    .with_high_watermark(-1)
                    .with_log_start_offset(-1)
            }
            (None, Some(mut r)) => {
                if let Some(to) = w.redirect {
                    // Sent to the preferred replica instead: no records from here.
                    r.records = FetchRecords::Bytes(bytes::Bytes::new());
                    pd.preferred_read_replica = BrokerId(to);
                }
                // Remember what the client now knows; an incremental answer leaves out
                // partitions with nothing new for it.
                if let Some(p) = session.as_mut().and_then(|s| s.partitions.get_mut(&w.tp)) {
                    let unchanged = r.error_code == code::NONE
                        && r.records.is_empty()
                        && p.last_high_watermark == r.high_watermark
                        && p.last_log_start_offset == r.log_start_offset;
                    p.last_high_watermark = r.high_watermark;
                    p.last_log_start_offset = r.log_start_offset;
                    if incremental && unchanged {
                        continue;
                    }
                }
                pd = pd
                    .with_error_code(r.error_code)
                    .with_high_watermark(r.high_watermark)
                    .with_last_stable_offset(r.last_stable_offset)
                    .with_log_start_offset(r.log_start_offset)
                    .with_records(Some(match r.records {
                        FetchRecords::Bytes(b) if b.len() < SPLICE_BYTES_MIN => b,
                        records => {
                            let (part, len) = match records {
                                FetchRecords::Bytes(b) => {
                                    let len = b.len();
                                    (Spliced::Bytes(b), len)
                                }
                                // Cold ranges were read before; one left here goes by sendfile.
                                FetchRecords::File(f) | FetchRecords::Cold(f) => {
                                    let len = f.len;
                                    (Spliced::File(f), len)
                                }
                            };
                            let marker = *uuid::Uuid::new_v4().as_bytes();
                            let key = topic_key(v, w);
                            let topic = topics.get_index_of(&key).unwrap_or(topics.len());
                            files.push((topic, (marker, part, len)));
                            bytes::Bytes::copy_from_slice(&marker)
                        }
                    }));
                if v >= 4 {
                    let aborted = r
                        .aborted_transactions
                        .iter()
                        .map(|(producer_id, first_offset)| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(*producer_id))
                                .with_first_offset(*first_offset)
                        })
                        .collect();
                    pd = pd.with_aborted_transactions(Some(aborted));
                }
                if let (Some((epoch, end_offset)), true) = (r.diverging_epoch, v >= 12) {
                    pd.diverging_epoch = EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset);
                }
            }
            (None, None) => {
                pd = pd
                    .with_error_code(code::NOT_LEADER_OR_FOLLOWER)
                    .with_high_watermark(-1)
            }
        }
        let entry = topics.entry(topic_key(v, w)).or_insert_with(|| {
            let t = FetchableTopicResponse::default();
            if v >= 13 {
                t.with_topic_id(w.part.topic_id)
            } else {
                t.with_topic(TopicName(str_bytes(w.tp.topic.clone())))
            }
        });
        entry.partitions.push(pd);
    }
    let mut topics: Vec<FetchableTopicResponse> = topics.into_values().collect();
    let leaders = if v >= 12 {
        leader_hints(ctx, v, &mut topics)
    } else {
        Vec::new()
    };
    let mut resp = FetchResponse::default().with_responses(topics);
    if v >= 7 {
        resp = resp.with_session_id(session_id);
    }
    if v >= 16 {
        let image = ctx.shard.metadata();
        resp.node_endpoints = leaders
            .iter()
            .filter_map(|id| image.broker(*id))
            .map(|b| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str_bytes(b.host.clone()))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.clone().map(str_bytes))
            })
            .collect();
    }
    // Stable: within a topic, partitions keep the order they were pushed in.
    files.sort_by_key(|(topic, _)| *topic);
    (resp, files.into_iter().map(|(_, f)| f).collect())
}

/// KIP-951: a partition refused because this node does not lead it (or with a stale epoch)
/// carries the current leader (v12+); returns the leaders named, for `node_endpoints` (v16+).
fn leader_hints(ctx: &RequestContext, v: i16, topics: &mut [FetchableTopicResponse]) -> Vec<i32> {
    let image = ctx.shard.metadata();
    let mut leaders = Vec::new();
    for t in topics.iter_mut() {
        let name = if v >= 13 {
            image.topic_by_id(&t.topic_id).map(|ti| ti.name.clone())
        } else {
            Some(t.topic.0.to_string())
        };
        let Some(name) = name else { continue };
        for pd in &mut t.partitions {
            let tp = TopicPartition::new(name.clone(), pd.partition_index);
            if let Some((leader, epoch)) = errors::current_leader(&image, &tp, pd.error_code) {
                pd.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
                leaders.push(leader);
            }
        }
    }
    leaders.sort_unstable();
    leaders.dedup();
    leaders
}

/// Whether `replica.selector.class` is Kafka's rack-aware selector (the default, Kafka's
/// LeaderSelector, keeps every consumer on the leader).
fn rack_aware_selector(config: &crate::config::BrokerConfig) -> bool {
    let class = config.get("replica.selector.class");
    class.trim().ends_with("RackAwareReplicaSelector")
}

/// Kafka's `RackAwareReplicaSelector`: the leader if it is in the consumer's rack, else the
/// first in-sync, active replica there; `None` (stay on the leader) when there is none.
fn preferred_read_replica(
    image: &crate::cluster::MetadataImage,
    tp: &TopicPartition,
    rack: &str,
) -> Option<i32> {
    let p = image.partition(tp)?;
    let in_rack = |id: i32| {
        image
            .broker(id)
            .is_some_and(|b| b.is_active() && b.rack.as_deref() == Some(rack))
    };
    if in_rack(p.leader) {
        return None;
    }
    p.isr
        .iter()
        .copied()
        .find(|r| *r != p.leader && in_rack(*r))
}

/// The key a partition's topic is grouped under in the response.
fn topic_key(v: i16, w: &Wanted) -> String {
    if v >= 13 {
        w.part.topic_id.to_string()
    } else {
        w.tp.topic.clone()
    }
}
