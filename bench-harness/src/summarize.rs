//! `summarize`: reads what `scripts/bench.sh` left in a results directory (fio and iperf3 JSON,
//! one sluice-bench report per phase, broker CPU seconds per phase) and writes the side-by-side
//! figures as `summary.md` (a BENCHMARKS.md table fragment) and `summary.json`.
//! A phase whose files are missing shows as "not run" rather than stopping the summary.

use crate::cli::SummarizeArgs;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

const BYTES_PER_MB: f64 = 1024.0 * 1024.0;
const BYTES_PER_GB: f64 = 1e9;

/// The phases bench.sh runs, in table order: (file stem, description).
const PHASES: [(&str, &str); 7] = [
    ("produce-1k", "producer-perf 1 KiB, acks=1, 1 shard"),
    ("produce-100b", "producer-perf 100 B, acks=1, 1 shard"),
    (
        "consume-first",
        "consumer-perf 1 KiB, first read after produce, 1 shard",
    ),
    (
        "consume-cached",
        "consumer-perf 1 KiB, second read (cached), 1 shard",
    ),
    (
        "e2e-50mb",
        "e2e-latency 50 MB/s of 1 KiB, acks=all, 1 shard",
    ),
    (
        "produce-1k-1shard",
        "producer-perf 1 KiB, acks=1, 1 shard (shard comparison)",
    ),
    ("produce-1k-2shard", "producer-perf 1 KiB, acks=1, 2 shards"),
];

