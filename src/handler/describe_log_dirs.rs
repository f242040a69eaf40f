//! DescribeLogDirs (API 35, v1–4): Sluice's one log directory and the size of every partition in
//! it. Sizes come from the shards that own the partitions (`ShardRequest::LogDirs`); v4 adds the
//! volume's total and usable bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::errors::code;
use super::route::scatter;
use super::{str_bytes, RequestContext};
use crate::model::TopicPartition;
use crate::runtime::messages::{ShardRequest, ShardResponse};

pub async fn handle(ctx: &RequestContext, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let shard = &ctx.shard;
    let sizes: Vec<(TopicPartition, u64)> = match &req.topics {
        // Null: every partition. An empty vector asks each shard for all it owns.
        None => shard
            .broadcast(|| ShardRequest::LogDirs(Vec::new()))
            .await
            .into_iter()
            .filter_map(take_sizes)
            .flatten()
            .collect(),
        Some(topics) => {
            let wanted: BTreeSet<TopicPartition> = topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| TopicPartition::new(t.topic.as_str(), *p))
                })
                .collect();
            // Shards that own none of `wanted` are not asked (and so never see an empty, "all", list).
            scatter(
                shard,
                wanted.into_iter().collect(),
                itself,
                ShardRequest::LogDirs,
                take_sizes,
            )
            .await
        }
    };
    let data_dir = &shard.config.data_dir;
    let mut result = DescribeLogDirsResult::default()
        .with_error_code(code::NONE)
        .with_log_dir(str_bytes(absolute(data_dir)))
        .with_topics(group_by_topic(sizes));
    if ctx.api_version >= 4 {
        let capacity = shard.config.int("log.dir.capacity.bytes", -1);
        let (total, usable) =
            volume_bytes(data_dir, u64::try_from(capacity).ok().filter(|c| *c > 0));
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    DescribeLogDirsResponse::default()
        .with_error_code(code::NONE)
        .with_results(vec![result])
}

fn itself(tp: &TopicPartition) -> &TopicPartition {
    tp
}

fn take_sizes(r: ShardResponse) -> Option<Vec<(TopicPartition, u64)>> {
    match r {
        ShardResponse::LogDirs(sizes) => Some(sizes),
        _ => None,
    }
}

/// Topics by name, partitions by index, as Kafka lists them.
fn group_by_topic(sizes: Vec<(TopicPartition, u64)>) -> Vec<DescribeLogDirsTopic> {
    let mut topics: BTreeMap<String, BTreeMap<i32, u64>> = BTreeMap::new();
    for (tp, size) in sizes {
        topics
            .entry(tp.topic)
            .or_default()
            .insert(tp.partition, size);
    }
    topics
        .into_iter()
        .map(|(name, partitions)| {
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, size)| {
                            DescribeLogDirsPartition::default()
                                .with_partition_index(index)
                                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                                // One node: no replica lags and no future (moving) replica exists.
                                .with_offset_lag(0)
                                .with_is_future_key(false)
                        })
                        .collect(),
                )
        })
        .collect()
}

/// The directory as Kafka prints it: absolute, symlinks left as configured.
fn absolute(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// (total, usable) bytes of the volume holding `dir`, -1 each when unknown. With
/// `log.dir.capacity.bytes` set, the capacity is that and usable space is capped by it, as the
/// storage layer's disk-pressure check sees the volume.
// statvfs field types differ between platforms (u32 on some 32-bit targets).
#[allow(clippy::unnecessary_cast)]
fn volume_bytes(dir: &Path, capacity_override: Option<u64>) -> (i64, i64) {
    // One statvfs(2) on the executor thread: metadata only, no data I/O.
    let Ok(stat) = nix::sys::statvfs::statvfs(dir) else {
        return (-1, -1);
    };
    let fragment = stat.fragment_size() as u64;
    let mut total = (stat.blocks() as u64).saturating_mul(fragment);
    let mut usable = (stat.blocks_available() as u64).saturating_mul(fragment);
    if let Some(capacity) = capacity_override {
        total = capacity;
        usable = usable.min(capacity);
    }
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    (signed(total), signed(usable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_group_by_topic_in_order() {
        let topics = group_by_topic(vec![
            (TopicPartition::new("b", 1), 10),
            (TopicPartition::new("a", 0), 5),
            (TopicPartition::new("b", 0), 7),
        ]);
        let flat: Vec<(String, Vec<(i32, i64)>)> = topics
            .iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.partition_size))
                    .collect();
                (t.name.to_string(), parts)
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                ("a".to_string(), vec![(0, 5)]),
                ("b".to_string(), vec![(0, 7), (1, 10)])
            ]
        );
    }

    #[test]
    fn volume_bytes_reads_the_volume_and_honours_the_override() {
        let dir = tempfile::tempdir().unwrap();
        let (total, usable) = volume_bytes(dir.path(), None);
        assert!(total > 0 && usable >= 0 && usable <= total);
        let (total, usable) = volume_bytes(dir.path(), Some(4096));
        assert_eq!(total, 4096);
        assert!(usable <= 4096);
        assert_eq!(volume_bytes(Path::new("/no/such/dir"), None), (-1, -1));
        assert!(absolute(Path::new("rel")).starts_with('/'));
    }
}
