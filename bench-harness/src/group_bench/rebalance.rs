//! `group-rebalance`: how long a classic consumer group takes to become Stable again after a
//! member leaves, and after a new member joins.
//!
//! Every member is a `BaseConsumer` on its own thread, polling every `MEMBER_POLL_INTERVAL` so its
//! rebalance callbacks run promptly; after each rebalance it publishes `assignment()` to shared
//! state. The main thread polls those snapshots every `SETTLE_POLL_INTERVAL`; once they cover
//! every partition exactly once (and, on a join, the newcomer holds some), it asks the broker
//! (ListGroups + DescribeGroups through `fetch_group_list`) until the group reads Stable with the
//! expected member count. The figure is from the leaving member's close (or the joining member's
//! subscribe) to that confirmation.
//!
//! What bounds it: remaining members learn of a rebalance from their next heartbeat response
//! (`heartbeat.interval.ms`), then rejoin and sync. `group.initial.rebalance.delay.ms` applies
//! only to the first join into an Empty group (`initial_join_ms` in the report), not to these.

use super::{fresh_group_id, Spread};
use crate::cli::CommonArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one member's poll may block; also the worst delay before its close starts.
const MEMBER_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often the main thread looks at the members' assignments.
const SETTLE_POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Bound on one ListGroups + DescribeGroups round trip.
const GROUP_LIST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct GroupRebalanceArgs {
    /// Topic the group subscribes to (created with --partitions if missing).
    #[arg(long, default_value = "group-rebalance")]
    pub topic: String,
    /// Members in the group when it is complete.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Leave-then-join rounds; each yields one leave and one join figure.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    #[arg(long, default_value_t = 1_000)]
    pub heartbeat_interval_ms: u64,
    /// Give up on one rebalance after this long.
    #[arg(long, default_value_t = 60)]
    pub settle_timeout_secs: u64,
    /// librdkafka consumer properties for every member (k=v, several after one flag).
    #[arg(long = "consumer-props", value_name = "K=V", num_args = 1..)]
    pub consumer_props: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(args: &GroupRebalanceArgs) -> Result<()> {
    if args.members < 2 {
        bail!("--members must be at least 2 (one leaves, the rest must remain)");
    }
    let group = fresh_group_id("sluice-bench-rebalance");
    let session = args.session_timeout_ms.to_string();
    let heartbeat = args.heartbeat_interval_ms.to_string();
    let defaults = [
        ("group.id", group.as_str()),
        ("session.timeout.ms", session.as_str()),
        ("heartbeat.interval.ms", heartbeat.as_str()),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "latest"),
    ];
    let (config, effective) = crate::props::client_config(
        &args.common.bootstrap_server,
        &defaults,
        None,
        &args.consumer_props,
    )?;
    let bootstrap = crate::props::bootstrap_of(&effective);
    crate::admin::create_topic(
        &bootstrap,
        &args.topic,
        args.common.partitions,
        args.common.replication_factor,
    )?;
    // The observer never subscribes: it only reads metadata and the group list.
    let observer: BaseConsumer = config
        .clone()
        .set("group.id", format!("{group}-observer"))
        .create()
        .context("creating observer client")?;
    let partitions: BTreeSet<i32> = crate::admin::partitions_of(&observer, &args.topic)?
        .into_iter()
        .collect();
    let settle_timeout = Duration::from_secs(args.settle_timeout_secs);
    let watch = Watch {
        observer: &observer,
        group: &group,
        partitions: &partitions,
        settle_timeout,
    };

    let mut members: Vec<Member> = (0..args.members)
        .map(|_| Member::start(config.clone(), &args.topic))
        .collect();
    let first_subscribe = members
        .iter()
        .map(|m| m.state.wait_started(settle_timeout))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .min()
        .unwrap_or_else(Instant::now);
    let initial = watch.settled(&members, None, first_subscribe)?;
    println!(
        "group {group}: {} members, {} partitions, initial join {:.1} ms (includes group.initial.rebalance.delay.ms)",
        args.members,
        partitions.len(),
        ms(initial.stable)
    );

    let mut leaves = Vec::new();
    let mut joins = Vec::new();
    for round in 1..=args.rounds {
        let leaver = members.remove(0);
        let left_at = leaver.leave(settle_timeout)?;
        let leave = watch.settled(&members, None, left_at)?;
        leaver.join()?;
        let joiner = Member::start(config.clone(), &args.topic);
        let joined_at = joiner.state.wait_started(settle_timeout)?;
        members.push(joiner);
        let join = watch.settled(&members, Some(members.len() - 1), joined_at)?;
        println!(
            "round {round}: leave {:.1} ms (assignments {:.1} ms, rejoin round {}), join {:.1} ms (assignments {:.1} ms, rejoin round {})",
            ms(leave.stable),
            ms(leave.assignments),
            leave.rejoin_text(),
            ms(join.stable),
            ms(join.assignments),
            join.rejoin_text()
        );
        leaves.push(leave);
        joins.push(join);
    }
    for member in &members {
        member.stop.store(true, Ordering::Relaxed);
    }
    for member in members {
        member.join()?;
    }

    let leave_spread = Spread::of(&leaves.iter().map(|s| s.stable).collect::<Vec<_>>());
    let join_spread = Spread::of(&joins.iter().map(|s| s.stable).collect::<Vec<_>>());
    let rejoin = |rounds: &[Settled]| {
        Spread::of(
            &rounds
                .iter()
                .filter_map(|s| s.after_first_revoke)
                .collect::<Vec<_>>(),
        )
    };
    let (leave_rejoin, join_rejoin) = (rejoin(&leaves), rejoin(&joins));
    if let (Some(leave), Some(join)) = (leave_spread, join_spread) {
        println!(
            "{} rounds: leave → Stable with {} members: {leave}; join → Stable with {} members: {join}",
            args.rounds,
            args.members - 1,
            args.members
        );
    }
    if let (Some(leave), Some(join)) = (leave_rejoin, join_rejoin) {
        println!("rejoin round only (first revocation → Stable): leave {leave}; join {join}");
    }
    let parameters = json!({
        "topic": args.topic,
        "partitions": partitions.len(),
        "members": args.members,
        "rounds": args.rounds,
        "group": group,
        "consumer_props": effective.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    let figures = json!({
        "initial_join_ms": ms(initial.stable),
        "leave": leave_spread,
        "join": join_spread,
        "leave_rejoin_round": leave_rejoin,
        "join_rejoin_round": join_rejoin,
        "leave_rounds": leaves.iter().map(Settled::to_json).collect::<Vec<_>>(),
        "join_rounds": joins.iter().map(Settled::to_json).collect::<Vec<_>>(),
    });
    crate::report::write_report(&args.common, "group-rebalance", parameters, figures)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Time from the triggering event to: assignments complete; broker reports Stable as well.
/// `after_first_revoke` is from the first remaining member's revocation (it has learnt of the
/// rebalance from a heartbeat response) to Stable: the rejoin and sync round alone.
struct Settled {
    assignments: Duration,
    stable: Duration,
    after_first_revoke: Option<Duration>,
    generation_members: usize,
}

impl Settled {
    fn rejoin_text(&self) -> String {
        self.after_first_revoke
            .map_or("n/a".to_string(), |d| format!("{:.1} ms", ms(d)))
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "assignments_ms": ms(self.assignments),
            "stable_ms": ms(self.stable),
            "after_first_revoke_ms": self.after_first_revoke.map(ms),
            "members": self.generation_members,
        })
    }
}

struct Watch<'a> {
    observer: &'a BaseConsumer,
    group: &'a str,
    partitions: &'a BTreeSet<i32>,
    settle_timeout: Duration,
}

