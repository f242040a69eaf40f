//! kcat (Debian's package, librdkafka 2.0.2) against the real broker: metadata listing,
//! produce from stdin with keys and headers, consume with a format string, and query mode.
//!
//! kcat must be on PATH; scripts/test.sh installs it (`apt-get install -y kcat`).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{unique_topic, Broker};

/// Bound on one kcat invocation.
const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs kcat with `args`, feeding `stdin`; panics on timeout or non-zero exit.
fn kcat(broker: &Broker, args: &[&str], stdin: &[u8]) -> String {
    let output = kcat_output(broker, args, stdin);
    assert!(
        output.status.success(),
        "kcat {args:?} exited with {}\nstdout: {}\nstderr: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        broker.stderr_tail()
    );
    String::from_utf8(output.stdout).expect("kcat output is UTF-8")
}

fn kcat_output(broker: &Broker, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("kcat")
        .args(["-b", broker.bootstrap(), "-X", "broker.address.family=v4"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run kcat ({e}); it must be on PATH: scripts/test.sh installs it")
        });
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err_reader = thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    // Poll and kill from this thread: the child is not reaped until try_wait sees it exit, so
    // the pid cannot have been reused when we kill it.
    let deadline = Instant::now() + KCAT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for kcat") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kcat {args:?} did not finish within {KCAT_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    feeder.join().expect("stdin feeder");
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_listing_shows_topics_partitions_and_leader() {
    let broker = Broker::start();
    let topic = unique_topic("kcat-meta");
    broker.create_topic(&topic, 3, &[]).await;
    let listing = kcat(&broker, &["-L", "-t", &topic], b"");
    assert!(
        listing.contains(&format!("topic \"{topic}\" with 3 partitions:")),
        "kcat -L output:\n{listing}"
    );
    for partition in 0..3 {
        let line = listing
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with(&format!("partition {partition},"))
            })
            .unwrap_or_else(|| panic!("no partition {partition} line in:\n{listing}"));
        assert!(
            line.contains("leader "),
            "partition line without leader: {line}"
        );
        assert!(
            !line.contains("err"),
            "partition line with an error: {line}"
        );
    }
    assert!(listing.contains("1 brokers:"), "kcat -L output:\n{listing}");
    // The broker line must advertise the address clients connected to.
    assert!(
        listing.contains(broker.bootstrap()),
        "advertised address missing:\n{listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_keys_and_headers_from_stdin_then_consume_with_format() {
    let broker = Broker::start();
    let topic = unique_topic("kcat-data");
    broker.create_topic(&topic, 2, &[]).await;
    let lines: Vec<String> = (0..50).map(|i| format!("key-{i}:value {i}")).collect();
    let input = lines.join("\n") + "\n";
    kcat(
        &broker,
        &[
            "-P",
            "-t",
            &topic,
            "-p",
            "1",
            "-K:",
            "-H",
            "source=kcat",
            "-H",
            "run=1",
        ],
        input.as_bytes(),
    );
    let consumed = kcat(
        &broker,
        &[
            "-C",
            "-t",
            &topic,
            "-p",
            "1",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p|%o|%k|%s|%h\n",
        ],
        b"",
    );
    let expected: String = (0..50)
        .map(|i| format!("1|{i}|key-{i}|value {i}|source=kcat,run=1\n"))
        .collect();
    assert_eq!(consumed, expected);

    // The same records through librdkafka's Rust binding: headers arrive as bytes, in order.
    let records = broker.read_range(&topic, 1, 0, 50);
    assert_eq!(
        records[7].headers,
        vec![
            ("source".to_string(), Some(b"kcat".to_vec())),
            ("run".to_string(), Some(b"1".to_vec()))
        ]
    );
    assert_eq!(
        broker.watermarks(&topic, 0),
        (0, 0),
        "partition 0 untouched"
    );

    // Consuming from a given offset and counting.
    let tail = kcat(
        &broker,
        &[
            "-C", "-t", &topic, "-p", "1", "-o", "45", "-e", "-f", "%o:%k\n",
        ],
        b"",
    );
    let want: String = (45..50).map(|i| format!("{i}:key-{i}\n")).collect();
    assert_eq!(tail, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_mode_finds_offsets_by_timestamp() {
    let broker = Broker::start();
    let topic = unique_topic("kcat-query");
    broker.create_topic(&topic, 1, &[]).await;
    // kcat has no per-message timestamp flag for -P; produce with rdkafka at known times.
    let producer = broker.producer(&[("linger.ms", "0")]);
    let base = 1_650_000_000_000_i64;
    for i in 0..5_i64 {
        producer
            .send(
                rdkafka::producer::FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(0)
                    .payload(&b"t"[..])
                    .timestamp(base + i * 100),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
    let answer = kcat(
        &broker,
        &["-Q", "-t", &format!("{topic}:0:{}", base + 250)],
        b"",
    );
    assert!(
        answer.contains(&format!("{topic} [0] offset 3")),
        "kcat -Q output: {answer}"
    );
}

/// The README's quickstart, as a new user runs it: the broker started in a fresh directory with
/// no `--data-dir` (the default relative `./data`), kcat produces keyed records to a topic it
/// auto-creates and reads them back; after a clean restart they are still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quickstart_with_the_default_relative_data_dir() {
    let mut broker = Broker::start_with(common::BrokerOpts {
        default_data_dir: true,
        ..Default::default()
    });
    let listing = kcat(&broker, &["-L"], b"");
    assert!(listing.contains("1 brokers"), "metadata listing: {listing}");
    kcat(
        &broker,
        &["-t", "demo", "-P", "-K:"],
        b"k1:hello\nk2:world\n",
    );
    let format = [
        "-t",
        "demo",
        "-C",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%p %o %k=%s\n",
    ];
    let expected = "0 0 k1=hello\n0 1 k2=world\n";
    assert_eq!(kcat(&broker, &format, b""), expected);
    // Every partition opened under the relative default, none failed.
    assert!(broker.data_dir().join("demo-0").is_dir());
    let log = std::fs::read_to_string(broker.stderr_path()).expect("broker log");
    assert!(!log.contains("ERROR"), "errors in the broker log:\n{log}");
    broker.restart();
    assert_eq!(kcat(&broker, &format, b""), expected);
}

/// kcat's transactional mode (librdkafka 2.0.2: one transaction committed at end of input),
/// and a read_committed consumer that sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_produce_then_read_committed() {
    let broker = Broker::start_with(
        common::BrokerOpts::default().with("transaction.state.log.num.partitions", "2"),
    );
    let topic = common::unique_topic("kcat-txn");
    broker.create_topic(&topic, 1, &[]).await;
    let out = kcat_output(
        &broker,
        &[
            "-P",
            "-t",
            &topic,
            "-p",
            "0",
            "-X",
            "transactional.id=kcat-tx-1",
        ],
        b"one\ntwo\nthree\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("Transaction successfully committed"),
        "kcat transactional produce: {}\n{stderr}\n{}",
        out.status,
        broker.stderr_tail()
    );
    let read = kcat(
        &broker,
        &[
            "-C",
            "-t",
            &topic,
            "-X",
            "isolation.level=read_committed",
            "-e",
            "-q",
        ],
        b"",
    );
    assert_eq!(
        read.lines().collect::<Vec<_>>(),
        vec!["one", "two", "three"]
    );
}
