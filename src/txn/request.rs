//! What travels over the shard mesh to a transaction coordinator, and back (all `Send`).

use crate::model::TopicPartition;

use super::state::TxnMeta;

#[derive(Debug)]
pub enum TxnRequest {
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        /// KIP-360: the producer id and epoch the client has (-1 when it has none).
        producer_id: i64,
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn; `verify_only` is a partition leader's KIP-890 check.
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        verify_only: bool,
    },
    AddOffsets {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group_id: String,
    },
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        /// 2 for EndTxn v5+ (KIP-890 part 2: the epoch is bumped at every end), else 1.
        transaction_version: i16,
    },
    Describe {
        transactional_id: String,
    },
    /// ListTransactions, over the ids this shard coordinates.
    List {
        states: Vec<String>,
        producer_ids: Vec<i64>,
        /// Only transactions running longer than this (ms); -1: no filter.
        min_duration_ms: i64,
        pattern: Option<String>,
    },
}

impl TxnRequest {
    pub fn transactional_id(&self) -> Option<&str> {
        match self {
            TxnRequest::InitProducerId {
                transactional_id, ..
            }
            | TxnRequest::AddPartitions {
                transactional_id, ..
            }
            | TxnRequest::AddOffsets {
                transactional_id, ..
            }
            | TxnRequest::EndTxn {
                transactional_id, ..
            }
            | TxnRequest::Describe { transactional_id } => Some(transactional_id),
            TxnRequest::List { .. } => None,
        }
    }
}

#[derive(Debug)]
pub enum TxnResponse {
    /// InitProducerId and EndTxn: the producer id and epoch to use.
    Producer {
        error_code: i16,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Per partition (AddPartitionsToTxn).
    Partitions(Vec<(TopicPartition, i16)>),
    /// One error code (AddOffsetsToTxn).
    Code(i16),
    Described(Result<TxnMeta, i16>),
    /// (transactional id, producer id, state name)
    Listed(Vec<(String, i64, &'static str)>),
}

impl TxnResponse {
    /// The answer of `req` when it cannot be served at all.
    pub fn error(req: &TxnRequest, code: i16) -> TxnResponse {
        match req {
            TxnRequest::InitProducerId { .. } => TxnResponse::Producer {
                error_code: code,
                producer_id: -1,
                producer_epoch: -1,
            },
            TxnRequest::AddPartitions { partitions, .. } => {
                TxnResponse::Partitions(partitions.iter().map(|p| (p.clone(), code)).collect())
            }
            TxnRequest::EndTxn { .. } => TxnResponse::Producer {
                error_code: code,
                producer_id: -1,
                producer_epoch: -1,
            },
            TxnRequest::AddOffsets { .. } => TxnResponse::Code(code),
            TxnRequest::Describe { .. } => TxnResponse::Described(Err(code)),
            TxnRequest::List { .. } => TxnResponse::Listed(Vec::new()),
        }
    }
}
