//! The `__transaction_state` key/value codec, Kafka's format (`TransactionLogKey` v0,
//! `TransactionLogValue` v0 and v1), so a Kafka tool reading the topic understands it.
//!
//! Key: `i16 version (0)`, `string transactional_id`.
//! Value v0: `i64 producer_id, i16 producer_epoch, i32 timeout_ms, i8 status,
//! [topic: string, partitions: [i32]] (nullable), i64 last_update_ms, i64 start_ms`.
//! Value v1 is the flexible form of the same fields (compact strings and arrays, tagged fields
//! after each struct) with tags 0 = previous producer id, 1 = next producer id, 2 = client
//! transaction version. We write v1; both are read. A tombstone (no value) removes the id.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnState};
use crate::model::TopicPartition;

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 1;
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __transaction_state record: {0}")]
pub struct Malformed(pub &'static str);

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(KEY_VERSION);
    b.put_i16(transactional_id.len() as i16);
    b.put_slice(transactional_id.as_bytes());
    b.freeze()
}

/// The transactional id of a key, or `None` for a key of another version (skipped).
pub fn decode_key(mut k: &[u8]) -> Result<Option<String>, Malformed> {
    let version = get_i16(&mut k)?;
    if version != KEY_VERSION {
        return Ok(None);
    }
    let len = get_i16(&mut k)?;
    let s = take(
        &mut k,
        usize::try_from(len).map_err(|_| Malformed("key length"))?,
    )?;
    String::from_utf8(s.to_vec())
        .map(Some)
        .map_err(|_| Malformed("key is not UTF-8"))
}

pub fn encode_value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(VALUE_VERSION);
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state as i8);
    let by_topic = by_topic(&m.partitions);
    put_uvarint(&mut b, by_topic.len() as u64 + 1);
    for (topic, parts) in &by_topic {
        put_uvarint(&mut b, topic.len() as u64 + 1);
        b.put_slice(topic.as_bytes());
        put_uvarint(&mut b, parts.len() as u64 + 1);
        for p in parts {
            b.put_i32(*p);
        }
        put_uvarint(&mut b, 0); // no tagged fields
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    // Tagged fields, in tag order; defaults are not written.
    let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
    if m.prev_producer_id != -1 {
        tags.push((
            TAG_PREVIOUS_PRODUCER_ID,
            m.prev_producer_id.to_be_bytes().to_vec(),
        ));
    }
    if m.next_producer_id != -1 {
        tags.push((
            TAG_NEXT_PRODUCER_ID,
            m.next_producer_id.to_be_bytes().to_vec(),
        ));
    }
    if m.client_version != 0 {
        tags.push((
            TAG_CLIENT_TRANSACTION_VERSION,
            m.client_version.to_be_bytes().to_vec(),
        ));
    }
    put_uvarint(&mut b, tags.len() as u64);
    for (tag, data) in tags {
        put_uvarint(&mut b, u64::from(tag));
        put_uvarint(&mut b, data.len() as u64);
        b.put_slice(&data);
    }
    b.freeze()
}

pub fn decode_value(transactional_id: &str, mut v: &[u8]) -> Result<TxnMeta, Malformed> {
    let version = get_i16(&mut v)?;
    if !(0..=1).contains(&version) {
        return Err(Malformed("unknown value version"));
    }
    let flexible = version >= 1;
    let producer_id = get_i64(&mut v)?;
    let producer_epoch = get_i16(&mut v)?;
    let timeout_ms = get_i32(&mut v)?;
    let state = TxnState::from_i8(get_i8(&mut v)?).ok_or(Malformed("unknown status"))?;
    let mut partitions = BTreeSet::new();
    let topics = if flexible {
        get_uvarint(&mut v)? as i64 - 1
    } else {
        i64::from(get_i32(&mut v)?)
    };
    for _ in 0..topics.max(0) {
        let topic = if flexible {
            let len = get_uvarint(&mut v)?
                .checked_sub(1)
                .ok_or(Malformed("null topic"))?;
            take(&mut v, len as usize)?.to_vec()
        } else {
            let len = get_i16(&mut v)?;
            take(
                &mut v,
                usize::try_from(len).map_err(|_| Malformed("topic length"))?,
            )?
            .to_vec()
        };
        let topic = String::from_utf8(topic).map_err(|_| Malformed("topic is not UTF-8"))?;
        let count = if flexible {
            get_uvarint(&mut v)? as i64 - 1
        } else {
            i64::from(get_i32(&mut v)?)
        };
        if count > v.len() as i64 / 4 {
            return Err(Malformed("partition count"));
        }
        for _ in 0..count.max(0) {
            partitions.insert(TopicPartition::new(topic.clone(), get_i32(&mut v)?));
        }
        if flexible {
            skip_tagged(&mut v)?;
        }
    }
    let last_update_ms = get_i64(&mut v)?;
    let start_ms = get_i64(&mut v)?;
    let mut m = TxnMeta {
        transactional_id: transactional_id.to_string(),
        producer_id,
        prev_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
        client_version: 0,
    };
    if flexible {
        let n = get_uvarint(&mut v)?;
        for _ in 0..n {
            let tag = get_uvarint(&mut v)?;
            let len = get_uvarint(&mut v)? as usize;
            let mut data = take(&mut v, len)?;
            match tag as u32 {
                TAG_PREVIOUS_PRODUCER_ID => m.prev_producer_id = get_i64(&mut data)?,
                TAG_NEXT_PRODUCER_ID => m.next_producer_id = get_i64(&mut data)?,
                TAG_CLIENT_TRANSACTION_VERSION => m.client_version = get_i16(&mut data)?,
                _ => {}
            }
        }
    }
    Ok(m)
}

