//! The key/value codec of `__consumer_offsets` records, in Kafka's own format so that
//! Kafka tools can read the topic:
//!
//! | key version | key                              | value                                  |
//! |-------------|----------------------------------|----------------------------------------|
//! | 0, 1        | group, topic, partition          | OffsetCommitValue v0-v3 (we write v1/v3)|
//! | 2           | group                            | GroupMetadataValue v0-v3 (we write v3) |
//! | 3           | group (ConsumerGroupMetadataKey) | ConsumerGroupMetadataValue v0 (epoch)  |
//! | 32512       | group, topic, partition, producer id | pending transactional offset (Sluice) |
//!
//! Key 32512 is Sluice's own, written only inside snapshot batches: an offset of a transaction
//! still open when the snapshot was taken (its TxnOffsetCommit batch lies before the snapshot,
//! in the part of the log the snapshot lets go). Its value: `i16 version 0, i16 producer epoch,
//! i64 record offset` (where the TxnOffsetCommit record was), `i8 superseded` (1: a later
//! commit of the partition won), then an OffsetCommitValue as key 1 has. Kafka's loaders skip
//! unknown key versions, as Sluice does.
//!
//! A null value is a tombstone. Strings are int16-length-prefixed, bytes
//! int32-length-prefixed, arrays int32-counted (the non-flexible encodings), except
//! key 3's value, which is flexible (a trailing empty tagged-field section).
//! Other key versions (KIP-848 member records, share groups) are skipped on replay.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::offsets::CommittedOffset;
use super::GroupError;
use crate::model::{LeaderEpoch, Offset, TopicPartition};

/// Encodes (key, value) records as one uncompressed v2 batch, offsets relative (0..n; the log
/// assigns the base offset and the partition leader epoch on append). The one batch builder
/// for Sluice's internal logs: `__consumer_offsets` here and the metadata log
/// (`cluster::raft::log_store`).
pub fn encode_uncompressed_batch(
    records: &[(Option<Bytes>, Option<Bytes>)],
    now_ms: i64,
) -> Result<Bytes, String> {
    encode_batch_of(records, now_ms, BatchKind::Plain)
}

/// What kind of `__consumer_offsets` batch [`encode_batch_of`] writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BatchKind {
    /// Plain records (producer id -1).
    Plain,
    /// A compacted snapshot of the partition's live state: plain records, each with the
    /// [`SNAPSHOT_HEADER`] header, so that replay knows they restate older commits (a restated
    /// offset does not supersede a pending transactional one). `first`: the snapshot's first
    /// batch (header value `start`), which holds its pending offsets; replay forgets the
    /// partition's open transactions there and takes the snapshot's.
    Snapshot { first: bool },
    /// A transactional batch (attributes bit 4) of one producer: TxnOffsetCommit's offsets,
    /// pending until that producer's control batch. Base sequence -1 (no idempotence check).
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
    },
}

/// The record header that marks a snapshot batch's records (Kafka's loaders ignore headers).
pub const SNAPSHOT_HEADER: &str = "sluice.snapshot";

/// The [`SNAPSHOT_HEADER`] value of a snapshot's first batch.
pub const SNAPSHOT_START: &[u8] = b"start";

/// Whether a record's headers mark it as a snapshot's: `None` if not, `Some(true)` for the
/// snapshot's first batch.
pub fn snapshot_record(
    headers: &kafka_protocol::indexmap::IndexMap<kafka_protocol::protocol::StrBytes, Option<Bytes>>,
) -> Option<bool> {
    headers
        .iter()
        .find(|(k, _)| k.as_str() == SNAPSHOT_HEADER)
        .map(|(_, v)| v.as_deref() == Some(SNAPSHOT_START))
}

