//! DescribeTransactions (v0): each id's state, from its coordinator.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
    TransactionalId,
};

use super::{str_bytes, RequestContext};
use crate::txn::{TxnRequest, TxnResponse};

pub async fn handle(
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in req.transactional_ids {
        let r = TxnRequest::Describe {
            transactional_id: id.0.to_string(),
        };
        let base = TransactionState::default()
            .with_transactional_id(TransactionalId(id.0.clone()))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        let state = match crate::txn::forward(&ctx.shard, r).await {
            TxnResponse::Described(Ok(m)) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for tp in &m.partitions {
                    match topics.last_mut() {
                        Some(t) if t.topic.0.as_str() == tp.topic => {
                            t.partitions.push(tp.partition)
                        }
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(&tp.topic)))
                                .with_partitions(vec![tp.partition]),
                        ),
                    }
                }
                base.with_transaction_state(str_bytes(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(m.start_ms)
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.producer_epoch)
                    .with_topics(topics)
            }
            TxnResponse::Described(Err(code)) => base.with_error_code(code),
            _ => base
                .with_error_code(kafka_protocol::error::ResponseError::UnknownServerError.code()),
        };
        states.push(state);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
