//! Splitting partition-level work by owner shard and joining the answers.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::model::{ShardId, TopicPartition};
use crate::runtime::messages::{ShardRequest, ShardResponse};
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
    let mut by_shard: BTreeMap<ShardId, Vec<I>> = BTreeMap::new();
    for item in items {
        let owner = shard.shard_for(tp_of(&item));
        by_shard.entry(owner).or_default().push(item);
    }
    let calls = by_shard
        .into_iter()
        .map(|(owner, items)| shard.call(owner, make(items)));
    futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(&take)
        .flatten()
        .collect()
}
