//! `LogLoader`: opens a partition directory and rebuilds the in-memory log.
//!
//! After a clean shutdown (marker present) only the bytes after the active segment's last index
//! entry are read. Otherwise every batch above the recovery point is verified (length, magic 2,
//! CRC-32C, contiguous offsets); the log is truncated at the first invalid byte (torn, corrupt
//! or zero tail) and later segments are deleted; indexes are rebuilt for what was scanned.
//! Recovery time therefore grows with the data written since the last checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use crate::model::{Offset, TopicId, TopicPartition};

use super::batch::{self, BATCH_HEADER_BYTES};
use super::config::LogConfig;
use super::error::StorageError;
use super::file_names::{
    offset_file_name, offset_file_path, parse_offset_file_name, CLEANED_MARKER_FILE,
    CLEAN_SHUTDOWN_FILE, DELETED_SUFFIX, INDEX_SUFFIX, LEADER_EPOCH_FILE, LOG_START_OFFSET_FILE,
    LOG_SUFFIX, PARTITION_METADATA_FILE, RECOVERY_POINT_FILE, SNAPSHOT_SUFFIX, TIME_INDEX_SUFFIX,
    TMP_SUFFIX, TXN_INDEX_SUFFIX,
};
use super::io::{FileKind, StorageIo};
use super::leader_epoch::LeaderEpochCache;
use super::log::{LoadedLog, Offsets, PartitionLog};
use super::manager::ShardContext;
use super::producer_state::ProducerStateManager;
use super::segment::Segment;
use super::truncate::{self, TruncationIntent};
use super::txn_index::{self, AbortedTxn, TransactionIndex};

