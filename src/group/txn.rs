//! Transactional offset commits in the group coordinator (KIP-98, KIP-447; Kafka 4.1's
//! `OffsetMetadataManager` pending transactional offsets).
//!
//! - TxnOffsetCommit writes the offsets to the group's `__consumer_offsets` partition as ONE
//!   transactional batch (attributes bit 4, the request's producer id and epoch, base sequence
//!   -1), in the offset-commit record format, and keeps them *pending* per producer id in the
//!   group: OffsetFetch does not show them; with `require_stable` it answers
//!   UNSTABLE_OFFSET_COMMIT for their partitions.
//! - The producer's end-transaction marker (a control batch in the same partition) commits them
//!   (each becomes the committed offset unless a more recent commit of that partition exists:
//!   Kafka keeps the most recent by position in the log) or aborts them (dropped).
//! - Replay reads both from the log in order; a transaction still open at the log's end stays
//!   pending (the transaction coordinator sends its marker). Snapshots state pending offsets
//!   with their position (key 32512, see `records`).
//!
//! Lives on the group's coordinator shard, like the rest of [`GroupCoordinator`].

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::classic::ClassicGroup;
use super::coordinator::{encode_batch, Group, GroupCoordinator, RecordOrigin};
use super::offsets::CommittedOffset;
use super::records::{BatchKind, ControlType, OffsetsRecord};
use super::{now_ms, GroupError};
use crate::model::{LeaderEpoch, Offset, TopicPartition};

impl GroupCoordinator {
    /// Remembers that `group` holds pending offsets of `producer_id`.
    pub(crate) fn index_transaction(&self, group: &str, producer_id: i64) {
        let partition = self.partition_for(group);
        self.txn_groups
            .borrow_mut()
            .entry((partition, producer_id))
            .or_default()
            .insert(group.to_owned());
    }

    /// Drops every open transaction of `partition`'s groups (a snapshot restates them).
    pub(crate) fn clear_pending_of(&self, partition: i32) {
        let names: Vec<String> = self
            .txn_groups
            .borrow()
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .flat_map(|(_, groups)| groups.iter().cloned())
            .collect();
        let mut groups = self.groups.borrow_mut();
        for name in names {
            if let Some(g) = groups.get_mut(&name) {
                g.offsets_mut().clear_pending();
            }
        }
        self.txn_groups
            .borrow_mut()
            .retain(|(p, _), _| *p != partition);
    }

    /// Ends `producer_id`'s transaction in every group of `partition`: commit makes its
    /// pending offsets the committed ones (unless a more recent commit exists), abort drops
    /// them. Returns how many offsets became committed. Synchronous: no reader sees half.
    pub(crate) fn end_transaction_in(
        &self,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> usize {
        let Some(names) = self
            .txn_groups
            .borrow_mut()
            .remove(&(partition, producer_id))
        else {
            return 0;
        };
        let mut groups = self.groups.borrow_mut();
        let mut applied = 0;
        for name in names {
            if let Some(g) = groups.get_mut(&name) {
                applied += g.offsets_mut().end_transaction(producer_id, commit);
            }
        }
        applied
    }

    /// Appends `records` (offset commits of `group_id`) as one transactional batch of
    /// `producer_id`/`producer_epoch`, then keeps them pending. Refuses an epoch older than the
    /// one of the producer's open transaction in this group (a zombie).
    pub(crate) async fn write_pending(
        &self,
        partition: i32,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        records: Vec<OffsetsRecord>,
    ) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        let state = self.partition_state(partition);
        {
            let _guard = state.write_lock.lock().await;
            let open_epoch = self
                .groups
                .borrow()
                .get(group_id)
                .and_then(|g| g.offsets().pending_epoch(producer_id));
            if open_epoch.is_some_and(|e| producer_epoch < e) {
                return Err(GroupError::InvalidProducerEpoch);
            }
            let now = now_ms();
            let kind = BatchKind::Transactional {
                producer_id,
                producer_epoch,
            };
            let batch = encode_batch(&records, now, kind)?;
            let (base, bytes) = self.append_encoded(partition, None, batch).await?;
            self.add_appended(partition, bytes);
            for (i, r) in records.into_iter().enumerate() {
                let origin = RecordOrigin::Transactional {
                    producer_id,
                    producer_epoch,
                    record_offset: Offset(base.get() + i as i64),
                };
                self.apply_from(r, now, false, origin);
            }
        }
        self.maybe_snapshot(partition).await;
        Ok(())
    }

    /// Writes `producer_id`'s end-transaction marker to `partition` and applies it — Kafka's
    /// way for `__consumer_offsets` (its WriteTxnMarkers hands these partitions' markers to the
    /// group coordinator, which writes them in order with its own records). Returns how many
    /// offsets became committed.
    pub async fn complete_transaction(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<usize, GroupError> {
        self.ensure_loaded(partition).await?;
        let state = self.partition_state(partition);
        let applied = {
            let _guard = state.write_lock.lock().await;
            let control = if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            };
            let batch = super::records::encode_marker_batch(
                producer_id,
                producer_epoch,
                coordinator_epoch,
                control,
                now_ms(),
            )
            .map_err(GroupError::Append)?;
            let (_, bytes) = self.append_encoded(partition, None, batch).await?;
            self.add_appended(partition, bytes);
            self.end_transaction_in(partition, producer_id, commit)
        };
        self.maybe_snapshot(partition).await;
        Ok(applied)
    }

