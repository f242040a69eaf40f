//! `sluice log dump FILE…`: prints a segment's `.log` (batch headers, CRC checked), `.index` or
//! `.timeindex` as `kafka-dump-log.sh` does, offline (no broker). Formats:
//! docs/on-disk-format.md. Records inside batches are not decoded (headers only).

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{print_rows, Format};
use super::topic::row;
use crate::storage::file_names::{self, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

#[derive(Args, Debug)]
pub struct LogArgs {
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: LogCommand,
}

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Print segment files (`.log`, `.index`, `.timeindex`) of a data directory.
    Dump {
        #[arg(long = "files", required = true, num_args = 1.., value_delimiter = ',')]
        files: Vec<PathBuf>,
    },
}

/// The record batch header (magic 2), as docs/on-disk-format.md lays it out.
const BATCH_HEADER_BYTES: usize = 61;
/// Bytes after the length field that the CRC covers from (attributes on).
const CRC_FROM: usize = 21;
/// Largest batch this tool reads (the log's own bound).
const BATCH_BYTES_MAX: usize = crate::storage::batch::BATCH_BYTES_MAX;

pub fn run(args: LogArgs) -> anyhow::Result<()> {
    let LogCommand::Dump { files } = args.command;
    for file in &files {
        if args.output == Format::Table {
            println!("Dumping {}", file.display());
        }
        dump(args.output, file)?;
    }
    Ok(())
}

fn dump(out: Format, path: &Path) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let suffix = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
        .into_iter()
        .find(|s| name.ends_with(s))
        .with_context(|| format!("{}: not a .log, .index or .timeindex file", path.display()))?;
    let base = file_names::parse_offset_file_name(name, suffix)
        .with_context(|| format!("{name}: not a segment file name (20-digit base offset)"))?
        .get();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    match suffix {
        LOG_SUFFIX => dump_log(out, &mut reader),
        INDEX_SUFFIX => dump_entries(out, &mut reader, base, false),
        _ => dump_entries(out, &mut reader, base, true),
    }
}

fn dump_log(out: Format, reader: &mut impl Read) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut position: u64 = 0;
    let mut header = [0u8; BATCH_HEADER_BYTES];
    loop {
        match read_full(reader, &mut header)? {
            0 => break,
            n if n < BATCH_HEADER_BYTES => {
                if header[..n].iter().any(|b| *b != 0) {
                    println!("truncated batch header at position {position} ({n} bytes)");
                }
                break;
            }
            _ => {}
        }
        let i64_at =
            |at: usize| i64::from_be_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
        let i32_at =
            |at: usize| i32::from_be_bytes(header[at..at + 4].try_into().unwrap_or([0; 4]));
        let i16_at =
            |at: usize| i16::from_be_bytes(header[at..at + 2].try_into().unwrap_or([0; 2]));
        let length = i32_at(8);
        if length == 0 && header.iter().all(|b| *b == 0) {
            break; // zero padding of an active segment's last block
        }
        let size = usize::try_from(length).unwrap_or(0) + 12;
        if !(BATCH_HEADER_BYTES..=BATCH_BYTES_MAX).contains(&size) {
            bail!("position {position}: batch length {length} out of bounds; stopping");
        }
        let mut rest = vec![0u8; size - BATCH_HEADER_BYTES];
        if read_full(reader, &mut rest)? < rest.len() {
            println!("truncated batch at position {position}");
            break;
        }
        let crc = u32::from_be_bytes(header[17..21].try_into().unwrap_or([0; 4]));
        let mut hasher_input = header[CRC_FROM..].to_vec();
        hasher_input.extend_from_slice(&rest);
        let valid = crc32c::crc32c(&hasher_input) == crc;
        let attributes = i16_at(21);
        let base_offset = i64_at(0);
        let last_delta = i32_at(23);
        let base_sequence = i32_at(53);
        let count = i32_at(57);
        let codec = ["none", "gzip", "snappy", "lz4", "zstd"]
            .get((attributes & 0x7) as usize)
            .copied()
            .unwrap_or("unknown");
        let time_type = if attributes & 0x8 != 0 {
            "LogAppendTime"
        } else {
            "CreateTime"
        };
        rows.push(row(json!({
            "base_offset": base_offset, "last_offset": base_offset + i64::from(last_delta),
            "count": count, "base_sequence": base_sequence,
            "last_sequence": if base_sequence < 0 { -1 } else { base_sequence + last_delta },
            "producer_id": i64_at(43), "producer_epoch": i16_at(51),
            "partition_leader_epoch": i32_at(12),
            "is_transactional": attributes & 0x10 != 0, "is_control": attributes & 0x20 != 0,
            "position": position, "timestamp_type": time_type, "max_timestamp": i64_at(35),
            "size": size, "magic": header[16], "compresscodec": codec, "crc": crc, "is_valid": valid,
        })));
        position += size as u64;
    }
    let columns = [
        "base_offset",
        "last_offset",
        "count",
        "position",
        "size",
        "timestamp_type",
        "max_timestamp",
        "partition_leader_epoch",
        "producer_id",
        "producer_epoch",
        "base_sequence",
        "compresscodec",
        "is_transactional",
        "is_control",
        "crc",
        "is_valid",
    ];
    print_rows(out, &columns, &rows);
    Ok(())
}

/// `.index` (relative offset u32, position u32) or `.timeindex` (timestamp i64, relative offset
/// u32) entries, up to the first that does not increase (the zero padding).
fn dump_entries(out: Format, reader: &mut impl Read, base: i64, time: bool) -> anyhow::Result<()> {
    let width = if time { 12 } else { 8 };
    let mut entry = [0u8; 12];
    let mut rows = Vec::new();
    let mut last: Option<(i64, i64)> = None;
    while read_full(reader, &mut entry[..width])? == width {
        let (a, b) = if time {
            let ts = i64::from_be_bytes(entry[..8].try_into().unwrap_or([0; 8]));
            let rel = u32::from_be_bytes(entry[8..12].try_into().unwrap_or([0; 4]));
            (ts, base + i64::from(rel))
        } else {
            let rel = u32::from_be_bytes(entry[..4].try_into().unwrap_or([0; 4]));
            let pos = u32::from_be_bytes(entry[4..8].try_into().unwrap_or([0; 4]));
            (base + i64::from(rel), i64::from(pos))
        };
        let padding = entry[..width].iter().all(|b| *b == 0);
        let goes_back = last.is_some_and(|(la, lb)| {
            if time {
                a < la || b < lb
            } else {
                a <= la || b <= lb
            }
        });
        if padding || goes_back {
            break;
        }
        last = Some((a, b));
        rows.push(if time {
            row(json!({"timestamp": a, "offset": b}))
        } else {
            row(json!({"offset": a, "position": b}))
        });
    }
    if time {
        print_rows(out, &["timestamp", "offset"], &rows);
    } else {
        print_rows(out, &["offset", "position"], &rows);
    }
    Ok(())
}

/// Reads until `buf` is full or EOF; the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
