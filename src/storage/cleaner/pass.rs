//! One cleaning pass over one log: size the dirty section, build the offset map, rewrite the
//! sealed segments below the map's end in groups, swap each group in.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::model::{Offset, ProducerId};

use super::super::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use super::super::config::CleanerConfig;
use super::super::error::StorageError;
use super::super::file_names::{
    CLEANED_MARKER_FILE, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use super::super::index::{OffsetIndex, TimeIndex};
use super::super::log::PartitionLog;
use super::super::segment::{Segment, NO_TIMESTAMP, SCAN_CHUNK_BYTES};
use super::rewrite::{self, BatchOutcome, FilterContext, FilterCounts, OffsetMap};
use super::swap::{self, staged_path, CleanedFile, SEGMENT_SUFFIXES};
use super::{cleanable_end, Throttle};

/// Cleaned bytes buffered before one write of the `.cleaned` file.
pub const CLEANER_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// What can be cleaned in a log now.
pub struct Cleanable {
    pub first_dirty: i64,
    /// The sealed segments from the log start up to the first one that may not be cleaned.
    pub segments: Vec<Rc<Segment>>,
    /// Offset after the last cleanable segment.
    pub end: i64,
    /// Dirty bytes / cleanable bytes.
    pub ratio: f64,
}

/// What a pass did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub segments_replaced: u64,
    /// The new first dirty offset (the checkpoint).
    pub next_dirty: i64,
    pub elapsed_ms: u64,
}

/// The cleanable section of `log`, if it is due for cleaning (Kafka's
/// `LogCleanerManager.cleanableOffsets` and the dirty-ratio / max-lag eligibility).
pub async fn cleanable(
    log: &PartitionLog,
    first_dirty: i64,
    now_ms: i64,
) -> Result<Option<Cleanable>, StorageError> {
    let cfg = log.config().compaction;
    let end_bound = cleanable_end(log);
    let hwm_segment = log.offsets.get().hwm_segment;
    let all: Vec<Rc<Segment>> = log.segments.borrow().values().cloned().collect();
    let mut segments = Vec::new();
    let mut end = log.log_start_offset().0;
    for pair in all.windows(2) {
        let (segment, next_base) = (&pair[0], pair[1].base_offset().0);
        if segment.is_active() || next_base > end_bound || segment.base_offset().0 >= hwm_segment {
            break;
        }
        if cfg.min_compaction_lag_ms > 0 {
            let ts = segment.largest_timestamp().await?;
            if ts != NO_TIMESTAMP && now_ms.saturating_sub(ts) < cfg.min_compaction_lag_ms {
                break;
            }
        }
        segments.push(segment.clone());
        end = next_base;
    }
    let dirty_from = segments
        .iter()
        .position(|s| next_base_of(&all, s) > first_dirty);
    let Some(dirty_from) = dirty_from else {
        return Ok(None);
    };
    let total: u64 = segments.iter().map(|s| s.size()).sum();
    let dirty: u64 = segments[dirty_from..].iter().map(|s| s.size()).sum();
    if total == 0 {
        return Ok(None);
    }
    let ratio = dirty as f64 / total as f64;
    let overdue = if cfg.max_compaction_lag_ms < i64::MAX {
        let ts = segments[dirty_from].largest_timestamp().await?;
        ts != NO_TIMESTAMP && now_ms.saturating_sub(ts) > cfg.max_compaction_lag_ms
    } else {
        false
    };
    if ratio < cfg.min_cleanable_dirty_ratio && !overdue {
        return Ok(None);
    }
    Ok(Some(Cleanable {
        first_dirty,
        segments,
        end,
        ratio,
    }))
}

fn next_base_of(all: &[Rc<Segment>], segment: &Rc<Segment>) -> i64 {
    let at = all.iter().position(|s| Rc::ptr_eq(s, segment));
    at.and_then(|i| all.get(i + 1))
        .map_or(i64::MAX, |s| s.base_offset().0)
}

