//! FindCoordinator (key 10), v0-6: this broker coordinates every group and transactional
//! id. v0-3 carry one key, v4+ a batch of keys (KIP-699).

use std::sync::Arc;

use proto_kafka::messages::find_coordinator_response::Coordinator;
use proto_kafka::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;
use crate::config::Endpoint;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is: this broker, unless the key type is unknown or the
/// key's internal partition could not be loaded at startup.
struct Answer<'a> {
    error: i16,
    node: i32,
    host: &'a str,
    port: i32,
}

fn answer<'a>(broker: &Broker, advertised: &'a Endpoint, key_type: i8, key: &str) -> Answer<'a> {
    let error = match key_type {
        KEY_TYPE_GROUP if broker.groups.is_available(key) => None,
        KEY_TYPE_TRANSACTION if broker.txns.is_available(key) => None,
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => Some(KafkaError::CoordinatorNotAvailable),
        _ => Some(KafkaError::InvalidRequest),
    };
    match error {
        None => Answer {
            error: 0,
            node: broker.node_id,
            host: advertised.host.as_str(),
            port: i32::from(advertised.port),
        },
        Some(error) => Answer {
            error: code(error),
            node: -1,
            host: "",
            port: -1,
        },
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> Handled<FindCoordinatorResponse> {
    let supported = matches!(request.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION);
    let mut response = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let found = answer(broker, &ctx.listener.advertised, request.key_type, key);
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(found.node))
                    .with_host(str_bytes(found.host))
                    .with_port(found.port)
                    .with_error_code(found.error)
            })
            .collect();
    } else {
        let found = answer(
            broker,
            &ctx.listener.advertised,
            request.key_type,
            &request.key,
        );
        response.error_code = found.error;
        response.node_id = BrokerId(found.node);
        response.host = str_bytes(found.host);
        response.port = found.port;
        // v1-3: null when there is no error, as the message spec says (Kafka's own broker
        // puts the string "NONE" there; clients read both as no error), else the reason.
        response.error_message = match (supported, found.error) {
            (false, _) => Some(str_bytes("unknown coordinator key type")),
            (true, 0) => None,
            (true, _) => Some(str_bytes("The coordinator is not available.")),
        };
    }
    Handled::Now(response)
}
