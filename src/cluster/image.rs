//! The metadata image: registered brokers, topics with their ids and configs, and every
//! partition's replicas, ISR, leader and epochs.
//!
//! An image is immutable and shared as `Arc<MetadataImage>`; a change makes a new image that
//! the controller broadcasts to every shard. No shard holds a global; each keeps the last image
//! it received. The image is the replicated state machine of the metadata log, so it holds
//! nothing node-local: a node's own id, host and port come from its configuration.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{TopicId, TopicPartition};

/// File name of the persisted image inside the data directory.
pub const IMAGE_FILE_NAME: &str = "sluice-metadata.json";
pub use super::meta::META_PROPERTIES_FILE_NAME;
/// The internal topic holding consumer group state.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `LeaderConstants.NO_LEADER`: a partition without a leader (offline).
pub const NO_LEADER: i32 = -1;

/// One partition's assignment and state (Kafka's `PartitionRegistration`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionImage {
    /// Every broker holding a replica; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The in-sync replicas; never empty (the last member stays when it is fenced).
    pub isr: Vec<i32>,
    /// The leader's node id, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of this partition (leader, ISR or replicas).
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds (KIP-455; in `replicas` already, sorted). Absent
    /// from images written before reassignments, and from any without one in progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas an ongoing reassignment removes once it completes (still in `replicas`, sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// Whether a reassignment is in progress (Kafka's `isReassignmentInProgress`).
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition will have once its reassignment completes, in order.
    pub fn target_replicas(&self) -> Vec<i32> {
        without(&self.replicas, &self.removing_replicas)
    }

    /// The replicas the partition had before its reassignment began.
    pub fn original_replicas(&self) -> Vec<i32> {
        without(&self.replicas, &self.adding_replicas)
    }
}

/// `list` less the members of `removed`, in order.
pub fn without(list: &[i32], removed: &[i32]) -> Vec<i32> {
    list.iter()
        .copied()
        .filter(|r| !removed.contains(r))
        .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    /// Topic-level overrides only (Kafka names); defaults come from the broker.
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
    /// Index = partition number.
    pub partitions: Vec<PartitionImage>,
}

impl TopicImage {
    /// The number of partitions (an `i32`, as Kafka counts them).
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    pub fn partition(&self, index: i32) -> Option<TopicPartition> {
        self.partition_image(index)
            .map(|_| TopicPartition::new(self.name.clone(), index))
    }

    pub fn partition_image(&self, index: i32) -> Option<&PartitionImage> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// The replication factor: the replica count of partition 0 (every partition has the same),
    /// not counting the replicas a reassignment in progress adds (as Kafka's TopicCommand).
    pub fn replication_factor(&self) -> i16 {
        self.partitions.first().map_or(0, |p| {
            i16::try_from(p.original_replicas().len()).unwrap_or(i16::MAX)
        })
    }
}

/// A registered broker (Kafka's `BrokerRegistration`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// New per process start (Kafka's incarnationId).
    pub incarnation_id: uuid::Uuid,
    /// The broker epoch: the image version at which it registered.
    pub epoch: i64,
    /// The advertised Kafka listener.
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// May lead partitions and receive new replicas.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MetadataImage {
    /// "" until set (cluster mode: chosen by the first leader).
    pub cluster_id: String,
    /// Bumped on every change; shards apply images in increasing version.
    pub version: u64,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
    /// Next producer id block the controller hands out (InitProducerId).
    pub next_producer_id: i64,
    /// Broker-level defaults the controller decides with (Kafka's cluster-wide default broker
    /// configs), by Kafka name: recorded from the active controller's own configuration
    /// (`SetBrokerDefaults`) so that every node applying the log elects alike. Today only
    /// `unclean.leader.election.enable`; a topic's override wins over it.
    #[serde(default)]
    pub broker_defaults: BTreeMap<String, String>,
}

