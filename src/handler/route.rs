//! Splitting partition-level work by owner shard and joining the answers.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::model::{ShardId, TopicPartition};
use crate::order::Ticket;
use crate::runtime::messages::{ShardRequest, ShardResponse};
use crate::runtime::shard::Pending;
use crate::runtime::Shard;

/// Sends each item to the shard owning its partition (all shards in parallel)
/// and returns every answer that came back. Items whose shard was unavailable
/// have no answer; callers fill those with an error.
pub async fn scatter<I, R>(
    shard: &Rc<Shard>,
    items: Vec<I>,
    tp_of: impl Fn(&I) -> &TopicPartition,
    make: impl Fn(Vec<I>) -> ShardRequest,
    take: impl Fn(ShardResponse) -> Option<Vec<R>>,
) -> Vec<R> {
    scatter_in_turn(shard, None, items, tp_of, make, take).await
}

/// [`scatter`] for a request whose effects must keep the connection's order: the items are
/// handed to their owners only in the request's turn (`turn`, its connection ticket), and the
/// turn passes to the next request as soon as every owner has the work queued — not when it
/// is done — so requests stay pipelined while each partition sees them in arrival order.
pub async fn scatter_in_turn<I, R>(
    shard: &Rc<Shard>,
    turn: Option<Ticket>,
    items: Vec<I>,
    tp_of: impl Fn(&I) -> &TopicPartition,
    make: impl Fn(Vec<I>) -> ShardRequest,
    take: impl Fn(ShardResponse) -> Option<Vec<R>>,
) -> Vec<R> {
    let mut by_shard: BTreeMap<ShardId, Vec<I>> = BTreeMap::new();
    for item in items {
        let owner = shard.shard_for(tp_of(&item));
        by_shard.entry(owner).or_default().push(item);
    }
    if let Some(turn) = &turn {
        turn.turn().await;
    }
    let mut pending = Vec::with_capacity(by_shard.len());
    for (owner, items) in by_shard {
        pending.push(shard.submit(owner, make(items)).await);
    }
    drop(turn);
    futures::future::join_all(pending.into_iter().map(Pending::answer))
        .await
        .into_iter()
        .filter_map(&take)
        .flatten()
        .collect()
}
