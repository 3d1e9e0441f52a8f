//! ListGroups (key 16), v0-5: with state filters (v4+) and type filters (v5+; every Ferry
//! group is "classic").

use std::sync::Arc;

use proto_kafka::messages::list_groups_response::ListedGroup;
use proto_kafka::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ListGroupsRequest,
) -> Handled<ListGroupsResponse> {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_string())
        .collect();
    let classic_wanted = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case("classic"));
    let groups = if classic_wanted {
        broker.groups.list(&states)
    } else {
        Vec::new()
    };
    let listed = groups
        .into_iter()
        .map(|g| {
            let mut entry = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if ctx.api_version >= 4 {
                entry.group_state = str_bytes(g.state);
            }
            if ctx.api_version >= 5 {
                entry.group_type = str_bytes("classic");
            }
            entry
        })
        .collect();
    Handled::Now(ListGroupsResponse::default().with_groups(listed))
}
