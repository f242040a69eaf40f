//! The verdict of a `verify` run as a pure function of what it observed: the acknowledged
//! records (from delivery reports), what each reader read, and the final read. No I/O, no
//! clients, no clock; the unit tests feed it synthetic observations with each kind of violation.
//!
//! Memory: every collection here holds one 16-byte entry per record ([`Acked`], [`Stored`];
//! their sizes are asserted below), plus one byte per record while counting copies. The caller
//! bounds the record count (`verify::RECORDS_MAX`).

use serde::Serialize;
use std::collections::BTreeMap;

/// Examples kept per kind of violation (the counts are always complete).
pub const EXAMPLES_MAX: usize = 20;

/// Which record of the run: the producer's index and its sequence number (0-based).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
pub struct RecordId {
    pub producer: u32,
    pub seq: u32,
}

/// One acknowledged record, as its delivery report gave it. 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Acked {
    pub offset: i64,
    pub partition: i32,
    pub seq: u32,
}

/// A record of this run found at an offset of a partition (by a reader or the final read).
/// 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Stored {
    pub offset: i64,
    pub id: RecordId,
}

const _: () = assert!(std::mem::size_of::<Acked>() == 16);
const _: () = assert!(std::mem::size_of::<Stored>() == 16);

/// What one producer did.
#[derive(Debug, Default)]
pub struct ProducerOutcome {
    /// `enable.idempotence=true`: a duplicate or a reordering is an error, not a count.
    pub idempotent: bool,
    pub acked: Vec<Acked>,
    /// Deliveries that reported an error (never treated as acknowledged).
    pub failed: u64,
    /// Sent, but neither acknowledged nor failed when the producer was closed.
    pub unresolved: u64,
}

/// Records of this run that one consumer read, per partition, in the order read.
#[derive(Debug, Default)]
pub struct ReadLog {
    pub partitions: BTreeMap<i32, Vec<Stored>>,
    /// Records that are not this run's (another run's, another writer's): counted, not kept.
    pub foreign: u64,
    /// Records that carry this run's header but not the bytes it sent: an error.
    pub corrupted: u64,
    /// The consumer reached every partition's end offset (a reader that did not is no error;
    /// a final read that did not is).
    pub complete: bool,
}

/// The end offsets the final read went to (taken after the producers finished).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionBounds {
    pub partition: i32,
    pub log_start: i64,
    pub high_watermark: i64,
}

/// Everything the run observed.
#[derive(Debug, Default)]
pub struct Observed {
    pub records_per_producer: u32,
    /// Indexed by producer index.
    pub producers: Vec<ProducerOutcome>,
    pub readers: Vec<ReadLog>,
    pub final_bounds: Vec<PartitionBounds>,
    pub final_read: ReadLog,
}

/// One violation, located.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Example {
    pub partition: i32,
    pub offset: i64,
    pub producer: u32,
    pub seq: u32,
    pub detail: String,
}

/// A count and the first [`EXAMPLES_MAX`] examples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Violations {
    pub count: u64,
    pub examples: Vec<Example>,
}

impl Violations {
    fn add(&mut self, partition: i32, offset: i64, id: RecordId, detail: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(Example {
                partition,
                offset,
                producer: id.producer,
                seq: id.seq,
                detail: detail(),
            });
        }
    }
}