/// Opens (creating if absent) and recovers the log of `tp`.
pub(super) async fn load(
    shard: Rc<ShardContext>,
    tp: &TopicPartition,
    topic_id: TopicId,
    config: LogConfig,
) -> Result<Rc<PartitionLog>, StorageError> {
    let io = shard.io.clone();
    let dir = shard.broker.data_dir.join(tp.dir_name());
    io.create_dir_all(&dir).await?;
    if check_partition_metadata(io.as_ref(), &dir, topic_id).await? {
        // A new partition directory: its entry in the data directory must be durable before
        // anything written in it is acknowledged.
        io.sync_dir(&shard.broker.data_dir).await?;
    }
    let names = io.list_dir(&dir).await?;
    // Temporary files of an interrupted atomic write, and segments retention had already
    // removed (`.deleted`) whose delayed unlink did not happen before the stop.
    let mut deleted = false;
    for name in names
        .iter()
        .filter(|n| n.ends_with(TMP_SUFFIX) || n.ends_with(DELETED_SUFFIX))
    {
        io.remove_file(&dir.join(name)).await?;
        deleted = true;
    }
    // A cleaned-segment swap interrupted by the stop is completed or discarded
    // (docs/on-disk-format.md, "Cleaned-segment swap").
    let names = if super::cleaner::swap::complete_swaps(io.as_ref(), &dir, &names).await? {
        io.list_dir(&dir).await?
    } else {
        names
    };
    // A truncation interrupted by the stop is completed (docs/on-disk-format.md, "Truncation").
    let intent = truncate::read_intent(io.as_ref(), &dir).await?;
    let mut names = names;
    match intent {
        Some(TruncationIntent::StartAt(start)) => {
            complete_start_at(io.as_ref(), tp, &dir, &names, start).await?;
            names = io.list_dir(&dir).await?;
        }
        Some(TruncationIntent::EndAt(end)) => {
            tracing::warn!(partition = %tp, log_end = end, "completing an interrupted truncation");
            truncate::remove_snapshots_above(io.as_ref(), &dir, end).await?;
            names = io.list_dir(&dir).await?;
        }
        None => {}
    }
    let end_at = match intent {
        Some(TruncationIntent::EndAt(end)) => Some(end),
        _ => None,
    };
    // A truncation removes the marker durably before it starts; never trust one beside it.
    let clean = end_at.is_none() && names.iter().any(|n| n == CLEAN_SHUTDOWN_FILE);
    let mut bases: Vec<Offset> = names
        .iter()
        .filter_map(|n| parse_offset_file_name(n, LOG_SUFFIX))
        .collect();
    bases.sort();
    let log_start_checkpoint =
        read_checkpoint(io.as_ref(), &dir.join(LOG_START_OFFSET_FILE)).await?;
    let recovery_point = read_checkpoint(io.as_ref(), &dir.join(RECOVERY_POINT_FILE)).await?;
    let index_bytes = config.segment_index_bytes;
    let interval = config.index_interval_bytes;

    let mut segments = open_segments(&io, &dir, &bases, log_start_checkpoint, index_bytes).await?;
    deleted |= drop_segments_below(&mut segments, log_start_checkpoint).await?;
    let bases: Vec<Offset> = segments.keys().map(|b| Offset(*b)).collect();
    let (snapshot_offset, mut producers) = load_snapshot(io.as_ref(), &dir, &names).await?;
    let loaded_epochs = load_epochs(io.as_ref(), &dir).await?;
    let mut epochs = loaded_epochs.clone().unwrap_or_default();
    let mut leader_epoch = 0;
    let start = if clean {
        None
    } else {
        let point = recovery_point.unwrap_or(i64::MIN);
        Some(end_at.map_or(point, |end| point.min(end)))
    };
    // Aborted-transaction entries: those of markers below the recovery point (and below the
    // snapshot, written after them) are trusted; the rest are rebuilt from the scanned markers.
    let mut txn_index = load_txn_index(io.as_ref(), &dir, &bases, &names).await?;
    let txn_rebuild_from = start.map(|point| point.max(snapshot_offset));
    if let Some(from) = txn_rebuild_from {
        txn_index.truncate_to(from);
    }
    let segment_bases: Vec<i64> = bases.iter().map(|b| b.0).collect();
    // The first batch replayed into producer state (to find a gap after the snapshot).
    let mut first_applied: Option<i64> = None;
    let mut apply = |header: &batch::BatchHeader, bytes: &[u8]| {
        leader_epoch = leader_epoch.max(header.partition_leader_epoch);
        // Kafka's `LogSegment.recover`: only a newer epoch is assigned; entries of batches
        // that did not survive are removed below, by the log end.
        if epochs
            .latest()
            .is_none_or(|latest| header.partition_leader_epoch > latest.epoch.0)
        {
            epochs.assign(header.partition_leader_epoch, header.base_offset);
        }
        if header.base_offset >= snapshot_offset {
            first_applied.get_or_insert(header.base_offset);
            let rebuild = txn_rebuild_from.is_some_and(|from| header.base_offset >= from);
            let base = segment_floor(&segment_bases, header.base_offset);
            apply_batch(&mut producers, &mut txn_index, header, bytes, base, rebuild);
        }
    };
    let missing_indexes: Vec<i64> = bases
        .iter()
        .filter(|base| {
            [INDEX_SUFFIX, TIME_INDEX_SUFFIX]
                .iter()
                .any(|suffix| !names.contains(&offset_file_name(**base, suffix)))
        })
        .map(|base| base.0)
        .collect();
    let cleaned = config.compaction.compact || names.iter().any(|n| n == CLEANED_MARKER_FILE);
    let (recovered, dropped_later) = recover_segments(
        &mut segments,
        start,
        interval,
        index_bytes,
        &missing_indexes,
        end_at,
        cleaned,
        &mut apply,
    )
    .await?;
    if deleted || dropped_later {
        // Deleted segments must not come back after a crash: a segment that reappears above a
        // truncation would leave a gap in the offsets.
        io.sync_dir(&dir).await?;
    }

    let Some(active) = segments.values().next_back().cloned() else {
        return Err(StorageError::CorruptRecord(
            "no segment after recovery".into(),
        ));
    };
    let rolling_timestamp = first_batch_timestamp(&active).await?;
    active.activate(rolling_timestamp).await?;
    if !clean {
        // Recovered bytes may have come from the page cache only: make them durable first.
        active.log_file().await?.fdatasync().await?;
    }
    let mark = active.mark();
    let first_base = segments.keys().next().copied().unwrap_or(0);
    let log_end = mark.next_offset;
    let mut rebuild = false;
    if snapshot_offset > log_end {
        // The snapshot describes batches the log no longer has (they were truncated): it
        // would answer duplicates for them. Rebuild producer state from the log instead.
        tracing::warn!(partition = %tp, snapshot_offset, log_end,
            "producer snapshot above the recovered log end: rebuilding producer state");
        let path = offset_file_path(&dir, Offset(snapshot_offset), SNAPSHOT_SUFFIX);
        io.remove_file(&path).await?;
        rebuild = true;
    } else if snapshot_offset.max(first_base) < first_applied.unwrap_or(log_end) {
        // Batches between the snapshot (missing, damaged or old) and the scan were not
        // replayed: an ongoing transaction or a marker among them would be lost.
        tracing::warn!(partition = %tp, snapshot_offset, first_applied, log_end,
            "producer snapshot older than the scanned log: rebuilding producer state");
        rebuild = true;
    }
    if loaded_epochs.is_none() {
        // No (usable) leader-epoch-checkpoint, as in a data directory from before the file:
        // every batch header of the (now verified) log gives the epochs.
        epochs = rebuild_epochs(&segments).await?;
    }
    epochs.truncate_from_end(log_end);
    if end_at.is_some() && start.is_some_and(|scan| snapshot_offset < scan) {
        // The snapshot at the old recovery point was above the truncation and is gone: the
        // batches between the older snapshot and the scan would be missing.
        rebuild = true;
    }
    if rebuild {
        (producers, txn_index) = rebuild_producers(&segments).await?;
    }
    // Rebuilt entries are durable before anything (the recovery point below) trusts them.
    txn_index.truncate_to(log_end);
    for (base, bytes) in txn_index.take_dirty() {
        if segments.contains_key(&base) {
            let path = offset_file_path(&dir, Offset(base), TXN_INDEX_SUFFIX);
            io.write_file_atomic(&path, bytes).await?;
        }
    }
    if end_at.is_some() {
        // Everything up to the log end is verified and durable: checkpoint it, then the
        // truncation is complete.
        io.write_file_atomic(&dir.join(LEADER_EPOCH_FILE), epochs.encode())
            .await?;
        let snapshot = producers.encode_snapshot();
        let path = offset_file_path(&dir, Offset(log_end), SNAPSHOT_SUFFIX);
        io.write_file_atomic(&path, snapshot).await?;
        let checkpoint = encode_checkpoint(tp, Offset(log_end));
        io.write_file_atomic(&dir.join(RECOVERY_POINT_FILE), checkpoint)
            .await?;
        truncate::finish_intent(io.as_ref(), &dir).await?;
    }
    let recovery_point = match end_at {
        Some(_) => Some(log_end),
        None => recovery_point,
    };
    let log_start = log_start_checkpoint
        .unwrap_or(first_base)
        .max(first_base)
        .min(log_end);
    epochs.truncate_from_start(log_start);
    // After a clean stop only the tail was scanned: the cache knows the epochs before it.
    let leader_epoch = leader_epoch.max(epochs.latest().map_or(0, |e| e.epoch.0));
    // What the file holds: written just above, or as loaded (then changed only if recovery
    // assigned or truncated entries, which the next checkpoint writes).
    let epochs_written = match (&loaded_epochs, end_at) {
        (_, Some(_)) => epochs.changes(),
        (Some(loaded), None) if *loaded == epochs => epochs.changes(),
        _ => u64::MAX,
    };
    let offsets = Offsets {
        log_start,
        high_watermark: log_end,
        log_end,
        written: log_end,
        durable: log_end,
        hwm_segment: active.base_offset().0,
        hwm_position: mark.size,
        leader_epoch,
    };
    offsets.check();
    // The marker goes now; its removal is made durable (directory fsync) before the first
    // write to this partition, not here: an idle partition never pays for it, and start-up
    // is not one fsync per partition. Until that fsync no byte of the log has changed, so a
    // crash that brings the marker back leaves a log that was, indeed, cleanly closed.
    if clean {
        io.remove_file(&dir.join(CLEAN_SHUTDOWN_FILE)).await?;
    }
    if recovered > 0 {
        tracing::info!(partition = %tp, clean, log_start, log_end, recovered, "partition log recovered");
    } else {
        tracing::debug!(partition = %tp, clean, log_start, log_end, "partition log loaded");
    }
    let recovery_point = if clean {
        log_end
    } else {
        recovery_point.unwrap_or(-1)
    };
    let parts = LoadedLog {
        dir,
        segments,
        offsets,
        producers,
        txn_index,
        epochs,
        epochs_written,
        recovery_point,
        recovered_bytes: recovered,
        marker_sync_pending: clean,
    };
    Ok(PartitionLog::from_loaded(
        shard, tp, topic_id, config, parts,
    ))
}

