//! A follower's fetcher: one task per (this shard, leader broker), fetching every partition
//! this shard follows from that leader in one Kafka Fetch (v15: replica state, topic ids,
//! current and last fetched leader epochs, diverging epochs), appending what comes back as it
//! is, and truncating where the leader reports divergence. It stops when this shard follows
//! nothing from that leader any more (the supervisor starts it again when needed).
//!
//! The fetch offset of a partition is its log end, and the fetcher awaits each append's
//! durability (the follower append returns once fdatasync'ed) before the next fetch: the
//! offset it reports is always durable here, which is what the leader's high watermark counts.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};

use super::client::Connection;
use crate::handler::errors::code;
use crate::model::{LeaderEpoch, Offset, TopicPartition};
use crate::runtime::Shard;
use crate::storage::PartitionLog;

/// The Fetch version followers send (replica state in the body, topic ids, diverging epochs).
pub const REPLICA_FETCH_VERSION: i16 = 15;

/// What one partition's answer did.
#[derive(PartialEq)]
enum Step {
    /// Appended, truncated, or simply up to date: fetch again at once.
    Progress,
    /// An error that a new image or a pause may cure.
    Backoff,
}

pub async fn run(shard: Rc<Shard>, leader: i32) {
    let rm = shard.replicas.clone();
    let settings = rm.settings.clone();
    let me = shard.node_id();
    let backoff = Duration::from_millis(settings.fetch_backoff_ms);
    let timeout = Duration::from_millis(
        settings.socket_timeout_ms + settings.fetch_wait_max_ms.max(0) as u64,
    );
    let mut conn: Option<Connection> = None;
    let mut failures = 0u32;
    tracing::info!(shard = shard.id.0, leader, "replica fetcher started");
    loop {
        if shard.shutting_down.get() {
            break;
        }
        let parts = rm.following(leader);
        if parts.is_empty() {
            break;
        }
        let image = shard.metadata();
        let Some(broker) = image.broker(leader).cloned() else {
            glommio::timer::sleep(backoff).await;
            continue;
        };
        if conn.is_none() {
            match Connection::connect(
                &broker.host,
                broker.port,
                Duration::from_millis(settings.socket_timeout_ms.min(10_000)),
                format!("sluice-replica-{me}"),
            )
            .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::info!(leader, host = %broker.host, port = broker.port, error = %e,
                            failures, "replica fetcher cannot connect to the leader");
                    }
                    glommio::timer::sleep(backoff).await;
                    continue;
                }
            }
        }
        // One partition entry per followed partition whose log is usable here.
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut asked: HashMap<TopicPartition, (Rc<PartitionLog>, i64)> = HashMap::new();
        let mut topic_at: HashMap<uuid::Uuid, usize> = HashMap::new();
        for (tp, epoch) in parts {
            let (Some(log), Some(topic)) = (shard.logs.get(&tp), image.topic(&tp.topic)) else {
                continue;
            };
            if log.is_failed() {
                continue;
            }
            let fetch_offset = log.log_end_offset().get();
            let last_fetched_epoch = log.leader_epoch_entries().last().map_or(-1, |e| e.epoch.0);
            let partition = FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(epoch)
                .with_fetch_offset(fetch_offset)
                .with_last_fetched_epoch(last_fetched_epoch)
                .with_log_start_offset(log.log_start_offset().get())
                .with_partition_max_bytes(settings.fetch_max_bytes);
            match topic_at.get(&topic.id) {
                Some(i) => topics[*i].partitions.push(partition),
                None => {
                    topic_at.insert(topic.id, topics.len());
                    topics.push(
                        FetchTopic::default()
                            .with_topic_id(topic.id)
                            .with_partitions(vec![partition]),
                    );
                }
            }
            asked.insert(tp, (log, fetch_offset));
        }
        if asked.is_empty() {
            glommio::timer::sleep(backoff).await;
            continue;
        }
        let req = FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(me))
                    .with_replica_epoch(-1),
            )
            .with_max_wait_ms(settings.fetch_wait_max_ms)
            .with_min_bytes(settings.fetch_min_bytes)
            .with_max_bytes(settings.fetch_response_max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        let max_answer = settings.fetch_response_max_bytes as usize + (1 << 20);
        let Some(c) = conn.as_mut() else { continue };
        let resp: FetchResponse = match c
            .call(
                ApiKey::Fetch,
                REPLICA_FETCH_VERSION,
                &req,
                timeout,
                max_answer,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::info!(leader, error = %e, failures, "replica fetch failed; reconnecting");
                }
                conn = None;
                glommio::timer::sleep(backoff).await;
                continue;
            }
        };
        failures = 0;
        if resp.error_code != code::NONE {
            tracing::info!(
                leader,
                error_code = resp.error_code,
                "replica fetch refused"
            );
            glommio::timer::sleep(backoff).await;
            continue;
        }
        let mut work = Vec::new();
        for t in resp.responses {
            let Some(topic) = image.topic_by_id(&t.topic_id) else {
                continue;
            };
            for pd in t.partitions {
                let tp = TopicPartition::new(topic.name.clone(), pd.partition_index);
                let Some((log, fetch_offset)) = asked.get(&tp) else {
                    continue;
                };
                work.push(apply_answer(log.clone(), *fetch_offset, pd));
            }
        }
        let steps = join_all(work).await;
        if !steps.is_empty() && steps.iter().all(|s| *s == Step::Backoff) {
            glommio::timer::sleep(backoff).await;
        }
    }
    tracing::info!(shard = shard.id.0, leader, "replica fetcher stopped");
}

