//! FindCoordinator (key 10), v0-6: this broker coordinates every group and transactional
//! id. v0-3 carry one key, v4+ a batch of keys (KIP-699).

use std::sync::Arc;

use proto_kafka::messages::find_coordinator_response::Coordinator;
use proto_kafka::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> Handled<FindCoordinatorResponse> {
    let supported = matches!(request.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION);
    let error = if supported {
        0
    } else {
        code(KafkaError::InvalidRequest)
    };
    let node = BrokerId(if supported { broker.node_id } else { -1 });
    let host = if supported {
        broker.advertised.host.as_str()
    } else {
        ""
    };
    let port = if supported {
        i32::from(broker.advertised.port)
    } else {
        -1
    };
    let mut response = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(node)
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(error)
            })
            .collect();
    } else {
        response.error_code = error;
        response.node_id = node;
        response.host = str_bytes(host);
        response.port = port;
        if ctx.api_version >= 1 && !supported {
            response.error_message = Some(str_bytes("unknown coordinator key type"));
        }
    }
    Handled::Now(response)
}
