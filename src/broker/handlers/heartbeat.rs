//! Heartbeat (key 12), v0-4.

use std::sync::Arc;

use proto_kafka::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code;
use crate::broker::{now_ms, Broker};

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: HeartbeatRequest,
) -> Handled<HeartbeatResponse> {
    let result = broker.groups.heartbeat(
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        request.generation_id,
        now_ms(),
    );
    Handled::Now(
        HeartbeatResponse::default().with_error_code(error_code::from_group_result(result.err())),
    )
}
