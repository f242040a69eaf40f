//! JoinGroup/SyncGroup answers, shaped for the request's version.

use super::*;

impl ClassicGroup {
    pub(super) fn join_response(
        &self,
        version: i16,
        member_id: &str,
        skip_assignment: bool,
    ) -> JoinGroupResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if is_leader {
            self.members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id.clone()))
                        .with_group_instance_id(if version >= 5 {
                            m.group_instance_id.clone().map(StrBytes::from_string)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata_for(&protocol))
                })
                .collect()
        } else {
            vec![]
        };
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(if version >= 7 {
                self.protocol_type.clone().map(StrBytes::from_string)
            } else {
                None
            })
            .with_protocol_name(Some(StrBytes::from_string(protocol)))
            .with_leader(StrBytes::from_string(
                self.leader.clone().unwrap_or_default(),
            ))
            .with_skip_assignment(skip_assignment && version >= 9)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_members(members)
    }

    pub(super) fn sync_response(&self, version: i16, assignment: Bytes) -> SyncGroupResponse {
        build_sync(version, &self.protocol_type, &self.protocol, assignment)
    }
}

pub(super) fn fail_waiters(m: &mut Member, error: ResponseError) {
    if let Some((v, tx)) = m.join_waiter.take() {
        let _ = tx.send(join_error(v, &m.member_id, error));
    }
    if let Some((v, tx)) = m.sync_waiter.take() {
        let _ = tx.send(sync_error(v, error));
    }
}

pub(super) fn build_sync(
    version: i16,
    protocol_type: &Option<String>,
    protocol: &Option<String>,
    assignment: Bytes,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default().with_assignment(assignment);
    if version >= 5 {
        r.protocol_type = protocol_type.clone().map(StrBytes::from_string);
        r.protocol_name = protocol.clone().map(StrBytes::from_string);
    }
    r
}

/// A JoinGroup error answer, shaped for `version`.
pub fn join_error(version: i16, member_id: &str, error: ResponseError) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_protocol_name(if version >= 7 {
            None
        } else {
            Some(StrBytes::new())
        })
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
}

/// A SyncGroup error answer.
pub fn sync_error(_version: i16, error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error.code())
}
