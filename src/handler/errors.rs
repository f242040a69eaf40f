//! The one place where module errors become Kafka error codes.

use crate::cluster::ControllerError;
use crate::protocol::records::RecordsError;
use crate::storage::StorageError;

/// Kafka's error codes (`org.apache.kafka.common.protocol.Errors`), those Sluice returns.
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_FETCH_SIZE: i16 = 4;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REQUEST: i16 = 42;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const TOPIC_DELETION_DISABLED: i16 = 73;
    pub const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
    pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
    pub const INVALID_RECORD: i16 = 87;
    pub const PRODUCER_FENCED: i16 = 90;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
    pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const INVALID_UPDATE_VERSION: i16 = 108;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
}

/// KIP-320: a client's `current_leader_epoch` against ours; -1 means "not given".
pub fn leader_epoch(client: i32, ours: i32) -> Option<i16> {
    match client {
        c if c < 0 => None,
        c if c < ours => Some(code::FENCED_LEADER_EPOCH),
        c if c > ours => Some(code::UNKNOWN_LEADER_EPOCH),
        _ => None,
    }
}

/// KIP-951: the leader (and its epoch) to name in an answer refused with `error` for `tp`,
/// when that error says "not here" and the image knows a reachable leader.
pub fn current_leader(
    image: &crate::cluster::MetadataImage,
    tp: &crate::model::TopicPartition,
    error: i16,
) -> Option<(i32, i32)> {
    if error != code::NOT_LEADER_OR_FOLLOWER && error != code::FENCED_LEADER_EPOCH {
        return None;
    }
    let p = image.partition(tp)?;
    image
        .leader_available(p)
        .then_some((p.leader, p.leader_epoch))
}

pub fn storage(e: &StorageError) -> i16 {
    match e {
        StorageError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        StorageError::CorruptRecord(_) => code::CORRUPT_MESSAGE,
        // Retriable: producers back off and retry until space returns.
        StorageError::DiskPressure => code::KAFKA_STORAGE_ERROR,
        StorageError::Io(_) | StorageError::LogFailed => code::KAFKA_STORAGE_ERROR,
        StorageError::OutOfOrderSequence { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        StorageError::InvalidProducerEpoch { .. } => code::INVALID_PRODUCER_EPOCH,
        StorageError::UnknownProducerId(_) => code::UNKNOWN_PRODUCER_ID,
        StorageError::CoordinatorFenced { .. } => code::TRANSACTION_COORDINATOR_FENCED,
        StorageError::InvalidTxnState { .. } => code::INVALID_TXN_STATE,
        StorageError::RecordBatchTooLarge { .. } => code::RECORD_LIST_TOO_LARGE,
        StorageError::Closed | StorageError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
        StorageError::ReplicationTimeout => code::REQUEST_TIMED_OUT,
        #[allow(unreachable_patterns)]
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

pub fn records(e: &RecordsError) -> i16 {
    match e {
        RecordsError::Corrupt(_) => code::CORRUPT_MESSAGE,
        RecordsError::Invalid(_) => code::INVALID_RECORD,
        RecordsError::TooLarge { .. } => code::MESSAGE_TOO_LARGE,
        RecordsError::Compression(_) => code::UNSUPPORTED_COMPRESSION_TYPE,
        RecordsError::Magic(_) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
    }
}

pub fn controller(e: &ControllerError) -> i16 {
    match e {
        ControllerError::TopicAlreadyExists(_) => code::TOPIC_ALREADY_EXISTS,
        ControllerError::InvalidTopic(_) => code::INVALID_TOPIC_EXCEPTION,
        ControllerError::InvalidPartitions(_) => code::INVALID_PARTITIONS,
        ControllerError::InvalidReplicationFactor(_) => code::INVALID_REPLICATION_FACTOR,
        ControllerError::InvalidReplicaAssignment(_) => code::INVALID_REPLICA_ASSIGNMENT,
        ControllerError::InvalidConfig(_) => code::INVALID_CONFIG,
        ControllerError::UnknownTopic => code::UNKNOWN_TOPIC_OR_PARTITION,
        ControllerError::UnknownTopicId => code::UNKNOWN_TOPIC_ID,
        ControllerError::InvalidRequest(_) => code::INVALID_REQUEST,
        ControllerError::BrokerNotRegistered(_) => code::BROKER_ID_NOT_REGISTERED,
        ControllerError::StaleBrokerEpoch { .. } => code::STALE_BROKER_EPOCH,
        ControllerError::InconsistentClusterId { .. } => code::INCONSISTENT_CLUSTER_ID,
        ControllerError::Persist(_) => code::KAFKA_STORAGE_ERROR,
        ControllerError::NotController(_) => code::NOT_CONTROLLER,
        ControllerError::Timeout(_) => code::REQUEST_TIMED_OUT,
        ControllerError::FencedLeaderEpoch(_) => code::FENCED_LEADER_EPOCH,
        ControllerError::InvalidUpdateVersion(_) => code::INVALID_UPDATE_VERSION,
        ControllerError::IneligibleReplica(_) => code::INELIGIBLE_REPLICA,
        ControllerError::NoReassignmentInProgress => code::NO_REASSIGNMENT_IN_PROGRESS,
    }
}

/// KIP-588: PRODUCER_FENCED exists only from a given version of each transactional API; older
/// clients are answered INVALID_PRODUCER_EPOCH instead, as Kafka does.
pub fn producer_fenced_for(error_code: i16, version: i16, first_version: i16) -> i16 {
    if error_code == code::PRODUCER_FENCED && version < first_version {
        code::INVALID_PRODUCER_EPOCH
    } else {
        error_code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BrokerRegistration, MetadataImage, PartitionImage, TopicImage};
    use crate::model::TopicPartition;

    #[test]
    fn current_leader_is_named_only_for_not_here_errors_with_a_live_leader() {
        let mut image = MetadataImage::empty();
        image.brokers.insert(
            2,
            BrokerRegistration {
                node_id: 2,
                incarnation_id: uuid::Uuid::nil(),
                epoch: 1,
                host: "h".into(),
                port: 1,
                rack: None,
                fenced: false,
                in_controlled_shutdown: false,
            },
        );
        let p = |leader| PartitionImage {
            replicas: vec![1, 2],
            isr: vec![2],
            leader,
            leader_epoch: 4,
            partition_epoch: 5,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        image.topics.insert(
            "t".into(),
            TopicImage {
                name: "t".into(),
                id: uuid::Uuid::from_u128(1),
                configs: Default::default(),
                internal: false,
                partitions: vec![p(2), p(-1), p(1)],
            },
        );
        let tp = |i| TopicPartition::new("t", i);
        assert_eq!(
            current_leader(&image, &tp(0), code::NOT_LEADER_OR_FOLLOWER),
            Some((2, 4))
        );
        assert_eq!(
            current_leader(&image, &tp(0), code::FENCED_LEADER_EPOCH),
            Some((2, 4))
        );
        assert_eq!(current_leader(&image, &tp(0), code::NONE), None);
        // No leader, or a leader that is not registered: nothing to name.
        assert_eq!(
            current_leader(&image, &tp(1), code::NOT_LEADER_OR_FOLLOWER),
            None
        );
        assert_eq!(
            current_leader(&image, &tp(2), code::NOT_LEADER_OR_FOLLOWER),
            None
        );
        assert_eq!(
            current_leader(&image, &tp(9), code::NOT_LEADER_OR_FOLLOWER),
            None
        );
    }
}
