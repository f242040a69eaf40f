//! Every file name and suffix the storage layer writes, in one place (Kafka's `LogFileUtils`).

use std::path::{Path, PathBuf};

use crate::model::Offset;

/// Record batches, byte for byte as Kafka stores them.
pub const LOG_SUFFIX: &str = ".log";
/// Sparse offset index: 8-byte entries (u32 relative offset, u32 position), big-endian.
pub const INDEX_SUFFIX: &str = ".index";
/// Sparse time index: 12-byte entries (i64 timestamp, u32 relative offset), big-endian.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Kafka's aborted-transaction index: 34-byte entries (see `txn_index.rs`).
pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
/// Producer state snapshot, named by the offset it covers up to (exclusive).
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Suffix of temporary files written before an atomic rename.
pub const TMP_SUFFIX: &str = ".tmp";
/// Appended to the files of a segment that retention removed; they are unlinked after
/// `file.delete.delay.ms` (Kafka's `.deleted`), and at the next start at the latest.
pub const DELETED_SUFFIX: &str = ".deleted";
/// Appended to a segment's file names while the cleaner writes its cleaned copy
/// (`<base>.log.cleaned`); discarded by recovery (see `cleaner::swap`).
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// A cleaned segment committed to replace the segments it covers; recovery completes the swap.
pub const SWAP_SUFFIX: &str = ".swap";
/// Present in a partition directory once the cleaner has replaced a segment of it (ours; Kafka
/// has no such file): its segments may have gaps between batches, which recovery then accepts
/// even if the topic's policy is no longer `compact`.
pub const CLEANED_MARKER_FILE: &str = "cleaned-segments";
/// Kafka's `cleaner-offset-checkpoint` (in the data directory): per partition, the first offset
/// the cleaner has not cleaned. Shard 0 writes this name, shard N `cleaner-offset-checkpoint-N`.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Present in a partition directory only while the partition is cleanly closed.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
/// Kafka's `partition.metadata` (version and topic id).
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Per-partition recovery point, in Kafka's offset checkpoint text format.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";

/// Per-partition log start offset, in Kafka's offset checkpoint text format.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";

/// Kafka's `leader-epoch-checkpoint`: the leader epoch cache (see `leader_epoch.rs`).
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// Present only while a truncation (`PartitionLog::truncate_to`, `truncate_fully_and_start_at`)
/// is in progress: the log end it truncates to, so recovery completes an interrupted one. Our
/// format (Kafka has no such file); see docs/on-disk-format.md.
pub const TRUNCATION_FILE: &str = "truncation-checkpoint";

/// Digits of the zero-padded base offset in segment file names.
const OFFSET_DIGITS: usize = 20;

/// `<20-digit offset><suffix>`.
pub fn offset_file_name(offset: Offset, suffix: &str) -> String {
    format!("{:0width$}{}", offset.get(), suffix, width = OFFSET_DIGITS)
}

/// Full path of a segment-related file in `dir`.
pub fn offset_file_path(dir: &Path, offset: Offset, suffix: &str) -> PathBuf {
    dir.join(offset_file_name(offset, suffix))
}

/// Parses `<20-digit offset><suffix>` for the given suffix.
pub fn parse_offset_file_name(name: &str, suffix: &str) -> Option<Offset> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != OFFSET_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse::<i64>().ok().map(Offset)
}

/// Path of the temporary sibling of `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = offset_file_name(Offset(42), LOG_SUFFIX);
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(parse_offset_file_name(&name, LOG_SUFFIX), Some(Offset(42)));
        assert_eq!(parse_offset_file_name("42.log", LOG_SUFFIX), None);
        assert_eq!(parse_offset_file_name(&name, INDEX_SUFFIX), None);
    }
}