/// The segments found in the directory (sizes from the files), or a new empty one at the
/// checkpointed log start offset.
async fn open_segments(
    io: &Rc<dyn StorageIo>,
    dir: &Path,
    bases: &[Offset],
    log_start_checkpoint: Option<i64>,
    index_bytes: u64,
) -> Result<BTreeMap<i64, Rc<Segment>>, StorageError> {
    let mut segments = BTreeMap::new();
    if bases.is_empty() {
        let base = Offset(log_start_checkpoint.unwrap_or(0).max(0));
        let segment = Segment::create(io.clone(), dir, base, index_bytes).await?;
        io.sync_dir(dir).await?;
        segments.insert(base.0, segment);
        return Ok(segments);
    }
    for base in bases {
        let path = offset_file_path(dir, *base, LOG_SUFFIX);
        let size = io
            .open(&path, FileKind::Direct, false)
            .await?
            .file_size()
            .await?;
        segments.insert(
            base.0,
            Rc::new(Segment::existing(io.clone(), dir, *base, size)),
        );
    }
    Ok(segments)
}

/// Deletes segments wholly below the checkpointed log start offset: their deletion (retention,
/// DeleteRecords) was decided before the last stop but may not have reached the files.
/// Returns whether any was deleted.
async fn drop_segments_below(
    segments: &mut BTreeMap<i64, Rc<Segment>>,
    log_start: Option<i64>,
) -> Result<bool, StorageError> {
    let Some(log_start) = log_start else {
        return Ok(false);
    };
    let mut deleted = false;
    let bases: Vec<i64> = segments.keys().copied().collect();
    for pair in bases.windows(2) {
        if pair[1] > log_start {
            break;
        }
        if let Some(segment) = segments.remove(&pair[0]) {
            tracing::info!(
                base = pair[0],
                log_start,
                "deleting segment below the log start offset"
            );
            segment.delete_files().await?;
            deleted = true;
        }
    }
    Ok(deleted)
}

