//! SASL on a connection, as Kafka's `SaslServerAuthenticator` does it: before a mechanism
//! is chosen only ApiVersions (once) and SaslHandshake are served, anything else closes
//! the connection without a reply. SaslHandshake v0 is followed by raw size-prefixed
//! tokens, v1 by SaslAuthenticate requests. A failed exchange is answered with
//! SASL_AUTHENTICATION_FAILED and Kafka's message, logged with the client's address, and
//! the connection closes; addresses that keep failing are refused without a check for a
//! while (`security::failed_auth`). The whole exchange must finish within
//! `AUTHENTICATION_TIMEOUT_MS`, and no frame before it completes may exceed
//! `sasl.server.max.receive.size` (`connection`).
//!
//! With `connections.max.reauth.ms` set, the session expires after that long
//! (`session_lifetime_ms` tells the client); a SaslHandshake on an authenticated
//! connection then starts a KIP-368 re-authentication, which must keep the principal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use proto_kafka::protocol::StrBytes;
use tokio::sync::mpsc;

use super::connection::{Queued, ReadFrame};
use crate::broker::dispatch::{dispatch, Reply};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;
use crate::config::listeners::{BoundListener, SaslMechanism, SaslSettings};
use crate::protocol::frame::OutFrame;
use crate::protocol::{decode_request_header, encode_response, RequestFrame};
use crate::security::failed_auth::{Admission, FailedAuthLimiter, MAX_DELAY_MS};
use crate::security::oauth::JwksCache;
use crate::security::sasl::{AuthFailed, Exchange, Step, Verifiers};
use crate::security::{Principal, Session};

/// Time a client has to complete authentication after connecting (or after starting a
/// re-authentication).
pub const AUTHENTICATION_TIMEOUT_MS: u64 = 30_000;
/// Kafka's `connection.failed.authentication.delay.ms` default: the failure reply is sent
/// and the connection closed this long after a failed attempt.
const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;

/// What one listener's SASL needs.
pub struct AuthContext {
    pub broker: Arc<Broker>,
    pub settings: Arc<SaslSettings>,
    pub failed_auth: Arc<FailedAuthLimiter>,
    pub counts: Arc<super::AuthenticationCounts>,
    pub peer: SocketAddr,
    pub listener: Arc<BoundListener>,
    /// The listener's OAUTHBEARER keys (re-read when the JWKS file changes).
    pub jwks: Arc<JwksCache>,
}

/// A completed authentication.
pub struct Authenticated {
    pub principal: Principal,
    /// When the session expires (`connections.max.reauth.ms`, the credential's end), if
    /// it does.
    pub expires: Option<Instant>,
    /// The same as the `session_lifetime_ms` told to the client (0: no expiry).
    pub lifetime_ms: i64,
}

/// Whether a frame is a SaslHandshake request (its first two bytes are the API key).
pub fn is_handshake(frame: &[u8]) -> bool {
    frame.len() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::SaslHandshake as i16
}

/// How tokens travel once a mechanism is chosen.
enum Phase {
    /// Waiting for SaslHandshake (ApiVersions allowed once before it).
    Handshake { versions_answered: bool },
    /// SaslHandshake v0: raw size-prefixed tokens.
    RawTokens(SaslMechanism, Exchange),
    /// SaslHandshake v1: SaslAuthenticate requests.
    Requests(SaslMechanism, Exchange),
}

