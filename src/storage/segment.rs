//! One segment: a `.log` of v2 batches plus its sparse `.index` and `.timeindex`.
//!
//! The active segment (the last one of a partition) appends through an [`Appender`] and keeps its
//! indexes in memory, writing them to their files (preallocated to `segment.index.bytes`) at
//! checkpoints and trimmed at seal. Sealed segments are immutable; their indexes and log file are
//! loaded on first use, so an idle partition holds only a few small structs per segment.
//! Lives on the shard owning the partition.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::model::Offset;

use super::appender::{align_down, append_alignment, Appender, PendingWrite};
use super::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use super::file_names::{
    offset_file_path, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX,
};
use super::index::{OffsetIndex, TimeIndex, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};
use super::io::{FileKind, IoFile, StorageIo};

mod cut;
pub use cut::SegmentCut;

/// Bytes read per I/O when scanning a segment during recovery.
pub const SCAN_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes read per I/O when loading an index file (a multiple of both entry sizes).
const INDEX_READ_CHUNK_BYTES: usize = 96 * 1024;
const _: () = assert!(
    INDEX_READ_CHUNK_BYTES.is_multiple_of(OFFSET_INDEX_ENTRY_BYTES)
        && INDEX_READ_CHUNK_BYTES.is_multiple_of(TIME_INDEX_ENTRY_BYTES)
);
const _: () = assert!(SCAN_CHUNK_BYTES >= BATCH_HEADER_BYTES);
/// No timestamp known (Kafka's NO_TIMESTAMP).
pub const NO_TIMESTAMP: i64 = -1;

/// Segment metadata at one point of its history; the rollback target after a failed write.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SegmentMark {
    /// Logical bytes of valid batches.
    pub size: u64,
    /// Last offset + 1 (the base offset when empty).
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    pub bytes_since_last_index: u64,
    /// Max timestamp of the first batch: segment.ms rolls count from it (Kafka's
    /// `rollingBasedTimestamp`); a negative one (no timestamps) counts as none.
    pub rolling_timestamp: Option<i64>,
}

struct SegmentState {
    current: SegmentMark,
    /// As of the last successful write (active segment).
    committed: SegmentMark,
    /// As of the write in flight.
    dispatched: SegmentMark,
    offset_index: Option<OffsetIndex>,
    time_index: Option<TimeIndex>,
    appender: Option<Appender>,
    max_timestamp_known: bool,
}

/// Outcome of scanning a segment during recovery.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ScanOutcome {
    pub valid_bytes: u64,
    pub scanned_bytes: u64,
    /// The bytes after `valid_bytes` were not a valid batch (torn, corrupt, or zero tail).
    pub truncated: bool,
}

pub struct Segment {
    base_offset: Offset,
    dir: PathBuf,
    io: Rc<dyn StorageIo>,
    log: RefCell<Option<Rc<dyn IoFile>>>,
    /// Read-only page-cache descriptor for sendfile, opened on the first fetch and kept: a
    /// fetch would otherwise open and close the file for every partition it reads.
    send_file: RefCell<Option<std::sync::Arc<std::fs::File>>>,
    state: RefCell<SegmentState>,
    /// Wall clock when this segment object was made (Kafka's `LogSegment.created`): the
    /// segment.ms clock for a segment whose first batch carries no timestamp.
    created_ms: i64,
    /// This segment's draw for `segment.jitter.ms` (Kafka draws one jitter per segment).
    roll_jitter_draw: u64,
}