/// The leader epoch cache from `leader-epoch-checkpoint`; `None` when absent or damaged (the
/// caller then rebuilds it from the log).
async fn load_epochs(
    io: &dyn StorageIo,
    dir: &Path,
) -> Result<Option<LeaderEpochCache>, StorageError> {
    let path = dir.join(LEADER_EPOCH_FILE);
    let Some(bytes) = io.read_file(&path).await? else {
        return Ok(None);
    };
    let cache = LeaderEpochCache::decode(&bytes);
    if cache.is_none() {
        tracing::warn!(path = %path.display(), "ignoring damaged leader epoch checkpoint: rebuilding it from the log");
    }
    Ok(cache)
}

/// The leader epoch cache from every batch header of the log.
async fn rebuild_epochs(
    segments: &BTreeMap<i64, Rc<Segment>>,
) -> Result<LeaderEpochCache, StorageError> {
    let epochs = std::cell::RefCell::new(LeaderEpochCache::default());
    for segment in segments.values() {
        segment
            .scan_headers(0, segment.size(), |header| {
                epochs
                    .borrow_mut()
                    .assign(header.partition_leader_epoch, header.base_offset);
                false
            })
            .await?;
    }
    Ok(epochs.into_inner())
}

/// Producer state and aborted-transaction entries from every batch of the log (when no
/// usable snapshot exists). Reads every batch header, and the whole batch of each marker.
async fn rebuild_producers(
    segments: &BTreeMap<i64, Rc<Segment>>,
) -> Result<(ProducerStateManager, TransactionIndex), StorageError> {
    let mut producers = ProducerStateManager::default();
    let mut txn_index = TransactionIndex::default();
    for (base, segment) in segments {
        let size = segment.size();
        let mut position = 0;
        while position + BATCH_HEADER_BYTES as u64 <= size {
            let head = segment.read(position, BATCH_HEADER_BYTES).await?;
            let header = batch::parse_header(&head)
                .filter(|h| h.batch_length > 0)
                .ok_or_else(|| {
                    StorageError::CorruptRecord(format!("segment {base} at {position}"))
                })?;
            let bytes = if header.is_control() {
                segment.read(position, header.size_bytes()).await?
            } else {
                head
            };
            apply_batch(&mut producers, &mut txn_index, &header, &bytes, *base, true);
            position += header.size_bytes() as u64;
        }
    }
    Ok((producers, txn_index))
}