/// The report. Error class: `lost`, `duplicated`, `reordered`, `vanished`, `corrupted`, and an
/// incomplete final read; the rest are counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub acknowledged: u64,
    pub failed: u64,
    pub unresolved: u64,
    /// Records of this run read by all readers together (re-reads included).
    pub read_by_readers: u64,
    pub readers_complete: usize,
    pub final_read_records: u64,
    pub final_read_foreign: u64,
    pub final_read_complete: bool,
    /// Acknowledged, but not at its acknowledged offset in the final read.
    pub lost: Violations,
    /// A record of an idempotent producer stored more than once (each extra copy counts).
    pub duplicated: Violations,
    /// The same for producers without idempotence, where retries may duplicate.
    pub duplicates_from_retries: Violations,
    /// Idempotent producer: an acknowledged record stored after a higher sequence number of the
    /// same producer in the same partition.
    pub reordered: Violations,
    /// The same for producers without idempotence (max.in.flight 5 with retries may reorder).
    pub reordered_from_retries: Violations,
    /// Read by a reader at an offset where the final read does not have it.
    pub vanished: Violations,
    /// Records with this run's header but other bytes (readers and final read together).
    pub corrupted: u64,
    /// The error-class findings by name; empty means the run passed.
    pub errors: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the observations. Takes them by value: it sorts in place rather than copying.
pub fn check(observed: Observed) -> Verdict {
    let Observed {
        records_per_producer,
        mut producers,
        readers,
        final_bounds,
        final_read,
    } = observed;
    let mut verdict = Verdict {
        acknowledged: producers.iter().map(|p| p.acked.len() as u64).sum(),
        failed: producers.iter().map(|p| p.failed).sum(),
        unresolved: producers.iter().map(|p| p.unresolved).sum(),
        read_by_readers: readers.iter().map(ReadLog::len).sum(),
        readers_complete: readers.iter().filter(|r| r.complete).count(),
        final_read_records: final_read.len(),
        final_read_foreign: final_read.foreign,
        final_read_complete: final_read.complete,
        corrupted: final_read.corrupted + readers.iter().map(|r| r.corrupted).sum::<u64>(),
        ..Verdict::default()
    };
    let final_index = FinalIndex::new(final_read.partitions, &final_bounds);
    for producer in &mut producers {
        producer.acked.sort_unstable_by_key(|acked| acked.seq);
    }
    check_lost(&producers, &final_index, &mut verdict);
    check_copies_and_order(&producers, records_per_producer, &final_index, &mut verdict);
    check_vanished(readers, &final_index, &mut verdict);
    verdict.errors = error_names(&verdict);
    verdict
}

impl ReadLog {
    pub fn len(&self) -> u64 {
        self.partitions.values().map(|r| r.len() as u64).sum()
    }
}

/// The final read, sorted by offset per partition, with its bounds.
struct FinalIndex<'a> {
    partitions: BTreeMap<i32, Vec<Stored>>,
    bounds: &'a [PartitionBounds],
}

impl<'a> FinalIndex<'a> {
    fn new(mut partitions: BTreeMap<i32, Vec<Stored>>, bounds: &'a [PartitionBounds]) -> Self {
        for records in partitions.values_mut() {
            records.sort_unstable();
            records.dedup();
        }
        Self { partitions, bounds }
    }

    /// The record of this run at `offset`, if the final read found one there.
    fn at(&self, partition: i32, offset: i64) -> Option<RecordId> {
        let records = self.partitions.get(&partition)?;
        let index = records.binary_search_by_key(&offset, |s| s.offset).ok()?;
        Some(records[index].id)
    }

    /// Why the final read has not got `id` at `offset`.
    fn missing_reason(&self, partition: i32, offset: i64) -> String {
        let Some(bounds) = self.bounds.iter().find(|b| b.partition == partition) else {
            return format!("partition {partition} is not in the final read");
        };
        if offset < bounds.log_start {
            return format!("below the log start offset {}", bounds.log_start);
        }
        if offset >= bounds.high_watermark {
            return format!("at or above the high watermark {}", bounds.high_watermark);
        }
        match self.at(partition, offset) {
            Some(other) => format!(
                "producer {} seq {} is there instead",
                other.producer, other.seq
            ),
            None => "no record of this run there (absent, or another writer's)".to_string(),
        }
    }
}

