//! `sluice-bench verify` against the real broker binary: one node on an ephemeral port in a
//! temporary data directory (`--cores 1`), 2 producers x 2,000 records spread over 2
//! partitions in 2 phases with a harmless fault command; the report must show every acknowledged record where it was
//! acknowledged and no violation, and the exit status must be 0. No timings asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PRODUCERS: u64 = 2;
const RECORDS_PER_PRODUCER: u64 = 2_000;
/// Bound on broker start-up (its first line, `LISTENING host:port`).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the verify run.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn verify_passes_against_a_single_node() {
    let broker_bin = build_broker();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::start(&broker_bin, data_dir.path());
    let args: Vec<String> = [
        "verify",
        "--bootstrap-server",
        &broker.bootstrap,
        "--topic",
        "verify-single",
        "--partitions",
        "2",
        "--producers",
        &PRODUCERS.to_string(),
        "--records-per-producer",
        &RECORDS_PER_PRODUCER.to_string(),
        "--spread-partitions",
        "--phases",
        "2",
        "--fault-cmd",
        "true",
        "--readers",
        "1",
        "--settle-ms",
        "200",
        "--output",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let output = run_verify(&args);
    broker.assert_running();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "verify failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    assert_eq!(report["kind"], "verify");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let figures = &report["figures"];
    assert_eq!(
        figures["fault_exit_codes"],
        serde_json::json!([0]),
        "{report}"
    );
    let verdict = &figures["verdict"];
    let total = PRODUCERS * RECORDS_PER_PRODUCER;
    assert_eq!(verdict["acknowledged"], total, "{report}");
    assert_eq!(verdict["failed"], 0, "{report}");
    assert_eq!(verdict["unresolved"], 0, "{report}");
    assert_eq!(verdict["final_read_records"], total, "{report}");
    assert_eq!(verdict["final_read_complete"], true, "{report}");
    assert_eq!(verdict["readers_complete"], 1, "{report}");
    assert_eq!(verdict["read_by_readers"], total, "{report}");
    for kind in [
        "lost",
        "duplicated",
        "duplicates_from_retries",
        "reordered",
        "reordered_from_retries",
        "vanished",
    ] {
        assert_eq!(verdict[kind]["count"], 0, "{kind}: {report}");
    }
    assert_eq!(verdict["corrupted"], 0, "{report}");
    // The final read went to the high watermarks, which hold exactly this run's records,
    // spread evenly over both partitions.
    let bounds = figures["final_bounds"].as_array().expect("final_bounds");
    assert_eq!(bounds.len(), 2, "{report}");
    for partition in bounds {
        let stored = partition["high_watermark"]
            .as_i64()
            .expect("high watermark")
            - partition["log_start"].as_i64().expect("log start");
        assert_eq!(stored, total as i64 / 2, "{report}");
    }
    assert!(figures["records_per_second"]
        .as_f64()
        .is_some_and(|r| r > 0.0));
    broker.stop();
}

/// Too many records for the memory bound: refused before any client starts, exit status 2.
#[test]
fn verify_refuses_a_run_above_the_record_limit() {
    let args: Vec<String> = [
        "verify",
        "--bootstrap-server",
        "127.0.0.1:1",
        "--topic",
        "never-created",
        "--producers",
        "200",
        "--records-per-producer",
        "1000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let output = run_verify(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("above the limit of 50000000"), "{stderr}");
}

/// Builds the broker into the target directory this test binary was built in, and returns it.
fn build_broker() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_sluice-bench"));
    let profile_dir = bench.parent().expect("binary directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "sluice", "--bin", "sluice"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(&workspace)
        .status()
        .expect("running cargo build -p sluice");
    assert!(status.success(), "cargo build -p sluice failed");
    let binary = profile_dir.join("sluice");
    assert!(binary.exists(), "{} missing after build", binary.display());
    binary
}

struct Broker {
    child: Child,
    bootstrap: String,
}

impl Broker {
    fn start(binary: &Path, data_dir: &Path) -> Self {
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

/// Runs `sluice-bench` with a time bound and returns its output, whatever its exit status.
fn run_verify(args: &[String]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice-bench");
    let id = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => output.expect("waiting for sluice-bench"),
        Err(_) => {
            // Kill only the child we started, by its pid.
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("sluice-bench ran past {RUN_TIMEOUT:?}");
        }
    }
}