/// Replays one batch into producer state; a marker completes its transaction, and (`index`)
/// an aborted one is added to the index of the segment at `segment_base`.
fn apply_batch(
    producers: &mut ProducerStateManager,
    txn_index: &mut TransactionIndex,
    header: &batch::BatchHeader,
    bytes: &[u8],
    segment_base: i64,
    index: bool,
) {
    let Some(marker) = txn_index::marker_of(header, bytes) else {
        producers.update(header);
        return;
    };
    if let Some(done) = producers.complete_txn(header, marker) {
        if done.aborted && index {
            txn_index.add(
                segment_base,
                AbortedTxn {
                    producer_id: done.producer_id,
                    first_offset: done.first_offset,
                    last_offset: done.last_offset,
                    last_stable_offset: done.last_stable_offset,
                },
            );
        }
    }
}

/// The base of the segment holding `offset` among sorted `bases`.
fn segment_floor(bases: &[i64], offset: i64) -> i64 {
    let at = bases.partition_point(|b| *b <= offset);
    bases.get(at.wrapping_sub(1)).copied().unwrap_or(offset)
}

/// The `.txnindex` entries of the segments at `bases` (a damaged file is ignored, with a
/// warning: its entries cannot be trusted).
async fn load_txn_index(
    io: &dyn StorageIo,
    dir: &Path,
    bases: &[Offset],
    names: &[String],
) -> Result<TransactionIndex, StorageError> {
    let mut index = TransactionIndex::default();
    for base in bases {
        let name = offset_file_name(*base, TXN_INDEX_SUFFIX);
        if !names.contains(&name) {
            continue;
        }
        let Some(bytes) = io.read_file(&dir.join(&name)).await? else {
            continue;
        };
        match AbortedTxn::decode_all(&bytes) {
            Some(entries) => index.load(base.0, entries),
            None => tracing::warn!(file = name, "ignoring damaged transaction index"),
        }
    }
    Ok(index)
}