impl MetadataImage {
    /// An empty image: no cluster id, no brokers, no topics.
    pub fn empty() -> MetadataImage {
        MetadataImage {
            cluster_id: String::new(),
            version: 0,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_producer_id: 0,
            broker_defaults: Default::default(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// Whether the partition exists in this image.
    pub fn has_partition(&self, tp: &TopicPartition) -> bool {
        self.partition(tp).is_some()
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionImage> {
        self.topic(&tp.topic)
            .and_then(|t| t.partition_image(tp.partition))
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<&TopicImage> {
        self.topics.values().find(|t| &t.id == id)
    }

    pub fn broker(&self, node_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&node_id)
    }

    /// Unfenced brokers (those clients are told about), by node id.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `node_id` is registered and may lead (unfenced, not shutting down).
    pub fn is_active(&self, node_id: i32) -> bool {
        self.broker(node_id)
            .is_some_and(BrokerRegistration::is_active)
    }

    /// Whether `node_id` leads `tp` (the partition exists and names it as leader).
    pub fn leads(&self, node_id: i32, tp: &TopicPartition) -> bool {
        self.partition(tp).is_some_and(|p| p.leader == node_id)
    }

    /// Whether `p` has a leader that clients can reach (registered and unfenced).
    pub fn leader_available(&self, p: &PartitionImage) -> bool {
        p.has_leader() && self.broker(p.leader).is_some_and(|b| !b.fenced)
    }

    /// Replicas of `p` that are fenced or not registered (Metadata's `offline_replicas`).
    pub fn offline_replicas(&self, p: &PartitionImage) -> Vec<i32> {
        p.replicas
            .iter()
            .copied()
            .filter(|r| self.broker(*r).is_none_or(|b| b.fenced))
            .collect()
    }

    /// Loads the image from `dir`, or makes an empty one for a new data dir. An image written
    /// by the single-node broker before the cluster work (one `broker`, partition counts) is
    /// migrated: every partition gets `node_id` as its one replica, ISR and leader.
    pub fn load_or_new(dir: &Path, node_id: i32) -> std::io::Result<MetadataImage> {
        let path = dir.join(IMAGE_FILE_NAME);
        check_stored_node_id(dir, node_id)?;
        match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes, node_id).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetadataImage::empty()),
            Err(e) => Err(e),
        }
    }

    /// Writes the image durably: temp file, fsync, rename, fsync of the directory; then
    /// `meta.properties` with the cluster id and this node's id, when they are new.
    pub fn persist(&self, dir: &Path, node_id: i32) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&dir.join(IMAGE_FILE_NAME), &bytes)?;
        if self.cluster_id.is_empty() {
            return Ok(());
        }
        super::meta::ensure(dir, &self.cluster_id, node_id).map_err(std::io::Error::other)
    }
}

/// Refuses a data directory written by another node (as Kafka does): its partitions name that
/// node's id as replica, so this node would open none of them.
fn check_stored_node_id(dir: &Path, node_id: i32) -> std::io::Result<()> {
    super::meta::check(dir, node_id, None)
        .map(|_| ())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Decodes a persisted image, migrating the single-node format (see [`legacy`]).
fn decode(bytes: &[u8], node_id: i32) -> Result<MetadataImage, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    if value.get("brokers").is_none() && value.get("broker").is_some() {
        let old: legacy::Image = serde_json::from_value(value)?;
        return Ok(old.migrate(node_id));
    }
    serde_json::from_value(value)
}

/// The image as the single-node broker wrote it (one `broker`, a partition count and one
/// leader epoch per topic). Read only, to migrate.
mod legacy {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::{MetadataImage, PartitionImage, TopicImage};
    use crate::model::TopicId;

    #[derive(Deserialize)]
    pub struct Image {
        pub cluster_id: String,
        pub version: u64,
        pub topics: BTreeMap<String, Topic>,
        pub next_producer_id: i64,
    }

    #[derive(Deserialize)]
    pub struct Topic {
        pub name: String,
        pub id: TopicId,
        pub partitions: i32,
        pub configs: BTreeMap<String, String>,
        pub internal: bool,
        pub leader_epoch: i32,
    }

    impl Image {
        pub fn migrate(self, node_id: i32) -> MetadataImage {
            let topics = self
                .topics
                .into_iter()
                .map(|(name, t)| {
                    let partition = PartitionImage {
                        replicas: vec![node_id],
                        isr: vec![node_id],
                        leader: node_id,
                        leader_epoch: t.leader_epoch,
                        partition_epoch: 0,
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                    };
                    let count = usize::try_from(t.partitions).unwrap_or(0);
                    let topic = TopicImage {
                        name: t.name,
                        id: t.id,
                        configs: t.configs,
                        internal: t.internal,
                        partitions: vec![partition; count],
                    };
                    (name, topic)
                })
                .collect();
            MetadataImage {
                cluster_id: self.cluster_id,
                version: self.version,
                brokers: BTreeMap::new(),
                topics,
                next_producer_id: self.next_producer_id,
                broker_defaults: Default::default(),
            }
        }
    }
}

