//! The HTTP admin listener over real sockets: `/metrics` parsed by the Prometheus Python client's
//! own parser (prometheus_client, installed into .venv by scripts/test.sh) with values checked
//! against the traffic the test sent; health and readiness; the JSON endpoints; bad requests;
//! a taken admin port; under-replicated partitions on a 3-node cluster when a follower dies.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::cluster::{Cluster, FAST_SESSIONS, QUORUM_TIMEOUT};
use common::{run_bounded, unique_topic, wait_until, Broker, BrokerOpts, WAIT_TIMEOUT};
use rdkafka::producer::FutureRecord;

/// Bound on one admin HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP/1.1 exchange: (status, body).
fn http(addr: &str, raw_request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream.write_all(raw_request).expect("write request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (status, body.to_string())
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

fn json(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, path);
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

/// One sample: its labels and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Parses an exposition with prometheus_client's parser (the reference implementation's text
/// parser for Python). Without it (no .venv) the test fails under CI and, elsewhere, falls back
/// to a strict line parser of the same format so a developer still gets the value checks.
fn parse_metrics(text: &str) -> Samples {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let run = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let parsed = run.ok().and_then(|mut child| {
        child.stdin.take()?.write_all(text.as_bytes()).ok()?;
        let out = child.wait_with_output().ok()?;
        if !out.status.success() {
            panic!(
                "prometheus_client refused the exposition: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice::<Vec<(String, BTreeMap<String, String>, f64)>>(&out.stdout).ok()
    });
    let samples = match parsed {
        Some(s) => s,
        None if std::env::var_os("CI").is_some() => {
            panic!("prometheus_client is not installed in .venv (scripts/test.sh installs it)")
        }
        None => {
            eprintln!(
                "note: no .venv with prometheus_client; checking with the strict line parser"
            );
            strict_parse(text)
        }
    };
    let mut out = Samples::new();
    for (name, labels, value) in samples {
        out.entry(name).or_default().push((labels, value));
    }
    out
}

/// `name{k="v",...} value` lines and `# HELP`/`# TYPE` comments only.
fn strict_parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.starts_with("sluice_"),
            "bad name in {line:?}"
        );
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        out.push((name.to_string(), labels, value));
    }
    out
}

/// The sum of a metric's samples whose labels include every pair of `with`.
fn total(samples: &Samples, name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .get(name)
        .map(|v| {
            v.iter()
                .filter(|(labels, _)| {
                    with.iter()
                        .all(|(k, w)| labels.get(*k).map(String::as_str) == Some(*w))
                })
                .map(|(_, value)| value)
                .sum()
        })
        .unwrap_or(0.0)
}

fn scrape(addr: &str) -> Samples {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_sent_and_parse() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let admin = broker.admin_addr().to_string();
    let before = scrape(&admin);
    assert_eq!(total(&before, "sluice_records_in_total", &[]), 0.0);
    assert_eq!(total(&before, "sluice_build_info", &[]), 1.0);

    let topic = unique_topic("admin-metrics");
    broker.create_topic(&topic, 1, &[]).await;
    const RECORDS: usize = 50;
    let producer = broker.producer(&[("linger.ms", "0")]);
    for i in 0..RECORDS {
        let value = format!("value-{i:04}");
        producer
            .send(
                FutureRecord::<(), _>::to(&topic).payload(value.as_bytes()),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}\n{}", broker.stderr_tail()));
    }
    let read = broker.read_partition(&topic, 0);
    assert_eq!(read.len(), RECORDS);

    let after = scrape(&admin);
    assert_eq!(
        total(&after, "sluice_records_in_total", &[]),
        RECORDS as f64
    );
    let produces = total(&after, "sluice_requests_total", &[("api", "Produce")]);
    assert!(
        produces >= RECORDS as f64,
        "one Produce per record (linger 0): {produces}"
    );
    assert!(total(&after, "sluice_requests_total", &[("api", "Fetch")]) >= 1.0);
    assert!(total(&after, "sluice_requests_total", &[("api", "Metadata")]) >= 1.0);
    // Every record's value (10 bytes) plus batch framing was appended and read back.
    let produced = total(&after, "sluice_produced_bytes_total", &[]);
    assert!(produced >= (RECORDS * 10) as f64, "{produced}");
    let fetched = total(&after, "sluice_fetched_bytes_total", &[]);
    assert!(
        fetched >= produced,
        "fetched {fetched} < produced {produced}"
    );
    let sendfile = total(&after, "sluice_fetch_sendfile_bytes_total", &[]);
    let copied = total(&after, "sluice_fetch_copied_bytes_total", &[]);
    assert!(
        sendfile + copied >= produced,
        "sendfile {sendfile} + copied {copied}"
    );
    assert!(total(&after, "sluice_request_bytes_total", &[]) > produced);
    assert!(total(&after, "sluice_response_bytes_total", &[]) > fetched);
    // The latency summary counts every Produce, with its quantiles.
    let count = total(
        &after,
        "sluice_request_latency_seconds_count",
        &[("api", "Produce")],
    );
    assert_eq!(count, produces);
    let p99 = total(
        &after,
        "sluice_request_latency_seconds",
        &[("api", "Produce"), ("quantile", "0.99")],
    );
    assert!(p99 > 0.0 && p99 < 30.0, "p99 {p99}");
    // acks=all (librdkafka's default) on a sync-flush log: group commits and fdatasyncs ran.
    assert!(total(&after, "sluice_group_commit_flushes_total", &[]) >= 1.0);
    assert!(total(&after, "sluice_fdatasync_seconds_count", &[]) >= 1.0);
    assert!(total(&after, "sluice_partitions_leader", &[]) >= 1.0);
    assert_eq!(
        total(&after, "sluice_partitions_under_replicated", &[]),
        0.0
    );
    assert_eq!(total(&after, "sluice_disk_pressure", &[]), 0.0);
    assert!(total(&after, "sluice_connections", &[]) >= 1.0);
    // Per-partition series (well under metrics.partition.series.max).
    let hw = total(
        &after,
        "sluice_partition_high_watermark",
        &[("topic", &topic), ("partition", "0")],
    );
    assert_eq!(hw, RECORDS as f64);

    // A Metadata request for a topic that does not exist counts as an error by its Kafka name.
    let unknown = |samples: &Samples| {
        total(
            samples,
            "sluice_request_errors_total",
            &[("api", "Metadata"), ("error", "UNKNOWN_TOPIC_OR_PARTITION")],
        )
    };
    use kafka_protocol::messages::{metadata_request::MetadataRequestTopic, ApiKey};
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(kafka_protocol::protocol::StrBytes::from_static_str(
                "no-such-topic",
            )),
        ))]));
    let answer: MetadataResponse =
        common::wire::call(broker.bootstrap(), ApiKey::Metadata, 12, &request).expect("Metadata");
    assert_eq!(answer.topics.first().map(|t| t.error_code), Some(3));
    let errors = scrape(&admin);
    assert_eq!(unknown(&errors) - unknown(&after), 1.0);
    assert_eq!(
        total(
            &errors,
            "sluice_request_errors_total",
            &[("api", "Metadata"), ("code", "3")]
        ),
        unknown(&errors)
    );
}

