//! The thread-per-core runtime: one glommio executor per core, each running a
//! shard; a full channel mesh between shards; start-up and clean shutdown.
//!
//! Architecture Invariant: glommio is imported only under `runtime/`, `net/`
//! and the storage I/O seam, so the executor could be swapped.

pub mod messages;
pub mod placement;
pub mod shard;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorBuilder, Placement};

use crate::cluster::controller::{self, Outcome};
use crate::cluster::image::CONSUMER_OFFSETS_TOPIC;
use crate::cluster::{ControllerCommand, ControllerError, MetadataImage};
use crate::config::BrokerConfig;
use crate::limits;
use crate::model::ShardId;
use messages::{Envelope, ShardRequest, ShardResponse};
pub use shard::Shard;

/// The two cross-core meshes (see `run`).
#[derive(Clone)]
struct Meshes {
    requests: MeshBuilder<Envelope, Full>,
    replies: MeshBuilder<Envelope, Full>,
}

/// What every shard thread gets at start-up.
struct Boot {
    config: Arc<BrokerConfig>,
    image: Arc<MetadataImage>,
    addr: SocketAddr,
    ready: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    drained: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    /// The active controller's node id, shared by every shard (see `Shard::controller_id`).
    controller_id: Arc<AtomicI32>,
    /// The advertised Kafka listener (what this broker registers).
    advertised: (String, u16),
    /// The cluster id this node must belong to: stored in meta.properties, else configured.
    expected_cluster_id: Option<String>,
    /// The bound `admin.listener` socket: shard 0's only (see `admin`).
    admin: Option<std::net::TcpListener>,
}

