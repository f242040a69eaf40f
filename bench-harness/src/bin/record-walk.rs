//! `record-walk`: what Produce validation's record walk costs per record, measured on the real
//! functions (`sluice::protocol::records`) in this process, no broker. For each codec it builds
//! one batch of `--records` records of `--value-bytes` bytes (kafka-protocol's encoder, as a
//! client would), then times the CRC-32C check and the record walk separately over
//! `--seconds` of repetitions. Prints one line per codec; `--report` saves them as JSON.
//!
//! Build with `cargo build --release -p bench-harness --bin record-walk`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice::protocol::records::walk;
use sluice::storage::batch::{verify_batch, BATCH_HEADER_BYTES};

#[derive(Parser, Debug)]
struct Args {
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    records: usize,
    /// Bytes per record value (keys are 8 bytes).
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Time spent per measurement.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let budget = Duration::from_secs_f64(args.seconds);
    let mut figures = Vec::new();
    for (name, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let batch = encode(args.records, args.value_bytes, compression)?;
        let header = verify_batch(&batch).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        anyhow::ensure!(
            header.record_count as usize == args.records && header.size_bytes() == batch.len(),
            "the encoder did not produce one batch of {} records",
            args.records
        );
        let payload = &batch[BATCH_HEADER_BYTES..header.size_bytes()];
        let crc_ns = time_per_batch(budget, || verify_batch(&batch).is_ok());
        let walk_ns = time_per_batch(budget, || walk(&header, payload).is_ok());
        let per_record = walk_ns / args.records as f64;
        println!(
            "codec={name} batch_bytes={} records={} value_bytes={} crc_ns_per_batch={crc_ns:.0} \
             walk_ns_per_batch={walk_ns:.0} walk_ns_per_record={per_record:.1}",
            batch.len(),
            args.records,
            args.value_bytes
        );
        figures.push(serde_json::json!({
            "codec": name,
            "batch_bytes": batch.len(),
            "records": args.records,
            "value_bytes": args.value_bytes,
            "crc_ns_per_batch": crc_ns,
            "walk_ns_per_batch": walk_ns,
            "walk_ns_per_record": per_record,
        }));
    }
    if let Some(path) = args.report {
        let report = serde_json::json!({ "kind": "record-walk", "figures": figures });
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Mean nanoseconds per call of `f` over about `budget`; panics if `f` reports failure.
fn time_per_batch(budget: Duration, mut f: impl FnMut() -> bool) -> f64 {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget {
        for _ in 0..16 {
            assert!(f(), "the batch failed validation");
        }
        calls += 16;
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn encode(records: usize, value_bytes: usize, compression: Compression) -> Result<Bytes> {
    // Values of pseudo-random printable bytes (about 6 bits of entropy each): payloads that
    // compress somewhat, not the best case of one repeated pattern.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 64) as u8 + 32
    };
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Contiguous sequences: the encoder starts a new batch when they are not.
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key{:05}", i % 100_000))),
            value: Some(Bytes::from(
                (0..value_bytes).map(|_| next()).collect::<Vec<u8>>(),
            )),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}
