//! Three `MetadataRaft` nodes in one process, each on its own glommio executor thread, over
//! real sockets on 127.0.0.1 and real files in temp dirs. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use super::{MetadataRaft, ProposeError, RaftSettings};
use crate::cluster::controller::{ControllerCommand, ControllerError, Outcome};
use crate::cluster::image::MetadataImage;

/// Longest wait for any expected state (elections on a loaded 2-core machine included).
const WAIT_MAX: Duration = Duration::from_secs(30);
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a stopping leader waits for its hand-off (a stopped target never confirms).
const HANDOFF_MAX: Duration = Duration::from_secs(2);

/// The image before the first entry.
fn empty_image() -> Arc<MetadataImage> {
    Arc::new(MetadataImage::empty())
}

/// A change that every version of the controller accepts on an empty image, brokers or not:
/// a producer-id block. The n-th change (from 0) hands out the block at n * BLOCK, so the
/// images of nodes that applied the same entries are equal, field for field.
fn change() -> ControllerCommand {
    ControllerCommand::AllocateProducerIds
}

/// A command that fails validation on every image here.
fn invalid() -> ControllerCommand {
    ControllerCommand::DeleteTopic {
        name: "no-such-topic".to_string(),
        id: None,
    }
}

const BLOCK: i64 = crate::limits::PRODUCER_ID_BLOCK_SIZE;

enum Cmd {
    Propose(
        ControllerCommand,
        oneshot::Sender<Result<Outcome, ProposeError>>,
    ),
    Leader(oneshot::Sender<Option<i32>>),
    Image(oneshot::Sender<Arc<MetadataImage>>),
    Quorum(oneshot::Sender<super::QuorumState>),
    Snapshot(oneshot::Sender<Result<(), ProposeError>>),
    /// Snapshot now, then purge the log up to the snapshot (openraft's purge_log trigger).
    SnapshotAndPurge(oneshot::Sender<Option<u64>>),
    /// Clean stop: leadership hand-off, raft shutdown, log closed.
    Shutdown(oneshot::Sender<()>),
    /// Stops the executor without any shutdown: its tasks and files are dropped as they are.
    Kill,
}