/// Runs the broker until SIGTERM/SIGINT. Prints `LISTENING <addr>` on stdout once
/// every shard accepts connections.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    // Resolved once, here: every shard and every path below it then sees the same absolute
    // directory (a relative `./data` failed in glommio's directory opens).
    config.data_dir = std::fs::canonicalize(&config.data_dir)
        .with_context(|| format!("resolving data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    // A directory formatted for another cluster or node is refused before anything opens.
    let configured_cluster = config.get("cluster.id").to_string();
    let stored =
        crate::cluster::meta::check(&config.data_dir, config.node_id, Some(&configured_cluster))?;
    let expected_cluster_id = stored
        .map(|m| m.cluster_id)
        .or_else(|| (!configured_cluster.is_empty()).then(|| configured_cluster.clone()));
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().context("blocking signals")?;

    // Reserve the port (SO_REUSEPORT) so an ephemeral port is known before shards bind it.
    let reservation = reserve_port(config.listen)?;
    let addr = reservation
        .local_addr()?
        .as_socket()
        .context("listener address")?;
    let (host, port) = match &config.advertised {
        Some((h, p)) => (h.clone(), *p),
        None if addr.ip().is_unspecified() => ("127.0.0.1".to_string(), addr.port()),
        None => (addr.ip().to_string(), addr.port()),
    };
    // With a quorum the image comes from the metadata log (shard 0 starts it); alone, the
    // node is its own controller and its image a file.
    let image = match &config.quorum {
        Some(_) => MetadataImage::empty(),
        None => initial_image(&config, host.clone(), port)?,
    };
    let controller_id = Arc::new(AtomicI32::new(match &config.quorum {
        Some(_) => -1,
        None => config.node_id,
    }));
    let mut admin = crate::admin::bind(&config)?;
    let admin_addr = match &admin {
        Some(l) => Some(l.local_addr().context("admin listener address")?),
        None => None,
    };
    let nr = config.cores;
    tracing::info!(shards = nr, %addr, data_dir = %config.data_dir.display(), cluster_id = %image.cluster_id, "starting");

    // Requests and replies travel on separate meshes, so that a shard that stops reading
    // requests (at its bound of work in progress) still reads the replies its own work awaits.
    let mesh = Meshes {
        requests: MeshBuilder::full(nr, limits::MESH_CHANNEL_MESSAGES_MAX),
        replies: MeshBuilder::full(nr, limits::MESH_CHANNEL_MESSAGES_MAX),
    };
    let boot = Boot {
        config: Arc::new(config),
        image: Arc::new(image),
        addr,
        ready: Arc::new(AtomicUsize::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
        drained: Arc::new(AtomicUsize::new(0)),
        failed: Arc::new(AtomicBool::new(false)),
        controller_id,
        advertised: (host, port),
        expected_cluster_id,
        admin: None,
    };
    // Pin shard i to the i-th CPU this process may run on (taskset/cgroups respected).
    let cpus = allowed_cpus();
    let mut handles = Vec::with_capacity(nr);
    for i in 0..nr {
        let placement = match cpus.get(i) {
            Some(cpu) if nr <= cpus.len() => Placement::Fixed(*cpu),
            _ => Placement::Unbound,
        };
        let mesh = mesh.clone();
        let b = Boot {
            config: boot.config.clone(),
            image: boot.image.clone(),
            addr,
            ready: boot.ready.clone(),
            stop: boot.stop.clone(),
            drained: boot.drained.clone(),
            failed: boot.failed.clone(),
            controller_id: boot.controller_id.clone(),
            advertised: boot.advertised.clone(),
            expected_cluster_id: boot.expected_cluster_id.clone(),
            admin: if i == 0 { admin.take() } else { None },
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{i}"))
            .io_memory(limits::EXECUTOR_IO_MEMORY_BYTES)
            .ring_depth(limits::EXECUTOR_RING_DEPTH)
            .spawn(move || async move {
                let failed = b.failed.clone();
                if let Err(e) = shard_main(ShardId(i), nr, mesh, b).await {
                    tracing::error!(shard = i, error = %format!("{e:#}"), "shard failed");
                    failed.store(true, Ordering::SeqCst);
                }
            })
            .map_err(|e| anyhow::anyhow!("starting executor for shard {i}: {e}"))?;
        handles.push(handle);
    }
    while boot.ready.load(Ordering::SeqCst) < nr {
        if boot.failed.load(Ordering::SeqCst) {
            boot.stop.store(true, Ordering::SeqCst);
            for h in handles {
                let _ = h.join();
            }
            anyhow::bail!("start-up failed; see the log above");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(reservation);
    // Before LISTENING, so whoever waits for that line knows the admin address by then.
    if let Some(admin_addr) = admin_addr {
        println!("ADMIN LISTENING {admin_addr}");
    }
    println!("LISTENING {addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, "ready");

    wait_for_signal(&signals, &boot.failed);
    tracing::info!("shutting down");
    boot.stop.store(true, Ordering::SeqCst);
    for h in handles {
        if h.join().is_err() {
            tracing::error!("a shard panicked");
        }
    }
    tracing::info!("stopped");
    if boot.failed.load(Ordering::SeqCst) {
        anyhow::bail!("a shard failed");
    }
    Ok(())
}

/// CPUs in this process's affinity mask, ascending.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|c| set.is_set(*c).unwrap_or(false))
            .collect(),
        Err(_) => (0..crate::config::online_cpus()).collect(),
    }
}

/// Waits for SIGTERM/SIGINT (blocked in every thread) or a shard failure.
fn wait_for_signal(signals: &nix::sys::signal::SigSet, failed: &AtomicBool) {
    let set = signals.as_ref() as *const libc::sigset_t;
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        // SAFETY: `set` points to a valid sigset for the duration of the call; a null siginfo is allowed.
        let r = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
        if r > 0 {
            tracing::info!(signal = r, "signal received");
            return;
        }
        if failed.load(Ordering::SeqCst) {
            return;
        }
    }
}

fn reserve_port(addr: SocketAddr) -> anyhow::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    Ok(s)
}

/// One broker per data dir: an exclusive flock on `<data>/.lock`, held until exit.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    // SAFETY: flock on a valid, owned descriptor.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        anyhow::bail!("data dir {} is in use by another broker", dir.display());
    }
    Ok(f)
}