/// Drives one authentication. `first` is a SaslHandshake frame already read (a
/// re-authentication); `same_principal` is the principal a re-authentication must keep.
/// `None` means the connection must close (what to send has been queued).
pub(super) async fn run(
    ctx: &AuthContext,
    frames: &mut mpsc::Receiver<ReadFrame>,
    replies: &mpsc::Sender<Queued>,
    first: Option<ReadFrame>,
    same_principal: Option<&Principal>,
) -> Option<Authenticated> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(AUTHENTICATION_TIMEOUT_MS);
    let mut phase = Phase::Handshake {
        versions_answered: same_principal.is_some(),
    };
    let mut next = first;
    loop {
        let frame = match next.take() {
            Some(frame) => frame,
            None => match tokio::time::timeout_at(deadline, frames.recv()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(_) => {
                    close(
                        replies,
                        format!(
                            "authentication did not complete within {AUTHENTICATION_TIMEOUT_MS} ms"
                        ),
                    )
                    .await;
                    return None;
                }
            },
        };
        let read_at = frame.read_at;
        let bytes = frame.bytes.freeze();
        phase = match phase {
            Phase::RawTokens(mechanism, exchange) => {
                let step = exchange_step(ctx, mechanism, exchange, bytes).await;
                match raw_token(ctx, replies, mechanism, step, same_principal, read_at).await {
                    Flow::Continue(phase) => phase,
                    Flow::Done(outcome) => return outcome,
                }
            }
            phase => {
                let Ok(request) = decode_request_header(bytes) else {
                    close(
                        replies,
                        "an unreadable request before authentication".into(),
                    )
                    .await;
                    return None;
                };
                match next_phase(ctx, replies, phase, request, same_principal, read_at).await {
                    Flow::Continue(phase) => phase,
                    Flow::Done(outcome) => return outcome,
                }
            }
        };
    }
}

enum Flow {
    Continue(Phase),
    Done(Option<Authenticated>),
}

async fn next_phase(
    ctx: &AuthContext,
    replies: &mpsc::Sender<Queued>,
    phase: Phase,
    request: RequestFrame,
    same_principal: Option<&Principal>,
    read_at: Instant,
) -> Flow {
    let api_key = request.api_key;
    match (phase, api_key) {
        (
            Phase::Handshake {
                versions_answered: false,
            },
            ApiKey::ApiVersions,
        ) => {
            let session = Session {
                peer: ctx.peer,
                listener: Arc::clone(&ctx.listener),
                principal: Arc::new(Principal::anonymous()),
            };
            let reply = dispatch(&ctx.broker, request, &session);
            send(replies, reply, api_key, read_at).await;
            Flow::Continue(Phase::Handshake {
                versions_answered: true,
            })
        }
        (Phase::Handshake { .. }, ApiKey::SaslHandshake) => {
            handshake(ctx, replies, request, read_at).await
        }
        (Phase::Requests(mechanism, exchange), ApiKey::SaslAuthenticate) => {
            let Ok(body) = request.decode_body::<SaslAuthenticateRequest>() else {
                close(replies, "a malformed SaslAuthenticate request".into()).await;
                return Flow::Done(None);
            };
            let step = exchange_step(ctx, mechanism, exchange, body.auth_bytes).await;
            authenticate_reply(
                ctx,
                replies,
                &request,
                mechanism,
                step,
                same_principal,
                read_at,
            )
            .await
        }
        (_, other) => {
            close(
                replies,
                format!("{other:?} request before SASL authentication completed"),
            )
            .await;
            Flow::Done(None)
        }
    }
}

async fn handshake(
    ctx: &AuthContext,
    replies: &mpsc::Sender<Queued>,
    request: RequestFrame,
    read_at: Instant,
) -> Flow {
    let Ok(body) = request.decode_body::<SaslHandshakeRequest>() else {
        close(replies, "a malformed SaslHandshake request".into()).await;
        return Flow::Done(None);
    };
    let enabled: Vec<StrBytes> = ctx
        .settings
        .mechanisms
        .iter()
        .map(|m| StrBytes::from_static_str(m.name()))
        .collect();
    let chosen =
        SaslMechanism::parse(&body.mechanism).filter(|m| ctx.settings.mechanisms.contains(m));
    let response = SaslHandshakeResponse::default()
        .with_mechanisms(enabled)
        .with_error_code(match chosen {
            Some(_) => 0,
            None => code(KafkaError::UnsupportedSaslMechanism),
        });
    send_encoded(replies, &request, &response, read_at).await;
    match chosen {
        None => {
            close(
                replies,
                format!(
                    "SASL mechanism {:?} is not enabled on listener {}",
                    body.mechanism.as_str(),
                    ctx.listener.name
                ),
            )
            .await;
            Flow::Done(None)
        }
        Some(mechanism) if request.api_version == 0 => Flow::Continue(Phase::RawTokens(
            mechanism,
            Exchange::start(mechanism, &ctx.settings),
        )),
        Some(mechanism) => Flow::Continue(Phase::Requests(
            mechanism,
            Exchange::start(mechanism, &ctx.settings),
        )),
    }
}

