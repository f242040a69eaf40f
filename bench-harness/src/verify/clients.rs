//! The clients of a `verify` run: producers (one thread and one librdkafka producer each) that
//! stop at phase boundaries until the fault command has started, readers that read while they
//! produce, and the reading loop the final read shares with them.

use super::check::{Acked, PartitionBounds, ProducerOutcome, ReadLog, RecordId, Stored};
use super::record::{Codec, Decoded};
use crate::throttle::ThroughputThrottler;
use anyhow::{bail, Context, Result};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);
/// After the flush timed out: how long the purged records get to report.
const PURGE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Delivery and consume errors printed in full per client; later ones are only counted.
const ERRORS_PRINTED_MAX: u64 = 5;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// One producer's share of the run.
pub struct ProducerPlan {
    pub index: u32,
    pub idempotent: bool,
    pub records: u32,
    pub phases: u32,
    /// Records per second for this producer; negative is unlimited.
    pub throughput: f64,
    /// Bound on the final flush (the delivery timeout plus a margin).
    pub flush_timeout: Duration,
    /// Send record `seq` to `spread[seq % len]` rather than where its key hashes.
    pub spread: Option<Vec<i32>>,
}

/// Sends `plan.records` records, waiting at each phase boundary until `gate` releases it, and
/// returns what the delivery reports said. Always marks itself finished at the gate.
pub fn produce(
    plan: &ProducerPlan,
    config: &ClientConfig,
    topic: &str,
    codec: &Codec,
    gate: &PhaseGate,
) -> Result<ProducerOutcome> {
    let _finished = gate.finish_on_drop(plan.index);
    let context = VerifyContext::default();
    let producer: ThreadedProducer<VerifyContext> =
        ThreadedProducer::from_config_and_context(config, context)
            .with_context(|| format!("creating producer {}", plan.index))?;
    let key = Codec::key(plan.index);
    let mut value = Vec::new();
    let mut throttler = ThroughputThrottler::new(plan.throughput, Instant::now());
    // Sends since the throttler was last restarted (after each gate, so a phase does not
    // burst to catch up on the time spent waiting).
    let mut sent_since_gate: u64 = 0;
    let mut not_sent: u64 = 0;
    // Phase 0 begins with the run; each later one at a gate.
    let mut next_phase: u32 = 1;
    for seq in 0..plan.records {
        while next_phase < plan.phases
            && seq == phase_start_of(next_phase, plan.records, plan.phases)
        {
            gate.arrive_and_wait(plan.index, next_phase);
            next_phase += 1;
            throttler = ThroughputThrottler::new(plan.throughput, Instant::now());
            sent_since_gate = 0;
        }
        let id = RecordId {
            producer: plan.index,
            seq,
        };
        codec.encode(id, &mut value);
        let mut record = BaseRecord::with_opaque_to(topic, seq as usize)
            .key(key.as_str())
            .payload(value.as_slice());
        if let Some(spread) = plan.spread.as_deref().filter(|s| !s.is_empty()) {
            record = record.partition(spread[seq as usize % spread.len()]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(QUEUE_FULL_BACKOFF);
                }
                Err((error, _)) => {
                    // Never handed to the client: a failed delivery, not an acknowledgement.
                    not_sent += 1;
                    if not_sent <= ERRORS_PRINTED_MAX {
                        note!("producer {}: send of seq {seq} failed: {error}", plan.index);
                    }
                    break;
                }
            }
        }
        sent_since_gate += 1;
        if throttler.should_throttle(sent_since_gate, Instant::now()) {
            throttler.throttle(std::thread::sleep);
        }
    }
    if let Err(error) = producer.flush(plan.flush_timeout) {
        note!(
            "producer {}: flush: {error}; purging what is left",
            plan.index
        );
        producer.purge(PurgeConfig::default().queue().inflight());
        let _ = producer.flush(PURGE_FLUSH_TIMEOUT);
    }
    let context = producer.context();
    let acked = std::mem::take(&mut *lock(&context.acked));
    let failed = context.failed.load(Ordering::Relaxed);
    let sent = u64::from(plan.records) - not_sent;
    Ok(ProducerOutcome {
        idempotent: plan.idempotent,
        unresolved: sent.saturating_sub(acked.len() as u64 + failed),
        acked,
        failed: failed + not_sent,
    })
}

/// Phase `k` of `phases` covers sequence numbers `[records*k/phases, records*(k+1)/phases)`.
pub fn phase_start_of(phase: u32, records: u32, phases: u32) -> u32 {
    (u64::from(records) * u64::from(phase) / u64::from(phases.max(1))) as u32
}