impl Watch<'_> {
    /// Waits until `members` hold every partition exactly once (and `newcomer`, if any, holds
    /// at least one), then until the broker lists the group Stable with that many members.
    fn settled(
        &self,
        members: &[Member],
        newcomer: Option<usize>,
        since: Instant,
    ) -> Result<Settled> {
        let deadline = since + self.settle_timeout;
        let assignments = loop {
            let snapshot: Vec<Vec<i32>> = members.iter().map(|m| m.state.assignment()).collect();
            if covers_exactly(self.partitions, &snapshot)
                && newcomer.is_none_or(|index| !snapshot[index].is_empty())
            {
                break since.elapsed();
            }
            if Instant::now() >= deadline {
                let sizes: Vec<usize> = snapshot.iter().map(Vec::len).collect();
                bail!(
                    "group {} did not settle within {:?}: assignment sizes {sizes:?} for {} partitions",
                    self.group,
                    self.settle_timeout,
                    self.partitions.len()
                );
            }
            std::thread::sleep(SETTLE_POLL_INTERVAL);
        };
        loop {
            let (state, count) = self.group_state()?;
            if state == "Stable" && count == members.len() {
                let now = Instant::now();
                let first_revoke = members
                    .iter()
                    .filter_map(|m| m.state.revoked_at())
                    .filter(|&at| at >= since)
                    .min();
                return Ok(Settled {
                    assignments,
                    stable: now - since,
                    after_first_revoke: first_revoke.map(|at| now - at),
                    generation_members: count,
                });
            }
            if Instant::now() >= deadline {
                bail!(
                    "group {} has assignments but reads {state} with {count} members (want Stable with {}) after {:?}",
                    self.group,
                    members.len(),
                    self.settle_timeout
                );
            }
            std::thread::sleep(SETTLE_POLL_INTERVAL);
        }
    }

    fn group_state(&self) -> Result<(String, usize)> {
        let list = self
            .observer
            .fetch_group_list(Some(self.group), GROUP_LIST_TIMEOUT)
            .context("ListGroups/DescribeGroups")?;
        Ok(list
            .groups()
            .iter()
            .find(|g| g.name() == self.group)
            .map_or(("(absent)".to_string(), 0), |g| {
                (g.state().to_string(), g.members().len())
            }))
    }
}

