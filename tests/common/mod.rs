//! Shared harness for the integration tests: runs the real `sluice` binary in its own temporary
//! data dir on an ephemeral loopback port, and builds librdkafka clients (rdkafka crate) for it.
//!
//! Every test binary that says `mod common;` gets this file; not every binary uses every helper.
//!
//! Rules the harness keeps so tests stay parallel-safe:
//! - ports: `--listen 127.0.0.1:0`; the broker prints `LISTENING 127.0.0.1:<port>` on stdout;
//!   the admin listener likewise on `admin.listener=127.0.0.1:0` (`ADMIN LISTENING …`), never
//!   the default 9644 that parallel brokers would fight over;
//! - files: one `tempfile` dir per broker, holding `data/` and `broker-stderr.log`;
//! - time: nothing sleeps to assert; waits poll with a named bound and panic with context.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub mod cluster;
pub mod wire;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

/// How long a broker may take from spawn to its `LISTENING` line.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM.
pub const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for any single wait on the broker's state (metadata, watermarks, fetches).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many bytes of the broker's stderr to print when a test fails.
pub const STDERR_TAIL_BYTES: u64 = 8 * 1024;

/// Options for [`Broker::start_with`].
#[derive(Clone, Debug)]
pub struct BrokerOpts {
    /// Value of `--cores`.
    pub cores: u32,
    /// `--override key=value` pairs (Kafka broker property names).
    pub overrides: Vec<(String, String)>,
    /// Any further arguments, appended after `serve` and the harness's own.
    pub extra_args: Vec<String>,
    /// `RUST_LOG` for the broker; `None` leaves the broker's default.
    pub rust_log: Option<String>,
    /// Start as the README's quickstart does: in the broker's own directory, with no
    /// `--data-dir`, so the default relative `./data` is used.
    pub default_data_dir: bool,
    /// Value of `--listen`; `None` leaves the listeners to the config file.
    pub listen: Option<String>,
    /// A server.properties text, written beside the data dir and passed as `--config`.
    pub config_text: Option<String>,
    /// `admin.listener` (given before `overrides`, which may replace it).
    pub admin_listener: String,
}

impl Default for BrokerOpts {
    fn default() -> Self {
        BrokerOpts {
            cores: 2,
            overrides: Vec::new(),
            extra_args: Vec::new(),
            rust_log: None,
            default_data_dir: false,
            listen: Some("127.0.0.1:0".to_string()),
            config_text: None,
            admin_listener: "127.0.0.1:0".to_string(),
        }
    }
}

impl BrokerOpts {
    /// Adds one `--override key=value`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running (or stopped) `sluice serve` child process with its own data dir.
pub struct Broker {
    opts: BrokerOpts,
    // Dropped last: the data dir must outlive the process.
    child: Option<Child>,
    bootstrap: String,
    /// `host:port` of the admin listener, once it printed `ADMIN LISTENING`.
    admin: Option<String>,
    starts: u32,
    // Set once a panic message carried the stderr tail, so Drop does not print it again.
    tail_shown: std::cell::Cell<bool>,
    root: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker with default options (2 cores, no overrides).
    pub fn start() -> Broker {
        Broker::start_with(BrokerOpts::default())
    }

    /// Starts a broker with the given options, in a fresh temp dir.
    pub fn start_with(opts: BrokerOpts) -> Broker {
        let root = tempfile::Builder::new()
            .prefix("sluice-test-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir_all(root.path().join("data")).expect("create data dir");
        let mut broker = Broker {
            opts,
            child: None,
            bootstrap: String::new(),
            admin: None,
            starts: 0,
            tail_shown: std::cell::Cell::new(false),
            root,
        };
        broker.spawn();
        broker
    }

    /// `host:port` of the HTTP admin listener (panics when it is off).
    pub fn admin_addr(&self) -> &str {
        self.admin
            .as_deref()
            .expect("the broker's admin listener is off")
    }

    /// `host:port` to give clients as `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// File that collects the broker's stderr across restarts.
    pub fn stderr_path(&self) -> PathBuf {
        self.root.path().join("broker-stderr.log")
    }

    /// Process id of the running broker. Signal it only while [`Broker::is_running`] is true:
    /// once the harness has reaped the process the pid may belong to someone else.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// SIGKILL and reap: a crash, as far as the broker can tell.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for exit; panics unless the broker exits 0.
    pub fn stop(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "broker exited with {status} after SIGTERM\n{}",
            self.stderr_tail()
        );
    }