/// Loads the persisted image (or makes one), registers this node as its one unfenced broker,
/// and creates the internal topics (single-node mode: shard 0 is the whole controller).
fn initial_image(config: &BrokerConfig, host: String, port: u16) -> anyhow::Result<MetadataImage> {
    let mut image = MetadataImage::load_or_new(&config.data_dir, config.node_id)?;
    let run = |image: &mut MetadataImage, cmd: ControllerCommand| -> anyhow::Result<Outcome> {
        let (next, outcome) = controller::apply(image, &cmd).map_err(|e| anyhow::anyhow!("{e}"))?;
        *image = next;
        Ok(outcome)
    };
    // The directory's recorded cluster id wins (`sluice format` may have written it), then
    // the configured `cluster.id`, then a new one.
    let stored = crate::cluster::meta::read(&config.data_dir)?;
    match (stored, config.get("cluster.id")) {
        (Some(meta), _) => image.cluster_id = meta.cluster_id,
        (None, configured) if !configured.is_empty() => image.cluster_id = configured.to_string(),
        (None, _) => {}
    }
    if image.cluster_id.is_empty() {
        let cluster_id = crate::cluster::image::new_cluster_id();
        run(&mut image, ControllerCommand::SetClusterId { cluster_id })?;
    }
    let rack = config.rack.clone();
    let register = ControllerCommand::RegisterBroker {
        node_id: config.node_id,
        incarnation_id: uuid::Uuid::new_v4(),
        host,
        port,
        rack,
    };
    let Outcome::BrokerRegistered { epoch, .. } = run(&mut image, register)? else {
        anyhow::bail!("registering this broker gave no epoch");
    };
    let unfence = ControllerCommand::UnfenceBroker {
        node_id: config.node_id,
        epoch,
    };
    run(&mut image, unfence)?;
    let defaults = crate::cluster::controller::election::broker_defaults(config);
    if image.broker_defaults != defaults {
        run(
            &mut image,
            ControllerCommand::SetBrokerDefaults { configs: defaults },
        )?;
    }
    if image.topic(CONSUMER_OFFSETS_TOPIC).is_none() {
        run(&mut image, offsets_topic_command(config, 1))?;
    }
    image.persist(&config.data_dir, config.node_id)?;
    Ok(image)
}

/// Creates `__consumer_offsets` (Kafka's settings for it: `offsets.topic.*`, compacted).
pub(crate) fn offsets_topic_command(
    config: &BrokerConfig,
    replication_factor: i16,
) -> ControllerCommand {
    let mut configs = std::collections::BTreeMap::new();
    configs.insert(
        "segment.bytes".to_string(),
        config.get("offsets.topic.segment.bytes").to_string(),
    );
    // Kafka's: compacted, so the latest commit of each group/partition is kept forever.
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("compression.type".to_string(), "producer".to_string());
    ControllerCommand::CreateTopic {
        name: CONSUMER_OFFSETS_TOPIC.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions: config.int("offsets.topic.num.partitions", 50) as i32,
        replication_factor,
        configs,
        internal: true,
        assignment: None,
    }
}

async fn shard_main(id: ShardId, nr: usize, mesh: Meshes, mut boot: Boot) -> anyhow::Result<()> {
    let (senders, receivers) = mesh
        .requests
        .join()
        .await
        .map_err(|_| anyhow::anyhow!("joining the shard request mesh"))?;
    let (reply_senders, reply_receivers) = mesh
        .replies
        .join()
        .await
        .map_err(|_| anyhow::anyhow!("joining the shard reply mesh"))?;
    let logs = crate::storage::LogManager::new(id, storage_config(&boot.config));
    let groups = crate::group::GroupCoordinator::new(id, boot.config.clone(), logs.clone());
    let shard = Rc::new(Shard::new(
        id,
        nr,
        boot.config.clone(),
        logs.clone(),
        groups,
        boot.image.clone(),
        shard::MeshSenders {
            requests: senders,
            replies: reply_senders,
        },
        boot.controller_id.clone(),
    ));
    spawn_mesh_receivers(&shard, receivers, true);
    spawn_mesh_receivers(&shard, reply_receivers, false);
    shard.apply_image(boot.image.clone()).await;
    if let (ShardId(0), Some(quorum)) = (id, boot.config.quorum.clone()) {
        let node = crate::cluster::node::ClusterNode::start(
            &shard,
            quorum,
            boot.advertised.clone(),
            boot.expected_cluster_id.clone(),
            boot.controller_id.clone(),
            boot.failed.clone(),
        )
        .await?;
        *shard.cluster.borrow_mut() = Some(node);
    }
    logs.start_background();
    if boot.config.quorum.is_some() {
        crate::replica::start(&shard);
    }
    shard.groups.start(shard.clone());
    shard.txns.start(shard.clone());
    if let Some(admin) = boot.admin.take() {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor is a bound, listening TCP socket whose ownership moves here.
        let admin = unsafe { glommio::net::TcpListener::from_raw_fd(admin.into_raw_fd()) };
        glommio::spawn_local(crate::admin::serve(shard.clone(), admin, boot.stop.clone())).detach();
    }
    let listener = glommio::net::TcpListener::bind(boot.addr)
        .map_err(|e| anyhow::anyhow!("shard {} binding {}: {e}", id.0, boot.addr))?;
    boot.ready.fetch_add(1, Ordering::SeqCst);
    crate::net::accept_loop(shard.clone(), listener, boot.stop.clone()).await;

    // Hand this node's leaderships (partitions, then the quorum's) to others before closing.
    let node = shard.cluster.borrow().clone();
    if let Some(node) = node {
        node.controlled_shutdown().await;
    }
    shard.shutting_down.set(true);
    crate::net::drain_connections(&shard, Duration::from_secs(10)).await;
    boot.drained.fetch_add(1, Ordering::SeqCst);
    // Other shards may still route requests here until their connections drain.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while boot.drained.load(Ordering::SeqCst) < nr && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    logs.shutdown().await;
    let s = &shard.stats;
    tracing::info!(
        shard = id.0,
        requests = s.requests.get(),
        produced_bytes = s.produced_bytes.get(),
        fetched_bytes = s.fetched_bytes.get(),
        sendfile_bytes = s.sendfile_bytes.get(),
        copied_bytes = s.copied_bytes.get(),
        replica_file_bytes = s.replica_file_bytes.get(),
        replica_copied_bytes = s.replica_copied_bytes.get(),
        "shard stopped"
    );
    Ok(())
}

