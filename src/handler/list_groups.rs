//! ListGroups (v0-5; state filter v4+, type filter v5+): every shard lists the groups it
//! coordinates; the answers are merged.

use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use super::RequestContext;
use crate::group::{GroupRequest, GroupResponse};
use crate::runtime::messages::{ShardRequest, ShardResponse};

pub async fn handle(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let v = ctx.api_version;
    let answers = ctx
        .shard
        .broadcast(|| ShardRequest::Group(Box::new(GroupRequest::ListGroups(v, req.clone()))))
        .await;
    let mut out = ListGroupsResponse::default();
    for a in answers {
        if let ShardResponse::Group(GroupResponse::ListGroups(r)) = a {
            if r.error_code != 0 {
                out.error_code = r.error_code;
            }
            out.groups.extend(r.groups);
        }
    }
    out.groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    for g in out.groups.iter_mut() {
        if v < 4 {
            g.group_state = Default::default();
        }
        if v < 5 {
            g.group_type = Default::default();
        }
    }
    out
}
