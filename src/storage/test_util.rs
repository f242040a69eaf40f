//! Test helpers: a v2 batch encoder, an executor with small io_memory, and log fixtures.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::model::{LeaderEpoch, Offset, ShardId, TopicPartition};

use super::batch;
use super::config::{Acks, AppendOptions, LogConfig, StorageBrokerConfig};
use super::fault_io::FaultyIo;
use super::file_names::{offset_file_path, LOG_SUFFIX};
use super::log::PartitionLog;
use super::manager::LogManager;

/// Idempotent producer fields of a test batch: (producer id, epoch, base sequence).
pub type Producer = (i64, i16, i32);

pub const NO_PRODUCER: Producer = (-1, -1, -1);

/// Encodes one valid, uncompressed v2 batch of `values` with timestamps `timestamps`.
pub fn encode_batch(timestamps: &[i64], value_len: usize, producer: Producer) -> Vec<u8> {
    assert!(!timestamps.is_empty());
    let base_ts = timestamps[0];
    let mut records = Vec::new();
    for (i, ts) in timestamps.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0u8); // attributes
        put_varint(&mut body, ts - base_ts);
        put_varint(&mut body, i as i64);
        put_varint(&mut body, -1); // key: null
        put_varint(&mut body, value_len as i64);
        body.extend(std::iter::repeat_n(b'v', value_len));
        put_varint(&mut body, 0); // headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let max_ts = timestamps.iter().copied().max().unwrap_or(base_ts);
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes());
    batch.push(2);
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
    batch.extend_from_slice(&0i16.to_be_bytes());
    batch.extend_from_slice(&((timestamps.len() - 1) as i32).to_be_bytes());
    batch.extend_from_slice(&base_ts.to_be_bytes());
    batch.extend_from_slice(&max_ts.to_be_bytes());
    batch.extend_from_slice(&producer.0.to_be_bytes());
    batch.extend_from_slice(&producer.1.to_be_bytes());
    batch.extend_from_slice(&producer.2.to_be_bytes());
    batch.extend_from_slice(&(timestamps.len() as i32).to_be_bytes());
    batch.extend_from_slice(&records);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A batch of `count` records, all at `ts`.
pub fn batch_at(ts: i64, count: usize, value_len: usize) -> Bytes {
    Bytes::from(encode_batch(&vec![ts; count], value_len, NO_PRODUCER))
}

/// Runs `f` on a glommio executor with small io_memory and ring depth (RLIMIT_MEMLOCK is small).
pub fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .ring_depth(128)
        .spawn(f)
        .expect("executor starts");
    handle.join().expect("test body does not panic");
}

pub fn opts(acks: Acks, now_ms: i64) -> AppendOptions {
    AppendOptions {
        acks,
        leader_epoch: LeaderEpoch(0),
        now_ms,
    }
}

pub fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

pub fn broker_config(dir: &Path) -> StorageBrokerConfig {
    StorageBrokerConfig::new(dir)
}

/// Small segments and indexes so tests roll quickly.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        segment_index_bytes: 1024,
        index_interval_bytes: 512,
        retention_ms: None,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

pub fn fake_manager(io: &FaultyIo, dir: &Path) -> Rc<LogManager> {
    LogManager::with_io(ShardId(0), broker_config(dir), Rc::new(io.clone()))
}

pub fn data_dir() -> PathBuf {
    PathBuf::from("/data")
}

pub fn log_path(log: &PartitionLog, base: i64) -> PathBuf {
    offset_file_path(
        &data_dir().join(log.topic_partition().dir_name()),
        Offset(base),
        LOG_SUFFIX,
    )
}

pub async fn read_all(log: &PartitionLog, from: i64) -> Vec<batch::BatchHeader> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.high_watermark().0 {
        let read = log.read(Offset(next), 1 << 20, true).await.expect("read");
        let batches = batch::split_batches(&read.records).expect("whole, valid batches");
        assert!(!batches.is_empty());
        for (_, header) in batches {
            if header.last_offset() >= next {
                next = header.last_offset() + 1;
                out.push(header);
            }
        }
    }
    out
}

pub fn log_path_in(dir: &std::path::Path, base: i64) -> PathBuf {
    offset_file_path(&dir.join("t-0"), Offset(base), LOG_SUFFIX)
}
