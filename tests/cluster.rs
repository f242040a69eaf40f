//! The cluster's identity and configuration against the real binary: `sluice format`,
//! `sluice random-uuid`, Kafka 4 KRaft server.properties, and a node refusing a data
//! directory that belongs to another cluster or another node.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run_bounded, Broker, BrokerOpts};
use rdkafka::consumer::Consumer;

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

fn sluice(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.args(args);
    run_bounded(&format!("sluice {}", args.join(" ")), &mut c, CLI_TIMEOUT)
}

fn random_uuid() -> String {
    let (status, out) = sluice(&["random-uuid"]);
    assert!(status.success(), "{out}");
    let id = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 22)
        .unwrap_or_else(|| panic!("no 22-character id in {out:?}"))
        .to_string();
    id
}

#[test]
fn format_records_the_cluster_and_a_foreign_or_mismatched_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let id = random_uuid();
    assert_ne!(id, random_uuid(), "random-uuid must not repeat");
    let (status, out) = sluice(&[
        "format",
        "--data-dir",
        &data_s,
        "--node-id",
        "1",
        "--cluster-id",
        &id,
    ]);
    assert!(status.success(), "{out}");
    let meta = std::fs::read_to_string(data.join("meta.properties")).unwrap();
    assert!(meta.contains(&format!("cluster.id={id}")), "{meta}");
    assert!(meta.contains("node.id=1"), "{meta}");
    // Formatting again is refused unless told to keep the same ids.
    let (status, out) = sluice(&[
        "format",
        "--data-dir",
        &data_s,
        "--node-id",
        "1",
        "--cluster-id",
        &id,
    ]);
    assert!(!status.success(), "{out}");
    assert!(out.contains("already formatted"), "{out}");
    let (status, out) = sluice(&[
        "format",
        "--data-dir",
        &data_s,
        "--node-id",
        "1",
        "--cluster-id",
        &id,
        "--ignore-formatted",
    ]);
    assert!(status.success(), "{out}");
    // A malformed id is refused.
    let (status, out) = sluice(&["format", "--data-dir", &data_s, "--cluster-id", "x"]);
    assert!(!status.success(), "{out}");

    // The node starts on its formatted directory and reports the formatted cluster id.
    let serve = |node: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
        c.args(["serve", "--data-dir", &data_s, "--listen", "127.0.0.1:0"])
            .args(["--cores", "1", "--node-id", node])
            .args(["--override", "admin.listener=-1"])
            .args(extra);
        c
    };
    let other = random_uuid();
    // Another cluster id configured: refused at start, naming both ids.
    let (status, out) = run_bounded(
        "sluice serve with a foreign cluster.id",
        serve("1", &["--override", &format!("cluster.id={other}")]).env("SLUICE_LOG", "error"),
        CLI_TIMEOUT,
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains(&id) && out.contains(&other), "{out}");
    // Another node id: refused.
    let (status, out) = run_bounded(
        "sluice serve with another node.id",
        &mut serve("2", &[]),
        CLI_TIMEOUT,
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains("node id"), "{out}");
}

#[test]
fn a_fresh_node_takes_its_cluster_id_from_the_config_and_keeps_it() {
    let id = random_uuid();
    let mut broker = Broker::start_with(
        BrokerOpts {
            cores: 1,
            ..BrokerOpts::default()
        }
        .with("cluster.id", &id),
    );
    let meta = std::fs::read_to_string(broker.data_dir().join("meta.properties")).unwrap();
    assert!(meta.contains(&format!("cluster.id={id}")), "{meta}");
    broker.restart();
    let meta = std::fs::read_to_string(broker.data_dir().join("meta.properties")).unwrap();
    assert!(meta.contains(&format!("cluster.id={id}")), "{meta}");
    broker.stop();
}

#[test]
fn a_kafka4_server_properties_with_the_controller_listener_first_serves_clients() {
    // Kafka's own config/server.properties shape (combined node, one voter), with the
    // CONTROLLER listener listed first.
    let ports = common::cluster::free_ports(2);
    let text = format!(
        "process.roles=broker,controller\nnode.id=1\n\
         controller.quorum.voters=1@127.0.0.1:{c}\n\
         listeners=CONTROLLER://127.0.0.1:{c},PLAINTEXT://127.0.0.1:{k}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{k},CONTROLLER://127.0.0.1:{c}\n\
         controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
         listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL\n\
         num.network.threads=3\nnum.io.threads=8\nlog.retention.hours=168\n",
        c = ports[1],
        k = ports[0]
    );
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        listen: None,
        config_text: Some(text),
        ..BrokerOpts::default()
    });
    assert_eq!(broker.bootstrap(), format!("127.0.0.1:{}", ports[0]));
    let metadata = broker
        .consumer(&[])
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let brokers: Vec<(i32, String, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect();
    assert_eq!(brokers, vec![(1, "127.0.0.1".to_string(), ports[0] as i32)]);
    broker.stop();
}
