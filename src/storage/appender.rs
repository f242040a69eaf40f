//! The DMA append buffer of the active segment.
//!
//! `append` copies batch bytes once into an aligned buffer that mirrors the file from an aligned
//! position. `take_write` hands the filled part (rounded up to the alignment, zero padded) to the
//! writer and starts the next buffer with a copy of the partially filled last block, so that the
//! next write rewrites that block with the old bytes plus the new ones: no byte is lost or
//! duplicated, and the file is never written at an unaligned position.
//!
//! Promise: `append` only queues; nothing is on the device until the write from `take_write`
//! completes (`write_succeeded`), and nothing is durable until the file is fdatasync'ed.

use super::io::{IoBuffer, IoFile};

/// Smallest buffer allocated once data arrives (amortizes growth copies).
pub const APPEND_BUFFER_BYTES_MIN: usize = 64 * 1024;
/// Bytes queued but not yet written above which an append first waits for a write.
pub const APPEND_BUFFER_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Smallest alignment of appends: a partial block is rewritten from a 4 KiB boundary (as
/// Redpanda and TigerBeetle do), so a 512e drive never read-modify-writes a 4 KiB physical
/// sector that holds acknowledged bytes.
pub const APPEND_ALIGNMENT_MIN: u64 = 4096;
/// Largest physical block size honoured (anything larger is not believed).
pub const APPEND_ALIGNMENT_MAX: u64 = 64 * 1024;

const _: () = assert!(APPEND_BUFFER_BYTES_MIN <= APPEND_BUFFER_BYTES_MAX);
const _: () = assert!(APPEND_ALIGNMENT_MIN.is_power_of_two());
const _: () = assert!(APPEND_ALIGNMENT_MAX as usize <= APPEND_BUFFER_BYTES_MIN);
const _: () = assert!(APPEND_BUFFER_BYTES_MIN.is_power_of_two());

/// One write to issue: `buf` goes to `pos`; afterwards the file holds valid bytes up to `end`.
pub struct PendingWrite {
    pub buf: IoBuffer,
    pub pos: u64,
    pub end: u64,
}

/// Append state of one active segment. Lives on the shard owning the partition.
pub struct Appender {
    alignment: u64,
    /// Mirrors file bytes [buf_file_pos, buf_file_pos + buf_len).
    buf: Option<IoBuffer>,
    buf_file_pos: u64,
    buf_len: usize,
    /// End of the last write handed out by `take_write` (written or in flight).
    dispatched_end: u64,
    /// Tail block of the dispatched write, kept to become `committed_tail` on success.
    in_flight_tail: Option<Vec<u8>>,
    /// Logical end of the data the device has confirmed.
    committed_end: u64,
    /// Bytes [align_down(committed_end), committed_end): restores the buffer after a failed write.
    committed_tail: Vec<u8>,
}

impl Appender {
    /// `end`: logical size of the file; `tail`: its bytes from `align_down(end)` to `end`.
    pub fn new(alignment: u64, end: u64, tail: Vec<u8>) -> Appender {
        assert!(alignment.is_power_of_two());
        assert_eq!(tail.len() as u64, end - align_down(end, alignment));
        Appender {
            alignment,
            buf: None,
            buf_file_pos: align_down(end, alignment),
            buf_len: tail.len(),
            dispatched_end: end,
            in_flight_tail: None,
            committed_end: end,
            committed_tail: tail,
        }
    }

    /// Logical end including queued bytes.
    pub fn end(&self) -> u64 {
        self.buf_file_pos + self.buf_len as u64
    }
    /// Logical end of the bytes the device has confirmed.
    pub fn committed_end(&self) -> u64 {
        self.committed_end
    }
    /// Bytes queued and not yet handed to a write.
    pub fn unwritten_bytes(&self) -> u64 {
        self.end() - self.dispatched_end
    }

    /// Copies `bytes` into the buffer; returns the copy so the caller can patch it in place.
    pub fn append(&mut self, file: &dyn IoFile, bytes: &[u8]) -> &mut [u8] {
        let need = self.buf_len + bytes.len();
        self.reserve(file, need);
        let start = self.buf_len;
        self.buf_len = need;
        let buf = self.buffer(file);
        buf.as_bytes_mut()[start..need].copy_from_slice(bytes);
        &mut buf.as_bytes_mut()[start..need]
    }

    /// The next write, or `None` when everything queued was already handed out.
    /// Whether `take_write` would return a write.
    pub fn has_queued_write(&self) -> bool {
        self.end() != self.dispatched_end
    }

    pub fn take_write(&mut self) -> Option<PendingWrite> {
        let end = self.end();
        if end == self.dispatched_end {
            return None;
        }
        assert!(
            self.in_flight_tail.is_none(),
            "one write in flight per segment"
        );
        let write_len = align_up(self.buf_len as u64, self.alignment) as usize;
        let Some(mut full) = self.buf.take() else {
            panic!("queued bytes without a buffer");
        };
        full.trim_to(write_len);
        // Buffers are not zeroed when allocated: pad the last block with zeros here.
        full.as_bytes_mut()[self.buf_len..write_len].fill(0);
        let tail_pos = align_down(end, self.alignment);
        let tail_in_buf = (tail_pos - self.buf_file_pos) as usize;
        let tail = full.as_bytes()[tail_in_buf..self.buf_len].to_vec();
        let pos = self.buf_file_pos;
        self.buf_file_pos = tail_pos;
        self.buf_len = tail.len();
        self.buf = None;
        self.dispatched_end = end;
        self.in_flight_tail = Some(tail);
        Some(PendingWrite {
            buf: full,
            pos,
            end,
        })
    }

    /// The write ending at `end` completed in full.
    pub fn write_succeeded(&mut self, end: u64) {
        let tail = self.in_flight_tail.take();
        assert!(end >= self.committed_end && end <= self.end());
        self.committed_end = end;
        if let Some(tail) = tail {
            self.committed_tail = tail;
        }
    }

    /// A write failed: forget everything after `committed_end` (in flight and queued).
    pub fn rollback(&mut self) {
        self.in_flight_tail = None;
        self.buf = None;
        self.buf_file_pos = align_down(self.committed_end, self.alignment);
        self.buf_len = self.committed_tail.len();
        self.dispatched_end = self.committed_end;
    }

    fn buffer(&mut self, file: &dyn IoFile) -> &mut IoBuffer {
        if self.buf.is_none() {
            let size = align_up(self.buf_len.max(1) as u64, self.alignment) as usize;
            let mut buf = file.alloc_buffer(size);
            let tail = self.current_tail();
            buf.as_bytes_mut()[..tail.len()].copy_from_slice(&tail);
            self.buf = Some(buf);
        }
        match self.buf.as_mut() {
            Some(buf) => buf,
            None => unreachable!("buffer allocated above"),
        }
    }

    /// Bytes of the buffer that are valid when no buffer is allocated: the tail block.
    fn current_tail(&self) -> Vec<u8> {
        match &self.in_flight_tail {
            Some(tail) => tail.clone(),
            None => self.committed_tail.clone(),
        }
    }

    fn reserve(&mut self, file: &dyn IoFile, need: usize) {
        let capacity = self.buf.as_ref().map_or(0, IoBuffer::len);
        if capacity >= need {
            return;
        }
        let size = (need.max(capacity * 2).max(APPEND_BUFFER_BYTES_MIN)) as u64;
        let size = align_up(size, self.alignment) as usize;
        let mut bigger = file.alloc_buffer(size);
        match &self.buf {
            Some(old) => bigger.as_bytes_mut()[..self.buf_len]
                .copy_from_slice(&old.as_bytes()[..self.buf_len]),
            None => {
                let tail = self.current_tail();
                bigger.as_bytes_mut()[..tail.len()].copy_from_slice(&tail);
            }
        }
        self.buf = Some(bigger);
    }
}

/// Alignment of a segment's appends: the file's (logical block) alignment, at least
/// `APPEND_ALIGNMENT_MIN`, and the physical block size when known and sane.
pub fn append_alignment(file_alignment: u64, physical_block_size: Option<u64>) -> u64 {
    let physical = physical_block_size
        .filter(|p| p.is_power_of_two() && *p <= APPEND_ALIGNMENT_MAX)
        .unwrap_or(1);
    let alignment = file_alignment.max(APPEND_ALIGNMENT_MIN).max(physical);
    assert!(alignment.is_power_of_two() && alignment.is_multiple_of(file_alignment));
    alignment
}

pub fn align_down(value: u64, alignment: u64) -> u64 {
    value & !(alignment - 1)
}

pub fn align_up(value: u64, alignment: u64) -> u64 {
    align_down(value + alignment - 1, alignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_align_to_4k_or_the_physical_block() {
        assert_eq!(append_alignment(512, None), 4096, "512e drive");
        assert_eq!(append_alignment(512, Some(4096)), 4096);
        assert_eq!(append_alignment(4096, Some(16 * 1024)), 16 * 1024);
        assert_eq!(
            append_alignment(512, Some(3000)),
            4096,
            "not a power of two"
        );
        assert_eq!(append_alignment(512, Some(1 << 30)), 4096, "not believed");
    }
}
