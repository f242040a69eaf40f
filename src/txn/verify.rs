//! KIP-890 part 1 on the partition leader: before a transaction's first batch is appended to a
//! partition, the leader asks the transaction's coordinator whether the partition is in the
//! transaction (AddPartitionsToTxn v5, verify only). A late or stray write of a producer whose
//! transaction already ended (or never added the partition) is refused with INVALID_TXN_STATE,
//! instead of opening a transaction no marker will ever close (a hanging transaction that
//! would hold the last stable offset back for good). With transactions v2 (Produce v12+) the
//! leader adds the partition to the transaction instead (`add`): the client sends no
//! AddPartitionsToTxn of its own.

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName,
    TransactionalId,
};

use super::request::{TxnRequest, TxnResponse};
use crate::model::TopicPartition;
use crate::runtime::Shard;

/// The AddPartitionsToTxn version brokers use between themselves for verification.
const VERIFY_VERSION: i16 = 5;

/// Asks the coordinator of `transactional_id` whether each partition is in the producer's
/// ongoing transaction; returns an error code per partition (0: verified).
pub async fn verify(
    shard: &Rc<Shard>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TopicPartition>,
    add: bool,
) -> HashMap<TopicPartition, i16> {
    let fail = |parts: &[TopicPartition], e: ResponseError| {
        parts.iter().map(|tp| (tp.clone(), e.code())).collect()
    };
    let image = shard.metadata();
    let Some(state_tp) = super::state_partition(&image, transactional_id) else {
        return fail(&partitions, ResponseError::InvalidTxnState);
    };
    let leader = image
        .partition(&state_tp)
        .filter(|p| image.leader_available(p))
        .map(|p| p.leader);
    let Some(leader) = leader else {
        return fail(&partitions, ResponseError::NotEnoughReplicas);
    };
    if leader == shard.node_id() {
        let req = TxnRequest::AddPartitions {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            partitions: partitions.clone(),
            verify_only: !add,
        };
        return match super::forward(shard, req).await {
            TxnResponse::Partitions(r) => r.into_iter().map(|(tp, c)| (tp, map_code(c))).collect(),
            _ => fail(&partitions, ResponseError::NotEnoughReplicas),
        };
    }
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for tp in &partitions {
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == tp.topic => t.partitions.push(tp.partition),
            _ => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(crate::handler::str_bytes(&tp.topic)))
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(crate::handler::str_bytes(transactional_id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(!add)
            .with_topics(topics),
    ]);
    let resp: AddPartitionsToTxnResponse = match shard
        .txns
        .clients
        .call(
            &image,
            leader,
            ApiKey::AddPartitionsToTxn,
            VERIFY_VERSION,
            &req,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(node = leader, error = %e, "transaction verification failed to reach the coordinator");
            return fail(&partitions, ResponseError::NotEnoughReplicas);
        }
    };
    let mut out: HashMap<TopicPartition, i16> = HashMap::new();
    if resp.error_code != 0 {
        return fail(
            &partitions,
            ResponseError::try_from_code(resp.error_code)
                .unwrap_or(ResponseError::UnknownServerError),
        );
    }
    for t in resp.results_by_transaction {
        for topic in t.topic_results {
            for p in topic.results_by_partition {
                out.insert(
                    TopicPartition::new(topic.name.0.to_string(), p.partition_index),
                    map_code(p.partition_error_code),
                );
            }
        }
    }
    for tp in partitions {
        out.entry(tp)
            .or_insert(ResponseError::InvalidTxnState.code());
    }
    out
}

/// What the producer is told when the coordinator could not verify: Kafka answers retriable
/// NOT_ENOUGH_REPLICAS when the coordinator is unreachable or loading, and the coordinator's
/// own error otherwise.
fn map_code(code: i16) -> i16 {
    match ResponseError::try_from_code(code) {
        None => 0,
        Some(
            ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::ConcurrentTransactions,
        ) => ResponseError::NotEnoughReplicas.code(),
        Some(e) => e.code(),
    }
}
