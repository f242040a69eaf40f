//! DumpLogSegments' output, parsed, and the checks of it against what the consumer read and
//! against Kafka's meaning of each file (part of tests/kafka_tools.rs).

use std::collections::HashMap;

use rdkafka::Timestamp;

use super::common::Record;
use super::{Checks, SegmentFiles, ToolOutput};

// ---- DumpLogSegments' output -----------------------------------------------------------------

/// What DumpLogSegments printed for each file, by the path it was given.
#[derive(Default)]
pub(crate) struct Dump {
    logs: HashMap<String, LogDump>,
    indexes: HashMap<String, Vec<(i64, u64)>>,
    time_indexes: HashMap<String, Vec<(i64, i64)>>,
}

#[derive(Default)]
struct LogDump {
    starting_offset: Option<i64>,
    batches: Vec<DumpedBatch>,
    /// Lines that are neither a batch nor a record (e.g. "Found N invalid bytes").
    other: Vec<String>,
}

#[derive(Debug)]
struct DumpedBatch {
    fields: HashMap<String, String>,
    records: Vec<DumpedRecord>,
}

impl DumpedBatch {
    fn int(&self, name: &str) -> i64 {
        self.fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("batch line without an integer {name}: {:?}", self.fields))
    }
}

#[derive(Debug)]
struct DumpedRecord {
    offset: i64,
    create_time: i64,
    key_size: i64,
    value_size: i64,
    header_keys: Vec<String>,
    key: Option<String>,
    payload: Option<String>,
}

pub(crate) fn parse_dump(output: &ToolOutput) -> Dump {
    enum Current {
        None,
        Log(String),
        Index(String),
        TimeIndex(String),
    }
    let mut dump = Dump::default();
    let mut current = Current::None;
    for line in output.stdout.lines() {
        if let Some(path) = line.strip_prefix("Dumping ") {
            let path = path.to_string();
            current = if path.ends_with(".log") {
                dump.logs.insert(path.clone(), LogDump::default());
                Current::Log(path)
            } else if path.ends_with(".timeindex") {
                dump.time_indexes.insert(path.clone(), Vec::new());
                Current::TimeIndex(path)
            } else {
                dump.indexes.insert(path.clone(), Vec::new());
                Current::Index(path)
            };
            continue;
        }
        match &current {
            Current::None => fail!(output, "unexpected DumpLogSegments line {line:?}"),
            Current::Log(path) => {
                let log = dump.logs.get_mut(path).expect("log");
                if let Some(offset) = line.strip_prefix("Log starting offset: ") {
                    log.starting_offset = offset.parse().ok();
                } else if line.starts_with("baseOffset: ") {
                    log.batches.push(DumpedBatch {
                        fields: fields(line),
                        records: Vec::new(),
                    });
                } else if let Some(rest) = line.strip_prefix("| ") {
                    let record = parse_record(rest).unwrap_or_else(|| {
                        fail!(output, "unexpected DumpLogSegments line {line:?}")
                    });
                    match log.batches.last_mut() {
                        Some(batch) => batch.records.push(record),
                        None => fail!(output, "unexpected DumpLogSegments line {line:?}"),
                    }
                } else {
                    log.other.push(line.to_string());
                }
            }
            Current::Index(path) => {
                let f = fields(line);
                let entry = f.get("offset").zip(f.get("position"));
                let entry = entry.and_then(|(o, p)| Some((o.parse().ok()?, p.parse().ok()?)));
                let entry = entry
                    .unwrap_or_else(|| fail!(output, "unexpected DumpLogSegments line {line:?}"));
                dump.indexes.get_mut(path).expect("index").push(entry);
            }
            Current::TimeIndex(path) => {
                let f = fields(line);
                let entry = f.get("timestamp").zip(f.get("offset"));
                let entry = entry.and_then(|(t, o)| Some((t.parse().ok()?, o.parse().ok()?)));
                let entry = entry
                    .unwrap_or_else(|| fail!(output, "unexpected DumpLogSegments line {line:?}"));
                dump.time_indexes
                    .get_mut(path)
                    .expect("time index")
                    .push(entry);
            }
        }
    }
    dump
}

/// `name: value name: value ...` with single-word values.
fn fields(line: &str) -> HashMap<String, String> {
    let words: Vec<&str> = line.split(' ').collect();
    words
        .chunks(2)
        .filter_map(|pair| match pair {
            [name, value] => Some((name.trim_end_matches(':').to_string(), value.to_string())),
            _ => None,
        })
        .collect()
}

