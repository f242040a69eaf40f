//! The metadata image: topics, their ids, partition counts and configs.
//!
//! An image is immutable and shared as `Arc<MetadataImage>`; a change makes a
//! new image that the controller broadcasts to every shard. No shard holds a
//! global; each keeps the last image it received.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{TopicId, TopicPartition};

/// File name of the persisted image inside the data directory.
pub const IMAGE_FILE_NAME: &str = "sluice-metadata.json";
/// Kafka's `meta.properties` (cluster.id, node.id), written beside it.
pub const META_PROPERTIES_FILE_NAME: &str = "meta.properties";
/// The internal topic holding consumer group state.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    pub partitions: i32,
    /// Topic-level overrides only (Kafka names); defaults come from the broker.
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
    /// Leader epoch of every partition (one node: bumped only by a future reassignment).
    pub leader_epoch: i32,
}

impl TopicImage {
    pub fn partition(&self, index: i32) -> Option<TopicPartition> {
        (0..self.partitions)
            .contains(&index)
            .then(|| TopicPartition::new(self.name.clone(), index))
    }
}

/// This broker as clients see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BrokerImage {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// Bumped on every change; shards apply images in increasing version.
    pub version: u64,
    /// Not persisted meaningfully: filled in at start-up from the listener.
    pub broker: BrokerImage,
    pub topics: BTreeMap<String, TopicImage>,
    /// Next producer id block the controller hands out (InitProducerId).
    pub next_producer_id: i64,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// Whether the partition exists in this image.
    pub fn has_partition(&self, tp: &TopicPartition) -> bool {
        self.topic(&tp.topic)
            .is_some_and(|t| t.partition(tp.partition).is_some())
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<&TopicImage> {
        self.topics.values().find(|t| &t.id == id)
    }

    /// Loads the image from `dir`, or makes a fresh one for a new data dir.
    pub fn load_or_new(dir: &Path, broker: BrokerImage) -> std::io::Result<MetadataImage> {
        let path = dir.join(IMAGE_FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut image: MetadataImage = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                image.broker = broker;
                Ok(image)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetadataImage {
                cluster_id: new_cluster_id(),
                version: 0,
                broker,
                topics: BTreeMap::new(),
                next_producer_id: 0,
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes the image durably: temp file, fsync, rename, fsync of the directory.
    pub fn persist(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&dir.join(IMAGE_FILE_NAME), &bytes)?;
        let meta = format!(
            "#Written by Sluice\nversion=1\ncluster.id={}\nnode.id={}\n",
            self.cluster_id, self.broker.node_id
        );
        write_atomic(&dir.join(META_PROPERTIES_FILE_NAME), meta.as_bytes())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

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
        let b = BrokerImage {
            node_id: 0,
            host: "h".into(),
            port: 1,
            rack: None,
        };
        let mut img = MetadataImage::load_or_new(dir.path(), b.clone()).unwrap();
        img.topics.insert(
            "t".into(),
            TopicImage {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                partitions: 3,
                configs: BTreeMap::new(),
                internal: false,
                leader_epoch: 0,
            },
        );
        img.persist(dir.path()).unwrap();
        let again = MetadataImage::load_or_new(dir.path(), b).unwrap();
        assert_eq!(again, img);
    }
}