struct Node {
    id: i32,
    tx: mpsc::UnboundedSender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

type Metrics = openraft::RaftMetrics<super::types::TypeConfig>;

/// On a node's executor: waits (at most WAIT_MAX) until `pick` finds something in the metrics.
async fn wait_on_node<T>(
    metrics: &mut super::rt::WatchRx<Metrics>,
    pick: impl Fn(&Metrics) -> Option<T>,
) -> Option<T> {
    use openraft::rt::WatchReceiver;
    use openraft::AsyncRuntime;
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(found) = pick(&metrics.borrow_watched()) {
            return Some(found);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match super::GlommioRuntime::timeout(left, metrics.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn start_node(id: i32, voters: &BTreeMap<i32, SocketAddr>, dir: PathBuf) -> Node {
    start_node_in(id, voters, dir, None)
}

fn start_node_in(
    id: i32,
    voters: &BTreeMap<i32, SocketAddr>,
    dir: PathBuf,
    cluster_id: Option<&str>,
) -> Node {
    let settings = RaftSettings {
        node_id: id,
        voters: voters.clone(),
        listen: voters[&id],
        dir,
        cluster_id: cluster_id.map(str::to_string),
        election_timeout: ELECTION_TIMEOUT,
        fetch_timeout: Duration::from_secs(2),
        initial_image: empty_image(),
    };
    logs();
    let (tx, mut rx) = mpsc::unbounded::<Cmd>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new()
        .name(format!("raft-node-{id}"))
        .spawn(move || {
            let ex = super::rt::small_executor().expect("executor");
            ex.run(async move {
                let raft = match MetadataRaft::start(settings, Box::new(|_| {})).await {
                    Ok(raft) => raft,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Some(cmd) = rx.next().await {
                    match cmd {
                        Cmd::Propose(cmd, reply) => {
                            let raft = raft.clone();
                            glommio::spawn_local(async move {
                                let _ = reply.send(raft.propose(cmd).await);
                            })
                            .detach();
                        }
                        Cmd::Leader(reply) => {
                            let _ = reply.send(raft.leader());
                        }
                        Cmd::Image(reply) => {
                            let _ = reply.send(raft.image());
                        }
                        Cmd::Quorum(reply) => {
                            let _ = reply.send(raft.quorum_state());
                        }
                        Cmd::Snapshot(reply) => {
                            let _ = reply.send(raft.trigger_snapshot().await);
                        }
                        Cmd::SnapshotAndPurge(reply) => {
                            let _ = raft.trigger_snapshot().await;
                            let mut metrics = raft.inner.raft.metrics();
                            let snap = wait_on_node(&mut metrics, |m| m.snapshot).await;
                            if let Some(snap) = snap {
                                let _ = raft.inner.raft.trigger().purge_log(snap.index).await;
                                wait_on_node(&mut metrics, |m| {
                                    m.purged.filter(|p| p.index >= snap.index)
                                })
                                .await;
                            }
                            let _ = reply.send(snap.map(|s| s.index));
                        }
                        Cmd::Shutdown(reply) => {
                            raft.shutdown(HANDOFF_MAX).await;
                            let _ = reply.send(());
                            break;
                        }
                        Cmd::Kill => break,
                    }
                }
            });
        })
        .expect("spawn node thread");
    match ready_rx.recv_timeout(WAIT_MAX) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("node {id} did not start: {err}"),
        Err(err) => panic!("node {id} did not start in time: {err}"),
    }
    Node {
        id,
        tx,
        thread: Some(thread),
    }
}

impl Node {
    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.unbounded_send(make(tx)).ok()?;
        futures::executor::block_on(rx).ok()
    }
    fn leader(&self) -> Option<i32> {
        self.ask(Cmd::Leader).flatten()
    }
    fn image(&self) -> Arc<MetadataImage> {
        self.ask(Cmd::Image).expect("node answers")
    }
    fn propose(&self, cmd: ControllerCommand) -> Result<Outcome, ProposeError> {
        self.ask(|tx| Cmd::Propose(cmd, tx))
            .unwrap_or(Err(ProposeError::Fatal("node gone".into())))
    }
    fn quorum(&self) -> super::QuorumState {
        self.ask(Cmd::Quorum).expect("node answers")
    }
    fn snapshot(&self) {
        self.ask(Cmd::Snapshot)
            .expect("node answers")
            .expect("snapshot requested");
    }
    fn snapshot_and_purge(&self) -> Option<u64> {
        self.ask(Cmd::SnapshotAndPurge).flatten()
    }
    fn shutdown(mut self) {
        self.ask(Cmd::Shutdown).expect("node shuts down");
        if let Some(thread) = self.thread.take() {
            thread.join().expect("node thread");
        }
    }
    fn kill(mut self) {
        let _ = self.tx.unbounded_send(Cmd::Kill);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("node thread");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.tx.unbounded_send(Cmd::Kill);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until `check` holds, at most WAIT_MAX.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A leader, other than `not`, that every node in `nodes` agrees on.
fn agreed_leader(nodes: &[&Node], not: Option<i32>) -> i32 {
    wait_for("an agreed leader", || {
        let first = nodes[0].leader().filter(|l| Some(*l) != not)?;
        nodes
            .iter()
            .all(|n| n.leader() == Some(first))
            .then_some(first)
    })
}

/// Whether `node` applied at least `changes` changes.
fn applied(node: &Node, changes: i64) -> bool {
    node.image().next_producer_id >= changes * BLOCK
}

/// The index (from 0) of the change a proposal committed.
fn nth(result: Result<Outcome, ProposeError>) -> i64 {
    match result {
        Ok(Outcome::ProducerIdBlock { first, .. }) => first / BLOCK,
        other => panic!("expected a producer id block, got {other:?}"),
    }
}

fn all_applied(nodes: &BTreeMap<i32, Node>, changes: i64) -> Option<()> {
    nodes.values().all(|n| applied(n, changes)).then_some(())
}

fn start_three(
    dirs: &[tempfile::TempDir],
    voters: &BTreeMap<i32, SocketAddr>,
) -> BTreeMap<i32, Node> {
    (1..=3)
        .map(|id| (id, start_node(id, voters, dir_of(dirs, id))))
        .collect()
}

fn dir_of(dirs: &[tempfile::TempDir], id: i32) -> PathBuf {
    dirs[id as usize - 1].path().to_path_buf()
}

fn temp_dirs() -> Vec<tempfile::TempDir> {
    (0..3).map(|_| tempfile::tempdir().expect("dir")).collect()
}

#[test]
fn three_nodes_elect_commit_fail_over_recover_and_lose_quorum() {
    let dirs = temp_dirs();
    let voters = three_voters();
    let mut nodes = start_three(&dirs, &voters);

    // A leader is elected; proposals through a follower and through the leader commit.
    let leader = agreed_leader(&nodes.values().collect::<Vec<_>>(), None);
    let follower = *nodes.keys().find(|id| **id != leader).expect("a follower");
    assert_eq!(nth(nodes[&follower].propose(change())), 0);
    assert_eq!(nth(nodes[&leader].propose(change())), 1);
    // A command that fails validation is an entry too; its reply is the controller's error.
    match nodes[&follower].propose(invalid()) {
        Err(ProposeError::Rejected(ControllerError::UnknownTopic)) => {}
        other => panic!("expected UnknownTopic, got {other:?}"),
    }
    wait_for("three images with both changes", || all_applied(&nodes, 2));
    let images: Vec<Arc<MetadataImage>> = nodes.values().map(Node::image).collect();
    assert!(
        images.windows(2).all(|w| w[0] == w[1]),
        "images differ: {images:?}"
    );

    // The leader's executor stops; the other two elect a new leader and commit.
    let killed_at = Instant::now();
    tracing::info!("killing the leader");
    nodes.remove(&leader).expect("leader node").kill();
    // Proposed at once: it waits for the election (within the propose bound).
    let survivor = nodes.values().next().expect("a survivor");
    assert_eq!(nth(survivor.propose(change())), 2);
    let failover = killed_at.elapsed();
    let new_leader = agreed_leader(&nodes.values().collect::<Vec<_>>(), Some(leader));
    assert_ne!(new_leader, leader);
    tracing::info!(?failover, election_timeout = ?ELECTION_TIMEOUT, "leader killed to next commit");
    wait_for("survivors apply the change", || all_applied(&nodes, 3));

    // The stopped node restarts on its directory, recovers its log and catches up.
    let restarted = start_node(leader, &voters, dir_of(&dirs, leader));
    wait_for("the restarted node catches up", || {
        applied(&restarted, 3).then_some(())
    });
    assert_eq!(nth(restarted.propose(change())), 3);
    nodes.insert(restarted.id, restarted);
    wait_for("all three apply the change", || all_applied(&nodes, 4));
    let images: Vec<Arc<MetadataImage>> = nodes.values().map(Node::image).collect();
    assert!(
        images.windows(2).all(|w| w[0] == w[1]),
        "images differ: {images:?}"
    );

    // Two of three stop: the survivor keeps its image and refuses changes within a bound.
    let ids: Vec<i32> = nodes.keys().copied().collect();
    for id in &ids[..2] {
        nodes.remove(id).expect("node").kill();
    }
    let survivor = nodes.remove(&ids[2]).expect("survivor");
    let started = Instant::now();
    let result = survivor.propose(change());
    let took = started.elapsed();
    assert!(result.is_err(), "a lone node committed: {result:?}");
    let bound = Duration::from_millis(crate::limits::METADATA_PROPOSE_TIMEOUT_MS);
    assert!(
        took < bound + Duration::from_secs(5),
        "the refusal took {took:?}"
    );
    assert!(applied(&survivor, 4) && !applied(&survivor, 5));
    let id = survivor.id;
    survivor.kill();

    // Restarted alone (no leader possible), it re-applies its log up to the committed id it
    // saved: the image it serves is the one it had, though it has no snapshot.
    assert!(snapshot_files(&dir_of(&dirs, id)).is_empty());
    let alone = start_node(id, &voters, dir_of(&dirs, id));
    wait_for("the lone node re-applies its committed log", || {
        applied(&alone, 4).then_some(())
    });
    // (Its leader() may still name the leader of its stored vote, which is gone.)
    assert!(alone.propose(change()).is_err());
}

fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let log_dir = dir.join("__cluster_metadata-0");
    std::fs::read_dir(log_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(super::state_machine::SNAPSHOT_FILE_SUFFIX))
                .collect()
        })
        .unwrap_or_default()
}

fn three_voters() -> BTreeMap<i32, SocketAddr> {
    (1..=3)
        .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], free_port()))))
        .collect()
}

