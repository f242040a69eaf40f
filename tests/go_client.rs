//! franz-go (github.com/twmb/franz-go: kgo and kadm, the Go client that follows Kafka's newest
//! protocol versions most closely) against the real broker. `tests/go` is a Go module (franz-go
//! pinned in its go.mod and go.sum) that builds one program whose subcommands are the tests (see
//! `tests/go/main.go`); each test here starts a broker, runs one subcommand against it and
//! requires its `PASS` line and exit status 0.
//!
//! Needs `go` 1.26+ (franz-go's minimum) on PATH or in /usr/local/go/bin: without it these tests
//! fail, naming what is missing. scripts/test.sh checks for it and downloads the modules; the
//! first test here builds the program into this target dir's tmp (offline, from the module
//! cache; when that fails, once more after `go mod download`).
//!
//! Checks that found a Sluice gap not fixed yet run as known failures: the subcommand prints
//! `KNOWN-FAILURE <id>: <reason>` and still passes, and fails once the check passes so the
//! entry is removed (`knownFailures` in `tests/go/main.go`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{run_bounded, Broker, BrokerOpts};

/// Bound on building the program (a first build compiles franz-go and its compression codecs).
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on `go mod download` when the module cache lacks a module.
const GO_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on one subcommand; every wait inside the Go program is bounded by 30 s.
const GO_TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Where Go is installed when it is not on PATH (the official tarball's location).
const GO_INSTALL_DIR: &str = "/usr/local/go/bin/go";

#[test]
fn franz_go_admin_topics_configs_partitions() {
    run_franz_go(2, &["admin"]);
}

#[test]
fn franz_go_idempotent_producer_and_every_compression_read_back_exactly() {
    run_franz_go(
        1,
        &[
            "produce-consume",
            "default",
            "none",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ],
    );
}

#[test]
fn franz_go_consumer_group_classic_rebalance_takeover_resume() {
    run_franz_go(2, &["group", "classic"]);
}

/// Sluice advertises ConsumerGroupHeartbeat v0-1 (src/protocol/api.rs), so franz-go's
/// `ServerSideBalancer` must run KIP-848 here; the program's SKIP (for brokers without it)
/// fails this test.
#[test]
fn franz_go_consumer_group_kip848_rebalance_takeover_resume() {
    run_franz_go(2, &["group", "consumer"]);
}

#[test]
fn franz_go_groups_against_a_three_node_cluster() {
    // Leaders and group coordinators spread over three nodes; `__consumer_offsets` is
    // replicated on all three (only its leaders' coordinators serve groups).
    let mut cluster = common::cluster::Cluster::start(3, common::cluster::FAST_SESSIONS);
    cluster.wait_ready_for_groups();
    // The program takes one seed broker; franz-go learns the others from Metadata.
    let bootstrap = format!("127.0.0.1:{}", cluster.ports[0].kafka_port);
    // (The program's produce-consume check reads DescribeLogDirs from its one seed broker,
    // a single-node assumption; its records part passed against this cluster, with one seed.)
    for args in [&["group", "classic"][..], &["group", "consumer"][..]] {
        run_franz_go_against(&bootstrap, args, &|| cluster.tails());
    }
    for node in &mut cluster.nodes {
        node.stop();
    }
}

/// Starts a broker with `cores` shards and runs the program's subcommand `args` against it.
fn run_franz_go(cores: u32, args: &[&str]) {
    let broker = Broker::start_with(BrokerOpts {
        cores,
        ..BrokerOpts::default()
    });
    run_franz_go_against(broker.bootstrap(), args, &|| broker.stderr_tail());
}

/// Runs the program's subcommand `args` against `bootstrap`; `logs` gives the brokers' logs.
fn run_franz_go_against(bootstrap: &str, args: &[&str], logs: &dyn Fn() -> String) {
    let program = franz_go_program();
    let what = format!("franzgo {}", args.join(" "));
    let (status, output) = run_bounded(
        &what,
        Command::new(&program).arg(bootstrap).args(args),
        GO_TEST_TIMEOUT,
    );
    let pass = format!("PASS {} (", args.join(" "));
    assert!(
        status.success() && output.lines().any(|l| l.starts_with(&pass)),
        "{what} exited with {status} (want 0 and a line starting {pass:?})\n{output}\n{}",
        logs()
    );
    let skipped: Vec<&str> = output.lines().filter(|l| l.starts_with("SKIP")).collect();
    assert!(
        skipped.is_empty(),
        "{what} skipped a check Sluice supports: {skipped:?}\n{output}\n{}",
        logs()
    );
    for line in output.lines().filter(|l| l.starts_with("KNOWN-FAILURE")) {
        eprintln!("{line}");
    }
    // Shown with --nocapture: one line per check.
    println!("{output}");
}

/// The program, built once per test binary (`go build` itself skips what is up to date).
fn franz_go_program() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_program)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn go_binary() -> Result<PathBuf, String> {
    for candidate in [Path::new("go"), Path::new(GO_INSTALL_DIR)] {
        let works = Command::new(candidate)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Ok(candidate.to_path_buf());
        }
    }
    Err(format!(
        "`go` is neither on PATH nor at {GO_INSTALL_DIR}: the franz-go tests need Go 1.26+ \
         (scripts/test.sh checks for it)"
    ))
}

fn build_program() -> Result<PathBuf, String> {
    let go = go_binary()?;
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go");
    let program = Path::new(env!("CARGO_TARGET_TMPDIR")).join("franz-go/franzgo");
    let mut failures = String::new();
    // Offline first: scripts/test.sh downloaded the modules, and cargo test needs no network.
    for offline in [true, false] {
        if !offline {
            let (status, output) = run_bounded(
                "go mod download",
                go_command(&go, &module).args(["mod", "download"]),
                GO_DOWNLOAD_TIMEOUT,
            );
            if !status.success() {
                failures.push_str(&format!("go mod download exited with {status}\n{output}\n"));
                break;
            }
        }
        let mut build = go_command(&go, &module);
        build
            .args(["build", "-buildvcs=false", "-o"])
            .arg(&program)
            .arg(".");
        if offline {
            build.env("GOPROXY", "off");
        }
        let (status, output) = run_bounded("go build", &mut build, GO_BUILD_TIMEOUT);
        if status.success() && program.exists() {
            return Ok(program);
        }
        failures.push_str(&format!(
            "go build (offline: {offline}) exited with {status}\n{output}\n"
        ));
    }
    Err(format!("cannot build tests/go:\n{failures}"))
}

/// `go` in the module's directory, with the Go the machine has (no toolchain download).
fn go_command(go: &Path, module: &Path) -> Command {
    let mut command = Command::new(go);
    command
        .current_dir(module)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly");
    command
}