/// One step of the exchange, off the async workers (PLAIN runs PBKDF2), after the
/// per-address limit on failures.
async fn exchange_step(
    ctx: &AuthContext,
    mechanism: SaslMechanism,
    mut exchange: Exchange,
    token: Bytes,
) -> Result<(Step, Exchange), AuthFailed> {
    let address = ctx.peer.ip();
    if let Admission::Delay { delay_ms, first } = ctx.failed_auth.admit(address, Instant::now()) {
        if first {
            tracing::warn!(
                peer = %ctx.peer,
                "slowing authentication from {address}: too many failed attempts in the last \
                 minute (each attempt now waits up to {MAX_DELAY_MS} ms)"
            );
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let broker = Arc::clone(&ctx.broker);
    let jwks = Arc::clone(&ctx.jwks);
    let stepped = tokio::task::spawn_blocking(move || {
        let verifiers = Verifiers {
            store: &broker.credentials,
            jwks: &jwks,
        };
        let step = exchange.step(&token, &verifiers);
        step.map(|s| (s, exchange))
    })
    .await
    .unwrap_or_else(|_| {
        Err(AuthFailed {
            message: format!(
                "Authentication with {} failed unexpectedly",
                mechanism.name()
            ),
        })
    });
    if stepped.is_err() {
        ctx.failed_auth.failed(address, Instant::now());
    }
    stepped
}

/// The outcome of a completed exchange: the principal, checked against the one a
/// re-authentication must keep.
/// The session lasts `connections.max.reauth.ms` or until the credential expires (an
/// OAuth token's `exp`), whichever comes first (Kafka's `ReauthInfo`); neither, forever.
fn completed(
    ctx: &AuthContext,
    principal: Principal,
    expires_at_ms: Option<u64>,
    same_principal: Option<&Principal>,
) -> Result<Authenticated, AuthFailed> {
    if same_principal.is_some_and(|p| *p != principal) {
        return Err(AuthFailed {
            message: "Cannot change principals during re-authentication".into(),
        });
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let credential_ms = expires_at_ms.map(|at| at.saturating_sub(now_ms));
    let reauth_ms = (ctx.settings.max_reauth_ms > 0).then_some(ctx.settings.max_reauth_ms);
    let lifetime_ms = match (credential_ms, reauth_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Authenticated {
        principal,
        expires: lifetime_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
        lifetime_ms: lifetime_ms.map_or(0, |ms| i64::try_from(ms).unwrap_or(i64::MAX)),
    })
}

#[allow(clippy::too_many_arguments)]
async fn authenticate_reply(
    ctx: &AuthContext,
    replies: &mpsc::Sender<Queued>,
    request: &RequestFrame,
    mechanism: SaslMechanism,
    step: Result<(Step, Exchange), AuthFailed>,
    same_principal: Option<&Principal>,
    read_at: Instant,
) -> Flow {
    let mut response = SaslAuthenticateResponse::default();
    let outcome = match step {
        Ok((Step::Challenge(challenge), exchange)) => {
            response.auth_bytes = Bytes::from(challenge);
            send_encoded(replies, request, &response, read_at).await;
            return Flow::Continue(Phase::Requests(mechanism, exchange));
        }
        Ok((
            Step::Done {
                reply,
                principal,
                expires_at_ms,
            },
            _,
        )) => {
            response.auth_bytes = Bytes::from(reply);
            completed(ctx, principal, expires_at_ms, same_principal)
        }
        Err(failed) => Err(failed),
    };
    match outcome {
        Ok(done) => {
            if request.api_version >= 1 {
                response.session_lifetime_ms = done.lifetime_ms;
            }
            send_encoded(replies, request, &response, read_at).await;
            super::AuthenticationCounts::count(&ctx.counts.succeeded);
            tracing::debug!(peer = %ctx.peer, principal = %done.principal, "authenticated with {}", mechanism.name());
            Flow::Done(Some(done))
        }
        Err(failed) => {
            response.error_code = code(KafkaError::SaslAuthenticationFailed);
            response.error_message = Some(StrBytes::from_string(failed.message.clone()));
            send_encoded(replies, request, &response, read_at).await;
            fail_later(ctx, replies, mechanism, &failed).await;
            Flow::Done(None)
        }
    }
}

/// One raw (handshake v0) token: a challenge or final token goes back as a bare
/// size-prefixed frame; a failure closes the connection (v0 has no error framing).
async fn raw_token(
    ctx: &AuthContext,
    replies: &mpsc::Sender<Queued>,
    mechanism: SaslMechanism,
    step: Result<(Step, Exchange), AuthFailed>,
    same_principal: Option<&Principal>,
    read_at: Instant,
) -> Flow {
    let done = match step {
        Ok((Step::Challenge(challenge), exchange)) => {
            send_raw(replies, &challenge, read_at).await;
            return Flow::Continue(Phase::RawTokens(mechanism, exchange));
        }
        Ok((
            Step::Done {
                reply,
                principal,
                expires_at_ms,
            },
            _,
        )) => completed(ctx, principal, expires_at_ms, same_principal).map(|done| (reply, done)),
        Err(failed) => Err(failed),
    };
    match done {
        Ok((reply, done)) => {
            if !reply.is_empty() {
                send_raw(replies, &reply, read_at).await;
            }
            super::AuthenticationCounts::count(&ctx.counts.succeeded);
            Flow::Done(Some(done))
        }
        Err(failed) => {
            fail_later(ctx, replies, mechanism, &failed).await;
            Flow::Done(None)
        }
    }
}

async fn fail_later(
    ctx: &AuthContext,
    replies: &mpsc::Sender<Queued>,
    mechanism: SaslMechanism,
    failed: &AuthFailed,
) {
    super::AuthenticationCounts::count(&ctx.counts.failed);
    tokio::time::sleep(Duration::from_millis(FAILED_AUTHENTICATION_DELAY_MS)).await;
    close(
        replies,
        format!(
            "SASL/{} authentication failed: {}",
            mechanism.name(),
            failed.message
        ),
    )
    .await;
}

async fn send(replies: &mpsc::Sender<Queued>, reply: Reply, api_key: ApiKey, read_at: Instant) {
    let queued = Queued {
        reply,
        reservation: None,
        api_key: api_key as i16,
        read_at,
    };
    let _ = replies.send(queued).await;
}

async fn send_encoded<T: proto_kafka::protocol::Encodable>(
    replies: &mpsc::Sender<Queued>,
    request: &RequestFrame,
    body: &T,
    read_at: Instant,
) {
    let frame = encode_response(
        request.api_key,
        request.api_version,
        request.correlation_id,
        body,
    )
    .map(OutFrame::from_bytes);
    send(replies, Reply::Ready(frame), request.api_key, read_at).await;
}

async fn send_raw(replies: &mpsc::Sender<Queued>, token: &[u8], read_at: Instant) {
    let mut frame = BytesMut::with_capacity(4 + token.len());
    frame.put_u32(token.len() as u32);
    frame.put_slice(token);
    let reply = Reply::Ready(Ok(OutFrame::from_bytes(frame.freeze())));
    send(replies, reply, ApiKey::SaslAuthenticate, read_at).await;
}

async fn close(replies: &mpsc::Sender<Queued>, reason: String) {
    send(
        replies,
        Reply::Close(reason),
        ApiKey::SaslAuthenticate,
        Instant::now(),
    )
    .await;
}