pub fn run(args: &SummarizeArgs) -> Result<()> {
    let dir = &args.results_dir;
    let fio_mb = read_json(&dir.join("fio.json"))
        .and_then(|fio| fio["jobs"][0]["write"]["bw_bytes"].as_f64())
        .map(|bytes| bytes / BYTES_PER_MB);
    let iperf_mb = read_json(&dir.join("iperf3.json"))
        .and_then(|iperf| iperf["end"]["sum_received"]["bits_per_second"].as_f64())
        .map(|bits| bits / 8.0 / BYTES_PER_MB);

    let mut rows = Vec::new();
    let mut host = Value::Null;
    for (stem, description) in PHASES {
        let report = read_json(&dir.join(format!("{stem}.json")));
        let cpu = read_json(&dir.join(format!("cpu-{stem}.json"))).unwrap_or(Value::Null);
        let cpu_seconds = cpu["broker_cpu_seconds"].as_f64();
        let client_cpu = report
            .as_ref()
            .and_then(|r| r["client_cpu_seconds"].as_f64());
        // What neither the broker nor the client used: other work competing for the CPUs.
        let other_cpu = cpu["machine_busy_cpu_seconds"]
            .as_f64()
            .zip(cpu_seconds)
            .zip(client_cpu)
            .map(|((busy, broker), client)| (busy - broker - client).max(0.0));
        let load = [
            cpu["loadavg_1m_before"].as_f64(),
            cpu["loadavg_1m_after"].as_f64(),
        ];
        if let Some(report) = &report {
            if host.is_null() {
                host = report["host"].clone();
            }
        }
        let mut row = phase_row(
            stem,
            description,
            report.as_ref(),
            cpu_seconds,
            fio_mb,
            iperf_mb,
        );
        row["loadavg_1m"] = json!(load);
        row["client_cpu_seconds"] = json!(client_cpu);
        row["other_cpu_seconds"] = json!(other_cpu);
        row["steal_seconds"] = cpu["steal_seconds"].clone();
        rows.push(row);
    }

    let machine = std::fs::read_to_string(dir.join("machine.txt")).unwrap_or_default();
    let command = std::fs::read_to_string(dir.join("command.txt")).unwrap_or_default();
    let mut markdown = String::new();
    for line in machine
        .lines()
        .chain(command.lines().take(1).map(|c| c.trim()))
    {
        let _ = writeln!(markdown, "- {line}");
    }
    markdown.push('\n');
    markdown.push_str(&markdown_table(&rows, fio_mb, iperf_mb));
    let summary = json!({
        "host": host,
        "machine": machine.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>(),
        "command": command.lines().next(),
        "device_limits": { "fio_seq_write_direct_mb_per_second": fio_mb, "iperf3_loopback_sendfile_mb_per_second": iperf_mb },
        "phases": rows,
    });
    std::fs::write(dir.join("summary.md"), &markdown).context("writing summary.md")?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .context("writing summary.json")?;
    print!("{markdown}");
    Ok(())
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// One table row; every figure is `null` when the phase did not produce it.
fn phase_row(
    stem: &str,
    description: &str,
    report: Option<&Value>,
    cpu_seconds: Option<f64>,
    fio_mb: Option<f64>,
    iperf_mb: Option<f64>,
) -> Value {
    let Some(report) = report else {
        return json!({ "phase": stem, "description": description, "ran": false });
    };
    let figures = &report["figures"];
    let (mb_per_second, messages_per_second, bytes, latency, device_ratio) =
        match report["kind"].as_str() {
            Some("producer-perf") => {
                let mb = figures["mb_per_second"].as_f64();
                (
                    mb,
                    figures["records_per_second"].as_f64(),
                    figures["bytes_acked"].as_f64(),
                    figures["latency_ms"].clone(),
                    ratio(mb, fio_mb),
                )
            }
            Some("consumer-perf") => {
                let mb = figures["fetch_mb_per_second"].as_f64();
                (
                    mb,
                    figures["fetch_messages_per_second"].as_f64(),
                    figures["bytes"].as_f64(),
                    Value::Null,
                    ratio(mb, iperf_mb),
                )
            }
            Some("e2e-latency") => {
                let mb = figures["achieved_mb_per_second"].as_f64();
                let record_size = report["parameters"]["record_size"].as_f64();
                let received = figures["received"].as_f64();
                let bytes = record_size.zip(received).map(|(size, count)| size * count);
                (
                    mb,
                    figures["achieved_rate_per_second"].as_f64(),
                    bytes,
                    figures["latency_from_scheduled_ms"].clone(),
                    None,
                )
            }
            _ => (None, None, None, Value::Null, None),
        };
    let cpu_per_gb = cpu_seconds
        .zip(bytes)
        .filter(|(_, b)| *b > 0.0)
        .map(|(cpu, b)| cpu / (b / BYTES_PER_GB));
    json!({
        "phase": stem,
        "description": description,
        "ran": true,
        "mb_per_second": mb_per_second,
        "messages_per_second": messages_per_second,
        "bytes": bytes,
        "latency_ms": latency,
        "broker_cpu_seconds": cpu_seconds,
        "broker_cpu_seconds_per_gb": cpu_per_gb,
        "ratio_to_device": device_ratio,
        "complete": figures.get("complete").cloned().unwrap_or(Value::Bool(true)),
        "lost": figures.get("lost").cloned(),
    })
}

fn ratio(measured: Option<f64>, limit: Option<f64>) -> Option<f64> {
    measured
        .zip(limit)
        .filter(|(_, limit)| *limit > 0.0)
        .map(|(m, l)| m / l)
}

fn markdown_table(rows: &[Value], fio_mb: Option<f64>, iperf_mb: Option<f64>) -> String {
    let number = |value: Option<f64>, decimals: usize| {
        value.map_or("—".to_string(), |v| format!("{v:.decimals$}"))
    };
    let mut out = String::new();
    let _ = writeln!(out, "| Measurement | MB/s | msgs/s | latency p50 / p99 / p99.9 (ms) | broker CPU s/GB | ratio to device limit | CPU s: broker / client / other / steal | load avg 1m before → after |");
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|---|---|");
    let _ = writeln!(out, "| fio O_DIRECT sequential write, 1 MiB blocks, iodepth 8 (device limit for produce) | {} | | | | | | |", number(fio_mb, 1));
    let _ = writeln!(
        out,
        "| iperf3 -Z loopback TCP, sendfile (device limit for fetch) | {} | | | | | | |",
        number(iperf_mb, 1)
    );
    for row in rows {
        let description = row["description"].as_str().unwrap_or_default();
        if row["ran"] != Value::Bool(true) {
            let _ = writeln!(out, "| {description} | not run | | | | | | |");
            continue;
        }
        let latency = &row["latency_ms"];
        let latency_text = if latency.is_null() {
            String::new()
        } else {
            format!(
                "{} / {} / {}",
                number(latency["p50"].as_f64(), 2),
                number(latency["p99"].as_f64(), 2),
                number(latency["p999"].as_f64(), 2)
            )
        };
        let mut notes = String::new();
        if row["complete"] == Value::Bool(false) {
            notes.push_str(" (incomplete: timed out)");
        }
        if let Some(lost) = row["lost"].as_u64().filter(|lost| *lost > 0) {
            let _ = write!(notes, " ({lost} lost)");
        }
        let ratio_text = row["ratio_to_device"]
            .as_f64()
            .map_or(String::new(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "| {description}{notes} | {} | {} | {latency_text} | {} | {ratio_text} | {} / {} / {} / {} | {} → {} |",
            number(row["mb_per_second"].as_f64(), 1),
            number(row["messages_per_second"].as_f64(), 0),
            number(row["broker_cpu_seconds_per_gb"].as_f64(), 2),
            number(row["broker_cpu_seconds"].as_f64(), 2),
            number(row["client_cpu_seconds"].as_f64(), 2),
            number(row["other_cpu_seconds"].as_f64(), 2),
            number(row["steal_seconds"].as_f64(), 2),
            number(row["loadavg_1m"][0].as_f64(), 2),
            number(row["loadavg_1m"][1].as_f64(), 2),
        );
    }
    out
}
