//! ListTransactions (v0-2): the transactions this broker coordinates, from every shard, with
//! Kafka's state, producer id, duration (v1) and transactional id pattern (v2) filters.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::{str_bytes, RequestContext};
use crate::runtime::messages::{ShardRequest, ShardResponse};
use crate::txn::state::TxnState;
use crate::txn::{TxnRequest, TxnResponse};

pub async fn handle(
    ctx: &RequestContext,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let (known, unknown): (Vec<String>, Vec<String>) = req
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .partition(|s| TxnState::from_name(s).is_some());
    if req
        .transactional_id_pattern
        .as_ref()
        .is_some_and(|p| !p.is_empty() && regex_automata::meta::Regex::new(p.as_str()).is_err())
    {
        return ListTransactionsResponse::default().with_error_code(
            kafka_protocol::error::ResponseError::InvalidRegularExpression.code(),
        );
    }
    let producer_ids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let pattern = req.transactional_id_pattern.as_ref().map(|p| p.to_string());
    let min_duration_ms = if ctx.api_version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    // States asked for that are all unknown match nothing.
    let answers = if !unknown.is_empty() && known.is_empty() {
        Vec::new()
    } else {
        ctx.shard
            .broadcast(|| {
                ShardRequest::Txn(Box::new(TxnRequest::List {
                    states: known.clone(),
                    producer_ids: producer_ids.clone(),
                    min_duration_ms,
                    pattern: pattern.clone(),
                }))
            })
            .await
    };
    let mut states = Vec::new();
    for a in answers {
        if let ShardResponse::Txn(r) = a {
            if let TxnResponse::Listed(list) = *r {
                for (id, producer_id, state) in list {
                    states.push(
                        TransactionState::default()
                            .with_transactional_id(TransactionalId(str_bytes(id)))
                            .with_producer_id(ProducerId(producer_id))
                            .with_transaction_state(str_bytes(state)),
                    );
                }
            }
        }
    }
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown.into_iter().map(str_bytes).collect())
        .with_transaction_states(states)
}
