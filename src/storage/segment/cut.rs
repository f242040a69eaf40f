//! Cutting one segment at a batch boundary, for `PartitionLog::truncate_to`.
//!
//! Three steps so the partition log can keep the STYLE rule "state changes complete before
//! the first `.await`": [`Segment::plan_cut`] only reads (the cut position, the metadata the
//! segment will have there, the tail block the appender restarts from);
//! [`Segment::apply_cut`] changes memory, synchronously; [`Segment::cut_files`] then makes the
//! files agree (truncate, fdatasync, index files, fdatasync).

use std::io;

use super::super::appender::{align_down, append_alignment, Appender};
use super::super::batch::{self, BATCH_HEADER_BYTES};
use super::{Segment, SegmentMark, NO_TIMESTAMP};

/// Where a truncation cuts a segment and what the segment looks like afterwards.
#[derive(Clone, Debug)]
pub struct SegmentCut {
    /// Byte position of the first removed batch: the segment's new logical size.
    pub position: u64,
    /// Base offset of the first removed batch: the segment's new next offset.
    pub next_offset: i64,
    mark: SegmentMark,
    alignment: u64,
    /// File bytes `[align_down(position), position)`: the appender's tail block.
    tail: Vec<u8>,
}

impl Segment {
    /// Reads where a truncation to `offset` cuts this segment: at the first batch whose last
    /// offset is >= `offset` (a batch holding `offset` goes entirely: Kafka truncates at batch
    /// granularity), or at the end when there is none. Changes nothing.
    pub async fn plan_cut(&self, offset: i64) -> io::Result<SegmentCut> {
        self.ensure_indexes().await?;
        let file = self.log_file().await?;
        let size = self.size();
        let (position, next_offset) = match self.find_batch(offset, size).await? {
            Some((position, header)) => (position, header.base_offset),
            None => (size, self.mark().next_offset),
        };
        let position32 = u32::try_from(position).unwrap_or(u32::MAX);
        let relative = (next_offset - self.base_offset.0).clamp(0, i64::from(u32::MAX)) as u32;
        let (entry_position, time_entry) = {
            let state = self.state.borrow();
            let entry = state
                .offset_index
                .as_ref()
                .and_then(|i| i.last_below_position(position32));
            let time = state
                .time_index
                .as_ref()
                .and_then(|i| i.last_below_offset(relative));
            (entry.map_or(0, |e| u64::from(e.1)), time)
        };
        // The kept time index entries are running maxima held by kept batches; the batches
        // after the last kept offset index entry are read to complete the maximum.
        let mut mark = SegmentMark {
            size: position,
            next_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: self.base_offset.0,
            bytes_since_last_index: position - entry_position,
            rolling_timestamp: None,
        };
        if let Some((ts, rel)) = time_entry {
            mark.max_timestamp = ts;
            mark.offset_of_max_timestamp = self.base_offset.0 + i64::from(rel);
        }
        let mut at = entry_position;
        while at < position {
            let header = self.header_at(at).await?;
            if header.max_timestamp > mark.max_timestamp {
                mark.max_timestamp = header.max_timestamp;
                mark.offset_of_max_timestamp = header.last_offset();
            }
            at += header.size_bytes() as u64;
        }
        if at != position {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "batch headers do not end at the truncation point",
            ));
        }
        if position > 0 {
            mark.rolling_timestamp = Some(self.header_at(0).await?.max_timestamp);
        }
        let alignment = append_alignment(file.alignment(), file.physical_block_size());
        let tail_start = align_down(position, alignment);
        let tail = file
            .read_at(tail_start, (position - tail_start) as usize)
            .await?
            .to_vec();
        if tail.len() as u64 != position - tail_start {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment shorter than its metadata",
            ));
        }
        Ok(SegmentCut {
            position,
            next_offset,
            mark,
            alignment,
            tail,
        })
    }

    /// Applies a cut planned by `plan_cut` to memory (synchronous): size, next offset and
    /// timestamps, the index entries past the cut, and a fresh appender at the new end (the
    /// segment becomes the active one). Everything appended must have been written.
    pub fn apply_cut(&self, cut: &SegmentCut) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if let Some(appender) = state.appender.as_ref() {
            assert_eq!(
                appender.committed_end(),
                state.current.size,
                "truncation with unwritten bytes"
            );
        }
        assert!(cut.position <= state.current.size && cut.next_offset <= state.current.next_offset);
        let relative = (cut.next_offset - self.base_offset.0) as u32;
        if let Some(index) = state.offset_index.as_mut() {
            index.truncate_to_position(u32::try_from(cut.position).unwrap_or(u32::MAX));
        }
        if let Some(index) = state.time_index.as_mut() {
            index.truncate_to_offset(relative);
        }
        state.current = cut.mark;
        state.committed = cut.mark;
        state.dispatched = cut.mark;
        state.max_timestamp_known = true;
        state.appender = Some(Appender::new(cut.alignment, cut.position, cut.tail.clone()));
    }

    /// Makes the files agree with an applied cut: the `.log` truncated to the logical size and
    /// fdatasync'ed, then both index files rewritten (preallocated, as the active segment's
    /// are) and fdatasync'ed.
    pub async fn cut_files(&self, index_bytes: u64) -> io::Result<()> {
        let file = self.log_file().await?;
        file.truncate(self.size()).await?;
        file.fdatasync().await?;
        self.write_indexes(false, index_bytes).await
    }

    async fn header_at(&self, position: u64) -> io::Result<batch::BatchHeader> {
        let bytes = self.read(position, BATCH_HEADER_BYTES).await?;
        match batch::parse_header(&bytes) {
            Some(header) if header.batch_length > 0 => Ok(header),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad batch header below the log end",
            )),
        }
    }
}
