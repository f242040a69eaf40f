//! A classic group to and from its `__consumer_offsets` metadata record.

use super::*;

impl ClassicGroup {
    /// The metadata record of the current generation.
    pub fn to_record(&self) -> GroupMetadataRecord {
        GroupMetadataRecord {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client.client_id.clone(),
                    client_host: m.client.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a group from its metadata record (replay). Members get a fresh
    /// session, so clients that keep heartbeating stay in the generation.
    pub fn load_record(&mut self, rec: GroupMetadataRecord, now_ms: i64) {
        self.members.clear();
        self.static_members.clear();
        self.protocol_type = (!rec.protocol_type.is_empty()).then_some(rec.protocol_type);
        self.generation = rec.generation;
        self.protocol = rec.protocol;
        self.leader = rec.leader;
        for m in rec.members {
            let protocols = match &self.protocol {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => vec![],
            };
            if let Some(instance) = &m.group_instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client: ClientInfo {
                        client_id: m.client_id,
                        client_host: m.client_host,
                    },
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    last_heartbeat_ms: now_ms,
                    is_new: false,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        let state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state = state;
        self.state_timestamp_ms = if rec.current_state_timestamp_ms > 0 {
            rec.current_state_timestamp_ms
        } else {
            now_ms
        };
    }
}