/// Reads one mesh. On the request mesh each request first takes a permit of the shard's
/// bound on mesh work in progress (`MESH_REQUESTS_IN_PROGRESS_MAX`): at the bound the reader
/// stops, the channel fills and the sending shards wait — backpressure instead of a task per
/// message without end. Metadata work (images, controller commands) takes no permit, so a
/// shard at the bound still applies a new image once its stream reaches it; parked long
/// polls take a permit of their own bound instead (below).
fn spawn_mesh_receivers(
    shard: &Rc<Shard>,
    mut receivers: glommio::channels::channel_mesh::Receivers<Envelope>,
    requests: bool,
) {
    use futures_lite::StreamExt;
    // Parked long polls (WaitForData) hold no permit of `mesh_work`: they may park for up to
    // `FETCH_WAIT_MS_MAX`, and at the bound they would stop the mesh (and with it the
    // produces that would wake them) for that long. They are bounded apart, without ever
    // making the receiver wait: past `MESH_WAITS_PARKED_MAX` a wait is answered at once
    // (the fetch re-reads: a spurious wake-up, not a lost request).
    let waits = Rc::new(glommio::sync::Semaphore::new(
        crate::limits::MESH_WAITS_PARKED_MAX as u64,
    ));
    for (_, mut stream) in receivers.streams() {
        let shard = shard.clone();
        let waits = waits.clone();
        glommio::spawn_local(async move {
            while let Some(mut envelope) = stream.next().await {
                let permit = match &mut envelope {
                    Envelope::Request {
                        request: ShardRequest::WaitForData { wait_ms, .. },
                        ..
                    } if requests => match waits.try_acquire_static_permit(1) {
                        Ok(permit) => Some(permit),
                        Err(_) => {
                            *wait_ms = 0;
                            None
                        }
                    },
                    Envelope::Request { request, .. } if requests && request.is_data_work() => {
                        shard.mesh_work.clone().acquire_static_permit(1).await.ok()
                    }
                    _ => None,
                };
                shard.receive(envelope, permit);
            }
        })
        .detach();
    }
}

/// Work a shard runs for a request it owns (see [`dispatch_local`]).
pub type LocalWork = std::pin::Pin<Box<dyn std::future::Future<Output = ShardResponse>>>;

