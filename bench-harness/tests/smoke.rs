//! Seconds-long smoke test: the real broker binary on an ephemeral port in a temporary data
//! directory, driven by `sluice-bench producer-perf` and `consumer-perf` as a user would.
//! Checks that the output parses and the counts are right; never asserts timings (benchmarks
//! are binaries, STYLE.md §12).
//!
//! `SLUICE_SMOKE_BROKER_BIN` runs another binary instead (it must accept `serve --data-dir D
//! --listen A --cores N` or ignore them, and print `LISTENING host:port`); the topic is then
//! left to the broker's auto-creation, since not every test broker answers CreateTopics
//! (librdkafka's mock cluster, `--example mock_cluster`, does not).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const RECORDS: u64 = 2_000;
const RECORD_SIZE: u64 = 100;
/// Bound on broker start-up (first line `LISTENING host:port`).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each sluice-bench run.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn producer_perf_then_consumer_perf_against_real_broker() {
    let custom_broker = std::env::var_os("SLUICE_SMOKE_BROKER_BIN").map(PathBuf::from);
    let broker_bin = custom_broker.clone().unwrap_or_else(build_broker);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::start(&broker_bin, data_dir.path());
    let bootstrap = broker.bootstrap.clone();
    let report_dir = tempfile::tempdir().expect("temp dir");
    let producer_report = report_dir.path().join("producer.json");

    let mut producer_args: Vec<String> = [
        "producer-perf",
        "--topic",
        "smoke",
        "--num-records",
        &RECORDS.to_string(),
        "--record-size",
        &RECORD_SIZE.to_string(),
        "--throughput",
        "-1",
        "--producer-props",
        "acks=all",
        "linger.ms=1",
        "--bootstrap-server",
        &bootstrap,
        "--report",
        producer_report.to_str().expect("utf-8 path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if custom_broker.is_none() {
        producer_args.extend(["--create-topic", "--partitions", "2"].map(String::from));
    }
    let produced = run_bench(&producer_args, &mut broker);
    let final_line = produced
        .lines()
        .last()
        .expect("producer-perf printed nothing");
    let totals = parse_producer_total(final_line)
        .unwrap_or_else(|| panic!("final producer-perf line does not parse: {final_line:?}"));
    assert_eq!(totals.records, RECORDS, "{final_line}");
    assert!(
        totals.percentiles_ms.windows(2).all(|w| w[0] <= w[1]),
        "{final_line}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&producer_report).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["figures"]["records_acked"], RECORDS);
    assert_eq!(report["figures"]["records_failed"], 0);

    let consumer_args: Vec<String> = [
        "consumer-perf",
        "--topic",
        "smoke",
        "--messages",
        &RECORDS.to_string(),
        "--timeout",
        "20000",
        "--bootstrap-server",
        &bootstrap,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let consumed = run_bench(&consumer_args, &mut broker);
    let mut lines = consumed.lines().filter(|line| !line.starts_with("WARNING"));
    let header = lines.next().expect("consumer-perf header");
    assert!(
        header.starts_with(
            "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec"
        ),
        "{header}"
    );
    let row = lines.next().expect("consumer-perf figures line");
    let fields: Vec<&str> = row.split(", ").collect();
    assert_eq!(fields.len(), 10, "{row}");
    assert_eq!(fields[4].parse::<u64>().expect("nMsg"), RECORDS, "{row}");
    let megabytes: f64 = fields[2].parse().expect("MB");
    let expected = (RECORDS * RECORD_SIZE) as f64 / (1024.0 * 1024.0);
    assert!(
        (megabytes - expected).abs() < 0.0001,
        "{row}: {megabytes} MB, expected {expected}"
    );
    broker.stop();
}

struct ProducerTotals {
    records: u64,
    percentiles_ms: Vec<f64>,
}

/// `N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
/// p ms 50th, p ms 95th, p ms 99th, p ms 99.9th.`
fn parse_producer_total(line: &str) -> Option<ProducerTotals> {
    let (records, rest) = line.split_once(" records sent, ")?;
    let (rate, rest) = rest.split_once(" records/sec (")?;
    let (mb, rest) = rest.split_once(" MB/sec), ")?;
    rate.parse::<f64>().ok()?;
    mb.parse::<f64>().ok()?;
    let fields: Vec<&str> = rest.strip_suffix('.')?.split(", ").collect();
    let suffixes = [
        "ms avg latency",
        "ms max latency",
        "ms 50th",
        "ms 95th",
        "ms 99th",
        "ms 99.9th",
    ];
    if fields.len() != suffixes.len() {
        return None;
    }
    let mut values = Vec::new();
    for (field, suffix) in fields.iter().zip(suffixes) {
        values.push(field.strip_suffix(suffix)?.trim().parse::<f64>().ok()?);
    }
    Some(ProducerTotals {
        records: records.parse().ok()?,
        percentiles_ms: values[2..].to_vec(),
    })
}

/// Builds the broker (a no-op when fresh) and returns `target/debug/sluice`.
fn build_broker() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = workspace.join("target/debug/sluice");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "sluice", "--bin", "sluice"])
        .current_dir(&workspace)
        .status()
        .expect("running cargo build -p sluice");
    assert!(status.success(), "cargo build -p sluice failed");
    assert!(binary.exists(), "{} missing after build", binary.display());
    binary
}

struct Broker {
    child: Child,
    bootstrap: String,
}

