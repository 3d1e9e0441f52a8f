//! One client connection: reads frames, dispatches them in order, and writes responses in
//! request order from a separate task so that a slow response (long-poll fetch, durable
//! produce) never stops the next request from being read and started.
//!
//! Frames are read by their own task, up to `FRAMES_READ_AHEAD` ahead of the one being
//! dispatched, so that receiving the next request overlaps the handling of this one (for a
//! large Produce, the copy into the page cache) on another core.
//!
//! Memory bound: a frame's size is checked against `max_frame_bytes` before anything is
//! allocated. A frame larger than `UNRESERVED_FRAME_BYTES` has its bytes reserved from a
//! broker-wide semaphore (`queued.max.request.bytes`) until its handler's synchronous phase
//! is done; smaller frames are not reserved (a connection holds at most
//! `FRAMES_READ_AHEAD + 2` frames: one dispatching, the read-ahead, one arriving; so they are
//! bounded by `max.connections` × that many × `UNRESERVED_FRAME_BYTES`) and so never queue
//! behind large bodies that are still arriving. Waiting for a reservation and
//! waiting for body bytes are both bounded by `connections.max.idle.ms`, so a client that
//! announces a large frame and stalls loses its connection and its reservation.
//!
//! Responses waiting to be written are bounded per connection by
//! `MAX_QUEUED_RESPONSE_BYTES` (the reader stops reading requests until the client has read
//! earlier responses; one larger response may wait alone), and a client that reads nothing
//! for `connections.max.idle.ms` while responses wait is disconnected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error};

use super::authenticate::{self, AuthContext, Authenticated};
use super::request_latency::RequestLatency;
use super::transport::{flush_within, write_within, ResponseWrite, Transport};
use super::ConnectionLimits;
use crate::broker::dispatch::{dispatch, BoxFuture, Reply};
use crate::broker::Broker;
use crate::config::listeners::{BoundListener, SaslSettings};
use crate::logging::Escaped;
use crate::protocol::codec::EncodeError;
use crate::protocol::ferry_admin::API_KEY as FERRY_ADMIN_API_KEY;
use crate::protocol::frame::{Chunk, OutFrame};
use crate::protocol::{decode_request_header, DecodeError};
use crate::security::failed_auth::FailedAuthLimiter;
use crate::security::oauth::JwksCache;
use crate::security::{Principal, Session};
use proto_kafka::messages::ApiKey;

/// Frames up to this many bytes are read without a `queued.max.request.bytes` reservation.
pub const UNRESERVED_FRAME_BYTES: usize = 64 * 1024;

/// A connection's read buffer, created when its first request arrives: small requests
/// pipelined by a client arrive in few reads; a frame at least this large is read straight
/// into its own buffer. Per-connection memory is what `max.connections` multiplies, so the
/// buffers are sized for the common request, not the largest.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A connection's write buffer, created when its first response is ready: room for a
/// response with a copied file region (`COPIED_REGION_MAX_BYTES`) and its headers in one
/// send, and for a burst of small responses.
const WRITE_BUFFER_BYTES: usize = 32 * 1024;

/// Complete request frames one connection holds read ahead of the one being dispatched.
/// One is enough to overlap receiving with handling: profiled under W2 (1 MiB Produce
/// requests), the connection's one task spent 0.53 cores copying batches into the page cache
/// and 0.14 receiving the next request, one after the other.
const FRAMES_READ_AHEAD: usize = 1;

/// Encoded responses one connection may hold waiting to be written, in bytes. Beyond this
/// the connection reads no further requests until the client reads; a single response
/// larger than this (a fetch of up to `fetch.max.bytes`) waits alone.
pub const MAX_QUEUED_RESPONSE_BYTES: usize = 1024 * 1024;

/// File regions (the records of a Fetch response) up to this many bytes are read into the
/// write buffer and go out with the response's other bytes in one write; larger ones are
/// sent with `sendfile` after the buffer is flushed. A response of a few records (a
/// consumer that keeps up) used to go out as three sends (the buffered bytes before the
/// region, `sendfile`, the bytes after it), and over loopback each send wakes the client's
/// reading thread in the sender's own system call: a profile of W3's default-flush phase
/// (5,000 records/s) on the development VM had a quarter of the broker's CPU in sends and
/// wake-ups. Counted with `perf stat` during that phase, the broker's sends fell from 3.2
/// to 0.6-1.2 per record and its context switches from 2.0-2.4 to 1.2-1.8. The copy is
/// cheap at this size; catch-up reads of up to a partition's fetch size (1 MiB in
/// librdkafka) still go without one.
const COPIED_REGION_MAX_BYTES: usize = 16 * 1024;

