//! `group-*`: the group coordinator measured through real librdkafka consumers.
//!
//! - `group-rebalance`: a group of N subscribed members; one member leaves (consumer close, which
//!   sends LeaveGroup), then a new member joins; each time, the wait until the group is Stable
//!   again with the members' assignments covering every partition of the topic exactly once.
//! - `group-commits`: K committers, each a consumer that never subscribes (`assign`-style simple
//!   consumer), committing explicit offsets with `CommitMode::Sync` in a closed loop; commits per
//!   second and per-commit latency. Each OffsetCommit goes through the coordinator's durable path
//!   (an acks=all append to `__consumer_offsets`), so the figure is bounded by its fsync.
//!
//! Both create their topic through the admin API if it is missing (an existing topic is kept, and
//! its real partition count from metadata is what the figures use).

pub mod commits;
pub mod rebalance;

pub use commits::GroupCommitsArgs;
pub use rebalance::GroupRebalanceArgs;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A group id no earlier run on the same broker used, so no committed offsets or members are
/// left over from it.
fn fresh_group_id(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Minimum, median (mean of the middle two for an even count) and maximum, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let count = ms.len();
        if count == 0 {
            return None;
        }
        let median = if count % 2 == 1 {
            ms[count / 2]
        } else {
            (ms[count / 2 - 1] + ms[count / 2]) / 2.0
        };
        Some(Self {
            min_ms: ms[0],
            median_ms: median,
            max_ms: ms[count - 1],
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.1} ms, median {:.1} ms, max {:.1} ms",
            self.min_ms, self.median_ms, self.max_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_median_odd_and_even() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let odd = Spread::of(&ms(&[30, 10, 20])).unwrap();
        assert_eq!((odd.min_ms, odd.median_ms, odd.max_ms), (10.0, 20.0, 30.0));
        let even = Spread::of(&ms(&[40, 10, 20, 30])).unwrap();
        assert_eq!(even.median_ms, 25.0);
        assert!(Spread::of(&[]).is_none());
    }
}