impl Broker {
    fn start(binary: &PathBuf, data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(binary)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--cores", "1"])
            .args(["--override", "admin.listener=127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("LISTENING ") {
                    let _ = sender.send(address.trim().to_string());
                }
                // Keep draining so the broker never blocks on a full pipe.
            }
        });
        let bootstrap = match receiver.recv_timeout(LISTEN_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                panic!("broker printed no LISTENING line within {LISTEN_TIMEOUT:?} (exit status: {status:?})");
            }
        };
        Self { child, bootstrap }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("broker exited during the test: {status}");
        }
    }

    fn stop(mut self) {
        self.assert_running();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sluice-bench` with a time bound; returns stdout, failing the test on a non-zero exit.
fn run_bench(args: &[String], broker: &mut Broker) -> String {
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice-bench");
    let output = wait_bounded(child, RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    broker.assert_running();
    assert!(
        output.status.success(),
        "sluice-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

fn wait_bounded(child: Child, timeout: Duration) -> Output {
    let id = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(timeout) {
        Ok(output) => output.expect("waiting for sluice-bench"),
        Err(_) => {
            // Kill only the child we started, by its pid.
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("sluice-bench ran past {timeout:?}");
        }
    }
}

/// The storage-engine subcommands (`log-*`) with tiny sizes: each runs, prints its line and
/// writes a JSON report with the figures named. No broker, no timings asserted.
#[test]
fn log_subcommands_run_with_tiny_sizes() {
    let report_dir = tempfile::tempdir().expect("temp dir");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data = data_dir.path().to_str().expect("utf-8 path").to_string();
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "log-append",
            &[
                "--partitions",
                "2",
                "--batch-bytes",
                "65536",
                "--total-bytes",
                "1048576",
            ],
            "mb_per_sec",
        ),
        (
            "log-recovery",
            &["--tail-bytes", "1048576"],
            "scanned_bytes",
        ),
        ("log-startup", &["--partitions", "5"], "open_sequential_ms"),
        (
            "log-memory",
            &["--partitions", "5"],
            "idle_kib_per_partition",
        ),
    ];
    for (command, flags, figure) in cases {
        let report = report_dir.path().join(format!("{command}.json"));
        let mut args: Vec<String> = vec![command.to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        args.extend([
            "--data-dir".to_string(),
            data.clone(),
            "--report".to_string(),
            report.to_str().expect("utf-8 path").to_string(),
        ]);
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice-bench");
        let output = wait_bounded(child, RUN_TIMEOUT);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "sluice-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(&format!("{command}: ")), "{stdout}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
                .expect("report is JSON");
        assert_eq!(json["kind"], command);
        assert!(
            !json["figures"][figure].is_null(),
            "{command}: no {figure} in {json}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(data_dir.path())
        .expect("data dir")
        .collect();
    assert!(left.is_empty(), "log-* left files behind: {left:?}");
}

/// The consumer-group subcommands (`group-*`) with tiny sizes against the real broker: each runs,
/// prints its lines and writes a JSON report with the figures named. No timings asserted.
///
/// Both create their topic through CreateTopics, so with `SLUICE_SMOKE_BROKER_BIN` set this test
/// is skipped unless `SLUICE_SMOKE_GROUPS=1` says that broker answers CreateTopics and groups.
#[test]
fn group_subcommands_run_with_tiny_sizes() {
    let custom_broker = std::env::var_os("SLUICE_SMOKE_BROKER_BIN").map(PathBuf::from);
    if custom_broker.is_some() && std::env::var("SLUICE_SMOKE_GROUPS").as_deref() != Ok("1") {
        eprintln!("skipped: SLUICE_SMOKE_BROKER_BIN is set and SLUICE_SMOKE_GROUPS is not 1");
        return;
    }
    let broker_bin = custom_broker.unwrap_or_else(build_broker);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::start(&broker_bin, data_dir.path());
    let bootstrap = broker.bootstrap.clone();
    let report_dir = tempfile::tempdir().expect("temp dir");

    let rebalance_report = report_dir.path().join("group-rebalance.json");
    let args: Vec<String> = [
        "group-rebalance",
        "--members",
        "2",
        "--partitions",
        "4",
        "--rounds",
        "1",
        "--bootstrap-server",
        &bootstrap,
        "--report",
        rebalance_report.to_str().expect("utf-8 path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stdout = run_bench(&args, &mut broker);
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("round 1: leave ")),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rebalance_report).expect("report written"))
            .expect("report is JSON");
    assert_eq!(report["kind"], "group-rebalance");
    assert_eq!(report["parameters"]["partitions"], 4);
    for figure in ["leave", "join"] {
        assert!(report["figures"][figure]["median_ms"].is_f64(), "{report}");
    }
    assert_eq!(report["figures"]["leave_rounds"][0]["members"], 1);
    assert_eq!(report["figures"]["join_rounds"][0]["members"], 2);

    let commits_report = report_dir.path().join("group-commits.json");
    let args: Vec<String> = [
        "group-commits",
        "--committers",
        "2",
        "--partitions",
        "2",
        "--duration-secs",
        "1",
        "--bootstrap-server",
        &bootstrap,
        "--report",
        commits_report.to_str().expect("utf-8 path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stdout = run_bench(&args, &mut broker);
    assert!(stdout.contains(" commits/s "), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&commits_report).expect("report written"))
            .expect("report is JSON");
    let figures = &report["figures"];
    assert!(
        figures["commits"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert_eq!(figures["errors"], 0, "{report}");
    assert_eq!(figures["read_back_failures"], 0, "{report}");
    assert!(figures["latency_ms"]["p99"].is_f64(), "{report}");
    broker.stop();
}
