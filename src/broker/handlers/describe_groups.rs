//! DescribeGroups (key 15), v0-5.

use std::sync::Arc;

use proto_kafka::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use proto_kafka::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::{authorized_ops, Broker};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> Handled<DescribeGroupsResponse> {
    let ids: Vec<String> = request.groups.iter().map(|g| g.0.to_string()).collect();
    let groups = broker
        .groups
        .describe(&ids)
        .into_iter()
        .map(|g| {
            let members = g
                .members
                .into_iter()
                .map(|m| {
                    let mut member = DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if ctx.api_version >= 4 {
                        member.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                    }
                    member
                })
                .collect();
            let mut described = DescribedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_group_state(str_bytes(g.state))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_protocol_data(str_bytes(&g.protocol))
                .with_members(members);
            if ctx.api_version >= 3 {
                described.authorized_operations =
                    authorized_ops::group(request.include_authorized_operations);
            }
            described
        })
        .collect();
    Handled::Now(DescribeGroupsResponse::default().with_groups(groups))
}
