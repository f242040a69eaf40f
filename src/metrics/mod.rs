//! Metrics: what each shard records on its own data path, and the Prometheus text that the
//! admin listener (see `admin/`) renders from every shard's snapshot on a scrape.
//!
//! Architecture Invariant: recording never leaves the core. Each executor thread owns one
//! [`ShardMetrics`] (a thread-local of `Cell`s and HDR histograms, so the thread *is* the shard);
//! the data path bumps it with plain loads and stores, no atomics, no locks, no mesh message.
//! Cross-shard traffic happens only on a scrape: shard 0 asks every shard for a
//! [`ShardSnapshot`] (`ShardRequest::Metrics`) and renders them (`exposition`).

pub mod exposition;
pub mod gather;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::limits;

pub use gather::{snapshot, ShardSnapshot};

thread_local! {
    static LOCAL: ShardMetrics = ShardMetrics::new();
}

/// Runs `f` with this thread's (this shard's) metrics.
pub fn with<R>(f: impl FnOnce(&ShardMetrics) -> R) -> R {
    LOCAL.with(f)
}

/// The metrics one shard records. Lives on the core that records it (a thread-local of its
/// executor thread) and never leaves it: a scrape copies it into a [`ShardSnapshot`].
pub struct ShardMetrics {
    requests: [Cell<u64>; limits::METRICS_API_KEYS_MAX],
    /// Request latency by API key, microseconds; made on the first request of an API.
    latency: RefCell<Vec<Option<Histogram<u64>>>>,
    /// Errors answered, by (API key, Kafka error code): at most
    /// `METRICS_ERROR_SERIES_MAX` pairs (a new pair past it is counted under code -2).
    errors: RefCell<std::collections::BTreeMap<(i16, i16), u64>>,
    request_bytes: Cell<u64>,
    response_bytes: Cell<u64>,
    records_in: Cell<u64>,
    flushes: Cell<u64>,
    /// fdatasync latency, microseconds.
    fdatasync: RefCell<Histogram<u64>>,
    fdatasync_count: Cell<u64>,
    /// Cluster-wide metadata changes as this node applied them (shard 0 only).
    isr_shrinks: Cell<u64>,
    isr_expands: Cell<u64>,
    leader_elections: Cell<u64>,
    /// The shard's request budget (`queued.max.request.bytes` share), set by its listener.
    budget: RefCell<Option<Rc<crate::net::budget::RequestBudget>>>,
}

impl ShardMetrics {
    fn new() -> ShardMetrics {
        ShardMetrics {
            requests: std::array::from_fn(|_| Cell::new(0)),
            latency: RefCell::new(Vec::new()),
            errors: RefCell::new(std::collections::BTreeMap::new()),
            request_bytes: Cell::new(0),
            response_bytes: Cell::new(0),
            records_in: Cell::new(0),
            flushes: Cell::new(0),
            fdatasync: RefCell::new(latency_histogram()),
            fdatasync_count: Cell::new(0),
            isr_shrinks: Cell::new(0),
            isr_expands: Cell::new(0),
            leader_elections: Cell::new(0),
            budget: RefCell::new(None),
        }
    }

    /// One request answered: its API, time from decode to response, and its sizes.
    pub fn request_done(&self, api_key: i16, took: Duration, in_bytes: usize, out_bytes: usize) {
        bump(&self.request_bytes, in_bytes as u64);
        bump(&self.response_bytes, out_bytes as u64);
        let Some(index) = api_index(api_key) else {
            return;
        };
        bump(&self.requests[index], 1);
        let mut latency = self.latency.borrow_mut();
        if latency.len() <= index {
            latency.resize_with(index + 1, || None);
        }
        let histogram = latency[index].get_or_insert_with(latency_histogram);
        histogram.saturating_record(micros(took));
    }

    /// `count` answers of `code` (non-zero) to requests of `api_key`.
    pub fn errors(&self, api_key: i16, code: i16, count: u64) {
        if code == 0 || count == 0 {
            return;
        }
        let mut errors = self.errors.borrow_mut();
        let full = errors.len() >= limits::METRICS_ERROR_SERIES_MAX;
        let key = if full && !errors.contains_key(&(api_key, code)) {
            (api_key, OVERFLOW_ERROR_CODE)
        } else {
            (api_key, code)
        };
        *errors.entry(key).or_insert(0) += count;
    }