/// True when the assignments are disjoint and their union is exactly `partitions`.
fn covers_exactly(partitions: &BTreeSet<i32>, assignments: &[Vec<i32>]) -> bool {
    let mut seen = BTreeSet::new();
    for partition in assignments.iter().flatten() {
        if !seen.insert(*partition) {
            return false;
        }
    }
    seen == *partitions
}

/// One group member: a consumer on its own thread.
struct Member {
    stop: Arc<AtomicBool>,
    state: Arc<MemberState>,
    thread: JoinHandle<Result<()>>,
}

#[derive(Default)]
struct MemberState {
    /// Partition ids assigned now, as `assignment()` read after the latest rebalance.
    assignment: Mutex<Vec<i32>>,
    /// When the member called `subscribe`.
    subscribed_at: Mutex<Option<Instant>>,
    /// When the member started closing (LeaveGroup follows).
    closing_at: Mutex<Option<Instant>>,
    /// When librdkafka last asked it to give up partitions (it had learnt of a rebalance).
    revoked_at: Mutex<Option<Instant>>,
}

impl MemberState {
    fn assignment(&self) -> Vec<i32> {
        self.assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    fn revoked_at(&self) -> Option<Instant> {
        self.revoked_at.lock().ok().and_then(|at| *at)
    }

    fn wait_started(&self, timeout: Duration) -> Result<Instant> {
        wait_for(&self.subscribed_at, timeout, "member to subscribe")
    }
}

fn wait_for(slot: &Mutex<Option<Instant>>, timeout: Duration, what: &str) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(at) = *slot.lock().map_err(|_| anyhow::anyhow!("poisoned lock"))? {
            return Ok(at);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Member {
    fn start(config: rdkafka::ClientConfig, topic: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(MemberState::default());
        let topic = topic.to_string();
        let thread = {
            let (stop, state) = (stop.clone(), state.clone());
            std::thread::spawn(move || member_loop(config, &topic, &stop, state))
        };
        Self {
            stop,
            state,
            thread,
        }
    }

    /// Asks the member to close; returns when its close began.
    fn leave(&self, timeout: Duration) -> Result<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        wait_for(&self.state.closing_at, timeout, "member to start closing")
    }

    fn join(self) -> Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("member thread panicked"))?
    }
}

fn member_loop(
    config: rdkafka::ClientConfig,
    topic: &str,
    stop: &AtomicBool,
    state: Arc<MemberState>,
) -> Result<()> {
    let consumer: BaseConsumer<MemberContext> = config
        .create_with_context(MemberContext {
            state: state.clone(),
        })
        .context("creating member consumer")?;
    consumer.subscribe(&[topic]).context("subscribing")?;
    if let Ok(mut at) = state.subscribed_at.lock() {
        *at = Some(Instant::now());
    }
    while !stop.load(Ordering::Relaxed) {
        if let Some(Err(error)) = consumer.poll(MEMBER_POLL_INTERVAL) {
            eprintln!("member poll error: {error}");
        }
    }
    if let Ok(mut at) = state.closing_at.lock() {
        *at = Some(Instant::now());
    }
    // Drop closes the consumer: revoke, LeaveGroup, then wait until librdkafka is done.
    drop(consumer);
    Ok(())
}

struct MemberContext {
    state: Arc<MemberState>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            if let Ok(mut at) = self.state.revoked_at.lock() {
                *at = Some(Instant::now());
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(error) = rebalance {
            eprintln!("rebalance error: {error}");
        }
        // Read the consumer's whole assignment rather than the event's list, so eager and
        // cooperative (incremental) protocols are both right.
        let partitions = consumer
            .assignment()
            .map(|list| list.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        if let Ok(mut assignment) = self.state.assignment.lock() {
            *assignment = partitions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_must_be_disjoint_and_complete() {
        let all: BTreeSet<i32> = (0..4).collect();
        assert!(covers_exactly(&all, &[vec![0, 1], vec![2, 3]]));
        assert!(!covers_exactly(&all, &[vec![0, 1], vec![1, 2, 3]]));
        assert!(!covers_exactly(&all, &[vec![0, 1], vec![2]]));
    }
}
