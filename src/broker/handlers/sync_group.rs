//! SyncGroup (key 14), v0-5: the leader's assignment in, each member's share out.

use std::sync::Arc;

use proto_kafka::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code;
use crate::broker::{now_ms, Broker};
use crate::coordinator::group::{self, GroupError, Reply, SyncRequest};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: SyncGroupRequest,
) -> Handled<SyncGroupResponse> {
    let version = ctx.api_version;
    let sync = SyncRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    match broker.groups.sync(sync, now_ms()) {
        Reply::Now(answer) => Handled::Now(encode(answer, version)),
        Reply::Wait(receiver) => Handled::Later(Box::pin(async move {
            let answer = receiver
                .await
                .unwrap_or_else(|_| group::SyncResponse::error(GroupError::RebalanceInProgress));
            encode(answer, version)
        })),
    }
}

fn encode(answer: group::SyncResponse, version: i16) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default()
        .with_error_code(error_code::from_group_result(answer.error))
        .with_assignment(answer.assignment);
    if version >= 5 {
        response.protocol_type = answer.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = answer.protocol_name.as_deref().map(str_bytes);
    }
    response
}
