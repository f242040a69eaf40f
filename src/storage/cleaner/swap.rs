//! Crash-safe replacement of sealed segments by their cleaned copy, and its recovery
//! (docs/on-disk-format.md, "Cleaned-segment swap"). Kafka's protocol (`LocalLog.replaceSegments`):
//!
//! 1. the cleaned segment is written as `<base>.log.cleaned` (+ `.index.cleaned`,
//!    `.timeindex.cleaned`) and fdatasync'ed;
//! 2. each is renamed to `.swap` and the directory fsync'ed: **the commit point**;
//! 3. the replaced segments other than the first are renamed to `.deleted`;
//! 4. the `.swap` indexes, then the `.swap` log, are renamed to the live names (replacing the
//!    first replaced segment's files atomically), and the directory fsync'ed;
//! 5. the `.deleted` files are unlinked after `file.delete.delay.ms`.
//!
//! Recovery at start-up (`complete_swaps`, before segments are listed): `.cleaned` files are
//! deleted (the pass is discarded: the old segments are all still live); a `.log.swap` completes
//! the swap: every live segment whose base lies inside the swap's offsets, after its base, is
//! deleted, the swap's indexes are dropped (recovery rebuilds missing indexes from the log) and
//! the `.log.swap` is renamed to its live name.

use std::io;
use std::path::{Path, PathBuf};

use crate::model::Offset;

use super::super::batch::{self, BATCH_HEADER_BYTES};
use super::super::file_names::{
    offset_file_path, parse_offset_file_name, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX,
    SWAP_SUFFIX, TIME_INDEX_SUFFIX,
};
use super::super::io::{FileKind, IoBuffer, IoFile, StorageIo};

/// The three files of a segment.
pub const SEGMENT_SUFFIXES: [&str; 3] = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX];

/// `<base><suffix><extra>`, e.g. `00000000000000000000.log.cleaned`.
pub fn staged_path(dir: &Path, base: i64, suffix: &str, extra: &str) -> PathBuf {
    let mut p = offset_file_path(dir, Offset(base), suffix).into_os_string();
    p.push(extra);
    PathBuf::from(p)
}

/// A `.cleaned` file being written.
pub struct CleanedFile {
    file: std::rc::Rc<dyn IoFile>,
    written: u64,
}

impl CleanedFile {
    pub async fn create(io: &dyn StorageIo, path: &Path) -> io::Result<CleanedFile> {
        let file = io.open(path, FileKind::Buffered, true).await?;
        file.truncate(0).await?;
        Ok(CleanedFile { file, written: 0 })
    }
    pub fn written(&self) -> u64 {
        self.written
    }
    pub async fn append(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        let len = bytes.len();
        if len == 0 {
            return Ok(());
        }
        let n = self
            .file
            .write_at(IoBuffer::Heap(bytes), self.written)
            .await?;
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short cleaned write",
            ));
        }
        self.written += len as u64;
        Ok(())
    }
    pub async fn finish(self) -> io::Result<()> {
        self.file.truncate(self.written).await?;
        self.file.fdatasync().await
    }
}

/// Steps 2–4 for the cleaned segment at `base` replacing the segments `replaced` (bases, the
/// first equal to `base`). The caller has opened every replaced file it may still read.
pub async fn swap_in(
    io: &dyn StorageIo,
    dir: &Path,
    base: i64,
    replaced: &[i64],
) -> io::Result<()> {
    assert_eq!(
        replaced.first(),
        Some(&base),
        "a cleaned segment takes its first base"
    );
    for suffix in SEGMENT_SUFFIXES {
        io.rename(
            &staged_path(dir, base, suffix, CLEANED_SUFFIX),
            &staged_path(dir, base, suffix, SWAP_SUFFIX),
        )
        .await?;
    }
    io.sync_dir(dir).await?;
    for old in &replaced[1..] {
        for suffix in SEGMENT_SUFFIXES {
            let live = offset_file_path(dir, Offset(*old), suffix);
            io.rename(&live, &super::super::segment::deleted_path(&live))
                .await?;
        }
    }
    // Indexes first, the log last: a `.log.swap` left means the swap is not complete.
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
        io.rename(
            &staged_path(dir, base, suffix, SWAP_SUFFIX),
            &offset_file_path(dir, Offset(base), suffix),
        )
        .await?;
    }
    io.sync_dir(dir).await
}

/// Start-up recovery of an interrupted cleaning (see the module doc). `names` = the directory's
/// entries. Returns whether anything was changed.
pub async fn complete_swaps(io: &dyn StorageIo, dir: &Path, names: &[String]) -> io::Result<bool> {
    let mut changed = false;
    for name in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
        tracing::warn!(dir = %dir.display(), file = %name, "discarding an unfinished cleaned segment");
        io.remove_file(&dir.join(name)).await?;
        changed = true;
    }
    let live: Vec<i64> = names
        .iter()
        .filter_map(|n| parse_offset_file_name(n, LOG_SUFFIX))
        .map(|o| o.0)
        .collect();
    let log_swap = format!("{LOG_SUFFIX}{SWAP_SUFFIX}");
    for name in names.iter().filter(|n| n.ends_with(&log_swap)) {
        let stem = &name[..name.len() - SWAP_SUFFIX.len()];
        let Some(base) = parse_offset_file_name(stem, LOG_SUFFIX).map(|o| o.0) else {
            continue;
        };
        let swap = staged_path(dir, base, LOG_SUFFIX, SWAP_SUFFIX);
        let next = next_offset(io, &swap, base).await?;
        tracing::warn!(dir = %dir.display(), base, next, "completing an interrupted cleaned-segment swap");
        for old in live.iter().filter(|b| **b > base && **b < next) {
            for suffix in SEGMENT_SUFFIXES {
                remove_if_present(io, &offset_file_path(dir, Offset(*old), suffix)).await?;
            }
        }
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_present(io, &staged_path(dir, base, suffix, SWAP_SUFFIX)).await?;
            remove_if_present(io, &offset_file_path(dir, Offset(base), suffix)).await?;
        }
        io.rename(&swap, &offset_file_path(dir, Offset(base), LOG_SUFFIX))
            .await?;
        changed = true;
    }
    // Index swaps left (the log swap of the same base removed its own above; the log is
    // renamed last, so any other is stale).
    for name in names
        .iter()
        .filter(|n| n.ends_with(SWAP_SUFFIX) && !n.ends_with(&log_swap))
    {
        remove_if_present(io, &dir.join(name)).await?;
        changed = true;
    }
    if changed {
        io.sync_dir(dir).await?;
    }
    Ok(changed)
}

async fn remove_if_present(io: &dyn StorageIo, path: &Path) -> io::Result<()> {
    match io.remove_file(path).await {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The offset after the last valid batch of a segment file (its base when empty).
async fn next_offset(io: &dyn StorageIo, path: &Path, base: i64) -> io::Result<i64> {
    let file = io.open(path, FileKind::Buffered, false).await?;
    let size = file.file_size().await?;
    let mut position = 0u64;
    let mut next = base;
    while position + BATCH_HEADER_BYTES as u64 <= size {
        let head = file.read_at(position, BATCH_HEADER_BYTES).await?;
        let Some(header) = batch::parse_header(&head) else {
            break;
        };
        if header.batch_length <= 0 || header.size_bytes() > batch::BATCH_BYTES_MAX {
            break;
        }
        next = next.max(header.last_offset() + 1);
        position += header.size_bytes() as u64;
    }
    Ok(next)
}