    /// Applies a marker that was already appended to `partition` by someone else (the
    /// WriteTxnMarkers handler). See [`super::txn_hook::txn_marker_written`].
    pub fn marker_written(&self, partition: i32, producer_id: i64, commit: bool) -> usize {
        let state = self.partition_state(partition);
        state
            .markers_applied
            .set(state.markers_applied.get().wrapping_add(1));
        self.end_transaction_in(partition, producer_id, commit)
    }
}

/// TxnOffsetCommit on the group's coordinator shard. Unknown topics were answered by the
/// handler; the rest is validated here and written as one transactional batch.
pub(crate) async fn txn_commit(
    c: &Rc<GroupCoordinator>,
    partition: i32,
    group_id: &str,
    v: i16,
    r: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let now = now_ms();
    let member = r.member_id.as_str();
    let instance = r.group_instance_id.as_ref().map(|s| s.as_str());
    let generation = r.generation_id;
    let producer_id = r.producer_id.0;
    let producer_epoch = r.producer_epoch;
    let mut allowed: Result<(), ResponseError> = {
        let mut groups = c.groups.borrow_mut();
        let checked = match groups.get(group_id) {
            Some(Group::Classic(g)) => g.validate_txn_commit(member, instance, generation),
            Some(Group::Consumer(g)) => g.validate_txn_commit(member, instance, generation),
            None if generation < 0 => {
                groups.insert(
                    group_id.to_owned(),
                    Group::Classic(ClassicGroup::new(group_id.to_owned(), now)),
                );
                Ok(())
            }
            None => Err(ResponseError::IllegalGeneration),
        };
        checked.and_then(|()| {
            let open_epoch = groups
                .get(group_id)
                .and_then(|g| g.offsets().pending_epoch(producer_id));
            match open_epoch {
                Some(e) if producer_epoch < e => Err(ResponseError::InvalidProducerEpoch),
                _ => Ok(()),
            }
        })
    };
    if allowed.is_ok() {
        allowed = verify_transaction(c, partition, &r, v).await;
    }
    tracing::debug!(group = group_id, version = v, producer_id, producer_epoch, member,
        generation, result = ?allowed, "TxnOffsetCommit");
    let mut records = Vec::new();
    let mut codes: Vec<Vec<i16>> = Vec::new();
    for t in &r.topics {
        let mut tcodes = Vec::new();
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.as_str())
                .unwrap_or("");
            let e = match allowed {
                Err(e) => e.code(),
                Ok(()) if metadata.len() > c.config.offset_metadata_max_bytes => {
                    ResponseError::OffsetMetadataTooLarge.code()
                }
                Ok(()) => {
                    records.push(OffsetsRecord::Offset {
                        group: group_id.to_owned(),
                        tp: TopicPartition::new(t.name.0.as_str(), p.partition_index),
                        value: Some(CommittedOffset {
                            offset: Offset(p.committed_offset),
                            leader_epoch: LeaderEpoch(if v >= 2 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            }),
                            metadata: metadata.to_owned(),
                            commit_timestamp_ms: now,
                            expire_timestamp_ms: None,
                        }),
                    });
                    0
                }
            };
            tcodes.push(e);
        }
        codes.push(tcodes);
    }
    let written = c
        .write_pending(partition, group_id, producer_id, producer_epoch, records)
        .await;
    if let Err(e) = written {
        tracing::warn!(group = group_id, producer_id, error = %e, "transactional offset commit append failed");
        let code = match e {
            GroupError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
            GroupError::NotLeader | GroupError::OffsetsPartitionMissing(_) => {
                ResponseError::NotCoordinator
            }
            _ => ResponseError::CoordinatorNotAvailable,
        }
        .code();
        for t in codes.iter_mut() {
            for c in t.iter_mut().filter(|c| **c == 0) {
                *c = code;
            }
        }
    }
    response(&r, |ti, pi| codes[ti][pi])
}

/// KIP-890 for offsets: the transaction coordinator verifies that `producer_id` /
/// `producer_epoch` has an ongoing transaction that includes this group's offsets partition;
/// for v5 (transactions v2) it adds the partition to the transaction itself, as AddOffsetsToTxn
/// did before. Its errors (INVALID_TXN_STATE, PRODUCER_FENCED, ...) go back per partition.
async fn verify_transaction(
    c: &Rc<GroupCoordinator>,
    partition: i32,
    r: &TxnOffsetCommitRequest,
    version: i16,
) -> Result<(), ResponseError> {
    if !c.config.verify_transactions {
        return Ok(());
    }
    let Some(shard) = c.shard() else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    let tp = TopicPartition::new(super::OFFSETS_TOPIC, partition);
    let codes = crate::txn::verify::verify(
        &shard,
        r.transactional_id.0.as_str(),
        r.producer_id.0,
        r.producer_epoch,
        vec![tp.clone()],
        version >= 5,
    )
    .await;
    match ResponseError::try_from_code(codes.get(&tp).copied().unwrap_or(0)) {
        None => Ok(()),
        // The coordinator could not be asked: retriable for the client, as Kafka maps it.
        Some(ResponseError::NotEnoughReplicas) => Err(ResponseError::CoordinatorNotAvailable),
        Some(e) => Err(e),
    }
}

/// A response with `code(topic index, partition index)` for every partition of `r`.
fn response(
    r: &TxnOffsetCommitRequest,
    code: impl Fn(usize, usize) -> i16,
) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        r.topics
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .enumerate()
                            .map(|(pi, p)| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code(ti, pi))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The answer to `r` when it cannot be served at all (every partition gets `e`).
pub fn error_response(r: &TxnOffsetCommitRequest, e: ResponseError) -> TxnOffsetCommitResponse {
    response(r, |_, _| e.code())
}
