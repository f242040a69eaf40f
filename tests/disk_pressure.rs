//! Disk pressure with the real binary on a real small filesystem: the data dir is
//! a 48 MiB tmpfs mounted by the test (CI runs as root). The broker must refuse
//! produce with a retriable error before the disk fills, keep serving fetch and
//! metadata, log the state, and accept produce again by itself once space returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{unique_topic, wait_until, Broker, BrokerOpts};
use rdkafka::admin::AdminOptions;
use rdkafka::producer::FutureRecord;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("sluice-tmpfs-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("mnt");
        std::fs::create_dir_all(&path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Tmpfs { path, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() as u64 * s.fragment_size() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_is_refused_below_the_free_space_floor_and_resumes_when_space_returns() {
    let fs = Tmpfs::mount("48m");
    let data = fs.path.join("data");
    let mut broker = Broker::start_with(
        BrokerOpts::default()
            .with("log.dirs", data.to_str().expect("utf-8 path"))
            .with("offsets.topic.num.partitions", "1")
            .with("log.segment.bytes", "1048576")
            .with("log.index.size.max.bytes", "65536")
            .with("log.dir.min.free.bytes", "16777216")
            .with("log.retention.check.interval.ms", "200"),
    );
    let filler = unique_topic("filler");
    broker.create_topic(&filler, 1, &[]).await;
    let producer = broker.producer(&[("message.timeout.ms", "3000"), ("retries", "2")]);
    let value = vec![b'x'; 64 * 1024];

    // Fill until the broker refuses; it must refuse before the volume is full.
    let mut acknowledged = 0u64;
    let mut refused = None;
    for i in 0..2_000 {
        let record = FutureRecord::<(), [u8]>::to(&filler).payload(&value[..]);
        match producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => acknowledged += 1,
            Err((e, _)) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, error) = refused.expect("the broker never refused produce");
    assert!(
        acknowledged > 100,
        "refused too early: after {acknowledged} records ({error})"
    );
    assert!(
        free_bytes(&fs.path) > 4 * 1024 * 1024,
        "the volume filled up before the broker refused produce"
    );
    let code = common::error_code(&error);
    assert_eq!(
        code,
        Some(rdkafka::types::RDKafkaErrorCode::KafkaStorageError),
        "after {at} records: {error}"
    );
    wait_until("read-only logged", Duration::from_secs(10), || {
        broker.stderr_tail().contains("read-only")
    });

    // Fetch and metadata keep working in read-only mode.
    let records = broker.read_range(&filler, 0, 0, 10);
    assert_eq!(records.len(), 10);
    assert!(broker.list_topics().contains_key(&filler));

    // Free space: delete the topic; produce resumes by itself.
    let admin = broker.admin();
    admin
        .delete_topics(&[&filler], &AdminOptions::new())
        .await
        .expect("delete topics");
    let other = unique_topic("after");
    broker.create_topic(&other, 1, &[]).await;
    let fresh = broker.producer(&[("message.timeout.ms", "30000")]);
    let sent = fresh
        .send(
            FutureRecord::<(), [u8]>::to(&other).payload(b"back"),
            Duration::from_secs(30),
        )
        .await;
    assert!(sent.is_ok(), "produce did not resume: {:?}", sent.err());
    assert_eq!(
        broker.read_range(&other, 0, 0, 1)[0].value.as_deref(),
        Some(&b"back"[..])
    );
    broker.stop();
}

/// Bytes of the `.log` segments in a partition directory.
fn segment_bytes_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_disk_percent_keeps_a_topic_under_its_share_of_the_volume() {
    // A 20 MiB capacity source; the topic may use 10% of it = 2 MiB over 2 partitions.
    let broker = Broker::start_with(
        BrokerOpts::default()
            .with("log.dir.capacity.bytes", "20971520")
            .with("log.retention.check.interval.ms", "200")
            .with("log.segment.delete.delay.ms", "0"),
    );
    let topic = unique_topic("share");
    broker
        .create_topic(
            &topic,
            2,
            &[
                ("retention.disk.percent", "10"),
                ("segment.bytes", "262144"),
                ("file.delete.delay.ms", "0"),
            ],
        )
        .await;
    let producer = broker.producer(&[]);
    let value = vec![b'v'; 8 * 1024];
    for i in 0..1024u32 {
        let key = i.to_be_bytes();
        let record = FutureRecord::to(&topic)
            .partition((i % 2) as i32)
            .key(&key[..])
            .payload(&value[..]);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("produce");
    }
    // 8 MiB produced; each partition must come down to its 1 MiB share (plus at most one
    // segment, since only whole sealed segments are deleted and the active one never is).
    let share = 1024 * 1024u64;
    for p in 0..2 {
        let dir = broker.data_dir().join(format!("{topic}-{p}"));
        wait_until("retention by disk share", Duration::from_secs(30), || {
            segment_bytes_on_disk(&dir) <= share + 262_144
        });
        let (low, high) = broker.watermarks(&topic, p);
        assert!(low > 0, "log start offset advanced");
        assert_eq!(high, 512);
        // What is left is still readable from the new log start offset.
        let records = broker.read_range(&topic, p, low, high);
        assert_eq!(records.len() as i64, high - low);
    }
}
