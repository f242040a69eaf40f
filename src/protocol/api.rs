//! The one table of supported APIs and version ranges.
//!
//! Ranges are Apache Kafka 4.1's (KIP-896 removed the old versions), which the
//! generated codecs of kafka-protocol 0.18 match. One quirk is Kafka's
//! (KAFKA-18659): ApiVersions advertises Produce from version 0 so that old
//! librdkafka builds keep working, but requests below v3 are rejected.

use kafka_protocol::messages::ApiKey;

#[derive(Copy, Clone, Debug)]
pub struct ApiRange {
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// Lowest version accepted on the wire.
    pub min: i16,
    pub max: i16,
}

const fn r(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        advertised_min: min,
        min,
        max,
    }
}

pub const SUPPORTED: &[ApiRange] = &[
    ApiRange {
        key: ApiKey::Produce,
        advertised_min: 0,
        min: 3,
        max: 13,
    },
    r(ApiKey::Fetch, 4, 18),
    r(ApiKey::ListOffsets, 1, 10),
    r(ApiKey::Metadata, 0, 13),
    r(ApiKey::OffsetCommit, 2, 9),
    r(ApiKey::OffsetFetch, 1, 9),
    r(ApiKey::FindCoordinator, 0, 6),
    r(ApiKey::JoinGroup, 0, 9),
    r(ApiKey::Heartbeat, 0, 4),
    r(ApiKey::LeaveGroup, 0, 5),
    r(ApiKey::SyncGroup, 0, 5),
    r(ApiKey::DescribeGroups, 0, 6),
    r(ApiKey::ListGroups, 0, 5),
    r(ApiKey::ApiVersions, 0, 4),
    r(ApiKey::CreateTopics, 2, 7),
    r(ApiKey::DeleteTopics, 1, 6),
    r(ApiKey::DeleteRecords, 0, 2),
    r(ApiKey::InitProducerId, 0, 5),
    // Kafka 4.1 has v1-v2 (v2: KIP-890's transaction version); the codec has v1.
    r(ApiKey::WriteTxnMarkers, 1, 1),
    r(ApiKey::DescribeProducers, 0, 0),
    r(ApiKey::TxnOffsetCommit, 0, 5),
    r(ApiKey::OffsetForLeaderEpoch, 2, 4),
    r(ApiKey::DescribeConfigs, 1, 4),
    r(ApiKey::AlterConfigs, 0, 2),
    r(ApiKey::DescribeLogDirs, 1, 4),
    r(ApiKey::CreatePartitions, 0, 3),
    r(ApiKey::DeleteGroups, 0, 2),
    r(ApiKey::IncrementalAlterConfigs, 0, 1),
    r(ApiKey::OffsetDelete, 0, 0),
    r(ApiKey::DescribeCluster, 0, 2),
    r(ApiKey::DescribeQuorum, 0, 2),
    r(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    r(ApiKey::ConsumerGroupDescribe, 0, 1),
    r(ApiKey::DescribeTopicPartitions, 0, 0),
    r(ApiKey::ElectLeaders, 0, 2),
    r(ApiKey::AlterPartitionReassignments, 0, 1),
    r(ApiKey::ListPartitionReassignments, 0, 0),
    r(ApiKey::AddPartitionsToTxn, 0, 5),
    r(ApiKey::AddOffsetsToTxn, 0, 4),
    r(ApiKey::EndTxn, 0, 5),
    r(ApiKey::DescribeTransactions, 0, 0),
    r(ApiKey::ListTransactions, 0, 2),
];

pub fn find(key: ApiKey) -> Option<&'static ApiRange> {
    SUPPORTED.iter().find(|r| r.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_within_the_generated_codecs() {
        for r in SUPPORTED {
            let codec = r.key.valid_versions();
            assert!(
                r.min >= codec.min && r.max <= codec.max,
                "{:?} {:?} vs {:?}",
                r.key,
                (r.min, r.max),
                codec
            );
            assert!(r.advertised_min <= r.min);
        }
    }
}
