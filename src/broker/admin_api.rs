//! The broker's end of Ferry's admin API (`protocol::ferry_admin`): a frame is decoded
//! here and its JSON body handed to the service installed at startup (the mirror, which
//! sits above the broker and so cannot be called from it directly). Without a service,
//! or on a malformed frame, the answer is a JSON error, never a closed connection the
//! tool could not explain.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::dispatch::Reply;
use super::Broker;
use crate::protocol::ferry_admin;
use crate::protocol::frame::OutFrame;

/// A service answering admin requests: a JSON request in, a JSON answer out.
pub trait AdminService: Send + Sync {
    fn handle(
        &self,
        request: Value,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Value> + Send>>;
}

/// An error answer: `error` names the kind, `message` says what to do.
pub fn error_answer(kind: &str, message: impl Into<String>) -> Value {
    json!({ "error": kind, "message": message.into() })
}

/// Handles one admin frame (the bytes after the size prefix).
pub fn handle_frame(broker: &Arc<Broker>, frame: Bytes, peer: SocketAddr) -> Reply {
    let request = match ferry_admin::decode_request(frame) {
        Ok(request) => request,
        Err(err) => return Reply::Close(err.to_string()),
    };
    let correlation_id = request.correlation_id;
    let answer = move |value: Value| {
        let body = serde_json::to_vec(&value).unwrap_or_default();
        Ok(OutFrame::from_bytes(ferry_admin::encode_response(
            correlation_id,
            &body,
        )))
    };
    if request.version != ferry_admin::VERSION {
        return Reply::Ready(answer(error_answer(
            "unsupported_version",
            format!(
                "this broker speaks Ferry admin API version {}, not {}",
                ferry_admin::VERSION,
                request.version
            ),
        )));
    }
    let parsed: Value = match serde_json::from_slice(&request.body) {
        Ok(value) => value,
        Err(err) => {
            return Reply::Ready(answer(error_answer(
                "invalid_request",
                format!("the request is not JSON: {err}"),
            )))
        }
    };
    let Some(service) = broker.admin_service.get().cloned() else {
        return Reply::Ready(answer(error_answer(
            "unavailable",
            "this broker runs no admin service",
        )));
    };
    Reply::Pending(Box::pin(async move {
        let value = service.handle(parsed, peer).await;
        answer(value)
    }))
}