/// Runs a request on the shard that owns its partitions (this one). Called synchronously
/// where the request's order is known: whatever must keep that order (a produce's place in
/// each partition's append queue) is entered before this returns; the rest runs when the
/// returned future is polled.
pub fn dispatch_local(shard: Rc<Shard>, request: ShardRequest) -> LocalWork {
    use crate::handler::local;
    match request {
        // Takes each partition's append place now, before the future is polled.
        ShardRequest::Produce(batch) => {
            let appends = local::produce(&shard, batch);
            Box::pin(async move { ShardResponse::Produce(appends.await) })
        }
        ShardRequest::ApplyImage(image) => Box::pin(async move {
            shard.apply_image(image).await;
            ShardResponse::Applied
        }),
        ShardRequest::Controller(cmd) => {
            Box::pin(async move { ShardResponse::Controller(run_controller(&shard, cmd).await) })
        }
        ShardRequest::Fetch { items, max_bytes } => {
            Box::pin(
                async move { ShardResponse::Fetch(local::fetch(&shard, items, max_bytes).await) },
            )
        }
        ShardRequest::WaitForData {
            items,
            wait_ms,
            replica,
            read_committed,
        } => Box::pin(async move {
            local::wait_for_data(&shard, items, wait_ms, replica, read_committed).await;
            ShardResponse::DataReady
        }),
        // Takes each partition's append place now, like a produce.
        ShardRequest::WriteTxnMarkers(items) => {
            let appends = crate::handler::write_txn_markers::append_local(&shard, items);
            Box::pin(async move { ShardResponse::WriteTxnMarkers(appends.await) })
        }
        ShardRequest::DescribeProducers(items) => Box::pin(async move {
            ShardResponse::DescribeProducers(crate::handler::describe_producers::local(
                &shard, items,
            ))
        }),
        ShardRequest::ListOffsets(items) => {
            Box::pin(
                async move { ShardResponse::ListOffsets(local::list_offsets(&shard, items).await) },
            )
        }
        ShardRequest::EpochEndOffsets(items) => Box::pin(async move {
            ShardResponse::EpochEndOffsets(local::epoch_end_offsets(&shard, items))
        }),
        ShardRequest::DeleteRecords(items) => Box::pin(async move {
            ShardResponse::DeleteRecords(local::delete_records(&shard, items).await)
        }),
        ShardRequest::LogDirs(items) => {
            Box::pin(async move { ShardResponse::LogDirs(local::log_dirs(&shard, items)) })
        }
        ShardRequest::DescribeQuorum => Box::pin(async move {
            let node = shard.cluster.borrow().clone();
            ShardResponse::Quorum(node.map(|n| n.raft.quorum_state()))
        }),
        ShardRequest::Metrics => {
            Box::pin(
                async move { ShardResponse::Metrics(Box::new(crate::metrics::snapshot(&shard))) },
            )
        }
        ShardRequest::Group(req) => {
            Box::pin(async move { ShardResponse::Group(shard.groups.handle(*req).await) })
        }
        ShardRequest::OngoingTxns(items) => {
            let answer = local::ongoing_transactions(&shard, &items);
            Box::pin(async move { ShardResponse::OngoingTxns(answer) })
        }
        ShardRequest::Txn(req) => {
            Box::pin(async move { ShardResponse::Txn(Box::new(shard.txns.handle(*req).await)) })
        }
    }
}

/// Applies a controller command (shard 0 only): pure apply, persist, broadcast, answer.
async fn run_controller(
    shard: &Rc<Shard>,
    cmd: ControllerCommand,
) -> Result<Outcome, ControllerError> {
    if shard.id != ShardId(0) {
        return Err(ControllerError::InvalidRequest(
            "not the controller shard".into(),
        ));
    }
    let node = shard.cluster.borrow().clone();
    if let Some(node) = node {
        // Cluster mode: a log entry of the quorum, answered once committed and applied here
        // or on the leader (forwarded there when this node does not lead).
        return node.raft.propose(cmd).await.map_err(|e| match e {
            crate::cluster::raft::ProposeError::Rejected(e) => e,
            crate::cluster::raft::ProposeError::Timeout => ControllerError::Timeout(e.to_string()),
            other => ControllerError::NotController(other.to_string()),
        });
    }
    let _permit = shard.controller_lock.acquire_permit(1).await;
    let current = shard.metadata();
    let (next, outcome) = controller::apply(&current, &cmd)?;
    let next = Arc::new(next);
    let dir = shard.config.data_dir.clone();
    let node_id = shard.node_id();
    let to_write = next.clone();
    let persisted = glommio::executor()
        .spawn_blocking(move || to_write.persist(&dir, node_id))
        .await;
    persisted.map_err(|e| ControllerError::Persist(e.to_string()))?;
    let image = next.clone();
    shard
        .broadcast(|| ShardRequest::ApplyImage(image.clone()))
        .await;
    tracing::info!(version = next.version, command = ?short(&cmd), "metadata changed");
    if let (
        ControllerCommand::CreateTopic { .. } | ControllerCommand::CreatePartitions { .. },
        Outcome::Topic(t),
    ) = (&cmd, &outcome)
    {
        let owners: Vec<usize> = (0..t.partition_count())
            .map(|p| {
                placement::shard_for(
                    &crate::model::TopicPartition::new(t.name.clone(), p),
                    shard.nr_shards,
                )
                .0
            })
            .collect();
        tracing::info!(topic = %t.name, id = %t.id, ?owners, "partition placement (index = partition, value = shard)");
    }
    Ok(outcome)
}

