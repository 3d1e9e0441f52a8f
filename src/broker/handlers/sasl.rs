//! SaslHandshake (key 17), v0-1, and SaslAuthenticate (key 36), v0-2, when they reach
//! dispatch: on a listener without SASL, or on an authenticated connection that cannot
//! re-authenticate. Kafka answers both with ILLEGAL_SASL_STATE. The exchange itself runs
//! in `network::authenticate` before any request is dispatched.

use std::sync::Arc;

use proto_kafka::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;

pub mod handshake {
    use super::*;

    pub fn handle(
        _broker: &Arc<Broker>,
        _ctx: &RequestContext,
        _request: SaslHandshakeRequest,
    ) -> Handled<SaslHandshakeResponse> {
        Handled::Now(
            SaslHandshakeResponse::default().with_error_code(code(KafkaError::IllegalSaslState)),
        )
    }
}

pub mod authenticate {
    use super::*;

    pub fn handle(
        _broker: &Arc<Broker>,
        _ctx: &RequestContext,
        _request: SaslAuthenticateRequest,
    ) -> Handled<SaslAuthenticateResponse> {
        Handled::Now(
            SaslAuthenticateResponse::default()
                .with_error_code(code(KafkaError::IllegalSaslState))
                .with_error_message(Some(str_bytes(
                    "SaslAuthenticate request received after successful authentication",
                ))),
        )
    }
}