/// Applies one partition's answer: truncation on a diverging epoch, the append of its batches,
/// the leader's high watermark and log start offset.
async fn apply_answer(log: Rc<PartitionLog>, fetch_offset: i64, pd: PartitionData) -> Step {
    let tp = log.topic_partition().clone();
    match pd.error_code {
        code::NONE => {}
        code::OFFSET_OUT_OF_RANGE => return out_of_range(&log, fetch_offset, &pd).await,
        e => {
            tracing::debug!(partition = %tp, error_code = e, "replica fetch of the partition refused");
            return Step::Backoff;
        }
    }
    if log.log_end_offset().get() != fetch_offset {
        // The log changed while the fetch was out (a truncation, or a new role): ask again.
        return Step::Progress;
    }
    if pd.diverging_epoch.epoch >= 0 {
        return truncate_diverging(
            &log,
            pd.diverging_epoch.epoch,
            pd.diverging_epoch.end_offset,
        )
        .await;
    }
    if let Some(records) = pd.records.filter(|r| !r.is_empty()) {
        // A follower that started over at the leader's log start (which DeleteRecords may put
        // inside a batch) gets that whole batch: start the empty log at its base offset instead
        // (Kafka does the same on UnexpectedAppendOffsetException).
        let base = records
            .get(..8)
            .map(|b| i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
        if let Some(base) = base.filter(|b| *b < fetch_offset && *b >= 0) {
            if log.log_start_offset().get() == log.log_end_offset().get() {
                tracing::info!(partition = %tp, base, fetch_offset,
                    "the leader's first batch starts below this empty log: starting at its base");
                if let Err(e) = log.truncate_fully_and_start_at(Offset(base)).await {
                    tracing::error!(partition = %tp, error = %e, "truncation failed");
                    return Step::Backoff;
                }
            }
        }
        if let Err(e) = log
            .append_as_follower(records, crate::replica::now_ms())
            .await
        {
            tracing::warn!(partition = %tp, error = %e, fetch_offset, "follower append failed");
            return Step::Backoff;
        }
    }
    log.set_hw_bound(pd.high_watermark.max(0));
    let leader_start = pd.log_start_offset;
    if leader_start > log.log_start_offset().get() && leader_start <= log.high_watermark().get() {
        if let Err(e) = log.delete_records_before(Offset(leader_start)).await {
            tracing::debug!(partition = %tp, error = %e, "following the leader's log start failed");
        }
    }
    Step::Progress
}

/// Kafka's truncation on a diverging epoch: to the smaller of the leader's end of that epoch
/// and this log's own end of it.
async fn truncate_diverging(log: &PartitionLog, epoch: i32, leader_end: i64) -> Step {
    let tp = log.topic_partition().clone();
    let own_end = log
        .end_offset_for_epoch(LeaderEpoch(epoch))
        .map_or(leader_end, |(_, end)| end.get());
    let target = own_end.min(leader_end).max(0);
    tracing::info!(partition = %tp, epoch, leader_end, own_end, target,
        log_end = log.log_end_offset().get(), "diverging from the leader: truncating");
    let result = if target < log.log_start_offset().get() {
        log.truncate_fully_and_start_at(Offset(leader_end.max(0)))
            .await
    } else {
        log.truncate_to(Offset(target)).await
    };
    match result {
        Ok(()) => Step::Progress,
        Err(e) => {
            tracing::error!(partition = %tp, error = %e, target, "truncation failed");
            Step::Backoff
        }
    }
}

/// OFFSET_OUT_OF_RANGE: below the leader's log start, start over at it; above the leader's log
/// (which diverging epochs normally catch), truncate to its high watermark.
async fn out_of_range(log: &PartitionLog, fetch_offset: i64, pd: &PartitionData) -> Step {
    let tp = log.topic_partition().clone();
    let result = if fetch_offset < pd.log_start_offset {
        tracing::info!(partition = %tp, fetch_offset, leader_log_start = pd.log_start_offset,
            "behind the leader's log start: starting over there");
        log.truncate_fully_and_start_at(Offset(pd.log_start_offset))
            .await
    } else if pd.high_watermark >= 0 && fetch_offset > pd.high_watermark {
        tracing::warn!(partition = %tp, fetch_offset, leader_hwm = pd.high_watermark,
            "ahead of the leader's log: truncating to its high watermark");
        log.truncate_to(Offset(pd.high_watermark)).await
    } else {
        return Step::Backoff;
    };
    match result {
        Ok(()) => Step::Progress,
        Err(e) => {
            tracing::error!(partition = %tp, error = %e, "truncation failed");
            Step::Backoff
        }
    }
}