/// How long a pending reply (a durable produce awaiting its fsync, a long-poll fetch, a
/// parked JoinGroup) may still complete once shutdown began; then the connection closes
/// and the client retries elsewhere. A durable produce completes within a journal round,
/// a long poll of librdkafka's default 500 ms within this.
const SHUTDOWN_GRACE_MS: u64 = 1_000;

/// Whether, and why, a connection is closing: the writer stops waiting for pending
/// replies at once when the peer is gone, or after `SHUTDOWN_GRACE_MS` at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// The client closed its side, or reading failed: nobody will read a reply.
    PeerGone,
    Shutdown,
}

/// Why reading a frame stopped.
#[derive(Debug)]
enum FrameError {
    TooLarge {
        frame_bytes: i64,
        max_frame_bytes: usize,
    },
    /// A frame before authentication completed larger than `sasl.server.max.receive.size`.
    TooLargeUnauthenticated {
        frame_bytes: usize,
        max_receive_bytes: usize,
    },
    Io(std::io::Error),
    /// No request started within `connections.max.idle.ms`.
    Idle,
    /// A frame's reservation was not granted within `connections.max.idle.ms`.
    MemoryWait {
        frame_bytes: usize,
    },
    /// A frame's body stopped arriving for `connections.max.idle.ms`.
    BodyStalled {
        frame_bytes: usize,
        received_bytes: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { frame_bytes, max_frame_bytes } => write!(
                f,
                "request frame of {frame_bytes} bytes exceeds socket.request.max.bytes={max_frame_bytes}"
            ),
            FrameError::TooLargeUnauthenticated { frame_bytes, max_receive_bytes } => write!(
                f,
                "frame of {frame_bytes} bytes before authentication completed exceeds \
                 sasl.server.max.receive.size={max_receive_bytes}"
            ),
            FrameError::Io(err) => write!(f, "read failed: {err}"),
            FrameError::Idle => write!(f, "idle for longer than connections.max.idle.ms"),
            FrameError::MemoryWait { frame_bytes } => write!(
                f,
                "request frame of {frame_bytes} bytes waited longer than connections.max.idle.ms \
                 for queued.max.request.bytes"
            ),
            FrameError::BodyStalled { frame_bytes, received_bytes } => write!(
                f,
                "request frame of {frame_bytes} bytes stalled after {received_bytes} bytes for \
                 longer than connections.max.idle.ms"
            ),
        }
    }
}

/// Reads one size-prefixed frame. `Ok(None)` is a clean end of stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &ConnectionLimits,
    memory: &Arc<Semaphore>,
    unauthenticated_max_bytes: &AtomicUsize,
) -> Result<Option<(BytesMut, Option<OwnedSemaphorePermit>)>, FrameError> {
    let mut size_bytes = [0u8; 4];
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    match tokio::time::timeout(idle, reader.read_exact(&mut size_bytes)).await {
        Err(_) => return Err(FrameError::Idle),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(err)) => return Err(FrameError::Io(err)),
        Ok(Ok(_)) => {}
    }
    let size = i32::from_be_bytes(size_bytes);
    let Ok(size) = usize::try_from(size) else {
        return Err(FrameError::TooLarge {
            frame_bytes: i64::from(size),
            max_frame_bytes: limits.max_frame_bytes,
        });
    };
    if size > limits.max_frame_bytes {
        return Err(FrameError::TooLarge {
            frame_bytes: size as i64,
            max_frame_bytes: limits.max_frame_bytes,
        });
    }
    let max_receive_bytes = unauthenticated_max_bytes.load(Ordering::Acquire);
    if size > max_receive_bytes {
        return Err(FrameError::TooLargeUnauthenticated {
            frame_bytes: size,
            max_receive_bytes,
        });
    }
    let permit = if size <= UNRESERVED_FRAME_BYTES {
        None
    } else {
        // max_frame_bytes <= queued.max.request.bytes (checked at startup) and size fits an
        // i32, so the permit request always fits and can always be granted eventually.
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        let acquire = Arc::clone(memory).acquire_many_owned(permits);
        match tokio::time::timeout(idle, acquire).await {
            Err(_) => return Err(FrameError::MemoryWait { frame_bytes: size }),
            Ok(Err(_)) => {
                return Err(FrameError::Io(std::io::Error::other(
                    "broker shutting down",
                )))
            }
            Ok(Ok(permit)) => Some(permit),
        }
    };
    // Pages are touched as bytes arrive, not up front.
    let mut frame = BytesMut::with_capacity(size);
    while frame.len() < size {
        let remaining = (size - frame.len()) as u64;
        let mut body = (&mut *reader).take(remaining);
        match tokio::time::timeout(idle, body.read_buf(&mut frame)).await {
            Err(_) => {
                return Err(FrameError::BodyStalled {
                    frame_bytes: size,
                    received_bytes: frame.len(),
                })
            }
            Ok(Ok(0)) => {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(FrameError::Io(err)),
        }
    }
    Ok(Some((frame, permit)))
}