/// `offset: O CreateTime: T keySize: K valueSize: V sequence: S headerKeys: [a,b]` then
/// ` key: <key>` when there is a key and ` payload: <value>` when there is a value (keys and
/// values here have no " payload: " inside and no newline).
fn parse_record(line: &str) -> Option<DumpedRecord> {
    let (meta, data) = match line.find(" headerKeys: [") {
        Some(at) => {
            let close = at + line[at..].find(']')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => return None,
    };
    let f = fields(meta);
    let int = |name: &str| f.get(name).and_then(|v| v.parse::<i64>().ok());
    let header_keys = f.get("headerKeys")?;
    let header_keys = header_keys.strip_prefix('[')?.strip_suffix(']')?;
    let header_keys = if header_keys.is_empty() {
        Vec::new()
    } else {
        header_keys.split(',').map(str::to_string).collect()
    };
    let (key, payload) = match data.split_once(" payload: ") {
        Some((key, payload)) => (key, Some(payload.to_string())),
        None => (data, None),
    };
    let key = key.strip_prefix(" key: ").map(str::to_string);
    Some(DumpedRecord {
        offset: int("offset")?,
        create_time: int("CreateTime")?,
        key_size: int("keySize")?,
        value_size: int("valueSize")?,
        header_keys,
        key,
        payload,
    })
}

// ---- the checks ------------------------------------------------------------------------------

/// Every batch and record of every segment against what the consumer read.
pub(crate) fn check_log_dump(
    dump: &Dump,
    segments: &[SegmentFiles],
    consumed: &[Record],
    codec_of_offset: &[&str],
    output: &ToolOutput,
) {
    let mut next_offset = 0i64;
    for segment in segments {
        let path = segment.log.display().to_string();
        let Some(log) = dump.logs.get(&path) else {
            fail!(output, "no dump of {path}")
        };
        if log.starting_offset != Some(segment.base) || !log.other.is_empty() {
            fail!(
                output,
                "{path}: starting offset {:?} (want {}), other lines {:?}",
                log.starting_offset,
                segment.base,
                log.other
            );
        }
        let mut position = 0i64;
        for batch in &log.batches {
            let (base, last) = (batch.int("baseOffset"), batch.int("lastOffset"));
            let codec = codec_of_offset.get(base as usize).copied().unwrap_or("?");
            let want = [
                ("baseOffset", next_offset.to_string()),
                ("count", (last - base + 1).to_string()),
                ("position", position.to_string()),
                ("magic", "2".to_string()),
                ("isvalid", "true".to_string()),
                ("compresscodec", codec.to_string()),
                ("isTransactional", "false".to_string()),
                ("isControl", "false".to_string()),
            ];
            for (name, value) in want {
                if batch.fields.get(name) != Some(&value) {
                    fail!(
                        output,
                        "{path}: batch {base}: {name} is {:?}, want {value}",
                        batch.fields.get(name)
                    );
                }
            }
            let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
            if offsets != (base..=last).collect::<Vec<_>>() {
                fail!(
                    output,
                    "{path}: batch {base}..={last} holds offsets {offsets:?}"
                );
            }
            let max_timestamp = batch.records.iter().map(|r| r.create_time).max();
            if max_timestamp != Some(batch.int("CreateTime")) {
                fail!(
                    output,
                    "{path}: batch {base}: max timestamp {:?}, records' max {max_timestamp:?}",
                    batch.fields.get("CreateTime")
                );
            }
            for record in &batch.records {
                check_record(record, consumed.get(record.offset as usize), output);
            }
            next_offset = last + 1;
            position += batch.int("size");
        }
        let file_size = std::fs::metadata(&segment.log)
            .map(|m| m.len())
            .unwrap_or(0);
        if position as u64 != file_size {
            fail!(
                output,
                "{path}: batches cover {position} bytes of {file_size}"
            );
        }
    }
    if next_offset != consumed.len() as i64 {
        fail!(
            output,
            "the dump ends at offset {next_offset}, the consumer read {}",
            consumed.len()
        );
    }
}

fn check_record(record: &DumpedRecord, consumed: Option<&Record>, output: &ToolOutput) {
    let Some(want) = consumed else {
        fail!(output, "dumped offset {} was not consumed", record.offset)
    };
    let text = |bytes: &Option<Vec<u8>>| {
        bytes
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let size = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(-1, |b| b.len() as i64);
    let header_keys: Vec<String> = want.headers.iter().map(|h| h.0.clone()).collect();
    let agrees = want.offset == record.offset
        && want.timestamp == Timestamp::CreateTime(record.create_time)
        && record.key == text(&want.key)
        && record.payload == text(&want.value)
        && record.key_size == size(&want.key)
        && record.value_size == size(&want.value)
        && record.header_keys == header_keys;
    if !agrees {
        fail!(
            output,
            "offset {}: dumped {record:?}, consumed {want:?}",
            record.offset
        );
    }
}

/// Kafka's meaning of an offset index entry: (the last offset of the batch at `position`,
/// `position`), at a batch boundary. DumpLogSegments reports a disagreement on stderr as
/// "Mismatches in :<file>" with "  Index offset: I, log offset: L" lines.
pub(crate) fn check_indexes(
    dump: &Dump,
    segments: &[SegmentFiles],
    output: &ToolOutput,
    checks: &mut Checks,
) {
    let mut kafka_meaning = true;
    let mut entries_total = 0;
    for segment in segments {
        let path = segment.index.display().to_string();
        let log = &dump.logs[&segment.log.display().to_string()];
        let Some(entries) = dump.indexes.get(&path) else {
            fail!(output, "no dump of {path}")
        };
        let mut batch_at: HashMap<u64, (i64, i64)> = HashMap::new();
        for batch in &log.batches {
            batch_at.insert(
                batch.int("position") as u64,
                (batch.int("baseOffset"), batch.int("lastOffset")),
            );
        }
        let mut previous: Option<(i64, u64)> = None;
        for &(offset, position) in entries {
            let Some(&(base, last)) = batch_at.get(&position) else {
                fail!(
                    output,
                    "{path}: entry ({offset}, {position}) is not at a batch boundary"
                )
            };
            if offset < base
                || offset > last
                || previous.is_some_and(|(o, p)| o >= offset || p >= position)
            {
                fail!(output, "{path}: entry ({offset}, {position}) for batch {base}..={last} after {previous:?}");
            }
            kafka_meaning &= offset == last;
            previous = Some((offset, position));
        }
        entries_total += entries.len();
    }
    if entries_total == 0 {
        fail!(
            output,
            "no offset index entries at all: index.interval.bytes was not honoured"
        );
    }
    // Kafka's own report of the same check; its only lines are the mismatch lists.
    let mismatches = output
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.starts_with("Mismatches in :") || l.starts_with("  Index offset: "));
    if !mismatches {
        fail!(
            output,
            "DumpLogSegments printed errors other than index mismatches"
        );
    }
    let reported = output.stderr.contains("Mismatches in :");
    checks.known("index-entry-offset", kafka_meaning && !reported, || {
        output.text.clone()
    });
}

/// Kafka's meaning of a time index entry: (the largest timestamp so far in the segment, the last
/// offset of the batch holding it), strictly increasing; the last entry of a closed segment
/// carries the segment's largest timestamp. DumpLogSegments checks the first part itself and
/// reports "Found timestamp mismatch" / "Found out of order timestamp" / "indexed offsets are
/// not found" on stderr (which `check_indexes` has already required to be free of them).
pub(crate) fn check_time_indexes(dump: &Dump, segments: &[SegmentFiles], output: &ToolOutput) {
    for segment in segments {
        let path = segment.time_index.display().to_string();
        let log = &dump.logs[&segment.log.display().to_string()];
        let Some(entries) = dump.time_indexes.get(&path) else {
            fail!(output, "no dump of {path}")
        };
        // last offset of each batch -> the segment's max timestamp up to and including it
        let mut max_so_far = HashMap::new();
        let mut max = i64::MIN;
        for batch in &log.batches {
            max = max.max(batch.int("CreateTime"));
            max_so_far.insert(batch.int("lastOffset"), max);
        }
        let mut previous: Option<(i64, i64)> = None;
        for &(timestamp, offset) in entries {
            if max_so_far.get(&offset) != Some(&timestamp)
                || previous.is_some_and(|(t, o)| t >= timestamp || o >= offset)
            {
                fail!(output, "{path}: entry ({timestamp}, {offset}) after {previous:?}: not (max timestamp so far, last offset of its batch)");
            }
            previous = Some((timestamp, offset));
        }
        if previous.map(|p| p.0) != Some(max) {
            fail!(
                output,
                "{path}: last entry {previous:?}, the segment's max timestamp is {max}"
            );
        }
    }
}