/// Cleans `log` as far as the offset map reaches.
pub async fn clean(
    log: &PartitionLog,
    cleanable: &Cleanable,
    cfg: &CleanerConfig,
    now_ms: i64,
) -> Result<PassOutcome, StorageError> {
    let started = Instant::now();
    let truncations = log.truncations.get();
    let mut throttle = Throttle::new(cfg.io_max_bytes_per_second);
    let mut outcome = PassOutcome::default();
    let mut map = OffsetMap::with_memory(cfg.dedupe_buffer_bytes);
    let next_dirty = build_map(log, cleanable, &mut map, &mut throttle, &mut outcome).await?;
    outcome.next_dirty = next_dirty;
    let log_cfg = log.config();
    let to_clean: Vec<Rc<Segment>> = cleanable
        .segments
        .iter()
        .filter(|s| s.base_offset().0 < next_dirty)
        .cloned()
        .collect();
    let ctx = FilterContext {
        map: &map,
        now_ms,
        delete_retention_ms: log_cfg.compaction.delete_retention_ms,
    };
    let mut marked = false;
    for group in groups(&to_clean, log_cfg.segment_bytes) {
        let cleaned = write_cleaned(log, &group, &ctx, &mut throttle, &mut outcome).await?;
        if !marked {
            let marker = log.dir.join(CLEANED_MARKER_FILE);
            log.shard.io.write_file_atomic(&marker, Vec::new()).await?;
            marked = true;
        }
        if !swap_group(log, &group, cleaned, truncations).await? {
            tracing::info!(partition = %log.tp, "cleaner: the log changed during the pass; the cleaned copy is discarded");
            break;
        }
        outcome.segments_replaced += group.len() as u64;
    }
    outcome.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(outcome)
}

