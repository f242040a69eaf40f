//! Server-side assignors of KIP-848 consumer groups: `uniform` (sticky, balanced) and
//! `range` (per topic, contiguous ranges, like the client-side RangeAssignor).
//! Pure functions over member subscriptions and topic sizes.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::TopicId;

/// A partition of a topic, by id (KIP-848 speaks topic ids).
pub type TopicIdPartition = (TopicId, i32);

/// What an assignor sees of one member.
pub struct AssignorMember<'a> {
    pub member_id: &'a str,
    /// Subscribed topics that exist, by id.
    pub topics: BTreeSet<TopicId>,
    /// The member's current target, for stickiness.
    pub current: &'a BTreeSet<TopicIdPartition>,
}

/// The assignors this broker offers (`group.consumer.assignors`), default first.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Computes a target assignment for every member.
pub fn assign(
    name: &str,
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, BTreeSet<TopicIdPartition>> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn range(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, BTreeSet<TopicIdPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicIdPartition>> = members
        .iter()
        .map(|m| (m.member_id.to_owned(), BTreeSet::new()))
        .collect();
    for (topic, count) in partitions {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.member_id)
            .collect();
        subscribers.sort_unstable();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if let Some(set) = out.get_mut(*m) {
                set.extend((next..next + take).map(|p| (*topic, p)));
            }
            next += take;
        }
    }
    out
}

fn uniform(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, BTreeSet<TopicIdPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicIdPartition>> = BTreeMap::new();
    let mut owner: BTreeMap<TopicIdPartition, String> = BTreeMap::new();
    let subscribes = |m: &AssignorMember<'_>, tp: &TopicIdPartition| {
        m.topics.contains(&tp.0) && partitions.get(&tp.0).is_some_and(|n| tp.1 < *n)
    };
    // 1. Stickiness: keep what each member had, if still valid.
    for m in members {
        let keep: BTreeSet<TopicIdPartition> = m
            .current
            .iter()
            .filter(|tp| subscribes(m, tp) && !owner.contains_key(tp))
            .copied()
            .collect();
        for tp in &keep {
            owner.insert(*tp, m.member_id.to_owned());
        }
        out.insert(m.member_id.to_owned(), keep);
    }
    // 2. Hand out the rest, each to the least-loaded subscriber.
    for (topic, count) in partitions {
        for p in 0..*count {
            let tp = (*topic, p);
            if owner.contains_key(&tp) {
                continue;
            }
            let best = members
                .iter()
                .filter(|m| subscribes(m, &tp))
                .min_by_key(|m| (out.get(m.member_id).map_or(0, |s| s.len()), m.member_id));
            if let Some(m) = best {
                owner.insert(tp, m.member_id.to_owned());
                if let Some(set) = out.get_mut(m.member_id) {
                    set.insert(tp);
                }
            }
        }
    }
    // 3. Balance: move partitions from the most to the least loaded member that can take them.
    let moves_max = partitions.values().map(|n| *n as usize).sum::<usize>() + 1;
    for _ in 0..moves_max {
        let mut moved = false;
        let mut order: Vec<&AssignorMember<'_>> = members.iter().collect();
        order.sort_by_key(|m| std::cmp::Reverse(out.get(m.member_id).map_or(0, |s| s.len())));
        'outer: for from in &order {
            let from_len = out.get(from.member_id).map_or(0, |s| s.len());
            for to in order.iter().rev() {
                let to_len = out.get(to.member_id).map_or(0, |s| s.len());
                if to_len + 1 >= from_len {
                    continue;
                }
                let candidate = out
                    .get(from.member_id)
                    .and_then(|s| s.iter().rev().find(|tp| subscribes(to, tp)).copied());
                if let Some(tp) = candidate {
                    if let Some(s) = out.get_mut(from.member_id) {
                        s.remove(&tp);
                    }
                    if let Some(s) = out.get_mut(to.member_id) {
                        s.insert(tp);
                    }
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> TopicId {
        TopicId::from_u128(n)
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let topics: BTreeMap<TopicId, i32> = [(id(1), 8)].into_iter().collect();
        let empty = BTreeSet::new();
        let subs: BTreeSet<TopicId> = [id(1)].into_iter().collect();
        let two = [
            AssignorMember {
                member_id: "a",
                topics: subs.clone(),
                current: &empty,
            },
            AssignorMember {
                member_id: "b",
                topics: subs.clone(),
                current: &empty,
            },
        ];
        let out = assign("uniform", &two, &topics);
        assert_eq!(out["a"].len(), 4);
        assert_eq!(out["b"].len(), 4);
        assert!(out["a"].is_disjoint(&out["b"]));
        let a_cur = out["a"].clone();
        let b_cur = out["b"].clone();
        let three = [
            AssignorMember {
                member_id: "a",
                topics: subs.clone(),
                current: &a_cur,
            },
            AssignorMember {
                member_id: "b",
                topics: subs.clone(),
                current: &b_cur,
            },
            AssignorMember {
                member_id: "c",
                topics: subs.clone(),
                current: &empty,
            },
        ];
        let out3 = assign("uniform", &three, &topics);
        let sizes: Vec<usize> = out3.values().map(|s| s.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 8);
        assert!(sizes.iter().all(|s| *s == 2 || *s == 3));
        assert!(out3["a"].is_subset(&a_cur));
        assert!(out3["b"].is_subset(&b_cur));
    }

    #[test]
    fn range_splits_each_topic() {
        let topics: BTreeMap<TopicId, i32> = [(id(1), 5), (id(2), 2)].into_iter().collect();
        let empty = BTreeSet::new();
        let both: BTreeSet<TopicId> = [id(1), id(2)].into_iter().collect();
        let one: BTreeSet<TopicId> = [id(1)].into_iter().collect();
        let ms = [
            AssignorMember {
                member_id: "a",
                topics: both,
                current: &empty,
            },
            AssignorMember {
                member_id: "b",
                topics: one,
                current: &empty,
            },
        ];
        let out = assign("range", &ms, &topics);
        assert_eq!(
            out["a"],
            [(id(1), 0), (id(1), 1), (id(1), 2), (id(2), 0), (id(2), 1)]
                .into_iter()
                .collect()
        );
        assert_eq!(out["b"], [(id(1), 3), (id(1), 4)].into_iter().collect());
    }
}
