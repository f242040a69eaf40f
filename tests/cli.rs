//! The `sluice` admin CLI against real brokers: `topic`, `config` and `log dump` on one broker
//! (the dump on the segment files that broker wrote), `cluster` and `topic` on a 3-node cluster.
//! Output is checked in both formats: the human table and `--output json`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{Cluster, QUORUM_TIMEOUT};
use common::{run_bounded, unique_topic, wait_until, Broker, BrokerOpts};
use rdkafka::producer::FutureRecord;

/// Bound on one CLI run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// `sluice ARGS…`: (success, stdout + stderr).
fn sluice(args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(args);
    let (status, out) = run_bounded(
        &format!("sluice {}", args.join(" ")),
        &mut command,
        CLI_TIMEOUT,
    );
    (status.success(), out)
}

/// `sluice NOUN --bootstrap-server B --output json VERB…`, parsed.
fn json(noun: &str, bootstrap: &str, rest: &[&str]) -> serde_json::Value {
    let mut args = vec![noun, "--bootstrap-server", bootstrap, "--output", "json"];
    args.extend_from_slice(rest);
    let (ok, out) = sluice(&args);
    assert!(ok, "sluice {args:?}: {out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('[') || l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_config_and_log_dump_on_one_broker() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let b = broker.bootstrap().to_string();
    let topic = unique_topic("cli-topic");
    let (ok, out) = sluice(&[
        "topic",
        "--bootstrap-server",
        &b,
        "create",
        &topic,
        "--partitions",
        "2",
        "--config",
        "retention.ms=3600000",
    ]);
    assert!(
        ok && out.contains(&topic) && out.contains("created"),
        "{out}"
    );
    // A second create fails in words, with Kafka's error name.
    let (ok, out) = sluice(&["topic", "--bootstrap-server", &b, "create", &topic]);
    assert!(!ok && out.contains("TOPIC_ALREADY_EXISTS"), "{out}");

    let listed = json("topic", &b, &["list"]);
    let row = listed
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["topic"] == topic.as_str()))
        .unwrap_or_else(|| panic!("{topic} not listed: {listed}"));
    assert_eq!(
        (
            row["partitions"].as_u64(),
            row["replication_factor"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let (ok, table) = sluice(&["topic", "--bootstrap-server", &b, "list"]);
    assert!(
        ok && table.lines().any(|h| h.starts_with("TOPIC  ")),
        "{table}"
    );
    assert!(
        !table.contains("__consumer_offsets"),
        "internal topics only with --internal: {table}"
    );

    let (ok, out) = sluice(&[
        "topic",
        "--bootstrap-server",
        &b,
        "add-partitions",
        &topic,
        "--total",
        "3",
    ]);
    assert!(ok, "{out}");
    let described = json("topic", &b, &["describe", &topic]);
    let parts = described.as_array().expect("rows");
    assert_eq!(parts.len(), 3, "{described}");
    assert!(parts
        .iter()
        .all(|p| p["leader"] == 0 && p["isr"] == serde_json::json!([0])));

    // Configs: the create's override, then an alter through both commands.
    let configs = json("config", &b, &["describe", "--topic", &topic]);
    let value = |configs: &serde_json::Value, key: &str| {
        configs
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == key))
            .map(|r| r["value"].clone())
    };
    assert_eq!(
        value(&configs, "retention.ms"),
        Some("3600000".into()),
        "{configs}"
    );
    let (ok, out) = sluice(&[
        "topic",
        "--bootstrap-server",
        &b,
        "alter-config",
        &topic,
        "--set",
        "retention.ms=7200000",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = sluice(&[
        "config",
        "--bootstrap-server",
        &b,
        "alter",
        "--topic",
        &topic,
        "--set",
        "segment.ms=600000",
    ]);
    assert!(ok, "{out}");
    let configs = json("config", &b, &["describe", "--topic", &topic]);
    assert_eq!(
        value(&configs, "retention.ms"),
        Some("7200000".into()),
        "{configs}"
    );
    assert_eq!(
        value(&configs, "segment.ms"),
        Some("600000".into()),
        "{configs}"
    );
    let (ok, out) = sluice(&[
        "config",
        "--bootstrap-server",
        &b,
        "alter",
        "--topic",
        &topic,
        "--set",
        "no.such.key=1",
    ]);
    assert!(!ok && out.contains("INVALID_CONFIG"), "{out}");
    let broker_configs = json("config", &b, &["describe", "--broker", "0", "--all"]);
    assert!(
        value(&broker_configs, "log.segment.bytes").is_some(),
        "{broker_configs}"
    );

    // Records for the dump: 30 batches of one record each into partition 0.
    let producer = broker.producer(&[("linger.ms", "0")]);
    for i in 0..30 {
        let value = format!("record-{i:03}-{}", "x".repeat(200));
        producer
            .send(
                FutureRecord::<(), _>::to(&topic)
                    .partition(0)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let log = dir.join("00000000000000000000.log");
    let index = dir.join("00000000000000000000.index");
    let timeindex = dir.join("00000000000000000000.timeindex");
    let files = format!(
        "{},{},{}",
        log.display(),
        index.display(),
        timeindex.display()
    );
    let (ok, out) = sluice(&["log", "dump", "--files", &files]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("Dumping {}", log.display())), "{out}");
    let (ok, out) = sluice(&[
        "log",
        "--output",
        "json",
        "dump",
        "--files",
        &log.display().to_string(),
    ]);
    assert!(ok, "{out}");
    let batches: serde_json::Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('[')).unwrap_or("")).expect("json");
    let batches = batches.as_array().expect("batches");
    assert_eq!(batches.len(), 30, "{out}");
    let mut position = 0;
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch["base_offset"], i as u64);
        assert_eq!(batch["count"], 1);
        assert_eq!(batch["is_valid"], true, "CRC-32C checked: {batch}");
        assert_eq!(batch["position"], position);
        position += batch["size"].as_u64().expect("size");
    }
    // The index has entries every log.index.interval.bytes (4096): at most position/4096 of them.
    let (ok, out) = sluice(&[
        "log",
        "--output",
        "json",
        "dump",
        "--files",
        &index.display().to_string(),
    ]);
    assert!(ok, "{out}");
    let entries: serde_json::Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('[')).unwrap_or("")).expect("json");
    for entry in entries.as_array().expect("entries") {
        let offset = entry["offset"].as_u64().expect("offset") as usize;
        let batch = &batches[offset];
        assert_eq!(
            entry["position"], batch["position"],
            "index entry points at its batch: {entry}"
        );
    }
    let (ok, out) = sluice(&[
        "log",
        "dump",
        "--files",
        "/nonexistent/00000000000000000000.log",
    ]);
    assert!(!ok && out.contains("opening"), "{out}");

    // produce from a file (keys, a header, zstd) and consume it back as JSON, then by group.
    let lines: Vec<String> = (0..100).map(|i| format!("key-{i}:value-{i}")).collect();
    let file = broker.data_dir().with_file_name("input.txt");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write input");
    let (ok, out) = sluice(&[
        "produce",
        "--bootstrap-server",
        &b,
        "--topic",
        &topic,
        "--key-separator",
        ":",
        "--header",
        "origin=cli",
        "--compression",
        "zstd",
        "--batch-records",
        "30",
        "--file",
        &file.display().to_string(),
    ]);
    assert!(ok && out.contains("100"), "{out}");
    let (ok, out) = sluice(&[
        "consume",
        "--bootstrap-server",
        &b,
        "--topic",
        &topic,
        "--format",
        "json",
        "--idle-timeout-ms",
        "1500",
    ]);
    assert!(ok, "{out}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let keyed: Vec<_> = records.iter().filter(|r| r["key"].is_string()).collect();
    assert_eq!((records.len(), keyed.len()), (130, 100), "{out}");
    for r in keyed {
        let key = r["key"].as_str().expect("key");
        assert_eq!(
            r["value"].as_str(),
            Some(key.replace("key", "value").as_str())
        );
        assert_eq!(r["headers"]["origin"], "cli");
        // Kafka's default partitioner: murmur2 of the key (its vectors: the unit test).
        let hash = sluice::cli::data::murmur2(key.as_bytes()) & 0x7fff_ffff;
        assert_eq!(r["partition"].as_u64(), Some(u64::from(hash % 3)), "{r}");
    }
    let (ok, out) = sluice(&[
        "consume",
        "--bootstrap-server",
        &b,
        "--topic",
        &topic,
        "--group",
        "cli-g",
        "--idle-timeout-ms",
        "1500",
    ]);
    assert!(
        ok && out.contains("consumed 130 records"),
        "30 earlier + 100: {out}"
    );
    let (ok, out) = sluice(&[
        "consume",
        "--bootstrap-server",
        &b,
        "--topic",
        &topic,
        "--group",
        "cli-g",
        "--idle-timeout-ms",
        "1000",
    ]);
    assert!(
        ok && out.contains("consumed 0 records"),
        "the group committed where it stopped: {out}"
    );
    let (ok, out) = sluice(&[
        "consume",
        "--bootstrap-server",
        &b,
        "--topic",
        &topic,
        "--partition",
        "0",
        "--from",
        "25",
        "--max-messages",
        "3",
    ]);
    assert!(
        ok && out.contains("consumed 3 records") && out.contains("record-025-"),
        "{out}"
    );

    let (ok, out) = sluice(&["topic", "--bootstrap-server", &b, "delete", &topic]);
    assert!(ok && out.contains("deleted"), "{out}");
    let (ok, out) = sluice(&["topic", "--bootstrap-server", &b, "delete", &topic]);
    assert!(!ok && out.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{out}");
}

#[test]
fn cluster_and_topic_commands_on_three_nodes() {
    let c = Cluster::start(3, &[]);
    let b = c.bootstrap();
    let first = b.split(',').next().unwrap_or_default().to_string();
    wait_until(
        "the quorum to have a leader and 3 brokers",
        QUORUM_TIMEOUT,
        || {
            let (ok, out) = sluice(&[
                "cluster",
                "--bootstrap-server",
                &first,
                "--output",
                "json",
                "brokers",
            ]);
            ok && serde_json::from_str::<serde_json::Value>(
                out.lines().find(|l| l.starts_with('[')).unwrap_or(""),
            )
            .is_ok_and(|v| v.as_array().is_some_and(|a| a.len() == 3))
        },
    );
    let info = json("cluster", &first, &["info"]);
    assert_eq!(info["brokers"], 3, "{info}");
    assert!(
        info["cluster_id"].as_str().is_some_and(|c| c.len() == 22),
        "{info}"
    );
    assert!(
        info["controller_id"]
            .as_i64()
            .is_some_and(|id| (1..=3).contains(&id)),
        "{info}"
    );
    let brokers = json("cluster", &first, &["brokers"]);
    let ids: Vec<i64> = brokers
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let quorum = json("cluster", &first, &["quorum"]);
    let roles: Vec<&str> = quorum
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["role"].as_str())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{quorum}"
    );
    assert_eq!(roles.len(), 3, "{quorum}");
    let (ok, table) = sluice(&["cluster", "--bootstrap-server", &first, "quorum"]);
    assert!(
        ok && table.contains("leader:") && table.contains("term:"),
        "{table}"
    );

    let topic = unique_topic("cli-rf3");
    let (ok, out) = sluice(&[
        "topic",
        "--bootstrap-server",
        &first,
        "create",
        &topic,
        "--partitions",
        "2",
        "--replication-factor",
        "3",
    ]);
    assert!(ok, "{out}");
    wait_until(
        "both partitions with 3 in-sync replicas",
        QUORUM_TIMEOUT,
        || {
            let parts = json("topic", &first, &["describe", &topic]);
            parts.as_array().is_some_and(|a| {
                a.len() == 2
                    && a.iter()
                        .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))
            })
        },
    );
    // Preferred leaders are already leading: Kafka's ELECTION_NOT_NEEDED, in words.
    let elected = json(
        "partition",
        &first,
        &["elect-leaders", "--partitions", &format!("{topic}:0,1")],
    );
    let results: Vec<&str> = elected
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["result"].as_str())
        .collect();
    assert_eq!(results.len(), 2, "{elected}");
    assert!(
        results
            .iter()
            .all(|r| *r == "elected" || r.starts_with("ELECTION_NOT_NEEDED")),
        "{elected}"
    );
    // A reassignment that reverses the replica order, waited for with progress on stderr.
    let (ok, out) = sluice(&[
        "partition",
        "--bootstrap-server",
        &first,
        "reassign",
        "--topic",
        &topic,
        "--partition",
        "0",
        "--replicas",
        "3,2,1",
        "--wait-s",
        "60",
    ]);
    assert!(ok && out.contains("reassignment complete"), "{out}");
    wait_until("partition 0's replicas to be 3,2,1", QUORUM_TIMEOUT, || {
        let parts = json("topic", &first, &["describe", &topic]);
        parts
            .as_array()
            .and_then(|a| a.first())
            .is_some_and(|p| p["replicas"] == serde_json::json!([3, 2, 1]))
    });
    let ongoing = json("partition", &first, &["list-reassignments"]);
    assert_eq!(ongoing.as_array().map(Vec::len), Some(0), "{ongoing}");
    let (ok, out) = sluice(&[
        "topic",
        "--bootstrap-server",
        &first,
        "create",
        "bad",
        "--replication-factor",
        "4",
    ]);
    assert!(!ok && out.contains("INVALID_REPLICATION_FACTOR"), "{out}");
}