fn check_lost(producers: &[ProducerOutcome], final_index: &FinalIndex, verdict: &mut Verdict) {
    for (index, producer) in producers.iter().enumerate() {
        for acked in &producer.acked {
            let id = RecordId {
                producer: index as u32,
                seq: acked.seq,
            };
            if acked.offset < 0 {
                verdict.lost.add(acked.partition, acked.offset, id, || {
                    "acknowledged without an offset".to_string()
                });
            } else if final_index.at(acked.partition, acked.offset) != Some(id) {
                verdict.lost.add(acked.partition, acked.offset, id, || {
                    final_index.missing_reason(acked.partition, acked.offset)
                });
            }
        }
    }
}

/// Duplicates and reordering, in one pass over the final read in offset order.
fn check_copies_and_order(
    producers: &[ProducerOutcome],
    records_per_producer: u32,
    final_index: &FinalIndex,
    verdict: &mut Verdict,
) {
    // Copies seen so far of each (producer, seq), saturating: one byte per record.
    let mut copies: Vec<Vec<u8>> = producers
        .iter()
        .map(|_| vec![0u8; records_per_producer as usize])
        .collect();
    for (&partition, records) in &final_index.partitions {
        // Highest sequence number of each producer at a lower offset of this partition.
        let mut highest: Vec<Option<u32>> = vec![None; producers.len()];
        for stored in records {
            let id = stored.id;
            let (Some(producer), Some(count)) = (
                producers.get(id.producer as usize),
                copies
                    .get_mut(id.producer as usize)
                    .and_then(|c| c.get_mut(id.seq as usize)),
            ) else {
                continue; // Not a record the run sent; the decoder does not let these through.
            };
            *count = count.saturating_add(1);
            if *count > 1 {
                let target = if producer.idempotent {
                    &mut verdict.duplicated
                } else {
                    &mut verdict.duplicates_from_retries
                };
                let copy = *count;
                target.add(partition, stored.offset, id, || {
                    format!("copy {copy} of this record")
                });
            }
            let acked_here = acked_position(producer, id.seq)
                .is_some_and(|acked| acked.partition == partition && acked.offset == stored.offset);
            let previous = highest[id.producer as usize];
            if let Some(higher) = previous.filter(|&higher| acked_here && higher > id.seq) {
                let target = if producer.idempotent {
                    &mut verdict.reordered
                } else {
                    &mut verdict.reordered_from_retries
                };
                target.add(partition, stored.offset, id, || {
                    format!("stored after seq {higher} of the same producer")
                });
            }
            highest[id.producer as usize] = Some(previous.map_or(id.seq, |h| h.max(id.seq)));
        }
    }
}

/// Where `seq` was acknowledged; the producer's acks are sorted by seq.
fn acked_position(producer: &ProducerOutcome, seq: u32) -> Option<&Acked> {
    let index = producer.acked.binary_search_by_key(&seq, |a| a.seq).ok()?;
    producer.acked.get(index)
}

/// Every distinct (partition, offset, record) any reader read must be in the final read.
fn check_vanished(readers: Vec<ReadLog>, final_index: &FinalIndex, verdict: &mut Verdict) {
    let mut by_partition: BTreeMap<i32, Vec<Vec<Stored>>> = BTreeMap::new();
    for reader in readers {
        for (partition, records) in reader.partitions {
            by_partition.entry(partition).or_default().push(records);
        }
    }
    for (partition, lists) in by_partition {
        let mut seen: Vec<Stored> = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        for list in lists {
            seen.extend(list);
        }
        seen.sort_unstable();
        seen.dedup();
        for stored in seen {
            if final_index.at(partition, stored.offset) != Some(stored.id) {
                verdict
                    .vanished
                    .add(partition, stored.offset, stored.id, || {
                        final_index.missing_reason(partition, stored.offset)
                    });
            }
        }
    }
}