fn short(cmd: &ControllerCommand) -> String {
    match cmd {
        ControllerCommand::CreateTopic {
            name, partitions, ..
        } => format!("create topic {name} ({partitions})"),
        ControllerCommand::DeleteTopic { name, .. } => format!("delete topic {name}"),
        ControllerCommand::CreatePartitions { name, count, .. } => {
            format!("partitions of {name} -> {count}")
        }
        ControllerCommand::RegisterBroker { node_id, .. } => format!("register broker {node_id}"),
        ControllerCommand::UnfenceBroker { node_id, .. } => format!("unfence broker {node_id}"),
        ControllerCommand::FenceBroker { node_id, .. } => format!("fence broker {node_id}"),
        ControllerCommand::BeginControlledShutdown { node_id, .. } => {
            format!("controlled shutdown of broker {node_id}")
        }
        ControllerCommand::SetClusterId { cluster_id } => format!("cluster id {cluster_id}"),
        ControllerCommand::AlterTopicConfigs { name, .. } => format!("alter configs of {name}"),
        ControllerCommand::AllocateProducerIds => "allocate producer ids".into(),
        ControllerCommand::AlterPartition {
            topic,
            partition,
            new_isr,
            ..
        } => format!("isr of {topic}-{partition} -> {new_isr:?}"),
        ControllerCommand::ElectLeaders { election_type, .. } => {
            format!("{election_type:?} leader election")
        }
        ControllerCommand::SetBrokerDefaults { .. } => "broker defaults".into(),
        ControllerCommand::AlterPartitionReassignments { reassignments, .. } => {
            format!("reassign {} partition(s)", reassignments.len())
        }
    }
}

fn storage_config(c: &BrokerConfig) -> crate::storage::StorageBrokerConfig {
    let pos = |k: &str| -> Option<u64> { Some(c.int(k, -1)).filter(|v| *v >= 0).map(|v| v as u64) };
    let flush_messages = c.int("log.flush.interval.messages", i64::MAX);
    crate::storage::StorageBrokerConfig {
        data_dir: c.data_dir.clone(),
        retention_check_interval_ms: c.int("log.retention.check.interval.ms", 300_000).max(1)
            as u64,
        min_free_bytes: pos("log.dir.min.free.bytes"),
        min_free_percent: Some(c.float("log.dir.min.free.percent", -1.0)).filter(|p| *p > 0.0),
        capacity_override_bytes: pos("log.dir.capacity.bytes").filter(|v| *v > 0),
        flush_interval_messages: (flush_messages > 0 && flush_messages < i64::MAX)
            .then_some(flush_messages as u64),
        flush_interval_ms: pos("log.flush.interval.ms").filter(|v| *v > 0),
        cleaner: cleaner_config(c),
    }
}

/// `log.cleaner.*`; the buffer and the I/O rate are Kafka's per-broker totals, split over shards.
fn cleaner_config(c: &BrokerConfig) -> crate::storage::config::CleanerConfig {
    let shards = c.cores.max(1) as f64;
    let rate = c.float("log.cleaner.io.max.bytes.per.second", f64::MAX);
    crate::storage::config::CleanerConfig {
        enable: c.get("log.cleaner.enable").trim() != "false",
        dedupe_buffer_bytes: (c.int("log.cleaner.dedupe.buffer.size", 134_217_728).max(0) as f64
            / shards) as u64,
        io_max_bytes_per_second: (rate.is_finite() && rate > 0.0 && rate < 1e300)
            .then_some(rate / shards),
        backoff_ms: c.int("log.cleaner.backoff.ms", 15_000).max(1) as u64,
    }
}