/// Encodes (key, value) records as one uncompressed v2 batch of `kind`, offsets relative.
pub fn encode_batch_of(
    records: &[(Option<Bytes>, Option<Bytes>)],
    now_ms: i64,
    kind: BatchKind,
) -> Result<Bytes, String> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let (transactional, producer_id, producer_epoch) = match kind {
        BatchKind::Plain | BatchKind::Snapshot { .. } => (false, -1, -1),
        BatchKind::Transactional {
            producer_id,
            producer_epoch,
        } => (true, producer_id, producer_epoch),
    };
    let mut headers = kafka_protocol::indexmap::IndexMap::new();
    if let BatchKind::Snapshot { first } = kind {
        let value = first.then(|| Bytes::from_static(SNAPSHOT_START));
        headers.insert(
            kafka_protocol::protocol::StrBytes::from_static_str(SNAPSHOT_HEADER),
            value,
        );
    }
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever `offset - sequence` changes: with the
            // sequence following the offset, all records make one batch, whose base sequence
            // is then set to -1 below (no idempotence check for internal writes).
            sequence: i as i32,
            timestamp: now_ms,
            key: key.clone(),
            value: value.clone(),
            headers: headers.clone(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &recs, &opts).map_err(|e| e.to_string())?;
    clear_base_sequence(&mut buf)?;
    Ok(buf.freeze())
}

/// v2 batch header positions (Kafka's `DefaultRecordBatch`).
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const BASE_SEQUENCE_AT: usize = 53;
const BATCH_HEADER_BYTES: usize = 61;

/// Sets the base sequence of the one batch in `batch` to -1 and recomputes its CRC.
fn clear_base_sequence(batch: &mut BytesMut) -> Result<(), String> {
    if batch.len() < BATCH_HEADER_BYTES {
        return Err("no record batch was encoded".into());
    }
    let declared = 12 + i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]) as usize;
    if declared != batch.len() {
        return Err(format!(
            "the records made more than one batch ({declared} of {} bytes)",
            batch.len()
        ));
    }
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The outcome a control record (an end-transaction marker) carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// Decodes a control record's key (`i16 version, i16 type`: 0 abort, 1 commit). `None` for
/// other control types (Kafka skips them too) or a malformed key.
pub fn decode_control_key(key: &[u8]) -> Option<ControlType> {
    let mut k = key;
    let _version = get_i16(&mut k).ok()?;
    match get_i16(&mut k).ok()? {
        0 => Some(ControlType::Abort),
        1 => Some(ControlType::Commit),
        _ => None,
    }
}

/// An end-transaction marker batch as Kafka writes one: a control batch (attributes bits 4 and
/// 5) of one record, key `i16 version 0, i16 type`, value `i16 version 0, i32 coordinator
/// epoch`.
pub fn encode_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    control: ControlType,
    now_ms: i64,
) -> Result<Bytes, String> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let mut key = BytesMut::new();
    key.put_i16(0);
    key.put_i16(match control {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    });
    let mut value = BytesMut::new();
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let rec = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &[rec], &opts).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// One member as persisted in a classic group's metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A classic group's metadata record (written after each completed rebalance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadataRecord {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberRecord>,
}

/// One decoded `__consumer_offsets` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetsRecord {
    Offset {
        group: String,
        tp: TopicPartition,
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        value: Option<GroupMetadataRecord>,
    },
    /// A KIP-848 consumer group exists with this group epoch.
    ConsumerGroup { group: String, epoch: Option<i32> },
    /// An offset of a transaction open at snapshot time (written only in snapshots).
    PendingOffset {
        group: String,
        tp: TopicPartition,
        producer_id: i64,
        pending: PendingOffsetValue,
    },
}

/// Key version of [`OffsetsRecord::PendingOffset`] (Sluice's own; far above Kafka's types).
pub const PENDING_OFFSET_KEY_VERSION: i16 = 32_512;

/// The value of [`OffsetsRecord::PendingOffset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffsetValue {
    pub producer_epoch: i16,
    pub record_offset: Offset,
    pub superseded: bool,
    pub value: CommittedOffset,
}