/// A complete request frame on its way from the reading task to dispatch.
pub(super) struct ReadFrame {
    pub(super) bytes: BytesMut,
    /// Its share of `queued.max.request.bytes`, held until its handler's synchronous part
    /// is done.
    pub(super) permit: Option<OwnedSemaphorePermit>,
    /// When the last byte had been read, for `RequestLatency`.
    pub(super) read_at: Instant,
}

/// Reads frames and hands them on in order until the stream ends, a frame breaks a limit,
/// shutdown, or dispatch stops taking them.
/// Tells `closing` why it stopped: `PeerGone` at the end of the stream or on a read error
/// or a broken limit, `Shutdown` when the broker stops.
async fn read_frames<R: AsyncRead + Unpin>(
    read_half: R,
    limits: ConnectionLimits,
    (memory, unauthenticated_max_bytes): (Arc<Semaphore>, Arc<AtomicUsize>),
    peer: SocketAddr,
    frames: mpsc::Sender<ReadFrame>,
    mut shutdown: watch::Receiver<bool>,
    closing: Arc<watch::Sender<Closing>>,
) {
    // No buffer until the client has sent something: an idle connection holds none.
    let mut read_half = read_half;
    let Some(first) = first_byte(&mut read_half, &limits, peer, &mut shutdown, &closing).await
    else {
        return;
    };
    let first = [first];
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, (&first[..]).chain(read_half));
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, &limits, &memory, &unauthenticated_max_bytes) => frame,
            _ = shutdown.changed() => {
                closing.send_replace(Closing::Shutdown);
                return;
            }
        };
        let (bytes, permit) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                closing.send_replace(Closing::PeerGone);
                return;
            }
            Err(FrameError::Io(err)) => {
                debug!(%peer, "connection closed: {err}");
                closing.send_replace(Closing::PeerGone);
                return;
            }
            Err(err) => {
                crate::warn_peer!(peer, "closing connection: {err}");
                closing.send_replace(Closing::PeerGone);
                return;
            }
        };
        let read_at = Instant::now();
        let frame = ReadFrame {
            bytes,
            permit,
            read_at,
        };
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// Waits for the client's first byte, for at most `connections.max.idle.ms`, so that a
/// connection that sends nothing never allocates a read buffer. `None` when the connection
/// is done first (the reason is told to `closing`).
async fn first_byte<R: AsyncRead + Unpin>(
    read_half: &mut R,
    limits: &ConnectionLimits,
    peer: SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
    closing: &watch::Sender<Closing>,
) -> Option<u8> {
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let read = tokio::select! {
        read = tokio::time::timeout(idle, read_half.read_u8()) => read,
        _ = shutdown.changed() => {
            closing.send_replace(Closing::Shutdown);
            return None;
        }
    };
    match read {
        Ok(Ok(byte)) => return Some(byte),
        Ok(Err(err)) if err.kind() != std::io::ErrorKind::UnexpectedEof => {
            debug!(%peer, "connection closed: {err}");
        }
        Ok(Err(_)) => {}
        Err(_) => crate::warn_peer!(peer, "closing connection: {}", FrameError::Idle),
    }
    closing.send_replace(Closing::PeerGone);
    None
}