fn by_topic(parts: &BTreeSet<TopicPartition>) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for tp in parts {
        match out.last_mut() {
            Some((t, ps)) if *t == tp.topic => ps.push(tp.partition),
            _ => out.push((tp.topic.clone(), vec![tp.partition])),
        }
    }
    out
}

fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_uvarint(b: &mut &[u8]) -> Result<u64, Malformed> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.first().ok_or(Malformed("truncated varint"))?;
        *b = &b[1..];
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Malformed("varint too long"))
}

fn skip_tagged(b: &mut &[u8]) -> Result<(), Malformed> {
    let n = get_uvarint(b)?;
    for _ in 0..n {
        get_uvarint(b)?;
        let len = get_uvarint(b)? as usize;
        take(b, len)?;
    }
    Ok(())
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], Malformed> {
    if b.len() < n {
        return Err(Malformed("truncated"));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn get_i8(b: &mut &[u8]) -> Result<i8, Malformed> {
    Ok(take(b, 1)?[0] as i8)
}
fn get_i16(b: &mut &[u8]) -> Result<i16, Malformed> {
    let s = take(b, 2)?;
    Ok(i16::from_be_bytes([s[0], s[1]]))
}
fn get_i32(b: &mut &[u8]) -> Result<i32, Malformed> {
    let s = take(b, 4)?;
    Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
fn get_i64(b: &mut &[u8]) -> Result<i64, Malformed> {
    let s = take(b, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(i64::from_be_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TxnMeta {
        let mut m = TxnMeta::new("tx-1".into(), 42, 60_000, 1000);
        m.producer_epoch = 3;
        m.state = TxnState::Ongoing;
        m.partitions.insert(TopicPartition::new("a", 1));
        m.partitions.insert(TopicPartition::new("a", 0));
        m.partitions.insert(TopicPartition::new("b", 7));
        m.prev_producer_id = 41;
        m.client_version = 2;
        m.start_ms = 1500;
        m.last_update_ms = 1600;
        m
    }

    #[test]
    fn round_trip() {
        let m = meta();
        let k = encode_key(&m.transactional_id);
        assert_eq!(decode_key(&k).unwrap().as_deref(), Some("tx-1"));
        let back = decode_value("tx-1", &encode_value(&m)).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn reads_version_0() {
        // v0 as Kafka 3.x wrote it: producer 7, epoch 1, 60 s, CompleteCommit, topic "t" [0, 2].
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i64(7);
        b.put_i16(1);
        b.put_i32(60_000);
        b.put_i8(4);
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(2);
        b.put_i32(0);
        b.put_i32(2);
        b.put_i64(20);
        b.put_i64(10);
        let m = decode_value("x", &b).unwrap();
        assert_eq!(m.producer_id, 7);
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert_eq!(m.partitions.len(), 2);
        assert_eq!((m.start_ms, m.last_update_ms), (10, 20));
    }

    #[test]
    fn truncated_input_is_an_error() {
        let v = encode_value(&meta());
        for n in 0..v.len() {
            assert!(decode_value("tx-1", &v[..n]).is_err(), "prefix {n}");
        }
        assert!(decode_key(&[0, 0, 0, 9, b'a']).is_err());
    }
}