impl OffsetsRecord {
    /// Encodes to a (key, value) pair; `None` value is a tombstone.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            OffsetsRecord::Offset { group, tp, value } => {
                key.put_i16(1);
                put_str(&mut key, group);
                put_str(&mut key, &tp.topic);
                key.put_i32(tp.partition);
                (key.freeze(), value.as_ref().map(encode_offset))
            }
            OffsetsRecord::Group { group, value } => {
                key.put_i16(2);
                put_str(&mut key, group);
                (key.freeze(), value.as_ref().map(encode_group))
            }
            OffsetsRecord::ConsumerGroup { group, epoch } => {
                key.put_i16(3);
                put_str(&mut key, group);
                let value = epoch.map(|e| {
                    let mut v = BytesMut::new();
                    v.put_i16(0);
                    v.put_i32(e);
                    v.put_u8(0); // no tagged fields
                    v.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::PendingOffset {
                group,
                tp,
                producer_id,
                pending,
            } => {
                key.put_i16(PENDING_OFFSET_KEY_VERSION);
                put_str(&mut key, group);
                put_str(&mut key, &tp.topic);
                key.put_i32(tp.partition);
                key.put_i64(*producer_id);
                let mut v = BytesMut::new();
                v.put_i16(0);
                v.put_i16(pending.producer_epoch);
                v.put_i64(pending.record_offset.get());
                v.put_i8(i8::from(pending.superseded));
                v.put_slice(&encode_offset(&pending.value));
                (key.freeze(), Some(v.freeze()))
            }
        }
    }

    /// Decodes one record; `Ok(None)` for key versions this broker does not use.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<OffsetsRecord>, GroupError> {
        let mut k = key;
        let version = get_i16(&mut k)?;
        match version {
            0 | 1 => {
                let group = get_str(&mut k)?;
                let topic = get_str(&mut k)?;
                let partition = get_i32(&mut k)?;
                let value = value.map(decode_offset).transpose()?;
                Ok(Some(OffsetsRecord::Offset {
                    group,
                    tp: TopicPartition::new(topic, partition),
                    value,
                }))
            }
            2 => {
                let group = get_str(&mut k)?;
                let value = value.map(decode_group).transpose()?;
                Ok(Some(OffsetsRecord::Group { group, value }))
            }
            3 => {
                let group = get_str(&mut k)?;
                let epoch = match value {
                    Some(mut v) => {
                        let _version = get_i16(&mut v)?;
                        Some(get_i32(&mut v)?)
                    }
                    None => None,
                };
                Ok(Some(OffsetsRecord::ConsumerGroup { group, epoch }))
            }
            PENDING_OFFSET_KEY_VERSION => {
                let group = get_str(&mut k)?;
                let topic = get_str(&mut k)?;
                let partition = get_i32(&mut k)?;
                let producer_id = get_i64(&mut k)?;
                let Some(mut v) = value else {
                    return Err(GroupError::Malformed("pending offset without a value"));
                };
                let _version = get_i16(&mut v)?;
                let producer_epoch = get_i16(&mut v)?;
                let record_offset = Offset(get_i64(&mut v)?);
                if v.remaining() < 1 {
                    return Err(TRUNCATED);
                }
                let superseded = v.get_i8() != 0;
                let value = decode_offset(v)?;
                Ok(Some(OffsetsRecord::PendingOffset {
                    group,
                    tp: TopicPartition::new(topic, partition),
                    producer_id,
                    pending: PendingOffsetValue {
                        producer_epoch,
                        record_offset,
                        superseded,
                        value,
                    },
                }))
            }
            _ => Ok(None),
        }
    }
}

fn encode_offset(o: &CommittedOffset) -> Bytes {
    let mut v = BytesMut::new();
    match o.expire_timestamp_ms {
        // v1 is the only version that carries an explicit expire timestamp.
        Some(expire) => {
            v.put_i16(1);
            v.put_i64(o.offset.get());
            put_str(&mut v, &o.metadata);
            v.put_i64(o.commit_timestamp_ms);
            v.put_i64(expire);
        }
        None => {
            v.put_i16(3);
            v.put_i64(o.offset.get());
            v.put_i32(o.leader_epoch.0);
            put_str(&mut v, &o.metadata);
            v.put_i64(o.commit_timestamp_ms);
        }
    }
    v.freeze()
}