/// What a connection shares with the rest of the broker.
#[derive(Clone)]
pub struct Shared {
    pub broker: Arc<Broker>,
    /// The broker-wide budget of request bytes (`queued.max.request.bytes`).
    pub memory: Arc<Semaphore>,
    pub latency: Arc<RequestLatency>,
    /// Failed authentications per client address (`security::failed_auth`).
    pub failed_auth: Arc<FailedAuthLimiter>,
    pub authentication: Arc<super::AuthenticationCounts>,
}

/// What the listener knows of a connection before its first request: the listener, the
/// principal TLS established (`User:ANONYMOUS` without a client certificate) and, on a
/// SASL listener, its SASL settings.
pub struct ConnectionSecurity {
    pub listener: Arc<BoundListener>,
    pub principal: Principal,
    pub sasl: Option<Arc<SaslSettings>>,
    /// The listener's OAUTHBEARER keys.
    pub jwks: Arc<JwksCache>,
}

/// Serves one connection until the client closes it, an error closes it, or shutdown.
pub async fn serve<T: Transport>(
    stream: T,
    peer: SocketAddr,
    shared: Shared,
    limits: ConnectionLimits,
    security: ConnectionSecurity,
    mut shutdown: watch::Receiver<bool>,
) {
    let Shared {
        broker,
        memory,
        latency,
        failed_auth,
        authentication,
    } = shared;
    let (read_half, write_half) = stream.split();
    let unauthenticated_max_bytes = Arc::new(AtomicUsize::new(
        security
            .sasl
            .as_ref()
            .map_or(usize::MAX, |s| s.max_receive_bytes),
    ));
    let (replies, pending) = mpsc::channel::<Queued>(limits.max_inflight_requests);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let (closing, closing_seen) = watch::channel(Closing::No);
    let closing = Arc::new(closing);
    let writer = tokio::spawn(write_replies(
        write_half,
        pending,
        peer,
        idle,
        latency,
        closing_seen,
    ));
    let (frames_read, mut frames) = mpsc::channel::<ReadFrame>(FRAMES_READ_AHEAD);
    let reading = tokio::spawn(read_frames(
        read_half,
        limits,
        (memory, Arc::clone(&unauthenticated_max_bytes)),
        peer,
        frames_read,
        shutdown.clone(),
        Arc::clone(&closing),
    ));
    let response_budget = Arc::new(Semaphore::new(MAX_QUEUED_RESPONSE_BYTES));
    let mut session = Session {
        peer,
        listener: security.listener,
        principal: Arc::new(security.principal),
    };
    let auth = security.sasl.map(|settings| AuthContext {
        broker: Arc::clone(&broker),
        settings,
        failed_auth,
        counts: authentication,
        peer,
        listener: Arc::clone(&session.listener),
        jwks: security.jwks,
    });
    // SASL: nothing but ApiVersions and the exchange until the client has authenticated.
    let mut expires_at = None;
    let mut authenticated = true;
    if let Some(auth) = &auth {
        match authenticate::run(auth, &mut frames, &replies, None, None).await {
            Some(Authenticated {
                principal, expires, ..
            }) => {
                session.principal = Arc::new(principal);
                expires_at = expires;
                unauthenticated_max_bytes.store(usize::MAX, Ordering::Release);
            }
            None => authenticated = false,
        }
    }
    while let Some(frame) = if authenticated {
        frames.recv().await
    } else {
        None
    } {
        // Re-authentication is possible while the session has an end (Kafka's rule).
        if let Some(auth) = auth.as_ref().filter(|_| expires_at.is_some()) {
            if authenticate::is_handshake(&frame.bytes) {
                // KIP-368 re-authentication: same mechanism family, same principal.
                let again = authenticate::run(
                    auth,
                    &mut frames,
                    &replies,
                    Some(frame),
                    Some(&session.principal),
                );
                match again.await {
                    Some(renewed) => {
                        expires_at = renewed.expires;
                        continue;
                    }
                    None => break,
                }
            }
        }
        if expires_at.is_some_and(|at| Instant::now() >= at) {
            crate::warn_peer!(
                peer,
                "closing connection of {}: its SASL session expired (connections.max.reauth.ms) \
                 and the client did not re-authenticate",
                session.principal
            );
            break;
        }
        let ReadFrame {
            bytes,
            permit,
            read_at,
        } = frame;
        let bytes = bytes.freeze();
        let (api_key, reply) = match decode_request_header(bytes.clone()) {
            Ok(request) => {
                let frame_bytes = request.body.len();
                if request.api_key != ApiKey::Produce
                    && frame_bytes > limits.max_frame_bytes_without_records
                {
                    crate::warn_peer!(
                        peer,
                        "closing connection: {:?} request body of {frame_bytes} bytes exceeds \
                         ferry.max.request.bytes.without.records={}",
                        request.api_key,
                        limits.max_frame_bytes_without_records
                    );
                    break;
                }
                (request.api_key as i16, dispatch(&broker, request, &session))
            }
            // Ferry's own admin API (the mirror's control plane) shares the Kafka port.
            Err(DecodeError::UnknownApiKey { api_key, .. }) if api_key == FERRY_ADMIN_API_KEY => {
                if bytes.len() > limits.max_frame_bytes_without_records {
                    crate::warn_peer!(
                        peer,
                        "closing connection: a Ferry admin request of {} bytes exceeds \
                         ferry.max.request.bytes.without.records={}",
                        bytes.len(),
                        limits.max_frame_bytes_without_records
                    );
                    break;
                }
                (
                    api_key,
                    crate::broker::dispatch::ferry_admin(&broker, bytes, &session),
                )
            }
            Err(err) => {
                crate::warn_peer!(peer, "closing connection: {}", Escaped(&err.to_string()));
                break;
            }
        };
        drop(permit);
        let close = matches!(reply, Reply::Close(_));
        // Wait until the client has read enough earlier responses (the writer releases
        // these permits as it writes, or all of them when it stops).
        let reservation = match &reply {
            Reply::Ready(Ok(frame)) => {
                let permits = frame.len().clamp(1, MAX_QUEUED_RESPONSE_BYTES) as u32;
                let acquire = Arc::clone(&response_budget).acquire_many_owned(permits);
                tokio::select! {
                    acquired = acquire => match acquired {
                        Ok(reservation) => Some(reservation),
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
            _ => None,
        };
        let queued = Queued {
            reply,
            reservation,
            api_key,
            read_at,
        };
        if replies.send(queued).await.is_err() || close {
            break;
        }
    }
    // The reader may be waiting for a frame that is not coming; the connection is done.
    reading.abort();
    let why = if *shutdown.borrow() {
        Closing::Shutdown
    } else {
        Closing::PeerGone
    };
    closing.send_if_modified(|state| {
        let unset = *state == Closing::No;
        if unset {
            *state = why;
        }
        unset
    });
    drop(replies);
    if let Err(err) = writer.await {
        error!(%peer, "connection writer task failed: {err}");
    }
}

/// A reply on its way to the writer.
pub(super) struct Queued {
    pub(super) reply: Reply,
    /// Its share of the response budget, released once written.
    pub(super) reservation: Option<OwnedSemaphorePermit>,
    /// What the request was and when its frame had been read, for `RequestLatency`.
    pub(super) api_key: i16,
    pub(super) read_at: Instant,
}

/// Writes a frame's chunks in order: bytes through the buffer, small file regions read
/// into it (see `COPIED_REGION_MAX_BYTES`), larger ones with `sendfile` after flushing the
/// buffer. `scratch` is a reused buffer for the small regions.
async fn write_frame_within<W: ResponseWrite>(
    writer: &mut BufWriter<W>,
    frame: &OutFrame,
    scratch: &mut Vec<u8>,
    idle: Duration,
) -> std::io::Result<()> {
    for chunk in &frame.chunks {
        match chunk {
            Chunk::Bytes(bytes) => write_within(writer, bytes, idle).await?,
            Chunk::File(region) if region.len <= COPIED_REGION_MAX_BYTES => {
                scratch.clear();
                region.read_into(scratch)?;
                write_within(writer, scratch, idle).await?;
            }
            Chunk::File(region) => W::send_region(writer, region, scratch, idle).await?,
        }
    }
    Ok(())
}

fn log_write_error(peer: SocketAddr, err: &std::io::Error) {
    if err.kind() == std::io::ErrorKind::TimedOut {
        crate::warn_peer!(peer, "closing connection: {err}");
    } else {
        debug!(%peer, "write failed: {err}");
    }
}

/// Awaits a pending reply (a produce waiting for its fsync, a long-poll fetch). If it is
/// not ready at once, the responses already buffered are flushed first: they are
/// complete, and holding them until this one resolves would delay every earlier
/// acknowledgement by up to a flush interval or `max_wait_ms`.
///
/// The wait ends early, closing the connection, when the client is gone (it closed its side
/// while a long poll waited: its slot and memory come back at once), after
/// `SHUTDOWN_GRACE_MS` once shutdown began, or after `connections.max.idle.ms` without an
/// answer (a client may ask for a wait of weeks).
async fn await_flushing<W: ResponseWrite>(
    mut future: BoxFuture<Result<OutFrame, EncodeError>>,
    writer: &mut BufWriter<W>,
    idle: Duration,
    closing: &mut watch::Receiver<Closing>,
) -> std::io::Result<Result<OutFrame, EncodeError>> {
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    if let Poll::Ready(frame) = first_poll {
        return Ok(frame);
    }
    if !writer.buffer().is_empty() {
        flush_within(writer, idle).await?;
    }
    tokio::select! {
        frame = future => Ok(frame),
        why = closed(closing) => Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why)),
        _ = tokio::time::sleep(idle) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "a pending reply took longer than connections.max.idle.ms",
        )),
    }
}