#[test]
fn health_ready_json_endpoints_and_bad_requests() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 2,
        ..BrokerOpts::default()
    });
    let admin = broker.admin_addr().to_string();
    let (status, health) = json(&admin, "/v1/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("up")));
    // Ready once started: every partition open, no disk pressure (single node: no quorum).
    let (status, ready) = json(&admin, "/v1/ready");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], serde_json::Value::Bool(true));
    let (status, cluster) = json(&admin, "/v1/cluster");
    assert_eq!(status, 200);
    assert_eq!(cluster["node_id"], 0);
    assert_eq!(cluster["brokers"].as_array().map(Vec::len), Some(1));
    assert!(cluster["cluster_id"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    let (status, partitions) = json(&admin, "/v1/partitions");
    assert_eq!(status, 200);
    let listed = partitions["partitions"].as_array().expect("partitions");
    // __consumer_offsets: 50 partitions by default, over both shards.
    assert_eq!(listed.len(), 50, "{partitions}");
    let shards: std::collections::BTreeSet<u64> =
        listed.iter().filter_map(|p| p["shard"].as_u64()).collect();
    assert_eq!(shards.len(), 2, "both shards answered");

    assert_eq!(get(&admin, "/no/such/path").0, 404);
    assert_eq!(get(&admin, "/metrics?with=query").0, 200);
    assert_eq!(
        http(
            &admin,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )
        .0,
        405
    );
    assert_eq!(http(&admin, b"\x16\x03\x01 not http at all\r\n\r\n").0, 400);
    let mut huge = b"GET / HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 16 * 1024));
    assert_eq!(http(&admin, &huge).0, 400);
    let mut many = b"GET /v1/health HTTP/1.1\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(http(&admin, &many).0, 400);
    // HEAD: the same head, no body.
    let mut stream = TcpStream::connect(&admin).expect("connect");
    stream
        .write_all(b"HEAD /v1/health HTTP/1.1\r\n\r\n")
        .expect("write");
    let mut head = String::new();
    stream.read_to_string(&mut head).expect("read");
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "{head:?}"
    );
    // A client that connects and sends nothing holds no endpoint up for the others.
    let _idle = TcpStream::connect(&admin).expect("connect");
    assert_eq!(get(&admin, "/v1/health").0, 200);
    // Still serving Kafka clients after all that.
    assert!(broker.list_topics().contains_key("__consumer_offsets"));
}