/// Puts the keys of the dirty section into `map`; returns the offset after the last batch put.
async fn build_map(
    log: &PartitionLog,
    cleanable: &Cleanable,
    map: &mut OffsetMap,
    throttle: &mut Throttle,
    outcome: &mut PassOutcome,
) -> Result<i64, StorageError> {
    let first_dirty = cleanable.first_dirty;
    let mut reached = first_dirty;
    for segment in &cleanable.segments {
        let mut reader = BatchReader::new(segment.clone());
        while let Some((_, bytes)) = reader.next().await? {
            let Some(header) = batch::parse_header(&bytes) else {
                break;
            };
            outcome.bytes_read += bytes.len() as u64;
            throttle.account(bytes.len() as u64).await;
            if header.last_offset() < first_dirty {
                continue;
            }
            if header.is_control() || header.is_transactional() || header.record_count == 0 {
                reached = header.last_offset() + 1;
                continue;
            }
            let room = usize::try_from(header.record_count).unwrap_or(usize::MAX);
            if !map.is_empty() && !map.has_room_for(room) {
                return Ok(reached);
            }
            let keys = rewrite::batch_records(&bytes, &header).and_then(|records| {
                rewrite::parse_records(&records, header.record_count).map(|v| (records, v))
            });
            match keys {
                Ok((records, views)) => {
                    for r in &views {
                        let offset = header.base_offset + i64::from(r.offset_delta);
                        if let (Some((s, e)), true) = (r.key, offset >= first_dirty) {
                            map.put(&records[s..e], offset);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = %log.tp, base = header.base_offset, error = %e, "cleaner: batch not decoded; its keys are not mapped");
                }
            }
            reached = header.last_offset() + 1;
            glommio::yield_if_needed().await;
        }
        reached = reached.max(next_base_after(log, segment));
    }
    Ok(reached.min(cleanable.end).max(first_dirty))
}

fn next_base_after(log: &PartitionLog, segment: &Segment) -> i64 {
    log.segments
        .borrow()
        .range(segment.base_offset().0 + 1..)
        .next()
        .map_or(segment.mark().next_offset, |(b, _)| *b)
}

/// Consecutive segments whose sizes add up to at most `segment_bytes` (at least one each) and
/// whose offsets fit the indexes' relative offsets (Kafka's `groupSegmentsBySize`).
fn groups(segments: &[Rc<Segment>], segment_bytes: u64) -> Vec<Vec<Rc<Segment>>> {
    let mut out: Vec<Vec<Rc<Segment>>> = Vec::new();
    let mut size = 0u64;
    for segment in segments {
        let fits = out.last().is_some_and(|g| {
            let span = segment.base_offset().0 - g[0].base_offset().0;
            size + segment.size() <= segment_bytes && span < i64::from(i32::MAX) / 2
        });
        if fits {
            size += segment.size();
            if let Some(g) = out.last_mut() {
                g.push(segment.clone());
            }
        } else {
            size = segment.size();
            out.push(vec![segment.clone()]);
        }
    }
    out
}

/// The cleaned copy of a group, written and synced under the `.cleaned` names.
struct Cleaned {
    base: i64,
    size: u64,
}

/// Filters every batch of the group into `<base>.log.cleaned` and writes its indexes.
async fn write_cleaned(
    log: &PartitionLog,
    group: &[Rc<Segment>],
    ctx: &FilterContext<'_>,
    throttle: &mut Throttle,
    outcome: &mut PassOutcome,
) -> Result<Cleaned, StorageError> {
    let io = log.shard.io.as_ref();
    let base = group[0].base_offset().0;
    let interval = log.config().index_interval_bytes;
    let mut file =
        CleanedFile::create(io, &staged_path(&log.dir, base, LOG_SUFFIX, CLEANED_SUFFIX)).await?;
    let mut indexes = IndexBuilder::new(base);
    let mut buffer: Vec<u8> = Vec::with_capacity(CLEANER_WRITE_BUFFER_BYTES);
    let mut counts = FilterCounts::default();
    for segment in group {
        let mut reader = BatchReader::new(segment.clone());
        while let Some((_, bytes)) = reader.next().await? {
            let Some(header) = batch::parse_header(&bytes) else {
                break;
            };
            let last_batch = is_producer_last_batch(log, &header);
            let kept: Option<Vec<u8>> =
                match rewrite::filter_batch(&bytes, &header, ctx, last_batch, &mut counts) {
                    BatchOutcome::Keep => Some(bytes.to_vec()),
                    BatchOutcome::Rebuilt(b) => Some(b),
                    BatchOutcome::Drop => None,
                };
            outcome.bytes_read += bytes.len() as u64;
            if let Some(kept) = kept {
                // Checked on this side of the disk too: what is written is a valid batch with
                // the same offsets.
                let written = batch::verify_batch(&kept);
                assert!(
                    written
                        .as_ref()
                        .is_ok_and(|h| h.base_offset == header.base_offset
                            && h.last_offset() == header.last_offset()),
                    "cleaned batch differs in offsets from batch {}",
                    header.base_offset
                );
                let position = file.written() + buffer.len() as u64;
                if let Ok(h) = written {
                    indexes.add(position, &h, interval);
                }
                throttle.account((bytes.len() + kept.len()) as u64).await;
                outcome.bytes_written += kept.len() as u64;
                buffer.extend_from_slice(&kept);
            } else {
                throttle.account(bytes.len() as u64).await;
            }
            if buffer.len() >= CLEANER_WRITE_BUFFER_BYTES {
                file.append(std::mem::take(&mut buffer)).await?;
            }
            glommio::yield_if_needed().await;
        }
    }
    file.append(buffer).await?;
    let size = file.written();
    file.finish().await?;
    let (offset_index, time_index) = indexes.finish();
    for (suffix, bytes) in [
        (INDEX_SUFFIX, offset_index.encode()),
        (TIME_INDEX_SUFFIX, time_index.encode()),
    ] {
        let mut f =
            CleanedFile::create(io, &staged_path(&log.dir, base, suffix, CLEANED_SUFFIX)).await?;
        f.append(bytes).await?;
        f.finish().await?;
    }
    outcome.records_read += counts.records_read;
    outcome.records_kept += counts.records_kept;
    Ok(Cleaned { base, size })
}

/// Whether the batch is the last one its idempotent producer has in the log (its metadata is
/// kept even when every record goes, so the producer's sequence continues).
fn is_producer_last_batch(log: &PartitionLog, header: &BatchHeader) -> bool {
    if header.producer_id < 0 {
        return false;
    }
    let producers = log.producers.borrow();
    producers
        .get(ProducerId(header.producer_id))
        .and_then(|e| e.batches.back())
        .is_some_and(|b| b.last_offset == header.last_offset())
}

/// Swaps the cleaned copy in, if the group is still what was cleaned. Returns `false` (files
/// discarded) when a deletion or truncation changed the log in the meantime.
async fn swap_group(
    log: &PartitionLog,
    group: &[Rc<Segment>],
    cleaned: Cleaned,
    truncations: u64,
) -> Result<bool, StorageError> {
    let io = log.shard.io.clone();
    let _delete = log.delete_lock.lock().await;
    let unchanged = {
        let segments = log.segments.borrow();
        group.iter().all(|s| {
            segments
                .get(&s.base_offset().0)
                .is_some_and(|live| Rc::ptr_eq(live, s))
        })
    };
    if !unchanged || log.truncations.get() != truncations || log.closed.get() || log.failed.get() {
        for suffix in SEGMENT_SUFFIXES {
            let path = staged_path(&log.dir, cleaned.base, suffix, CLEANED_SUFFIX);
            io.remove_file(&path).await?;
        }
        return Ok(false);
    }
    // Readers that hold these segments keep reading them through their open files.
    for segment in group {
        segment.log_file().await?;
        // The sendfile descriptor opens the real path outside the I/O seam (absent under the
        // fault layer); a fetch that fails to open it reads through the segment's log file.
        if let Err(e) = segment.send_file() {
            tracing::debug!(error = %e, "cleaner: sendfile descriptor not opened");
        }
    }
    let bases: Vec<i64> = group.iter().map(|s| s.base_offset().0).collect();
    if let Err(e) = swap::swap_in(io.as_ref(), &log.dir, cleaned.base, &bases).await {
        // Fail-stop: what is on disk is for recovery to complete; memory still has the old
        // segments (their files open).
        tracing::error!(partition = %log.tp, error = %e, "cleaned-segment swap failed: the log stops until it is recovered");
        log.failed.set(true);
        return Err(e.into());
    }
    let replacement = Rc::new(Segment::existing(
        io.clone(),
        &log.dir,
        Offset(cleaned.base),
        cleaned.size,
    ));
    let next = group
        .last()
        .map(|s| next_base_after(log, s))
        .unwrap_or(cleaned.base);
    replacement.set_next_offset(next);
    {
        let mut segments = log.segments.borrow_mut();
        for base in &bases {
            segments.remove(base);
        }
        segments.insert(cleaned.base, replacement);
    }
    tracing::debug!(partition = %log.tp, base = cleaned.base, replaced = bases.len(), size = cleaned.size, "cleaned segment swapped in");
    let delay_ms = log.config().file_delete_delay_ms;
    for segment in &group[1..] {
        let segment = segment.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
            if let Err(err) = segment.delete_marked_files().await {
                tracing::warn!(error = %err, "deleting replaced segment files");
            }
        })
        .detach();
    }
    Ok(true)
}