impl Segment {
    /// A new, empty active segment; index files are created and preallocated.
    pub async fn create(
        io: Rc<dyn StorageIo>,
        dir: &Path,
        base_offset: Offset,
        index_bytes: u64,
    ) -> io::Result<Rc<Segment>> {
        let log_path = offset_file_path(dir, base_offset, LOG_SUFFIX);
        let log = io.open(&log_path, FileKind::Direct, true).await?;
        log.truncate(0).await?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let file = io
                .open(
                    &offset_file_path(dir, base_offset, suffix),
                    FileKind::Buffered,
                    true,
                )
                .await?;
            file.truncate(0).await?;
            file.truncate(index_bytes).await?;
        }
        let segment = Segment::new(io, dir, base_offset, 0);
        {
            let mut state = segment.state.borrow_mut();
            state.offset_index = Some(OffsetIndex::default());
            state.time_index = Some(TimeIndex::default());
            let alignment = append_alignment(log.alignment(), log.physical_block_size());
            state.appender = Some(Appender::new(alignment, 0, Vec::new()));
        }
        *segment.log.borrow_mut() = Some(log);
        Ok(Rc::new(segment))
    }

    /// An existing segment of `size` logical bytes, not yet loaded.
    pub fn existing(io: Rc<dyn StorageIo>, dir: &Path, base_offset: Offset, size: u64) -> Segment {
        Segment::new(io, dir, base_offset, size)
    }

    fn new(io: Rc<dyn StorageIo>, dir: &Path, base_offset: Offset, size: u64) -> Segment {
        let mark = SegmentMark {
            size,
            next_offset: base_offset.0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset.0,
            bytes_since_last_index: 0,
            rolling_timestamp: None,
        };
        Segment {
            base_offset,
            dir: dir.to_owned(),
            io,
            log: RefCell::new(None),
            send_file: RefCell::new(None),
            created_ms: super::flush::wall_clock_ms(),
            roll_jitter_draw: u64::from(uuid::Uuid::new_v4().as_u128() as u32),
            state: RefCell::new(SegmentState {
                current: mark,
                committed: mark,
                dispatched: mark,
                offset_index: None,
                time_index: None,
                appender: None,
                max_timestamp_known: false,
            }),
        }
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }
    pub fn mark(&self) -> SegmentMark {
        self.state.borrow().current
    }
    pub fn committed_mark(&self) -> SegmentMark {
        self.state.borrow().committed
    }
    pub fn size(&self) -> u64 {
        self.state.borrow().current.size
    }
    pub fn is_active(&self) -> bool {
        self.state.borrow().appender.is_some()
    }
    pub fn index_entries(&self) -> (usize, usize) {
        let state = self.state.borrow();
        let offsets = state.offset_index.as_ref().map_or(0, OffsetIndex::len);
        let times = state.time_index.as_ref().map_or(0, TimeIndex::len);
        (offsets, times)
    }
    pub fn path(&self, suffix: &str) -> PathBuf {
        offset_file_path(&self.dir, self.base_offset, suffix)
    }

    /// The log file, opened on first use.
    pub async fn log_file(&self) -> io::Result<Rc<dyn IoFile>> {
        if let Some(file) = self.log.borrow().as_ref() {
            return Ok(file.clone());
        }
        let file = self
            .io
            .open(&self.path(LOG_SUFFIX), FileKind::Direct, false)
            .await?;
        *self.log.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// Loads the index files of a sealed segment (no-op when loaded). A sealed segment's max
    /// timestamp comes from its time index's last entry (written at seal).
    pub async fn ensure_indexes(&self) -> io::Result<()> {
        if self.state.borrow().offset_index.is_some() {
            return Ok(());
        }
        let offsets = self.read_whole(INDEX_SUFFIX).await?;
        let times = self.read_whole(TIME_INDEX_SUFFIX).await?;
        let mut offset_index = OffsetIndex::decode(&offsets);
        let time_index = TimeIndex::decode(&times);
        // Sanity: an entry pointing past the end of the log is dropped (lookups then scan from
        // the last valid entry); recovery rebuilds missing index files.
        let size = self.size();
        offset_index.truncate_to_position(u32::try_from(size).unwrap_or(u32::MAX));
        let mut state = self.state.borrow_mut();
        if state.offset_index.is_some() {
            return Ok(());
        }
        if let Some((ts, rel)) = time_index.last() {
            state.current.max_timestamp = ts;
            state.current.offset_of_max_timestamp = self.base_offset.0 + i64::from(rel);
            state.committed = state.current;
        }
        state.offset_index = Some(offset_index);
        state.time_index = Some(time_index);
        Ok(())
    }

    /// Reads an index file up to its first all-zero entry (the preallocated padding of an
    /// active segment's index is never read in full). Absent file = no entries.
    async fn read_whole(&self, suffix: &str) -> io::Result<Vec<u8>> {
        let entry_bytes = if suffix == INDEX_SUFFIX {
            OFFSET_INDEX_ENTRY_BYTES
        } else {
            TIME_INDEX_ENTRY_BYTES
        };
        let file = match self
            .io
            .open(&self.path(suffix), FileKind::Buffered, false)
            .await
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let size = file.file_size().await?;
        let mut out = Vec::new();
        while (out.len() as u64) < size {
            let chunk = file
                .read_at(out.len() as u64, INDEX_READ_CHUNK_BYTES)
                .await?;
            if chunk.is_empty() {
                break;
            }
            let padding = chunk
                .chunks_exact(entry_bytes)
                .position(|e| e.iter().all(|b| *b == 0));
            match padding {
                Some(entry) => {
                    out.extend_from_slice(&chunk[..entry * entry_bytes]);
                    break;
                }
                None => out.extend_from_slice(&chunk),
            }
        }
        Ok(out)
    }

    /// segment.bytes / segment.ms / full index / relative-offset overflow (Kafka's shouldRoll).
    /// `max_timestamp` is the incoming batches' largest timestamp (the append time under
    /// LogAppendTime).
    pub fn should_roll(
        &self,
        batch_bytes: u64,
        now_ms: i64,
        max_timestamp: i64,
        last_offset: i64,
        cfg: &RollLimits,
    ) -> bool {
        let state = self.state.borrow();
        let mark = &state.current;
        if mark.size == 0 {
            return false;
        }
        let index_full = state
            .offset_index
            .as_ref()
            .is_some_and(|i| i.len() >= cfg.offset_entries_max)
            || state
                .time_index
                .as_ref()
                .is_some_and(|i| i.len() >= cfg.time_entries_max);
        let too_old = cfg.segment_ms.is_some_and(|ms| {
            let waited = self.time_waited_for_roll(mark, now_ms, max_timestamp);
            waited > ms.min(i64::MAX as u64) as i64 - self.roll_jitter_ms(ms, cfg) as i64
        });
        mark.size + batch_bytes > cfg.segment_bytes
            || index_full
            || too_old
            || last_offset - self.base_offset.0 > i64::from(i32::MAX)
    }

    /// Kafka's `timeWaitedForRoll`: the incoming timestamp minus the first batch's, so a
    /// backfill of old timestamps fills segments as usual; the segment's age when its first
    /// batch has no timestamp. A record older than the first batch never rolls.
    fn time_waited_for_roll(&self, mark: &SegmentMark, now_ms: i64, max_timestamp: i64) -> i64 {
        match mark.rolling_timestamp.filter(|first| *first >= 0) {
            Some(first) => max_timestamp.saturating_sub(first),
            None => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// Kafka's `randomSegmentJitter`: uniform in [0, min(segment.jitter.ms, segment.ms)).
    fn roll_jitter_ms(&self, segment_ms: u64, cfg: &RollLimits) -> u64 {
        match cfg.segment_jitter_ms.min(segment_ms) {
            0 => 0,
            bound => self.roll_jitter_draw % bound,
        }
    }

    /// Copies `records` (whole batches, positions and headers in `batches`) into the append
    /// buffer once, then assigns offsets from the segment's next offset, applies LogAppendTime,
    /// and updates indexes. Returns the headers as stored.
    pub fn append(
        &self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        edit: &BatchEdit,
        interval: u64,
    ) -> Vec<BatchHeader> {
        let file = self.log.borrow().clone();
        let Some(file) = file else {
            panic!("append to a segment without an open log file");
        };
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let Some(appender) = state.appender.as_mut() else {
            panic!("append to a sealed segment");
        };
        assert_eq!(appender.end(), state.current.size);
        let start = state.current.size;
        let copy = appender.append(file.as_ref(), records);
        let mut next_offset = state.current.next_offset;
        let mut stored = Vec::with_capacity(batches.len());
        for (at, header) in batches {
            let mut header = *header;
            let batch = &mut copy[*at..*at + header.size_bytes()];
            header.base_offset = next_offset;
            batch::set_base_offset(batch, header.base_offset);
            if let Some(epoch) = edit.leader_epoch {
                batch::set_partition_leader_epoch(batch, epoch);
                header.partition_leader_epoch = epoch;
            }
            if let Some(now_ms) = edit.log_append_time_ms {
                batch::set_log_append_time(batch, now_ms);
                header.set_log_append_time(now_ms);
            }
            next_offset = header.last_offset() + 1;
            stored.push((*at, header));
        }
        for (at, header) in &stored {
            Self::record_batch(
                state,
                self.base_offset,
                start + *at as u64,
                header,
                interval,
            );
        }
        stored.into_iter().map(|(_, h)| h).collect()
    }

    /// Index and metadata bookkeeping for one batch at `position` (append and recovery).
    fn record_batch(
        state: &mut SegmentState,
        base: Offset,
        position: u64,
        header: &BatchHeader,
        interval: u64,
    ) {
        let mark = &mut state.current;
        // Appends are contiguous; a cleaned segment (storage::cleaner) has gaps between batches.
        assert!(
            header.base_offset >= mark.next_offset,
            "offsets must increase: batch {} after {}",
            header.base_offset,
            mark.next_offset
        );
        assert_eq!(position, mark.size);
        let relative = |offset: i64| (offset - base.0) as u32;
        if mark.bytes_since_last_index > interval {
            if let Some(index) = state.offset_index.as_mut() {
                // Kafka's meaning of an entry (LogSegment.append): the batch's last offset.
                index.append(relative(header.last_offset()), position as u32);
            }
            if let Some(index) = state.time_index.as_mut() {
                if mark.max_timestamp != NO_TIMESTAMP {
                    index.maybe_append(mark.max_timestamp, relative(mark.offset_of_max_timestamp));
                }
            }
            mark.bytes_since_last_index = 0;
        }
        if header.max_timestamp > mark.max_timestamp {
            mark.max_timestamp = header.max_timestamp;
            mark.offset_of_max_timestamp = header.last_offset();
        }
        if mark.rolling_timestamp.is_none() {
            mark.rolling_timestamp = Some(header.max_timestamp);
        }
        let size = header.size_bytes() as u64;
        mark.bytes_since_last_index += size;
        mark.size += size;
        mark.next_offset = header.last_offset() + 1;
    }

    /// The next write of queued bytes, if any.
    /// Whether appended bytes wait to be written.
    pub fn has_queued_write(&self) -> bool {
        self.state
            .borrow()
            .appender
            .as_ref()
            .is_some_and(|a| a.has_queued_write())
    }

    pub fn take_write(&self) -> Option<(Rc<dyn IoFile>, PendingWrite, SegmentMark)> {
        let file = self.log.borrow().clone()?;
        let mut state = self.state.borrow_mut();
        let write = state.appender.as_mut()?.take_write()?;
        assert_eq!(write.end, state.current.size);
        state.dispatched = state.current;
        Some((file, write, state.current))
    }

    /// Largest timestamp of a sealed segment without keeping its indexes in memory.
    pub async fn largest_timestamp(&self) -> io::Result<i64> {
        {
            let state = self.state.borrow();
            if state.offset_index.is_some() || state.max_timestamp_known {
                return Ok(state.current.max_timestamp);
            }
        }
        let times = TimeIndex::decode(&self.read_whole(TIME_INDEX_SUFFIX).await?);
        let mut state = self.state.borrow_mut();
        if let Some((ts, rel)) = times.last() {
            state.current.max_timestamp = ts;
            state.current.offset_of_max_timestamp = self.base_offset.0 + i64::from(rel);
            state.committed = state.current;
            state.dispatched = state.current;
        }
        state.max_timestamp_known = true;
        Ok(state.current.max_timestamp)
    }

    /// The write handed out by `take_write` completed in full.
    pub fn write_succeeded(&self, end: u64) {
        let mut state = self.state.borrow_mut();
        assert_eq!(state.dispatched.size, end);
        state.committed = state.dispatched;
        if let Some(appender) = state.appender.as_mut() {
            appender.write_succeeded(end);
        }
    }

    /// A write failed: forget every batch after the last successful write.
    pub fn rollback(&self) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.current = state.committed;
        state.dispatched = state.committed;
        if let Some(appender) = state.appender.as_mut() {
            appender.rollback();
            assert_eq!(appender.end(), state.current.size);
        }
        let relative = (state.current.next_offset - self.base_offset.0) as u32;
        if let Some(index) = state.offset_index.as_mut() {
            index.truncate_to_offset(relative);
        }
        if let Some(index) = state.time_index.as_mut() {
            index.truncate_to_offset(relative);
        }
    }

    /// Reads `len` bytes at `position` of the log.
    pub async fn read(&self, position: u64, len: usize) -> io::Result<Bytes> {
        let file = self.log_file().await?;
        let bytes = file.read_at(position, len).await?;
        if bytes.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment shorter than its index",
            ));
        }
        Ok(bytes)
    }

    /// Position of the offset index entry at or below `offset` (0 when none). Indexes loaded.
    pub fn index_position(&self, offset: i64) -> u64 {
        let relative =
            (offset.max(self.base_offset.0) - self.base_offset.0).min(i64::from(u32::MAX)) as u32;
        let state = self.state.borrow();
        u64::from(
            state
                .offset_index
                .as_ref()
                .map_or(0, |index| index.lookup(relative).1),
        )
    }

    /// The first batch whose last offset is >= `offset`, scanning from the offset index entry
    /// at or below it, stopping at `limit` bytes.
    pub async fn find_batch(
        &self,
        offset: i64,
        limit: u64,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        self.ensure_indexes().await?;
        let relative =
            (offset.max(self.base_offset.0) - self.base_offset.0).min(i64::from(u32::MAX)) as u32;
        let (_, start) = self
            .state
            .borrow()
            .offset_index
            .as_ref()
            .map_or((0, 0), |index| index.lookup(relative));
        self.scan_headers(u64::from(start), limit, |h| h.last_offset() >= offset)
            .await
    }

    /// The first batch whose max timestamp is >= `timestamp` (within `limit` bytes).
    pub async fn find_timestamp(
        &self,
        timestamp: i64,
        limit: u64,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        self.ensure_indexes().await?;
        let start = {
            let state = self.state.borrow();
            let relative = state
                .time_index
                .as_ref()
                .and_then(|i| i.lookup(timestamp))
                .map_or(0, |e| e.1);
            state
                .offset_index
                .as_ref()
                .map_or(0, |i| i.lookup(relative).1)
        };
        self.scan_headers(u64::from(start), limit, |h| h.max_timestamp >= timestamp)
            .await
    }

    /// Batch headers from `position` up to `limit` bytes, until `found` says stop.
    pub(super) async fn scan_headers(
        &self,
        mut position: u64,
        limit: u64,
        found: impl Fn(&BatchHeader) -> bool,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        while position + BATCH_HEADER_BYTES as u64 <= limit {
            let bytes = self.read(position, BATCH_HEADER_BYTES).await?;
            let Some(header) = batch::parse_header(&bytes) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short batch header",
                ));
            };
            if header.batch_length <= 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad batch length",
                ));
            }
            if found(&header) {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// Writes both index files (entries, then preallocated size or trimmed) and fdatasyncs them.
    pub async fn write_indexes(&self, trim: bool, index_bytes: u64) -> io::Result<()> {
        let (offsets, times) = {
            let state = self.state.borrow();
            let offsets = state.offset_index.as_ref().map(OffsetIndex::encode);
            let times = state.time_index.as_ref().map(TimeIndex::encode);
            (offsets, times)
        };
        for (suffix, bytes) in [(INDEX_SUFFIX, offsets), (TIME_INDEX_SUFFIX, times)] {
            let Some(bytes) = bytes else { continue };
            let file = self
                .io
                .open(&self.path(suffix), FileKind::Buffered, true)
                .await?;
            let len = bytes.len() as u64;
            let buf = super::io::IoBuffer::Heap(bytes);
            if len > 0 && file.write_at(buf, 0).await? as u64 != len {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "short index write",
                ));
            }
            // Cut at the entries first, then (not trimming) extend again: the extension reads
            // as zeros, so no entry of an earlier, longer write survives past the new ones.
            file.truncate(len).await?;
            if !trim && index_bytes > len {
                file.truncate(index_bytes).await?;
            }
            file.fdatasync().await?;
        }
        Ok(())
    }

    /// Seals the active segment: everything must be written already. Truncates the `.log` to its
    /// logical size (no zero padding), adds the final time index entry, trims the indexes.
    pub async fn seal(&self, index_bytes: u64) -> io::Result<()> {
        self.close_active(index_bytes).await?;
        self.state.borrow_mut().appender = None;
        Ok(())
    }

    /// Clean close of the active segment (also used by `seal`): same file work, appender kept.
    pub async fn close_active(&self, _index_bytes: u64) -> io::Result<()> {
        let size = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            if let Some(appender) = state.appender.as_ref() {
                assert_eq!(
                    appender.committed_end(),
                    state.current.size,
                    "seal with unwritten bytes"
                );
            }
            let mark = state.current;
            if let Some(index) = state.time_index.as_mut() {
                if mark.max_timestamp != NO_TIMESTAMP {
                    let relative = (mark.offset_of_max_timestamp - self.base_offset.0) as u32;
                    index.maybe_append(mark.max_timestamp, relative);
                }
            }
            mark.size
        };
        let file = self.log_file().await?;
        file.truncate(size).await?;
        file.fdatasync().await?;
        self.write_indexes(true, 0).await
    }

    /// Removes the segment's files. Readers holding the segment keep their open file.
    /// The segment's `.log` opened read-only through the page cache (for sendfile). Opened
    /// once; the descriptor outlives a rename to `.deleted` and, held by a fetch in flight,
    /// the segment itself.
    pub fn send_file(&self) -> io::Result<std::sync::Arc<std::fs::File>> {
        if let Some(file) = self.send_file.borrow().as_ref() {
            return Ok(file.clone());
        }
        let file = std::sync::Arc::new(std::fs::File::open(self.path(LOG_SUFFIX))?);
        *self.send_file.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// Renames the segment's files to `<name>.deleted` (the first step of a delete, as in
    /// Kafka: from now on no reader opens them by their live names).
    pub async fn mark_deleted(&self) -> io::Result<()> {
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            let live = self.path(suffix);
            self.io.rename(&live, &deleted_path(&live)).await?;
        }
        Ok(())
    }

    /// Unlinks the `.deleted` files left by `mark_deleted`.
    pub async fn delete_marked_files(&self) -> io::Result<()> {
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            self.io
                .remove_file(&deleted_path(&self.path(suffix)))
                .await?;
        }
        Ok(())
    }

    pub async fn delete_files(&self) -> io::Result<()> {
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            self.io.remove_file(&self.path(suffix)).await?;
        }
        Ok(())
    }

    /// Recovery: keeps the index entries below `position`, then verifies every batch from there
    /// (length, magic, CRC-32C, contiguous offsets), re-adding index entries, and truncates the
    /// file after the last valid batch. `on_batch` sees each valid batch and its bytes
    /// (producer state, transaction markers).
    /// With `end_offset` (a truncation being completed), the scan also ends before the first
    /// batch whose last offset is >= it, as if the bytes from there were invalid.
    pub async fn recover_from(
        &self,
        position: u64,
        interval: u64,
        end_offset: Option<i64>,
        mut on_batch: impl FnMut(&BatchHeader, &[u8]),
    ) -> io::Result<ScanOutcome> {
        let kept = |h: &BatchHeader| end_offset.is_none_or(|end| h.last_offset() < end);
        self.ensure_indexes().await?;
        let file = self.log_file().await?;
        let file_size = file.file_size().await?;
        let mut position = position;
        let mut start_offset = self.base_offset.0;
        if position > 0 {
            let indexed = self.indexed_offset_at(position);
            assert!(indexed.is_some(), "recovery starts at 0 or an index entry");
            match self.batch_at(file.as_ref(), position).await? {
                Some(header)
                    if Some(header.last_offset()) == indexed
                        && header.base_offset >= self.base_offset.0 =>
                {
                    start_offset = header.base_offset;
                }
                _ => {
                    // The index disagrees with the log (a stale entry, or one written before
                    // entries held the last offset): drop it and rescan the segment from byte
                    // 0. Never truncate because the index and the log disagree.
                    tracing::warn!(
                        base = self.base_offset.0,
                        position,
                        ?indexed,
                        "index entry does not match the log: rebuilding the index from the segment"
                    );
                    position = 0;
                }
            }
        }
        self.reset_to(position, start_offset);
        let mut pos = position;
        let mut expected = start_offset;
        let mut truncated = false;
        'chunks: while pos < file_size {
            let want = (file_size - pos).min(SCAN_CHUNK_BYTES as u64) as usize;
            let chunk = file.read_at(pos, want).await?;
            let mut at = 0usize;
            loop {
                if at == chunk.len() {
                    break;
                }
                match batch::verify_batch(&chunk[at..]) {
                    // `>=`: a cleaned segment has gaps between its batches (storage::cleaner).
                    Ok(header) if header.base_offset >= expected && kept(&header) => {
                        let mut state = self.state.borrow_mut();
                        Self::record_batch(
                            &mut state,
                            self.base_offset,
                            pos + at as u64,
                            &header,
                            interval,
                        );
                        drop(state);
                        on_batch(&header, &chunk[at..at + header.size_bytes()]);
                        expected = header.last_offset() + 1;
                        at += header.size_bytes();
                    }
                    Err(batch::BatchDefect::Truncated) if at > 0 => break,
                    Err(batch::BatchDefect::Truncated)
                        if want == SCAN_CHUNK_BYTES && chunk.len() >= BATCH_HEADER_BYTES =>
                    {
                        // A batch larger than one chunk: read exactly it.
                        let len = batch::parse_header(&chunk).map_or(0, |h| h.size_bytes());
                        let whole = file.read_at(pos, len).await?;
                        match batch::verify_batch(&whole) {
                            Ok(h) if h.base_offset >= expected && len > 0 && kept(&h) => {
                                let mut state = self.state.borrow_mut();
                                Self::record_batch(&mut state, self.base_offset, pos, &h, interval);
                                drop(state);
                                on_batch(&h, &whole);
                                expected = h.last_offset() + 1;
                                pos += len as u64;
                                continue 'chunks;
                            }
                            _ => {
                                truncated = true;
                                break 'chunks;
                            }
                        }
                    }
                    _ => {
                        truncated = true;
                        break 'chunks;
                    }
                }
            }
            pos += at as u64;
        }
        let valid = self.size();
        if valid != file_size {
            file.truncate(valid).await?;
            file.fdatasync().await?;
        }
        Ok(ScanOutcome {
            valid_bytes: valid,
            scanned_bytes: file_size - position,
            truncated,
        })
    }

    /// The valid batch (CRC checked) that starts at `position`, if one does.
    async fn batch_at(&self, file: &dyn IoFile, position: u64) -> io::Result<Option<BatchHeader>> {
        let head = file.read_at(position, BATCH_HEADER_BYTES).await?;
        let Some(header) = batch::parse_header(&head) else {
            return Ok(None);
        };
        if header.batch_length <= 0 || header.size_bytes() > batch::BATCH_BYTES_MAX {
            return Ok(None);
        }
        let whole = file.read_at(position, header.size_bytes()).await?;
        Ok(batch::verify_batch(&whole).ok())
    }

    /// The offset of the offset index entry at `position`: the last offset of the batch there.
    fn indexed_offset_at(&self, position: u64) -> Option<i64> {
        let position = u32::try_from(position).ok()?;
        let state = self.state.borrow();
        let relative = state.offset_index.as_ref()?.offset_at_position(position)?;
        Some(self.base_offset.0 + i64::from(relative))
    }

    /// The offset of the first offset index entry at or after byte `position` (an entry holds
    /// its batch's last offset, so every batch before `position` ends below it); `None` when
    /// no entry lies there.
    pub fn upper_bound_offset(&self, position: u64) -> Option<i64> {
        let position = u32::try_from(position).ok()?;
        let state = self.state.borrow();
        let relative = state.offset_index.as_ref()?.first_at_or_after(position)?;
        Some(self.base_offset.0 + i64::from(relative))
    }

    /// Resets metadata to `position` (0 or an offset index entry), where the batch with base
    /// offset `start_offset` starts; drops the index entries from there on.
    fn reset_to(&self, position: u64, start_offset: i64) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if let Some(index) = state.offset_index.as_mut() {
            index.truncate_to_position(u32::try_from(position).unwrap_or(u32::MAX));
        }
        let mut mark = SegmentMark {
            size: position,
            next_offset: start_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: self.base_offset.0,
            bytes_since_last_index: if position > 0 { u64::MAX / 2 } else { 0 },
            rolling_timestamp: None,
        };
        if let Some(index) = state.time_index.as_mut() {
            index.truncate_to_offset((start_offset - self.base_offset.0) as u32);
            if let Some((ts, rel)) = index.last() {
                mark.max_timestamp = ts;
                mark.offset_of_max_timestamp = self.base_offset.0 + i64::from(rel);
            }
        }
        state.current = mark;
        state.committed = mark;
        state.dispatched = mark;
    }

    /// Makes this segment the active one after recovery: appends continue at its logical end.
    pub async fn activate(&self, rolling_timestamp: Option<i64>) -> io::Result<()> {
        let file = self.log_file().await?;
        let size = self.size();
        let alignment = append_alignment(file.alignment(), file.physical_block_size());
        let tail_start = align_down(size, alignment);
        let tail = file
            .read_at(tail_start, (size - tail_start) as usize)
            .await?
            .to_vec();
        let mut state = self.state.borrow_mut();
        state.appender = Some(Appender::new(alignment, size, tail));
        if rolling_timestamp.is_some() {
            state.current.rolling_timestamp = rolling_timestamp;
            state.committed = state.current;
            state.dispatched = state.current;
        }
        Ok(())
    }

    /// For sealed segments loaded without a scan: the next offset is the next segment's base.
    pub fn set_next_offset(&self, next_offset: i64) {
        let mut state = self.state.borrow_mut();
        state.current.next_offset = next_offset;
        state.committed = state.current;
        state.dispatched = state.current;
    }
}

/// What `append` rewrites in each batch besides the base offset.
#[derive(Copy, Clone, Debug)]
pub struct BatchEdit {
    /// The partition leader epoch to stamp (`None`: keep the batch's, a follower's append).
    pub leader_epoch: Option<i32>,
    pub log_append_time_ms: Option<i64>,
}

/// Roll thresholds resolved from the topic config.
#[derive(Copy, Clone, Debug)]
pub struct RollLimits {
    pub segment_bytes: u64,
    pub segment_ms: Option<u64>,
    /// `segment.jitter.ms`
    pub segment_jitter_ms: u64,
    pub offset_entries_max: usize,
    pub time_entries_max: usize,
}

pub(super) fn deleted_path(live: &Path) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(super::file_names::DELETED_SUFFIX);
    PathBuf::from(name)
}
