//! Heartbeats and timers of a classic group: session expiry, the join and sync deadlines,
//! the initial rebalance delay, and deletion.

use super::*;

impl ClassicGroup {
    /// Handles Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> GroupResult {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        self.check_member(member_id, instance)?;
        // Kafka's order: membership, then generation, then state.
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        self.touch(member_id, now_ms);
        if self.state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Advances timers: join/sync deadlines, session expiry, pending member expiry.
    pub fn tick(&mut self, now_ms: i64, config: &GroupConfig) {
        let pending = self.pending_members.len();
        self.pending_members
            .retain(|_, deadline| *deadline > now_ms);
        if self.pending_members.len() < pending {
            // An id handed out with MEMBER_ID_REQUIRED that never came back (the client
            // dropped the answer, e.g. librdkafka when its subscription changed meanwhile)
            // holds the join phase only until its session timeout, as in Kafka's
            // `removePendingMemberAndUpdateGroup`; not for the whole rebalance timeout.
            self.try_complete_join(now_ms);
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            match self.initial_delay_remaining_ms {
                Some(remaining) if self.new_member_added && remaining > 0 => {
                    // Kafka's InitialDelayedJoin: keep waiting while members arrive.
                    let delay = config.initial_rebalance_delay_ms.min(remaining);
                    self.new_member_added = false;
                    self.initial_delay_remaining_ms = Some((remaining - delay).max(0));
                    self.join_deadline_ms = Some(now_ms + delay);
                }
                _ => self.complete_join(now_ms),
            }
        }
        if self.state == GroupState::CompletingRebalance
            && !self.assignment_persisting
            && self.sync_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            // The leader never sent its assignment: drop whoever did not sync, and retry.
            let missing: Vec<String> = self
                .members
                .values()
                .filter(|m| m.sync_waiter.is_none() || self.leader.as_deref() == Some(&m.member_id))
                .map(|m| m.member_id.clone())
                .collect();
            for id in missing {
                self.remove_member(&id);
            }
            self.prepare_rebalance(now_ms, config);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.liveness_deadline_ms().is_some_and(|d| d <= now_ms))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.group_id, member = %id, "session timeout; removing member");
            self.remove_member_and_rebalance(&id, now_ms);
        }
    }

    /// The next instant at which [`ClassicGroup::tick`] has work, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter_map(Member::liveness_deadline_ms);
        let pending = self.pending_members.values().copied();
        sessions
            .chain(pending)
            .chain(self.join_deadline_ms)
            .chain(self.sync_deadline_ms)
            .min()
    }

    /// Marks the group deleted; parked requests get COORDINATOR_NOT_AVAILABLE.
    pub fn mark_dead(&mut self, now_ms: i64) {
        for m in self.members.values_mut() {
            fail_waiters(m, ResponseError::CoordinatorNotAvailable);
        }
        self.members.clear();
        self.transition(GroupState::Dead, now_ms);
    }
}

impl Member {
    /// When the member is expired, after Kafka's `MemberMetadata.shouldKeepAlive`: never
    /// while its SyncGroup or (rejoining) JoinGroup is parked; a new member's parked first
    /// JoinGroup keeps it for [`NEW_MEMBER_JOIN_TIMEOUT_MS`], however long the join phase
    /// waits for slow members; otherwise its session timeout after the last heartbeat.
    fn liveness_deadline_ms(&self) -> Option<i64> {
        if self.sync_waiter.is_some() || (self.join_waiter.is_some() && !self.is_new) {
            return None;
        }
        let timeout = if self.join_waiter.is_some() {
            NEW_MEMBER_JOIN_TIMEOUT_MS
        } else {
            i64::from(self.session_timeout_ms)
        };
        Some(self.last_heartbeat_ms + timeout)
    }
}
