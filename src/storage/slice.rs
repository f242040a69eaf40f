//! File slices for the zero-copy fetch path.
//!
//! A fetch is answered with a range of a segment file rather than with bytes:
//! the connection sends it with sendfile(2) from the page cache. Whether the
//! range is resident is asked with cachestat(2) (Linux 6.5+); a range that is
//! not resident is read with an io_uring buffered read (never blocking the
//! executor), which also brings it into the page cache for the next reader.
//! Writes are O_DIRECT and do not populate the cache, so the first read of a
//! range is always the copied path.
//!
//! The slice holds its own read-only descriptor (`Arc<File>`), so retention may
//! delete the segment while a send is in flight.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::file_names::LOG_SUFFIX;
use super::log::PartitionLog;
use super::StorageError;
use crate::model::Offset;

/// A range of a segment file holding whole batches (the last one may be cut
/// short by the byte limit, as Kafka's own fetch does; clients drop it).
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

/// What a fetch of one partition found.
pub struct SliceRead {
    /// The segment's path and its sendfile descriptor; `None` when there is nothing to send.
    pub file: Option<(PathBuf, Arc<File>)>,
    pub position: u64,
    pub len: usize,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    /// The last stable offset when the read began.
    pub last_stable_offset: Offset,
    /// read_committed: the aborted transactions overlapping the range from the fetch offset
    /// to the last stable offset (Kafka's `collectAbortedTransactions`); empty otherwise.
    pub aborted: Vec<super::txn_index::AbortedTxn>,
}

impl PartitionLog {
    /// The file range a fetch at `offset` should send: from the batch holding
    /// `offset`, up to `max_bytes` (at least that batch if `min_one_batch`),
    /// never beyond the high watermark. `file` is `None` when there is nothing to send.
    pub async fn read_slice(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<SliceRead, StorageError> {
        self.read_slice_within(offset, max_bytes, min_one_batch, Limit::HighWatermark)
            .await
    }

    /// [`read_slice`](Self::read_slice) for a read_committed consumer: never beyond the last
    /// stable offset, with the aborted transactions of the range (the client drops their
    /// records: the bytes are still sent as stored).
    pub async fn read_slice_committed(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<SliceRead, StorageError> {
        self.read_slice_within(offset, max_bytes, min_one_batch, Limit::LastStable)
            .await
    }

    /// [`read_slice`](Self::read_slice) for a follower replica: up to the bytes written to
    /// the segment files (the log end once its write completes), not the high watermark.
    /// Followers count only what they made durable, so they may copy above the high watermark.
    pub async fn read_slice_for_replica(
        &self,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<SliceRead, StorageError> {
        self.read_slice_within(offset, max_bytes, true, Limit::Written)
            .await
    }

    async fn read_slice_within(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
        limit_kind: Limit,
    ) -> Result<SliceRead, StorageError> {
        let to_written = limit_kind == Limit::Written;
        let hwm = self.high_watermark();
        let log_start = self.log_start_offset();
        let lso = self.last_stable_offset();
        // The limit of this read: the high watermark, for a replica the written end, for
        // read_committed the last stable offset.
        let offsets = match limit_kind {
            Limit::Written => self.written_limit(),
            Limit::HighWatermark => self.offsets.get(),
            Limit::LastStable => self.stable_limit(self.offsets.get()).await?,
        };
        let limit = Offset(offsets.high_watermark);
        let mut result = SliceRead {
            file: None,
            position: 0,
            len: 0,
            high_watermark: hwm,
            log_start_offset: log_start,
            last_stable_offset: lso,
            aborted: Vec::new(),
        };
        // Between the LSO and the high watermark a read_committed fetch waits (empty).
        let range_end = if limit_kind == Limit::LastStable {
            hwm.max(limit)
        } else {
            limit
        };
        if offset < log_start || offset > range_end {
            return Err(self.out_of_range(offset));
        }
        if offset >= limit {
            return Ok(result);
        }
        let truncations = self.truncations.get();
        let located = match self
            .locate(offset, max_bytes, min_one_batch, &offsets)
            .await
        {
            Ok(Some((segment, position, len))) => {
                // Kafka's `fetchUpperBoundOffset`: the aborted list need not reach past the
                // first indexed batch after the range (else the limit).
                let upper = segment
                    .upper_bound_offset(position + len as u64)
                    .map_or(limit, |o| Offset(o.min(limit.0)));
                segment
                    .send_file()
                    .map(|file| Some((segment.path(LOG_SUFFIX), file, position, len, upper)))
                    .map_err(StorageError::from)
            }
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        match located {
            Ok(Some((path, file, position, len, upper))) => {
                if limit_kind == Limit::LastStable {
                    result.aborted = self.aborted_transactions(offset, upper);
                }
                result.file = Some((path, file));
                result.position = position;
                result.len = len;
            }
            Ok(None) => {}
            // A truncation cut or deleted the segment under the lookup: nothing to send now
            // (the next fetch sees the new log).
            Err(_) if self.truncations.get() != truncations => {
                let now = self.offsets.get();
                let now_limit = if to_written {
                    now.written
                } else {
                    now.high_watermark
                };
                if offset.0 < now.log_start || offset.0 > now_limit {
                    return Err(self.out_of_range(offset));
                }
                result.high_watermark = Offset(now.high_watermark);
                result.log_start_offset = Offset(now.log_start);
            }
            Err(err) => return Err(err),
        }
        Ok(result)
    }
}

/// Where a slice read stops.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Limit {
    HighWatermark,
    LastStable,
    Written,
}

/// True when every page of the range is in the page cache (cachestat(2)).
/// False when not, or when the kernel cannot tell (then the copied path is taken).
pub fn is_resident(file: &File, position: u64, len: usize) -> bool {
    #[repr(C)]
    struct CachestatRange {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    const PAGE: u64 = 4096;
    if len == 0 {
        return true;
    }
    let first = position / PAGE;
    let last = (position + len as u64 - 1) / PAGE;
    let range = CachestatRange {
        off: first * PAGE,
        len: (last - first + 1) * PAGE,
    };
    let mut stat = Cachestat::default();
    // SAFETY: both pointers refer to live, properly laid out structs for the duration of the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    r == 0 && stat.nr_cache > last - first
}

/// Reads a range through the page cache with io_uring (the executor never blocks;
/// the pages stay cached for the next reader). Reads through the slice's own open
/// descriptor, so a segment deleted by retention meanwhile is still read whole.
pub async fn read_cold(slice: &FileSlice) -> std::io::Result<Bytes> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let (position, len) = (slice.position, slice.len);
    let fd = slice.file.try_clone()?.into_raw_fd();
    // SAFETY: `fd` is a fresh duplicate that nothing else owns; the BufferedFile owns and closes it.
    let file = unsafe { glommio::io::BufferedFile::from_raw_fd(fd) };
    let read = file
        .read_at(position, len)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()));
    let _ = file.close().await;
    let read = read?;
    if read.len() != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "segment shorter than its index",
        ));
    }
    // Bytes read into user space are verified on the way out (both sides of the disk);
    // a cut-short last batch is dropped here rather than left to the client.
    let whole = super::log::verified_batches_len(&read);
    if whole == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "corrupt batch below the high watermark",
        ));
    }
    Ok(Bytes::copy_from_slice(&read[..whole]))
}