#[test]
fn snapshots_restart_from_them_and_a_clean_leader_stop_hands_off() {
    let dirs = temp_dirs();
    let voters = three_voters();
    let mut nodes = start_three(&dirs, &voters);
    let leader = agreed_leader(&nodes.values().collect::<Vec<_>>(), None);
    for n in 0..3 {
        assert_eq!(nth(nodes[&leader].propose(change())), n);
    }
    wait_for("all apply", || all_applied(&nodes, 3));

    // DescribeQuorum's view on the leader.
    let quorum = wait_for("the leader sees every voter caught up", || {
        let q = nodes[&leader].quorum();
        (q.voters.len() == 3
            && q.voters
                .iter()
                .all(|v| v.log_end_offset == q.high_watermark))
        .then_some(q)
    });
    assert_eq!(quorum.leader_id, leader);
    assert!(quorum.leader_epoch >= 1);
    assert!(quorum.high_watermark >= 5, "{quorum:?}"); // membership, blank, three changes
    assert!(
        quorum.voters.iter().all(|v| v.last_fetch_timestamp > 0),
        "{quorum:?}"
    );

    for node in nodes.values() {
        node.snapshot();
    }
    for dir in &dirs {
        wait_for("a snapshot file", || {
            (snapshot_files(dir.path()).len() == 1).then_some(())
        });
    }

    // A clean stop of the leader hands leadership off; the others lead without it.
    let started = Instant::now();
    nodes.remove(&leader).expect("leader").shutdown();
    let new_leader = agreed_leader(&nodes.values().collect::<Vec<_>>(), Some(leader));
    tracing::info!(took = ?started.elapsed(), new_leader, "hand-off");
    assert_eq!(nth(nodes[&new_leader].propose(change())), 3);

    // The stopped node restarts from its snapshot: its image is there before it hears from
    // the leader.
    let restarted = start_node(leader, &voters, dir_of(&dirs, leader));
    assert!(applied(&restarted, 3), "not recovered from the snapshot");
    wait_for("the restarted node catches up", || {
        applied(&restarted, 4).then_some(())
    });
    nodes.insert(leader, restarted);
    for node in std::mem::take(&mut nodes).into_values() {
        node.shutdown();
    }
}

