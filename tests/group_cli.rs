//! `sluice group list|describe|reset-offsets|delete` against the real broker, with a group
//! whose offsets a librdkafka consumer committed.

mod common;

use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::{unique_topic, Broker};

fn cli(broker: &Broker, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("group")
        .args(["--bootstrap-server", broker.bootstrap()])
        .args(args)
        .output()
        .expect("run sluice group");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn list_describe_reset_and_delete_a_group() {
    let broker = Broker::start();
    let topic = unique_topic("cli-group");
    broker.create_topic(&topic, 2, &[]).await;
    let producer = broker.producer(&[]);
    for i in 0..20 {
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(&topic)
                    .partition(i % 2)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("produce");
    }
    let group = unique_topic("cli-g");
    // An admin-style commit (no membership): offsets 7 and 3.
    let committer = broker.consumer(&[("group.id", &group)]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(7))
        .unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(3))
        .unwrap();
    committer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(committer);

    let (ok, out) = cli(&broker, &["list"]);
    assert!(ok && out.contains(&group) && out.contains("Empty"), "{out}");
    let (ok, out) = cli(&broker, &["list", "--state", "stable"]);
    assert!(ok && !out.contains(&group), "{out}");

    let (ok, out) = cli(&broker, &["describe", &group]);
    assert!(ok, "{out}");
    let row = |p: &str| {
        out.lines()
            .find(|l| l.contains(&topic) && l.split_whitespace().nth(2) == Some(p))
            .map(|l| {
                l.split_whitespace()
                    .skip(3)
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    };
    assert_eq!(row("0").as_deref(), Some("7 10 3"), "{out}");
    assert_eq!(row("1").as_deref(), Some("3 10 7"), "{out}");

    // Dry run changes nothing; --execute does.
    let (ok, out) = cli(
        &broker,
        &["reset-offsets", &group, "--topic", &topic, "--to-earliest"],
    );
    assert!(ok && out.contains("dry run"), "{out}");
    let (ok, out) = cli(
        &broker,
        &[
            "reset-offsets",
            &group,
            "--topic",
            &format!("{topic}:1"),
            "--shift-by",
            "-2",
            "--execute",
        ],
    );
    assert!(ok, "{out}");
    let (_, out) = cli(&broker, &["describe", &group]);
    assert!(
        out.lines().any(|l| l.contains(&topic)
            && l.split_whitespace().nth(2) == Some("1")
            && l.split_whitespace().nth(3) == Some("1")),
        "{out}"
    );

    let (ok, out) = cli(&broker, &["delete", &group]);
    assert!(ok && out.contains("Deleted"), "{out}");
    let (ok, out) = cli(&broker, &["describe", &group]);
    assert!(!ok && out.contains("does not exist"), "{out}");
}