    /// SIGTERM, then waits (bounded) and returns the exit status whatever it is.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is not running");
        // Only this harness reaps the child: once try_wait says it has not exited, its pid
        // cannot be reused until we wait, so the signal cannot reach another process.
        if let Some(status) = child.try_wait().expect("wait for broker") {
            return status;
        }
        // SAFETY: plain kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + BROKER_STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for broker") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker did not exit within {BROKER_STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.stderr_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops cleanly (if running) and starts again on the same data dir; the port may change.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Starts the broker again after [`Broker::kill9`] or [`Broker::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker is still running");
        self.spawn();
    }

    /// Starts the broker again and expects it to exit with a failure by itself within
    /// `timeout` (a refused start); panics if it is still running then or exits 0.
    pub fn start_again_expecting_exit(&mut self, timeout: Duration) {
        assert!(self.child.is_none(), "broker is still running");
        self.starts += 1;
        let mut command = self.command();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sluice binary");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for broker") {
                assert!(
                    !status.success(),
                    "broker exited 0; a refusal was expected\n{}",
                    self.stderr_tail()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker still running after {timeout:?}; a refusal was expected\n{}",
                    self.stderr_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last [`STDERR_TAIL_BYTES`] of the broker's stderr, framed for a panic message.
    pub fn stderr_tail(&self) -> String {
        self.tail_shown.set(true);
        let tail = read_tail(&self.stderr_path(), STDERR_TAIL_BYTES);
        format!(
            "---- broker stderr (tail of {}) ----\n{tail}\n---- end broker stderr ----",
            self.stderr_path().display()
        )
    }

    /// The `sluice serve` command line, with stderr appended to the broker's log file.
    fn command(&self) -> Command {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open broker stderr log");
        writeln!(log, "==== harness: start #{} ====", self.starts).expect("write log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command.arg("serve");
        if self.opts.default_data_dir {
            command.current_dir(self.root.path());
        } else {
            command.arg("--data-dir").arg(self.data_dir());
        }
        if let Some(listen) = &self.opts.listen {
            command.args(["--listen", listen]);
        }
        if let Some(text) = &self.opts.config_text {
            let path = self.root.path().join("server.properties");
            std::fs::write(&path, text).expect("write server.properties");
            command.arg("--config").arg(path);
        }
        command.args(["--cores", &self.opts.cores.to_string()]);
        command
            .arg("--override")
            .arg(format!("admin.listener={}", self.opts.admin_listener));
        for (key, value) in &self.opts.overrides {
            command.arg("--override").arg(format!("{key}={value}"));
        }
        command.args(&self.opts.extra_args);
        if let Some(filter) = &self.opts.rust_log {
            command.env("RUST_LOG", filter);
        }
        // If the test process dies (timeout, abort), take the broker with it instead of leaving
        // it to hold cores. Linux ties this to the spawning *thread*: start brokers from the
        // test's own thread, not from a short-lived pool thread.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        command.stderr(Stdio::from(log));
        command
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut command = self.command();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sluice binary");
        let stdout = child.stdout.take().expect("child stdout");
        let (sender, receiver) = mpsc::channel();
        // Reads the LISTENING line, then keeps draining stdout so the pipe never fills.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("ADMIN LISTENING ") {
                    let _ = sender.send((true, address.trim().to_string()));
                } else if let Some(address) = line.strip_prefix("LISTENING ") {
                    let _ = sender.send((false, address.trim().to_string()));
                }
            }
        });
        self.child = Some(child);
        self.bootstrap = self.wait_listening(&receiver);
    }

    fn wait_listening(&mut self, receiver: &mpsc::Receiver<(bool, String)>) -> String {
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        self.admin = None;
        loop {
            match receiver.recv_timeout(Duration::from_millis(50)) {
                // The broker prints ADMIN LISTENING (when on) before LISTENING.
                Ok((true, address)) => self.admin = Some(address),
                Ok((false, address)) => return address,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; let try_wait below report it.
                    thread::sleep(Duration::from_millis(50));
                }
            }
            let child = self.child.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("wait for broker") {
                self.child = None;
                panic!(
                    "broker exited with {status} before printing LISTENING\n{}",
                    self.stderr_tail()
                );
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "broker printed no LISTENING line within {BROKER_START_TIMEOUT:?}\n{}",
                    self.stderr_tail()
                );
            }
        }
    }

    // ---- clients ----------------------------------------------------------------------------

    /// Client config with `bootstrap.servers` and quick-failing defaults.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4")
            .set("socket.timeout.ms", "10000")
            // Restarts change the port; keep reconnect attempts frequent.
            .set("reconnect.backoff.ms", "20")
            .set("reconnect.backoff.max.ms", "500");
        config
    }

    /// A FutureProducer with acks=all and the given extra settings (later settings win).
    pub fn producer(&self, extra: &[(&str, &str)]) -> FutureProducer {
        let mut config = self.client_config();
        config
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config.create().expect("create producer")
    }

    /// A consumer for `assign()` with explicit offsets: no subscribe, no commits.
    /// librdkafka refuses `assign()` without a `group.id` (Local: Unknown group), so one is
    /// set, but nothing here joins or commits: fetching never waits on the group coordinator.
    /// `check.crcs` is on so a corrupt batch is an error, not silent data.
    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        let mut config = self.client_config();
        config
            .set("group.id", "sluice-test-assign-only")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("check.crcs", "true")
            .set("fetch.wait.max.ms", "100");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config.create().expect("create consumer")
    }

    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("create admin client")
    }

    /// Creates a topic (replication factor 1) with topic configs; panics unless it succeeds,
    /// then waits until metadata shows every partition with a leader.
    pub async fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = self
            .admin()
            .create_topics([&topic], &options)
            .await
            .unwrap_or_else(|e| panic!("CreateTopics {name}: {e}\n{}", self.stderr_tail()));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("CreateTopics {topic}: {code:?}\n{}", self.stderr_tail());
            }
        }
        self.wait_for_topic(name, partitions);
    }

    /// DescribeConfigs for one topic: name -> value, as the broker reports them.
    pub async fn topic_configs(&self, topic: &str) -> HashMap<String, Option<String>> {
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin()
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await
            .unwrap_or_else(|e| panic!("DescribeConfigs {topic}: {e}\n{}", self.stderr_tail()));
        let resource = match results.into_iter().next() {
            Some(Ok(resource)) => resource,
            Some(Err(code)) => panic!("DescribeConfigs {topic}: {code:?}\n{}", self.stderr_tail()),
            None => panic!("DescribeConfigs {topic}: empty answer"),
        };
        resource
            .entries
            .into_iter()
            .map(|entry| (entry.name, entry.value))
            .collect()
    }

    /// Topic names and partition counts from a Metadata request for all topics.
    pub fn list_topics(&self) -> HashMap<String, usize> {
        let consumer = self.consumer(&[]);
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("Metadata: {e}\n{}", self.stderr_tail()));
        metadata
            .topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect()
    }

    /// Polls metadata until `topic` has `partitions` partitions, each with a leader and no error.
    pub fn wait_for_topic(&self, topic: &str, partitions: i32) {
        let consumer = self.consumer(&[]);
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let last = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(metadata) => {
                    let ready = metadata.topics().iter().any(|t| {
                        t.name() == topic
                            && t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions()
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none())
                    });
                    if ready {
                        return;
                    }
                    metadata
                        .topics()
                        .iter()
                        .map(|t| {
                            let count = t.partitions().len();
                            format!("{}: {:?}, {count} partitions", t.name(), t.error())
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                panic!(
                    "topic {topic} not ready with {partitions} partitions within {WAIT_TIMEOUT:?}; \
                     last metadata: {last}\n{}",
                    self.stderr_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// (low, high) watermarks of one partition, retried until the broker answers (bounded).
    pub fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        let consumer = self.consumer(&[]);
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
                Ok(marks) => return marks,
                Err(e) if Instant::now() > deadline => panic!(
                    "ListOffsets {topic}-{partition}: {e}\n{}",
                    self.stderr_tail()
                ),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Reads `[from, until)` of one partition with `assign()`; panics on any consumer error
    /// (CRC, corrupt batch, broker error) or if the range is not all served within the bound.
    /// Records come back in the order the broker served them.
    pub fn read_range(&self, topic: &str, partition: i32, from: i64, until: i64) -> Vec<Record> {
        let mut records = Vec::new();
        if from >= until {
            return records;
        }
        let consumer = self.consumer(&[]);
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(from))
            .expect("offset");
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while records.last().is_none_or(|r: &Record| r.offset < until - 1) {
            if Instant::now() > deadline {
                panic!(
                    "read {topic}-{partition} [{from}, {until}): only reached offset {:?} within \
                     {WAIT_TIMEOUT:?}\n{}",
                    records.last().map(|r| r.offset),
                    self.stderr_tail()
                );
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(message)) => {
                    let record = Record::from_message(&message);
                    if record.offset < until {
                        records.push(record);
                    }
                }
                Some(Err(e)) => panic!(
                    "consumer error reading {topic}-{partition} [{from}, {until}) after {} records: \
                     {e}\n{}",
                    records.len(),
                    self.stderr_tail()
                ),
            }
        }
        records
    }

    /// Reads a whole partition, log start offset to high watermark.
    pub fn read_partition(&self, topic: &str, partition: i32) -> Vec<Record> {
        let (low, high) = self.watermarks(topic, partition);
        self.read_range(topic, partition, low, high)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if thread::panicking() && !self.tail_shown.get() {
            eprintln!("{}", self.stderr_tail());
        }
        self.kill9();
    }
}

/// One consumed record, owned, for comparing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: rdkafka::Timestamp,
}