#[test]
fn ready_reports_disk_pressure_and_metrics_show_it() {
    // A free-space floor no disk meets: the broker starts read-only at its first disk check.
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("log.dir.min.free.bytes", "4611686018427387904")
        .with("log.retention.check.interval.ms", "200"),
    );
    let admin = broker.admin_addr().to_string();
    wait_until("/v1/ready to report disk pressure", WAIT_TIMEOUT, || {
        let (status, ready) = json(&admin, "/v1/ready");
        status == 503
            && ready["reasons"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r.as_str().is_some_and(|s| s.contains("disk pressure")))
            })
    });
    let samples = scrape(&admin);
    assert_eq!(total(&samples, "sluice_disk_pressure", &[]), 1.0);
    assert_eq!(
        total(&samples, "sluice_log_dir_min_free_bytes", &[]),
        4611686018427387904.0
    );
    // Health stays up: the process serves, it is just not ready.
    assert_eq!(get(&admin, "/v1/health").0, 200);
}

#[test]
fn a_taken_admin_port_stops_start_up_naming_the_property() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args(["--override", &format!("admin.listener={taken}")]);
    let (status, out) = run_bounded(
        "sluice serve on a taken admin port",
        &mut command,
        Duration::from_secs(30),
    );
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("admin.listener") && out.contains(&taken),
        "{out}"
    );
    assert!(!out.contains("\nLISTENING"), "{out}");
    // An unparsable value is refused the same way.
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args(["--override", "admin.listener=nonsense"]);
    let (status, out) = run_bounded(
        "sluice serve with a bad admin.listener",
        &mut command,
        Duration::from_secs(30),
    );
    assert!(!status.success() && out.contains("admin.listener"), "{out}");
}

#[test]
fn under_replicated_goes_to_one_when_a_follower_dies_and_back_to_zero() {
    let mut c = Cluster::start(3, FAST_SESSIONS);
    let topic = unique_topic("admin-urp");
    let port = c.ports[0].kafka_port;
    wait_until("the topic to be created", QUORUM_TIMEOUT, || {
        common::cluster::create_topic(port, &topic, 1, 3).is_ok_and(|(code, _)| code == 0)
    });
    let leader = || {
        common::cluster::metadata(port)
            .ok()
            .and_then(|v| v.topics.get(&topic).and_then(|p| p.first().cloned()))
    };
    wait_until("a leader with the full ISR", QUORUM_TIMEOUT, || {
        leader().is_some_and(|p| p.leader > 0 && p.isr.len() == 3)
    });
    let leader_id = leader().map(|p| p.leader).unwrap_or(-1);
    let follower_id = (1..=3).find(|id| *id != leader_id && *id != 1).unwrap_or(2);
    let leader_admin = c.node(leader_id).admin_addr().to_string();
    // __consumer_offsets (RF 3 too) is under-replicated with it: count this topic's partition.
    let urp = |addr: &str| {
        let samples = scrape(addr);
        let topic_urp = total(
            &samples,
            "sluice_partition_under_replicated",
            &[("topic", &topic)],
        );
        let node_urp = total(&samples, "sluice_partitions_under_replicated", &[]);
        assert!(
            node_urp >= topic_urp,
            "the node's count includes the topic's"
        );
        topic_urp
    };
    assert_eq!(urp(&leader_admin), 0.0);

    c.node(follower_id).kill9();
    wait_until(
        "the leader to count 1 under-replicated partition",
        QUORUM_TIMEOUT,
        || urp(&leader_admin) == 1.0,
    );
    let samples = scrape(&leader_admin);
    assert!(total(&samples, "sluice_isr_shrinks_total", &[]) >= 1.0);
    assert_eq!(
        total(&samples, "sluice_brokers", &[("state", "fenced")]),
        1.0
    );
    assert!(total(&samples, "sluice_raft_term", &[]) >= 1.0);

    c.node(follower_id).start_again();
    wait_until("the ISR to be whole again", QUORUM_TIMEOUT, || {
        urp(&leader_admin) == 0.0
    });
    assert!(total(&scrape(&leader_admin), "sluice_isr_expands_total", &[]) >= 1.0);
    let (status, ready) = json(c.node(follower_id).admin_addr(), "/v1/ready");
    assert_eq!(status, 200, "{ready}");
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("log.format", "json"),
    );
    assert_eq!(get(broker.admin_addr(), "/v1/health").0, 200);
    let text = std::fs::read_to_string(broker.stderr_path()).expect("broker stderr");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("==== harness"))
        .collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}
