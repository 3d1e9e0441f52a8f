//! LeaveGroup (key 13), v0-5: one member (v0-2) or a batch with static instance ids (v3+).

use std::sync::Arc;

use proto_kafka::messages::leave_group_response::MemberResponse;
use proto_kafka::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code;
use crate::broker::{now_ms, Broker};
use crate::coordinator::group::LeavingMember;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: LeaveGroupRequest,
) -> Handled<LeaveGroupResponse> {
    let leaving: Vec<LeavingMember> = if ctx.api_version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let mut response = LeaveGroupResponse::default();
    match broker
        .groups
        .leave(request.group_id.0.as_str(), &leaving, now_ms())
    {
        Err(err) => response.error_code = error_code::from_group(err),
        Ok(results) if ctx.api_version >= 3 => {
            response.members = request
                .members
                .iter()
                .zip(results)
                .map(|(m, result)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(error_code::from_group_result(result))
                })
                .collect();
        }
        Ok(results) => {
            response.error_code =
                error_code::from_group_result(results.into_iter().flatten().next())
        }
    }
    Handled::Now(response)
}