    pub fn records_in(&self, records: u64) {
        bump(&self.records_in, records);
    }

    /// One group commit (a flush round over the queued logs).
    pub fn flush_round(&self) {
        bump(&self.flushes, 1);
    }

    pub fn fdatasync(&self, took: Duration) {
        bump(&self.fdatasync_count, 1);
        self.fdatasync.borrow_mut().saturating_record(micros(took));
    }

    pub fn set_request_budget(&self, budget: Rc<crate::net::budget::RequestBudget>) {
        *self.budget.borrow_mut() = Some(budget);
    }

    /// Counts what changed from `old` to `new` (ISR shrinks and expands, leader changes).
    pub fn image_changed(
        &self,
        old: &crate::cluster::MetadataImage,
        new: &crate::cluster::MetadataImage,
    ) {
        for (name, topic) in &new.topics {
            let Some(before) = old.topic(name).filter(|t| t.id == topic.id) else {
                continue;
            };
            for (now, was) in topic.partitions.iter().zip(&before.partitions) {
                if now.isr.len() < was.isr.len() {
                    bump(&self.isr_shrinks, 1);
                } else if now.isr.len() > was.isr.len() {
                    bump(&self.isr_expands, 1);
                }
                if now.leader_epoch != was.leader_epoch && now.has_leader() {
                    bump(&self.leader_elections, 1);
                }
            }
        }
    }
}

/// The error-code label of errors past `METRICS_ERROR_SERIES_MAX` distinct pairs.
pub const OVERFLOW_ERROR_CODE: i16 = -2;

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

fn api_index(api_key: i16) -> Option<usize> {
    usize::try_from(api_key)
        .ok()
        .filter(|i| *i < limits::METRICS_API_KEYS_MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// 1 µs to `METRICS_LATENCY_MICROS_MAX`, 2 significant digits (1 % error): ~20 KiB.
fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, limits::METRICS_LATENCY_MICROS_MAX, 2)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

/// Counts the error codes of a response (top-level and per partition) for `errors`. Covers
/// the APIs an operator watches; others count under their top-level code only where shown.
pub fn count_response_errors(api_key: i16, response: &kafka_protocol::messages::ResponseKind) {
    use kafka_protocol::messages::ResponseKind as R;
    let mut codes: Vec<i16> = Vec::new();
    match response {
        R::Produce(r) => codes.extend(
            r.responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)),
        ),
        R::Fetch(r) => {
            codes.push(r.error_code);
            codes.extend(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
        }
        R::Metadata(r) => codes.extend(r.topics.iter().map(|t| t.error_code)),
        R::ListOffsets(r) => codes.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        R::CreateTopics(r) => codes.extend(r.topics.iter().map(|t| t.error_code)),
        R::DeleteTopics(r) => codes.extend(r.responses.iter().map(|t| t.error_code)),
        R::OffsetCommit(r) => codes.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        R::OffsetFetch(r) => codes.push(r.error_code),
        R::FindCoordinator(r) => {
            codes.push(r.error_code);
            codes.extend(r.coordinators.iter().map(|c| c.error_code));
        }
        R::JoinGroup(r) => codes.push(r.error_code),
        R::SyncGroup(r) => codes.push(r.error_code),
        R::Heartbeat(r) => codes.push(r.error_code),
        R::LeaveGroup(r) => codes.push(r.error_code),
        R::InitProducerId(r) => codes.push(r.error_code),
        R::ConsumerGroupHeartbeat(r) => codes.push(r.error_code),
        R::DescribeCluster(r) => codes.push(r.error_code),
        R::DescribeQuorum(r) => codes.push(r.error_code),
        R::ElectLeaders(r) => codes.push(r.error_code),
        R::AlterPartitionReassignments(r) => codes.push(r.error_code),
        R::ListPartitionReassignments(r) => codes.push(r.error_code),
        _ => {}
    }
    if codes.iter().all(|c| *c == 0) {
        return;
    }
    codes.sort_unstable();
    with(|m| {
        for chunk in codes.chunk_by(|a, b| a == b) {
            m.errors(api_key, chunk[0], chunk.len() as u64);
        }
    });
}