/// Scans the segments that may hold unverified bytes. `start`: `None` after a clean shutdown
/// (only the active segment's tail after its last index entry), else the recovery point.
/// Returns the bytes scanned, and whether later segments were deleted (a truncation, or a
/// segment that does not continue where the scanned one before it ends).
#[allow(clippy::too_many_arguments)]
async fn recover_segments(
    segments: &mut BTreeMap<i64, Rc<Segment>>,
    start: Option<i64>,
    interval: u64,
    index_bytes: u64,
    missing_indexes: &[i64],
    end_at: Option<i64>,
    cleaned: bool,
    apply: &mut impl FnMut(&batch::BatchHeader, &[u8]),
) -> Result<(u64, bool), StorageError> {
    let bases: Vec<i64> = segments.keys().copied().collect();
    for pair in bases.windows(2) {
        segments[&pair[0]].set_next_offset(pair[1]);
    }
    let Some(&last) = bases.last() else {
        return Ok((0, false));
    };
    let (first_scanned, start_offset) = match start {
        None => (last, None),
        Some(point) => {
            let floor = bases
                .iter()
                .copied()
                .filter(|b| *b <= point)
                .max()
                .unwrap_or(bases[0]);
            (floor, Some(point))
        }
    };
    let mut scanned = 0;
    for base in bases.iter().copied() {
        let rebuild = missing_indexes.contains(&base);
        if base < first_scanned && !rebuild {
            continue;
        }
        let Some(segment) = segments.get(&base).cloned() else {
            continue;
        };
        segment.ensure_indexes().await?;
        let position = match start_offset {
            _ if rebuild => 0,
            Some(point) if base == first_scanned => segment.index_position(point),
            Some(_) => 0,
            None => segment.index_position(i64::MAX),
        };
        if rebuild && segment.size() > 0 {
            tracing::warn!(
                base,
                "index files missing: rebuilding them from the segment"
            );
        }
        let outcome = segment
            .recover_from(position, interval, end_at, &mut *apply)
            .await?;
        scanned += outcome.scanned_bytes;
        if base != last {
            segment.write_indexes(true, 0).await?;
        } else if rebuild || start_offset.is_some() {
            // Unclean: the scan rebuilt the entries above the recovery point and may have
            // truncated; the file must not keep entries the log no longer has.
            segment.write_indexes(false, index_bytes).await?;
        }
        let next_base = segments.range(base + 1..).next().map(|(b, _)| *b);
        // A cleaned log (storage::cleaner) has gaps where whole batches were removed; only an
        // overlap is a defect there.
        let end = segment.mark().next_offset;
        let gap = next_base.filter(|next| *next != end && !(cleaned && *next > end));
        if outcome.truncated || gap.is_some() {
            if outcome.truncated {
                tracing::warn!(
                    base,
                    valid = outcome.valid_bytes,
                    "truncated invalid bytes in segment"
                );
            } else {
                tracing::error!(
                    base,
                    end = segment.mark().next_offset,
                    next_base = gap,
                    "segments are not contiguous: deleting the segments after the gap"
                );
            }
            let later: Vec<i64> = segments.range(base + 1..).map(|(b, _)| *b).collect();
            for later_base in later {
                if let Some(dropped) = segments.remove(&later_base) {
                    dropped.delete_files().await?;
                }
            }
            return Ok((scanned, next_base.is_some()));
        }
    }
    Ok((scanned, false))
}

/// Completes an interrupted `truncate_fully_and_start_at(start)`: every segment file and
/// producer snapshot goes, the log start offset and recovery point become `start` (the segment
/// at `start` is then created as for an empty directory), and the intent is removed.
async fn complete_start_at(
    io: &dyn StorageIo,
    tp: &TopicPartition,
    dir: &Path,
    names: &[String],
    start: i64,
) -> Result<(), StorageError> {
    tracing::warn!(partition = %tp, start, "completing an interrupted full truncation");
    for name in names {
        let doomed = name == LEADER_EPOCH_FILE
            || [
                LOG_SUFFIX,
                INDEX_SUFFIX,
                TIME_INDEX_SUFFIX,
                TXN_INDEX_SUFFIX,
                SNAPSHOT_SUFFIX,
            ]
            .iter()
            .any(|suffix| parse_offset_file_name(name, suffix).is_some());
        if doomed {
            io.remove_file(&dir.join(name)).await?;
        }
    }
    // Each atomic write fsyncs the directory, making the removals durable first.
    let checkpoint = encode_checkpoint(tp, Offset(start));
    io.write_file_atomic(&dir.join(LOG_START_OFFSET_FILE), checkpoint.clone())
        .await?;
    io.write_file_atomic(&dir.join(RECOVERY_POINT_FILE), checkpoint)
        .await?;
    truncate::finish_intent(io, dir).await?;
    Ok(())
}