fn error_names(verdict: &Verdict) -> Vec<String> {
    let mut errors = Vec::new();
    let mut flag = |name: &str, count: u64| {
        if count > 0 {
            errors.push(format!("{name}: {count}"));
        }
    };
    flag("lost", verdict.lost.count);
    flag("duplicated (idempotent producer)", verdict.duplicated.count);
    flag("reordered (idempotent producer)", verdict.reordered.count);
    flag("vanished", verdict.vanished.count);
    flag("corrupted", verdict.corrupted);
    if !verdict.final_read_complete {
        errors.push("final read incomplete (did not reach every high watermark)".to_string());
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTITION: i32 = 0;

    fn id(producer: u32, seq: u32) -> RecordId {
        RecordId { producer, seq }
    }

    fn stored(offset: i64, producer: u32, seq: u32) -> Stored {
        Stored {
            offset,
            id: id(producer, seq),
        }
    }

    fn acked(offset: i64, seq: u32) -> Acked {
        Acked {
            offset,
            partition: PARTITION,
            seq,
        }
    }

    fn read_log(records: Vec<Stored>) -> ReadLog {
        ReadLog {
            partitions: BTreeMap::from([(PARTITION, records)]),
            complete: true,
            ..ReadLog::default()
        }
    }

    /// Producer 0 idempotent, producer 1 not; 4 records each, interleaved in partition 0 at
    /// offsets 0..8, all acknowledged, read by one reader and found by the final read.
    fn clean() -> Observed {
        let layout: Vec<Stored> = (0..8)
            .map(|o| stored(o, (o % 2) as u32, (o / 2) as u32))
            .collect();
        let producers = (0..2)
            .map(|p| ProducerOutcome {
                idempotent: p == 0,
                acked: layout
                    .iter()
                    .filter(|s| s.id.producer == p)
                    .map(|s| acked(s.offset, s.id.seq))
                    .collect(),
                ..ProducerOutcome::default()
            })
            .collect();
        Observed {
            records_per_producer: 4,
            producers,
            readers: vec![read_log(layout.clone())],
            final_bounds: vec![PartitionBounds {
                partition: PARTITION,
                log_start: 0,
                high_watermark: 8,
            }],
            final_read: read_log(layout),
        }
    }

    fn final_records(observed: &mut Observed) -> &mut Vec<Stored> {
        observed
            .final_read
            .partitions
            .get_mut(&PARTITION)
            .expect("partition 0")
    }

    #[test]
    fn clean_run_passes() {
        let verdict = check(clean());
        assert!(verdict.passed(), "{:?}", verdict.errors);
        assert_eq!(verdict.acknowledged, 8);
        assert_eq!(verdict.read_by_readers, 8);
        assert_eq!(verdict.final_read_records, 8);
        assert_eq!(verdict.readers_complete, 1);
        for violations in [
            &verdict.lost,
            &verdict.duplicated,
            &verdict.duplicates_from_retries,
            &verdict.reordered,
            &verdict.reordered_from_retries,
            &verdict.vanished,
        ] {
            assert_eq!(violations.count, 0);
        }
    }

    #[test]
    fn failed_and_unacknowledged_records_are_no_error() {
        let mut observed = clean();
        // Producer 1's seq 3 failed delivery and is not in the log; producer 0's seq 3 got no
        // delivery report but was written anyway.
        observed.producers[1].acked.retain(|a| a.seq != 3);
        observed.producers[1].failed = 1;
        observed.producers[0].acked.retain(|a| a.seq != 3);
        observed.producers[0].unresolved = 1;
        final_records(&mut observed).retain(|s| s.id != id(1, 3));
        observed.readers[0] = read_log(final_records(&mut observed).clone());
        observed.final_bounds[0].high_watermark = 7;
        let verdict = check(observed);
        assert!(verdict.passed(), "{:?}", verdict.errors);
        assert_eq!(
            (verdict.acknowledged, verdict.failed, verdict.unresolved),
            (6, 1, 1)
        );
    }

    #[test]
    fn lost_when_absent_or_replaced() {
        let mut observed = clean();
        final_records(&mut observed).retain(|s| s.offset != 2); // producer 0 seq 1
        final_records(&mut observed)[3] = stored(4, 1, 2); // offset 4 had producer 0 seq 2
        final_records(&mut observed).retain(|s| s.offset != 7); // producer 1 seq 3
        observed.final_bounds[0].high_watermark = 7;
        observed.readers.clear();
        let verdict = check(observed);
        assert_eq!(verdict.lost.count, 3, "{:?}", verdict.lost);
        let details: Vec<_> = verdict
            .lost
            .examples
            .iter()
            .map(|e| e.detail.as_str())
            .collect();
        assert!(details.iter().any(|d| d.contains("absent")), "{details:?}");
        assert!(
            details.iter().any(|d| d.contains("seq 2 is there instead")),
            "{details:?}"
        );
        assert!(
            details.iter().any(|d| d.contains("high watermark 7")),
            "{details:?}"
        );
        assert!(
            verdict.errors.iter().any(|e| e.starts_with("lost: 3")),
            "{:?}",
            verdict.errors
        );
        assert!(!verdict.passed());
    }

    #[test]
    fn lost_below_log_start_or_without_offset() {
        let mut observed = clean();
        final_records(&mut observed).retain(|s| s.offset >= 2);
        observed.final_bounds[0].log_start = 2;
        observed.producers[1].acked[3].offset = -1;
        observed.readers.clear();
        let verdict = check(observed);
        assert_eq!(verdict.lost.count, 3, "{:?}", verdict.lost);
        assert!(verdict
            .lost
            .examples
            .iter()
            .any(|e| e.detail.contains("log start offset 2")));
        assert!(verdict
            .lost
            .examples
            .iter()
            .any(|e| e.detail.contains("without an offset")));
    }

    #[test]
    fn duplicates_are_errors_only_for_idempotent_producers() {
        let mut observed = clean();
        // A second copy of producer 0 seq 3 and two more of producer 1 seq 3, after the log.
        final_records(&mut observed).extend([stored(8, 0, 3), stored(9, 1, 3), stored(10, 1, 3)]);
        observed.final_bounds[0].high_watermark = 11;
        let verdict = check(observed);
        assert_eq!(verdict.duplicated.count, 1);
        assert_eq!(verdict.duplicated.examples[0].offset, 8);
        assert_eq!(verdict.duplicates_from_retries.count, 2);
        assert_eq!(
            verdict.errors,
            vec!["duplicated (idempotent producer): 1".to_string()]
        );
        assert_eq!(verdict.lost.count, 0);
        assert_eq!(
            verdict.reordered.count + verdict.reordered_from_retries.count,
            0
        );
    }

    #[test]
    fn only_non_idempotent_duplicates_pass() {
        let mut observed = clean();
        final_records(&mut observed).push(stored(8, 1, 0));
        observed.final_bounds[0].high_watermark = 9;
        let verdict = check(observed);
        assert!(verdict.passed(), "{:?}", verdict.errors);
        assert_eq!(verdict.duplicates_from_retries.count, 1);
    }

    #[test]
    fn reordering_is_an_error_for_idempotent_producers() {
        let mut observed = clean();
        // Producer 0: seq 2 stored (and acknowledged) at offset 6, seq 3 at offset 4.
        // Producer 1: seq 1 at offset 5, seq 2 at offset 3.
        let swapped = [
            stored(0, 0, 0),
            stored(1, 1, 0),
            stored(2, 0, 1),
            stored(3, 1, 2),
            stored(4, 0, 3),
            stored(5, 1, 1),
            stored(6, 0, 2),
            stored(7, 1, 3),
        ];
        *final_records(&mut observed) = swapped.to_vec();
        observed.readers = vec![read_log(swapped.to_vec())];
        for producer in 0..2u32 {
            observed.producers[producer as usize].acked = swapped
                .iter()
                .filter(|s| s.id.producer == producer)
                .map(|s| acked(s.offset, s.id.seq))
                .collect();
        }
        let verdict = check(observed);
        assert_eq!(verdict.reordered.count, 1, "{:?}", verdict.reordered);
        assert_eq!(verdict.reordered.examples[0].offset, 6);
        assert_eq!(verdict.reordered.examples[0].seq, 2);
        assert!(verdict.reordered.examples[0].detail.contains("seq 3"));
        assert_eq!(verdict.reordered_from_retries.count, 1);
        assert_eq!(
            verdict.errors,
            vec!["reordered (idempotent producer): 1".to_string()]
        );
    }

    #[test]
    fn an_unacknowledged_copy_after_a_higher_seq_is_not_a_reordering() {
        let mut observed = clean();
        // Producer 1's seq 0 was also written again (a retry) after seq 3: a duplicate from
        // retries, but its acknowledged copy is in order.
        final_records(&mut observed).push(stored(8, 1, 0));
        observed.final_bounds[0].high_watermark = 9;
        let verdict = check(observed);
        assert_eq!(verdict.reordered_from_retries.count, 0);
        assert_eq!(verdict.duplicates_from_retries.count, 1);
    }

    #[test]
    fn vanished_when_a_read_record_is_gone_or_replaced() {
        let mut observed = clean();
        // A reader saw an extra record at offset 8 (a tail later truncated) and, at offset 3, a
        // record the final read has not got there; a second reader saw the same offset 8 one.
        let mut first = final_records(&mut observed).clone();
        first[3] = stored(3, 0, 3);
        first.push(stored(8, 0, 3));
        observed.readers = vec![read_log(first), read_log(vec![stored(8, 0, 3)])];
        let verdict = check(observed);
        assert_eq!(verdict.vanished.count, 2, "{:?}", verdict.vanished);
        assert_eq!(verdict.read_by_readers, 10);
        assert!(verdict
            .vanished
            .examples
            .iter()
            .any(|e| e.offset == 8 && e.detail.contains("high watermark 8")));
        assert!(verdict
            .vanished
            .examples
            .iter()
            .any(|e| e.offset == 3 && e.detail.contains("producer 1 seq 1 is there instead")));
        assert_eq!(verdict.errors, vec!["vanished: 2".to_string()]);
    }

    #[test]
    fn corrupted_records_and_an_incomplete_final_read_are_errors() {
        let mut observed = clean();
        observed.readers[0].corrupted = 1;
        observed.final_read.complete = false;
        observed.readers[0].complete = false;
        let verdict = check(observed);
        assert_eq!(verdict.corrupted, 1);
        assert_eq!(verdict.readers_complete, 0);
        assert_eq!(verdict.errors.len(), 2, "{:?}", verdict.errors);
        assert!(verdict.errors[1].contains("final read incomplete"));
    }

    #[test]
    fn foreign_records_are_counted_not_checked() {
        let mut observed = clean();
        observed.final_read.foreign = 5;
        let verdict = check(observed);
        assert!(verdict.passed());
        assert_eq!(verdict.final_read_foreign, 5);
    }

    #[test]
    fn examples_are_bounded_and_counts_are_not() {
        let records = 1000u32;
        let final_read: Vec<Stored> = (0..records).map(|s| stored(s as i64, 0, s)).collect();
        let observed = Observed {
            records_per_producer: records,
            producers: vec![ProducerOutcome {
                idempotent: true,
                // Every acknowledgement names an offset 1 too high.
                acked: (0..records).map(|s| acked(s as i64 + 1, s)).collect(),
                ..ProducerOutcome::default()
            }],
            readers: Vec::new(),
            final_bounds: vec![PartitionBounds {
                partition: PARTITION,
                log_start: 0,
                high_watermark: records as i64,
            }],
            final_read: read_log(final_read),
        };
        let verdict = check(observed);
        assert_eq!(verdict.lost.count, records as u64);
        assert_eq!(verdict.lost.examples.len(), EXAMPLES_MAX);
    }
}