fn decode_offset(mut v: &[u8]) -> Result<CommittedOffset, GroupError> {
    let version = get_i16(&mut v)?;
    let offset = Offset(get_i64(&mut v)?);
    let leader_epoch = if version >= 3 {
        LeaderEpoch(get_i32(&mut v)?)
    } else {
        LeaderEpoch(-1)
    };
    let metadata = get_str(&mut v)?;
    let commit_timestamp_ms = get_i64(&mut v)?;
    let expire_timestamp_ms = if version == 1 {
        Some(get_i64(&mut v)?)
    } else {
        None
    };
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn encode_group(g: &GroupMetadataRecord) -> Bytes {
    let mut v = BytesMut::new();
    v.put_i16(3);
    put_str(&mut v, &g.protocol_type);
    v.put_i32(g.generation);
    put_nullable_str(&mut v, g.protocol.as_deref());
    put_nullable_str(&mut v, g.leader.as_deref());
    v.put_i64(g.current_state_timestamp_ms);
    v.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut v, &m.member_id);
        put_nullable_str(&mut v, m.group_instance_id.as_deref());
        put_str(&mut v, &m.client_id);
        put_str(&mut v, &m.client_host);
        v.put_i32(m.rebalance_timeout_ms);
        v.put_i32(m.session_timeout_ms);
        put_bytes(&mut v, &m.subscription);
        put_bytes(&mut v, &m.assignment);
    }
    v.freeze()
}

