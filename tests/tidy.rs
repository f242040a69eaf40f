//! Keeps architecture rules of ARCHITECTURE.md true.

use std::path::Path;

fn sources_under(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push((path.display().to_string(), text));
        }
    }
}

/// "protocol/ does no I/O and knows nothing of shards."
#[test]
fn protocol_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
    let mut files = Vec::new();
    sources_under(&root, &mut files);
    assert!(!files.is_empty());
    for (path, text) in files {
        for forbidden in [
            "glommio",
            "std::fs",
            "std::net",
            "tokio",
            "crate::runtime",
            "crate::net",
        ] {
            assert!(!text.contains(forbidden), "{path} uses {forbidden}");
        }
    }
}

/// Error codes are chosen in one place: handler/errors.rs.
#[test]
fn storage_and_protocol_do_not_pick_kafka_error_codes() {
    let mut files = Vec::new();
    for dir in ["src/storage", "src/protocol", "src/cluster"] {
        sources_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    }
    for (path, text) in files {
        assert!(
            !text.contains("errors::code"),
            "{path} picks a Kafka error code"
        );
    }
}

/// "cluster/ does not depend on the executor, except cluster/raft/ and cluster/node.rs" (Raft
/// and the node's life run on shard 0's glommio executor by design; the image, the controller,
/// placement and liveness stay pure).
#[test]
fn cluster_outside_raft_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cluster");
    let mut files = Vec::new();
    sources_under(&root, &mut files);
    assert!(!files.is_empty());
    let raft = root.join("raft").display().to_string();
    // node.rs is a cluster node's life on shard 0 (starts the quorum, hands images to the
    // shards, heartbeats): runtime glue by design, like raft/.
    let node = root.join("node.rs").display().to_string();
    let exempt = |p: &String| p.starts_with(&raft) || *p == node;
    for (path, text) in files.iter().filter(|(p, _)| !exempt(p)) {
        // runtime::placement (which shard owns a partition) is a pure function.
        let text = text.replace("crate::runtime::placement", "");
        for forbidden in ["glommio", "tokio", "crate::runtime", "crate::net"] {
            assert!(!text.contains(forbidden), "{path} uses {forbidden}");
        }
    }
}
