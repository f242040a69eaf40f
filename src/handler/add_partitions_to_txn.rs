//! AddPartitionsToTxn (v0-5). v0-3: a client adds partitions to its transaction. v4+: a batch
//! of transactions from a broker; `verify_only` is a partition leader's KIP-890 check that a
//! partition is in the transaction before it appends the transaction's first batch there.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};

use super::RequestContext;
use crate::model::TopicPartition;
use crate::txn::{TxnRequest, TxnResponse};

pub async fn handle(
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.api_version <= 3 {
        let results = add(
            ctx,
            req.v3_and_below_transactional_id.0.to_string(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add(
            ctx,
            t.transactional_id.0.to_string(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(TransactionalId(t.transactional_id.0.clone()))
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// One transaction's partitions. Unknown partitions fail with UNKNOWN_TOPIC_OR_PARTITION and
/// the others with OPERATION_NOT_ATTEMPTED, as Kafka answers.
async fn add(
    ctx: &RequestContext,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = ctx.shard.metadata();
    let mut partitions = Vec::new();
    let mut unknown = false;
    for t in topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), *p);
            if image.partition(&tp).is_none() {
                unknown = true;
            }
            partitions.push(tp);
        }
    }
    let codes: HashMap<TopicPartition, i16> = if unknown {
        partitions
            .iter()
            .map(|tp| {
                let code = if image.partition(tp).is_none() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                };
                (tp.clone(), code)
            })
            .collect()
    } else {
        let req = TxnRequest::AddPartitions {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions: partitions.clone(),
            verify_only,
        };
        match crate::txn::forward(&ctx.shard, req).await {
            TxnResponse::Partitions(r) => r.into_iter().collect(),
            _ => partitions
                .iter()
                .map(|tp| (tp.clone(), ResponseError::UnknownServerError.code()))
                .collect(),
        }
    };
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(t.name.0.clone()))
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let tp = TopicPartition::new(t.name.0.to_string(), *p);
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(super::errors::producer_fenced_for(
                                    codes.get(&tp).copied().unwrap_or(0),
                                    ctx.api_version,
                                    2,
                                ))
                        })
                        .collect(),
                )
        })
        .collect()
}