use super::meta::write_atomic;

/// Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
pub fn new_cluster_id() -> String {
    crate::model::kafka_uuid_string(&uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_kafka_uuid_style() {
        assert_eq!(
            crate::model::kafka_uuid_string(&uuid::Uuid::nil()),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
        assert_eq!(new_cluster_id().len(), 22);
    }

    #[test]
    fn persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = MetadataImage::load_or_new(dir.path(), 0).unwrap();
        assert_eq!(img, MetadataImage::empty());
        img.cluster_id = "c".into();
        img.brokers.insert(
            0,
            BrokerRegistration {
                node_id: 0,
                incarnation_id: uuid::Uuid::new_v4(),
                epoch: 1,
                host: "h".into(),
                port: 1,
                rack: Some("r".into()),
                fenced: false,
                in_controlled_shutdown: false,
            },
        );
        let p = PartitionImage {
            replicas: vec![0],
            isr: vec![0],
            leader: 0,
            leader_epoch: 2,
            partition_epoch: 3,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        img.topics.insert(
            "t".into(),
            TopicImage {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                configs: BTreeMap::new(),
                internal: false,
                partitions: vec![p; 3],
            },
        );
        img.persist(dir.path(), 0).unwrap();
        let again = MetadataImage::load_or_new(dir.path(), 0).unwrap();
        assert_eq!(again, img);
        let meta = std::fs::read_to_string(dir.path().join(META_PROPERTIES_FILE_NAME)).unwrap();
        assert!(meta.contains("cluster.id=c\n") && meta.contains("node.id=0\n"));
    }

    /// A `sluice-metadata.json` as the single-node broker wrote it.
    const SINGLE_NODE_IMAGE: &str = r#"{
  "cluster_id": "MkU3OEVBNTcwNTJENDM2Qg",
  "version": 7,
  "broker": { "node_id": 1, "host": "127.0.0.1", "port": 9092, "rack": null },
  "topics": {
    "__consumer_offsets": {
      "name": "__consumer_offsets",
      "id": "6f0c5d3a-9a62-4c1e-8d55-1f2e3a4b5c6d",
      "partitions": 2,
      "configs": { "retention.ms": "-1", "segment.bytes": "104857600" },
      "internal": true,
      "leader_epoch": 0
    },
    "orders": {
      "name": "orders",
      "id": "0b7a9e1c-2d3f-4a5b-8c6d-7e8f9a0b1c2d",
      "partitions": 3,
      "configs": {},
      "internal": false,
      "leader_epoch": 4
    }
  },
  "next_producer_id": 2000
}"#;

    #[test]
    fn single_node_image_migrates_on_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IMAGE_FILE_NAME), SINGLE_NODE_IMAGE).unwrap();
        let img = MetadataImage::load_or_new(dir.path(), 1).unwrap();
        assert_eq!(
            (img.cluster_id.as_str(), img.version, img.next_producer_id),
            ("MkU3OEVBNTcwNTJENDM2Qg", 7, 2000)
        );
        assert!(img.brokers.is_empty());
        let orders = &img.topics["orders"];
        assert_eq!(
            orders.id.to_string(),
            "0b7a9e1c-2d3f-4a5b-8c6d-7e8f9a0b1c2d"
        );
        assert_eq!(orders.partition_count(), 3);
        for p in &orders.partitions {
            assert_eq!(
                p,
                &PartitionImage {
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 4,
                    partition_epoch: 0,
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                }
            );
        }
        let offsets = &img.topics[CONSUMER_OFFSETS_TOPIC];
        assert!(offsets.internal);
        assert_eq!(offsets.partition_count(), 2);
        assert_eq!(offsets.configs["retention.ms"], "-1");
        // Written back in the new format, it loads as it is.
        img.persist(dir.path(), 1).unwrap();
        assert_eq!(MetadataImage::load_or_new(dir.path(), 1).unwrap(), img);
        // Another node id is refused rather than leaving every partition unopened.
        let e = MetadataImage::load_or_new(dir.path(), 2).unwrap_err();
        assert!(e.to_string().contains("stored node id 1"), "{e}");
    }
}