/// Max timestamp of the active segment's first batch (segment.ms rolls count from it).
async fn first_batch_timestamp(segment: &Segment) -> Result<Option<i64>, StorageError> {
    if segment.size() < BATCH_HEADER_BYTES as u64 {
        return Ok(None);
    }
    let header = segment.read(0, BATCH_HEADER_BYTES).await?;
    Ok(batch::parse_header(&header).map(|h| h.max_timestamp))
}

/// The newest valid producer snapshot, or empty state at offset 0.
async fn load_snapshot(
    io: &dyn StorageIo,
    dir: &Path,
    names: &[String],
) -> Result<(i64, ProducerStateManager), StorageError> {
    let mut snapshots: Vec<Offset> = names
        .iter()
        .filter_map(|n| parse_offset_file_name(n, SNAPSHOT_SUFFIX))
        .collect();
    snapshots.sort();
    while let Some(offset) = snapshots.pop() {
        let path = offset_file_path(dir, offset, SNAPSHOT_SUFFIX);
        if let Some(bytes) = io.read_file(&path).await? {
            if let Some(state) = ProducerStateManager::decode_snapshot(&bytes) {
                return Ok((offset.0, state));
            }
        }
        tracing::warn!(path = %path.display(), "ignoring damaged producer snapshot");
    }
    Ok((0, ProducerStateManager::default()))
}

/// Kafka's offset checkpoint text format for one partition: `0\n1\n<topic> <partition> <offset>\n`.
pub fn encode_checkpoint(tp: &TopicPartition, offset: Offset) -> Vec<u8> {
    format!("0\n1\n{} {} {}\n", tp.topic, tp.partition, offset.0).into_bytes()
}

async fn read_checkpoint(io: &dyn StorageIo, path: &Path) -> Result<Option<i64>, StorageError> {
    let Some(bytes) = io.read_file(path).await? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let valid = lines.next() == Some("0") && lines.next() == Some("1");
    let offset = lines
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|o| o.parse::<i64>().ok());
    match (valid, offset) {
        (true, Some(offset)) => Ok(Some(offset)),
        _ => {
            tracing::warn!(path = %path.display(), "ignoring damaged checkpoint");
            Ok(None)
        }
    }
}

/// Writes `partition.metadata` if absent (returns true then: a new partition directory); fails
/// if it names another topic id.
async fn check_partition_metadata(
    io: &dyn StorageIo,
    dir: &Path,
    topic_id: TopicId,
) -> Result<bool, StorageError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let expected = encode_topic_id(topic_id);
    if let Some(bytes) = io.read_file(&path).await? {
        let text = String::from_utf8_lossy(&bytes);
        let found = text
            .lines()
            .find_map(|l| l.strip_prefix("topic_id: "))
            .map(str::trim);
        if found == Some(expected.as_str()) {
            return Ok(false);
        }
        return Err(StorageError::CorruptRecord(format!(
            "{} names topic id {found:?}, expected {expected}",
            path.display()
        )));
    }
    let content = format!("version: 0\ntopic_id: {expected}\n");
    io.write_file_atomic(&path, content.into_bytes()).await?;
    Ok(true)
}

/// Kafka's `Uuid.toString()`, as `partition.metadata` stores it.
pub fn encode_topic_id(topic_id: TopicId) -> String {
    crate::model::kafka_uuid_string(&topic_id)
}