/// Resolves when a pending reply should no longer be awaited: at once when the peer is
/// gone, `SHUTDOWN_GRACE_MS` after shutdown began.
async fn closed(closing: &mut watch::Receiver<Closing>) -> &'static str {
    let state = closing.wait_for(|c| *c != Closing::No).await.map(|c| *c);
    match state {
        Ok(Closing::Shutdown) => {
            tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS)).await;
            "the broker is shutting down"
        }
        Ok(_) => "the client closed the connection",
        // The connection's reader is gone without a word: nobody reads replies.
        Err(_) => "the connection closed",
    }
}

/// Writes responses in request order, awaiting pending ones, batching writes while more
/// responses are queued.
async fn write_replies<W: ResponseWrite>(
    write_half: W,
    mut pending: mpsc::Receiver<Queued>,
    peer: SocketAddr,
    idle: Duration,
    latency: Arc<RequestLatency>,
    mut closing: watch::Receiver<Closing>,
) {
    // No buffers until the first response: a connection that asks nothing holds none.
    let Some(first) = pending.recv().await else {
        let mut write_half = write_half;
        let _ = tokio::time::timeout(idle, write_half.shutdown()).await;
        return;
    };
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write_half);
    let mut scratch = Vec::new();
    let mut next = Some(first);
    loop {
        let queued = match next.take() {
            Some(queued) => queued,
            None => match pending.recv().await {
                Some(queued) => queued,
                None => break,
            },
        };
        let frame = match queued.reply {
            Reply::Ready(frame) => frame,
            Reply::Pending(future) => {
                match await_flushing(future, &mut writer, idle, &mut closing).await {
                    Ok(frame) => frame,
                    Err(err) => {
                        log_write_error(peer, &err);
                        return;
                    }
                }
            }
            Reply::NoResponse => continue,
            Reply::Close(reason) => {
                crate::warn_peer!(peer, "closing connection: {}", Escaped(&reason));
                break;
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                error!(%peer, "closing connection: {err}");
                break;
            }
        };
        if let Err(err) = write_frame_within(&mut writer, &frame, &mut scratch, idle).await {
            log_write_error(peer, &err);
            return;
        }
        drop(queued.reservation);
        let took_us = u64::try_from(queued.read_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        latency.record(queued.api_key, took_us);
        if pending.is_empty() {
            if let Err(err) = flush_within(&mut writer, idle).await {
                log_write_error(peer, &err);
                return;
            }
        }
    }
    if flush_within(&mut writer, idle).await.is_ok() {
        let _ = tokio::time::timeout(idle, writer.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::protocol::frame::FileRegion;

    /// While dispatch takes nothing, the reading task holds at most `FRAMES_READ_AHEAD`
    /// frames in the channel plus the one it waits to hand on: large frames beyond that
    /// stay unread in the socket and reserve none of `queued.max.request.bytes`.
    #[tokio::test]
    async fn frames_read_ahead_of_a_stalled_dispatch_are_bounded() {
        const FRAME_BYTES: usize = UNRESERVED_FRAME_BYTES + 1;
        const FRAMES_SENT: usize = FRAMES_READ_AHEAD + 4;
        let memory_bytes = FRAME_BYTES * FRAMES_SENT;
        let memory = Arc::new(Semaphore::new(memory_bytes));
        let limits = ConnectionLimits {
            max_frame_bytes: FRAME_BYTES,
            max_frame_bytes_without_records: FRAME_BYTES,
            max_inflight_requests: 8,
            idle_timeout_ms: 10_000,
        };
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (frames_read, mut frames) = mpsc::channel(FRAMES_READ_AHEAD);
        let (_shutdown, shutdown_seen) = watch::channel(false);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (closing, _closing_seen) = watch::channel(Closing::No);
        let reading = tokio::spawn(read_frames(
            server,
            limits,
            (Arc::clone(&memory), Arc::new(AtomicUsize::new(usize::MAX))),
            peer,
            frames_read,
            shutdown_seen,
            Arc::new(closing),
        ));
        let sending = tokio::spawn(async move {
            let mut frame = (FRAME_BYTES as i32).to_be_bytes().to_vec();
            frame.resize(4 + FRAME_BYTES, 7);
            for _ in 0..FRAMES_SENT {
                client.write_all(&frame).await?;
            }
            Ok::<_, std::io::Error>(client)
        });
        let held = FRAMES_READ_AHEAD + 1;
        let reserved = || memory_bytes - memory.available_permits();
        for _ in 0..200 {
            if reserved() >= held * FRAME_BYTES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            reserved(),
            held * FRAME_BYTES,
            "frames read ahead of dispatch"
        );
        assert!(!sending.is_finished(), "the rest must wait in the socket");

        // Taking frames lets the rest through, in order and whole.
        for _ in 0..FRAMES_SENT {
            let frame = frames.recv().await.expect("every frame is handed on");
            assert_eq!(frame.bytes.len(), FRAME_BYTES);
        }
        drop(sending.await.unwrap().unwrap());
        reading.await.unwrap();
        assert!(frames.recv().await.is_none());
    }

    /// A frame of bytes around a small region (copied into the buffer) and a large one
    /// (sent with `sendfile`) arrives byte for byte as `OutFrame::to_vec` reads it.
    #[tokio::test]
    async fn small_regions_are_copied_large_ones_sent_and_the_order_kept() {
        let mut file = tempfile::tempfile().unwrap();
        let contents: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&contents).unwrap();
        let file = Arc::new(file);
        let region = |position: u64, len: usize| {
            Chunk::File(FileRegion {
                file: Arc::clone(&file),
                position,
                len,
            })
        };
        let frame = OutFrame {
            chunks: vec![
                Chunk::Bytes(Bytes::from_static(b"header")),
                region(7, 100),
                Chunk::Bytes(Bytes::from_static(b"between")),
                region(1_000, COPIED_REGION_MAX_BYTES + 1),
                region(150_000, COPIED_REGION_MAX_BYTES),
                Chunk::Bytes(Bytes::from_static(b"trailer")),
            ],
        };
        let expected = frame.to_vec().unwrap();
        assert_eq!(&expected[6..106], &contents[7..107]);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, (server, _)) = (client.unwrap(), accepted.unwrap());
        let (_read_half, write_half) = server.into_split();
        let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
        let mut scratch = Vec::new();
        let idle = Duration::from_secs(10);
        let reading = async {
            let mut received = vec![0u8; expected.len()];
            client.read_exact(&mut received).await.map(|_| received)
        };
        let writing = async {
            write_frame_within(&mut writer, &frame, &mut scratch, idle).await?;
            flush_within(&mut writer, idle).await
        };
        let (received, written) = tokio::join!(reading, writing);
        written.unwrap();
        assert_eq!(received.unwrap(), expected);
    }
}