/// Collects acknowledgements; runs its callbacks on the producer's polling thread.
#[derive(Default)]
struct VerifyContext {
    acked: Mutex<Vec<Acked>>,
    failed: AtomicU64,
}

impl ClientContext for VerifyContext {}

impl ProducerContext for VerifyContext {
    /// The record's sequence number.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(message) => lock(&self.acked).push(Acked {
                offset: message.offset(),
                partition: message.partition(),
                seq: seq as u32,
            }),
            Err((error, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < ERRORS_PRINTED_MAX {
                    note!("delivery of seq {seq} failed: {error}");
                }
            }
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data is still the
/// best record there is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Phase boundaries: every producer stops before its first record of phase `k` until the
/// coordinator has started fault command `k` and released the phase.
pub struct PhaseGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

struct GateState {
    /// Per producer: the phase it waits to start, or `u32::MAX` once finished.
    reached: Vec<u32>,
    released: u32,
}

impl PhaseGate {
    pub fn new(producers: u32) -> Self {
        Self {
            state: Mutex::new(GateState {
                reached: vec![0; producers as usize],
                released: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn arrive_and_wait(&self, producer: u32, phase: u32) {
        let mut state = lock(&self.state);
        state.reached[producer as usize] = phase;
        self.changed.notify_all();
        while state.released < phase {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn finish_on_drop(&self, producer: u32) -> FinishGuard<'_> {
        FinishGuard {
            gate: self,
            producer,
        }
    }

    /// Waits until every producer has sent all its records before `phase` (or finished).
    pub fn wait_all_reached(&self, phase: u32) {
        let mut state = lock(&self.state);
        while state.reached.iter().any(|&reached| reached < phase) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    pub fn release(&self, phase: u32) {
        lock(&self.state).released = phase;
        self.changed.notify_all();
    }
}

/// Marks a producer finished however its thread ends, so the coordinator never waits for it.
struct FinishGuard<'a> {
    gate: &'a PhaseGate,
    producer: u32,
}

impl Drop for FinishGuard<'_> {
    fn drop(&mut self) {
        lock(&self.gate.state).reached[self.producer as usize] = u32::MAX;
        self.gate.changed.notify_all();
    }
}

/// When a reading loop stops: the end offsets, once known, and a bound on stalls.
pub struct ReadUntil<'a> {
    /// Set by the coordinator after the producers finished (known from the start for the
    /// final read).
    pub end: &'a OnceLock<Vec<PartitionBounds>>,
    /// Give up when no record arrived for this long once `end` is known.
    pub stall_timeout: Duration,
    /// Stop (incomplete) after keeping this many records.
    pub records_max: u64,
    /// Stop (incomplete) when set.
    pub abort: &'a AtomicBool,
}

/// Reads every partition of `topic` from `start` (per partition) and keeps this run's records
/// until each partition's position reaches its end offset in `until.end`.
pub fn read(
    config: &ClientConfig,
    topic: &str,
    start: &[(i32, Offset)],
    codec: &Codec,
    until: &ReadUntil<'_>,
    name: &str,
) -> Result<ReadLog> {
    let consumer: BaseConsumer = config
        .create()
        .with_context(|| format!("creating consumer for {name}"))?;
    let mut assignment = TopicPartitionList::new();
    for &(partition, offset) in start {
        assignment.add_partition_offset(topic, partition, offset)?;
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    let mut reading = Reading::default();
    // Stalls count from the last record or from when the end offsets became known.
    let mut last_progress = Instant::now();
    let mut end_known = false;
    loop {
        if let Some(end) = until.end.get() {
            if !end_known {
                end_known = true;
                last_progress = Instant::now();
            }
            let waiting: Vec<i32> = end
                .iter()
                .filter(|bounds| !reading.reached(bounds))
                .map(|bounds| bounds.partition)
                .collect();
            if waiting.is_empty() {
                reading.log.complete = true;
                break;
            }
            if last_progress.elapsed() >= until.stall_timeout {
                note!(
                    "{name}: nothing read for {:?}; partitions {waiting:?} not at their end offsets",
                    until.stall_timeout
                );
                break;
            }
        }
        if until.abort.load(Ordering::Relaxed) {
            break;
        }
        if reading.kept > until.records_max {
            note!(
                "{name}: more than {} records of this run; stopping",
                until.records_max
            );
            break;
        }
        match consumer.poll(POLL_TIMEOUT) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                reading.take(codec, &message, name);
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => reading.eof(partition, end_known),
            Some(Err(error)) => {
                reading.errors += 1;
                if reading.errors <= ERRORS_PRINTED_MAX {
                    note!("{name}: consume error: {error}");
                }
            }
            None => {}
        }
    }
    Ok(reading.log)
}

/// A reading loop's state.
#[derive(Default)]
struct Reading {
    log: ReadLog,
    /// Per partition: the offset after the highest record read.
    next: BTreeMap<i32, i64>,
    /// Partitions that reported EOF after the end offsets were known (an EOF is delivered after
    /// every record before it, at the high watermark of that moment).
    eof_after_end: Vec<i32>,
    kept: u64,
    errors: u64,
}

impl Reading {
    fn reached(&self, bounds: &PartitionBounds) -> bool {
        bounds.high_watermark <= bounds.log_start
            || self
                .next
                .get(&bounds.partition)
                .is_some_and(|&next| next >= bounds.high_watermark)
            || self.eof_after_end.contains(&bounds.partition)
    }

    fn eof(&mut self, partition: i32, end_known: bool) {
        // An EOF before the end offsets were known says nothing about reaching them.
        if end_known && !self.eof_after_end.contains(&partition) {
            self.eof_after_end.push(partition);
        }
    }

    fn take<M: Message>(&mut self, codec: &Codec, message: &M, name: &str) {
        let partition = message.partition();
        let offset = message.offset();
        let next = self.next.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        match codec.decode(message.key(), message.payload()) {
            Decoded::Ours(id) => {
                self.kept += 1;
                self.log
                    .partitions
                    .entry(partition)
                    .or_default()
                    .push(Stored { offset, id });
            }
            Decoded::Foreign => self.log.foreign += 1,
            Decoded::Corrupted => {
                self.log.corrupted += 1;
                note!(
                    "{name}: corrupted record at {}-{partition} offset {offset}",
                    message.topic()
                );
            }
        }
    }
}

/// Log start offset and high watermark of each partition, retried while a partition has no
/// leader (as during a failover), each within `timeout`.
pub fn bounds_of(
    config: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<Vec<PartitionBounds>> {
    let consumer: BaseConsumer = config.create().context("creating consumer for offsets")?;
    let mut bounds = Vec::with_capacity(partitions.len());
    for &partition in partitions {
        let deadline = Instant::now() + timeout;
        loop {
            match consumer.fetch_watermarks(topic, partition, crate::admin::REQUEST_TIMEOUT) {
                Ok((log_start, high_watermark)) => {
                    bounds.push(PartitionBounds {
                        partition,
                        log_start,
                        high_watermark,
                    });
                    break;
                }
                Err(error) if Instant::now() < deadline => {
                    note!("offsets of {topic}-{partition}: {error}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(error) => bail!("offsets of {topic}-{partition}: {error}"),
            }
        }
    }
    Ok(bounds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn phases_split_records_evenly_and_cover_them_all() {
        assert_eq!(
            (0..=4)
                .map(|k| phase_start_of(k, 10, 4))
                .collect::<Vec<_>>(),
            [0, 2, 5, 7, 10]
        );
        assert_eq!(phase_start_of(1, 1, 1), 1);
        // More phases than records: several phases begin at the same record.
        assert_eq!(
            (0..=3).map(|k| phase_start_of(k, 1, 3)).collect::<Vec<_>>(),
            [0, 0, 0, 1]
        );
    }

    /// Two producer threads: neither passes a boundary before the coordinator releases it, and
    /// the coordinator's wait ends only when both have arrived (or finished).
    #[test]
    fn gate_holds_producers_until_released() {
        let gate = PhaseGate::new(2);
        let (passed, passes) = mpsc::channel();
        std::thread::scope(|scope| {
            for producer in 0..2u32 {
                let (gate, passed) = (&gate, passed.clone());
                scope.spawn(move || {
                    let _finished = gate.finish_on_drop(producer);
                    gate.arrive_and_wait(producer, 1);
                    let _ = passed.send((producer, 1));
                    if producer == 0 {
                        gate.arrive_and_wait(producer, 2);
                        let _ = passed.send((producer, 2));
                    }
                    // Producer 1 finishes without reaching phase 2.
                });
            }
            gate.wait_all_reached(1);
            assert!(
                passes.try_recv().is_err(),
                "a producer passed an unreleased gate"
            );
            gate.release(1);
            gate.wait_all_reached(2);
            let mut seen: Vec<_> = (0..2).map(|_| passes.recv().expect("pass")).collect();
            seen.sort_unstable();
            assert_eq!(seen, [(0, 1), (1, 1)]);
            assert!(
                passes.try_recv().is_err(),
                "producer 0 passed phase 2 unreleased"
            );
            gate.release(2);
            assert_eq!(passes.recv().expect("pass"), (0, 2));
        });
    }
}