/// Builds a cleaned segment's sparse indexes as `Segment` does for appends.
struct IndexBuilder {
    base: i64,
    offsets: OffsetIndex,
    times: TimeIndex,
    since_last_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

impl IndexBuilder {
    fn new(base: i64) -> IndexBuilder {
        IndexBuilder {
            base,
            offsets: OffsetIndex::default(),
            times: TimeIndex::default(),
            since_last_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base,
        }
    }
    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base) as u32
    }
    fn add(&mut self, position: u64, header: &BatchHeader, interval: u64) {
        if self.since_last_entry > interval {
            self.offsets
                .append(self.relative(header.last_offset()), position as u32);
            if self.max_timestamp != NO_TIMESTAMP {
                self.times.maybe_append(
                    self.max_timestamp,
                    self.relative(self.offset_of_max_timestamp),
                );
            }
            self.since_last_entry = 0;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        self.since_last_entry += header.size_bytes() as u64;
    }
    /// The indexes with the final time entry a sealed segment has.
    fn finish(mut self) -> (OffsetIndex, TimeIndex) {
        if self.max_timestamp != NO_TIMESTAMP {
            let relative = self.relative(self.offset_of_max_timestamp);
            self.times.maybe_append(self.max_timestamp, relative);
        }
        (self.offsets, self.times)
    }
}

/// Whole batches of a sealed segment, front to back, read in chunks of `SCAN_CHUNK_BYTES`.
struct BatchReader {
    segment: Rc<Segment>,
    /// File position of `chunk[0]`.
    chunk_position: u64,
    chunk: Bytes,
    at: usize,
}

impl BatchReader {
    fn new(segment: Rc<Segment>) -> BatchReader {
        BatchReader {
            segment,
            chunk_position: 0,
            chunk: Bytes::new(),
            at: 0,
        }
    }

    /// The next batch (position, bytes), CRC checked; `None` at the end. A defect is an error:
    /// sealed segments below the high watermark were verified when written.
    async fn next(&mut self) -> io::Result<Option<(u64, Bytes)>> {
        let size = self.segment.size();
        let position = self.chunk_position + self.at as u64;
        if position >= size {
            return Ok(None);
        }
        let rest = &self.chunk[self.at..];
        let whole = batch::declared_size(rest)
            .filter(|n| *n <= rest.len() && rest.len() >= BATCH_HEADER_BYTES);
        if whole.is_none() {
            let want = (size - position).min(SCAN_CHUNK_BYTES as u64) as usize;
            let mut chunk = self.segment.read(position, want).await?;
            if let Some(n) = batch::declared_size(&chunk)
                .filter(|n| *n > chunk.len() && *n <= batch::BATCH_BYTES_MAX)
            {
                chunk = self.segment.read(position, n).await?;
            }
            self.chunk = chunk;
            self.chunk_position = position;
            self.at = 0;
        }
        let rest = &self.chunk[self.at..];
        match batch::verify_batch(rest) {
            Ok(header) => {
                let n = header.size_bytes();
                let out = self.chunk.slice(self.at..self.at + n);
                self.at += n;
                Ok(Some((position, out)))
            }
            Err(defect) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "segment {} position {position}: {defect:?}",
                    self.segment.base_offset()
                ),
            )),
        }
    }
}
