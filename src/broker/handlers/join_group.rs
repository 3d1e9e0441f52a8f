//! JoinGroup (key 11), v0-9: translates to the group coordinator, which may park the
//! request until the join phase completes.

use std::sync::Arc;

use proto_kafka::messages::join_group_response::JoinGroupResponseMember;
use proto_kafka::messages::{JoinGroupRequest, JoinGroupResponse};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code;
use crate::broker::{now_ms, Broker};
use crate::coordinator::group::{self, GroupError, JoinRequest, Reply};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: JoinGroupRequest,
) -> Handled<JoinGroupResponse> {
    let version = ctx.api_version;
    let join = JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    match broker.groups.join(join, now_ms()) {
        Reply::Now(answer) => Handled::Now(encode(answer, version)),
        Reply::Wait(receiver) => {
            let member_id = request.member_id.to_string();
            Handled::Later(Box::pin(async move {
                let answer = receiver.await.unwrap_or_else(|_| {
                    group::JoinResponse::error(GroupError::RebalanceInProgress, &member_id)
                });
                encode(answer, version)
            }))
        }
    }
}

fn encode(answer: group::JoinResponse, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default()
        .with_error_code(error_code::from_group_result(answer.error))
        .with_generation_id(answer.generation_id)
        .with_leader(str_bytes(&answer.leader_id))
        .with_member_id(str_bytes(&answer.member_id))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|m| {
                    let mut member = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_metadata(m.metadata);
                    if version >= 5 {
                        member.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                    }
                    member
                })
                .collect(),
        );
    // Versions before 7 carry the protocol name as a non-nullable string.
    response.protocol_name = match (&answer.protocol_name, version >= 7) {
        (Some(name), _) => Some(str_bytes(name)),
        (None, true) => None,
        (None, false) => Some(str_bytes("")),
    };
    if version >= 7 {
        response.protocol_type = answer.protocol_type.as_deref().map(str_bytes);
    }
    if version >= 9 {
        response.skip_assignment = answer.skip_assignment;
    }
    response
}