impl Record {
    pub fn from_message<M: Message>(message: &M) -> Record {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| k.to_vec()),
            value: message.payload().map(|v| v.to_vec()),
            headers,
            timestamp: message.timestamp(),
        }
    }
}

/// A topic name unique to this process and call, so tests never collide.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `condition` every 50 ms until it holds, panicking with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until `path` no longer exists (bounded); true once it is gone.
pub fn wait_for_absence(path: &Path) -> bool {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The error code of a KafkaError from a producer or consumer, if it carries one.
pub fn error_code(error: &KafkaError) -> Option<rdkafka::types::RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

/// The highest-numbered `.log` file in `<data_dir>/<topic>-<partition>/`: the active segment.
pub fn active_segment(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs.pop()
        .unwrap_or_else(|| panic!("no .log segment in {}", dir.display()))
}

fn read_tail(path: &Path, bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("<cannot open {}>", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut buffer = Vec::new();
    let _ = file.read_to_end(&mut buffer);
    String::from_utf8_lossy(&buffer).into_owned()
}

/// Runs `command` in its own process group, with stdout and stderr captured together (in
/// separate sections); kills the whole group and panics once `timeout` has passed.
pub fn run_bounded(what: &str, command: &mut Command, timeout: Duration) -> (ExitStatus, String) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so a timeout also reaches what it spawned (node --test runs
        // each test file in a child process).
        .process_group(0);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (is it installed and on PATH?)"));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut pipe| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group we created; the leader is not reaped yet,
            // so its pid (the group id) cannot have been reused.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let mut output = readers
        .into_iter()
        .zip(["stdout", "stderr"])
        .map(|(reader, name)| format!("---- {what} {name} ----\n{}", reader.join().unwrap()))
        .collect::<Vec<_>>()
        .join("\n");
    match status {
        Some(status) => (status, output),
        None => {
            output.insert_str(0, &format!("{what} did not finish within {timeout:?}\n"));
            panic!("{output}");
        }
    }
}