fn decode_group(mut v: &[u8]) -> Result<GroupMetadataRecord, GroupError> {
    let version = get_i16(&mut v)?;
    if version > 3 {
        return Err(GroupError::Malformed("group metadata value version > 3"));
    }
    let protocol_type = get_str(&mut v)?;
    let generation = get_i32(&mut v)?;
    let protocol = get_nullable_str(&mut v)?;
    let leader = get_nullable_str(&mut v)?;
    let current_state_timestamp_ms = if version >= 2 { get_i64(&mut v)? } else { -1 };
    let count = get_i32(&mut v)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = get_str(&mut v)?;
        let group_instance_id = if version >= 3 {
            get_nullable_str(&mut v)?
        } else {
            None
        };
        let client_id = get_str(&mut v)?;
        let client_host = get_str(&mut v)?;
        let session_timeout_first = get_i32(&mut v)?;
        let (rebalance_timeout_ms, session_timeout_ms) = if version >= 1 {
            (session_timeout_first, get_i32(&mut v)?)
        } else {
            (session_timeout_first, session_timeout_first)
        };
        let subscription = get_bytes(&mut v)?;
        let assignment = get_bytes(&mut v)?;
        members.push(MemberRecord {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupMetadataRecord {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, bytes: &[u8]) {
    b.put_i32(bytes.len() as i32);
    b.put_slice(bytes);
}

const TRUNCATED: GroupError = GroupError::Malformed("truncated");

fn get_i16(b: &mut &[u8]) -> Result<i16, GroupError> {
    if b.remaining() < 2 {
        return Err(TRUNCATED);
    }
    Ok(b.get_i16())
}

fn get_i32(b: &mut &[u8]) -> Result<i32, GroupError> {
    if b.remaining() < 4 {
        return Err(TRUNCATED);
    }
    Ok(b.get_i32())
}

fn get_i64(b: &mut &[u8]) -> Result<i64, GroupError> {
    if b.remaining() < 8 {
        return Err(TRUNCATED);
    }
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut &[u8]) -> Result<Option<String>, GroupError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if b.remaining() < len {
        return Err(TRUNCATED);
    }
    let s = std::str::from_utf8(&b[..len])
        .map_err(|_| GroupError::Malformed("string is not UTF-8"))?
        .to_owned();
    b.advance(len);
    Ok(Some(s))
}

fn get_str(b: &mut &[u8]) -> Result<String, GroupError> {
    Ok(get_nullable_str(b)?.unwrap_or_default())
}

fn get_bytes(b: &mut &[u8]) -> Result<Bytes, GroupError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if b.remaining() < len {
        return Err(TRUNCATED);
    }
    let out = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: OffsetsRecord) {
        let (k, v) = r.encode();
        let back = OffsetsRecord::decode(&k, v.as_deref()).unwrap();
        assert_eq!(back, Some(r));
    }

    #[test]
    fn records_round_trip() {
        round_trip(OffsetsRecord::Offset {
            group: "g".into(),
            tp: TopicPartition::new("t", 3),
            value: Some(CommittedOffset {
                offset: Offset(42),
                leader_epoch: LeaderEpoch(7),
                metadata: "meta".into(),
                commit_timestamp_ms: 1234,
                expire_timestamp_ms: None,
            }),
        });
        round_trip(OffsetsRecord::Offset {
            group: "g".into(),
            tp: TopicPartition::new("t", 3),
            value: Some(CommittedOffset {
                offset: Offset(42),
                leader_epoch: LeaderEpoch(-1),
                metadata: String::new(),
                commit_timestamp_ms: 1234,
                expire_timestamp_ms: Some(99_999),
            }),
        });
        round_trip(OffsetsRecord::Offset {
            group: "g".into(),
            tp: TopicPartition::new("t", 0),
            value: None,
        });
        round_trip(OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupMetadataRecord {
                protocol_type: "consumer".into(),
                generation: 3,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                current_state_timestamp_ms: 77,
                members: vec![MemberRecord {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        });
        round_trip(OffsetsRecord::Group {
            group: "g".into(),
            value: None,
        });
        round_trip(OffsetsRecord::ConsumerGroup {
            group: "g".into(),
            epoch: Some(9),
        });
        round_trip(OffsetsRecord::PendingOffset {
            group: "g".into(),
            tp: TopicPartition::new("t", 2),
            producer_id: 4000,
            pending: PendingOffsetValue {
                producer_epoch: 3,
                record_offset: Offset(17),
                superseded: true,
                value: CommittedOffset {
                    offset: Offset(5),
                    leader_epoch: LeaderEpoch(1),
                    metadata: "m".into(),
                    commit_timestamp_ms: 10,
                    expire_timestamp_ms: None,
                },
            },
        });
    }

    #[test]
    fn transactional_and_snapshot_batches_carry_their_kind() {
        use kafka_protocol::records::RecordBatchDecoder;
        let pairs = vec![
            (
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"v")),
            ),
            (Some(Bytes::from_static(b"k2")), None),
            (
                Some(Bytes::from_static(b"k3")),
                Some(Bytes::from_static(b"v3")),
            ),
        ];
        let txn = encode_batch_of(
            &pairs,
            5,
            BatchKind::Transactional {
                producer_id: 77,
                producer_epoch: 2,
            },
        )
        .unwrap();
        let header = crate::storage::batch::parse_header(&txn).unwrap();
        assert!(header.is_transactional() && !header.is_control());
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (77, 2, -1)
        );
        assert_eq!(header.record_count, 3, "one batch of all records");
        assert_eq!(header.size_bytes(), txn.len());
        assert!(crate::storage::batch::verify_batch(&txn).is_ok());
        let plain = encode_uncompressed_batch(&pairs, 5).unwrap();
        let header = crate::storage::batch::verify_batch(&plain).unwrap();
        assert_eq!(
            (
                header.record_count,
                header.base_sequence,
                header.producer_id
            ),
            (3, -1, -1)
        );
        assert_eq!(header.size_bytes(), plain.len());
        let snap = encode_batch_of(&pairs, 5, BatchKind::Snapshot { first: true }).unwrap();
        let mut buf = snap.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        let r = &sets[0].records[0];
        assert!(!r.transactional && r.producer_id == -1);
        assert_eq!(snapshot_record(&r.headers), Some(true));
        let later = encode_batch_of(&pairs, 5, BatchKind::Snapshot { first: false }).unwrap();
        let mut buf = later.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        assert_eq!(snapshot_record(&sets[0].records[0].headers), Some(false));
        let marker = encode_marker_batch(77, 2, 0, ControlType::Commit, 5).unwrap();
        let mut buf = marker.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        let r = &sets[0].records[0];
        assert!(r.control && r.transactional && r.producer_id == 77);
        assert_eq!(
            decode_control_key(r.key.as_deref().unwrap()),
            Some(ControlType::Commit)
        );
        assert_eq!(decode_control_key(&[0, 0, 0, 0]), Some(ControlType::Abort));
        assert_eq!(decode_control_key(&[0, 0, 0, 5]), None);
        assert_eq!(decode_control_key(&[0]), None);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let (k, v) = OffsetsRecord::Group {
            group: "group".into(),
            value: Some(GroupMetadataRecord {
                protocol_type: "consumer".into(),
                generation: 1,
                protocol: None,
                leader: None,
                current_state_timestamp_ms: 0,
                members: vec![],
            }),
        }
        .encode();
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(OffsetsRecord::decode(&k, Some(&v[..cut])).is_err());
        }
        for cut in 0..k.len() {
            let _ = OffsetsRecord::decode(&k[..cut], None);
        }
        assert_eq!(OffsetsRecord::decode(&[0, 9, 0, 0], None).unwrap(), None);
    }
}