#[test]
fn a_node_with_another_cluster_id_is_refused() {
    let dirs = temp_dirs();
    let voters = three_voters();
    let ids = [Some("cluster-a"), Some("cluster-a"), Some("cluster-b")];
    let nodes: Vec<Node> = (1..=3)
        .map(|id| start_node_in(id, &voters, dir_of(&dirs, id), ids[id as usize - 1]))
        .collect();
    // Nodes 1 and 2 are a quorum of the three voters; node 3 is refused by both.
    let leader = agreed_leader(&[&nodes[0], &nodes[1]], Some(3));
    assert!(leader == 1 || leader == 2);
    assert_eq!(nth(nodes[0].propose(change())), 0);
    wait_for("both members apply", || {
        (applied(&nodes[0], 1) && applied(&nodes[1], 1)).then_some(())
    });
    assert!(nodes[2].propose(change()).is_err());
    assert!(!applied(&nodes[2], 1));
    assert!(
        nodes[2].leader() != Some(leader),
        "node 3 followed the other cluster"
    );
}

#[test]
fn a_follower_behind_the_purged_log_is_sent_the_snapshot() {
    let dirs = temp_dirs();
    let voters = three_voters();
    let mut nodes = start_three(&dirs, &voters);
    let leader = agreed_leader(&nodes.values().collect::<Vec<_>>(), None);
    let behind = *nodes.keys().find(|id| **id != leader).expect("a follower");
    assert_eq!(nth(nodes[&leader].propose(change())), 0);
    wait_for("all apply the first change", || all_applied(&nodes, 1));

    // One follower stops; the others commit more, snapshot and purge their logs past what it has.
    nodes.remove(&behind).expect("follower").kill();
    for n in 1..3 {
        assert_eq!(nth(nodes[&leader].propose(change())), n);
    }
    wait_for("the other two apply", || all_applied(&nodes, 3));
    for node in nodes.values() {
        let purged = node.snapshot_and_purge().expect("snapshot and purge");
        assert!(purged >= 4, "purged up to {purged}");
    }

    // It restarts: the leader has no entries for it and sends the snapshot; its own log is
    // restarted after the snapshot (truncate_fully_and_start_at) and it follows from there.
    let restarted = start_node(behind, &voters, dir_of(&dirs, behind));
    wait_for("the snapshot is installed", || {
        applied(&restarted, 3).then_some(())
    });
    assert_eq!(nth(restarted.propose(change())), 3);
    nodes.insert(behind, restarted);
    wait_for("all apply the fourth change", || all_applied(&nodes, 4));
    assert_eq!(snapshot_files(&dir_of(&dirs, behind)).len(), 1);

    // And after another restart it recovers from the installed snapshot and its log.
    nodes.remove(&behind).expect("node").kill();
    let again = start_node(behind, &voters, dir_of(&dirs, behind));
    assert!(applied(&again, 3));
    wait_for("it catches up again", || applied(&again, 4).then_some(()));
}
