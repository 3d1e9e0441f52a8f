//! The accept loops, one per listener (plain or TLS, with or without SASL): enforces `max.connections`, backs off on accept errors (such as running
//! out of file descriptors), and stops accepting on shutdown, then waits for open
//! connections to finish their in-flight work. It counts the connections it serves
//! (`ConnectionCounts`, read by the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{error, info, warn};

use super::connection::{self, ConnectionSecurity, Shared};
use super::{ConnectionLimits, NetworkStats};
use crate::broker::Broker;
use crate::config::listeners::{BoundListener, SaslSettings};
use crate::security::failed_auth::FailedAuthLimiter;
use crate::security::oauth::JwksCache;
use crate::security::tls::{PrincipalMapper, TlsReloader};
use crate::security::Principal;

/// Longest pause after repeated accept failures.
const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;
/// How long shutdown waits for connections to finish.
const DRAIN_TIMEOUT_MS: u64 = 5_000;
/// How often memory freed by closed connections is given back to the operating system.
const RELEASE_MEMORY_INTERVAL_MS: u64 = 5_000;

/// Client connections served since the process started and open now (relaxed counters).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    accepted: AtomicU64,
    open: AtomicU64,
}

impl ConnectionCounts {
    /// Connections given a slot since the process started (those refused at
    /// `max.connections` are not counted).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections being served now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a connection as accepted and open until the returned guard drops.
    fn opened(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }
}

/// One open connection in `ConnectionCounts`; dropping it (the connection's task ended,
/// even by a panic) counts it closed.
struct OpenConnection(Arc<ConnectionCounts>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Gives free heap memory back to the operating system (glibc's `malloc_trim`, which also
/// releases free pages in the middle of the heap). glibc keeps what thousands of closed
/// connections freed in its arenas otherwise: opening and closing 2,000 connections nine
/// times left the broker at about 300 MB RSS (docs/performance.md).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every `RELEASE_MEMORY_INTERVAL_MS`, if connections closed since the last look, releases
/// the memory they freed (on a blocking thread: a trim walks the whole heap).
async fn release_memory_after_closes(closed: Arc<AtomicU64>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(RELEASE_MEMORY_INTERVAL_MS));
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = closed.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
    }
}

/// One listener ready to accept: its socket, what it advertises and its security.
pub struct ListenerSetup {
    pub socket: TcpListener,
    pub security: ListenerSecurity,
}

/// What a listener's connections are served with.
pub struct ListenerSecurity {
    pub bound: Arc<BoundListener>,
    /// TLS (SSL and SASL_SSL listeners).
    pub tls: Option<Arc<TlsReloader>>,
    /// `ssl.principal.mapping.rules` (SSL listeners: the principal is the certificate's).
    pub principal_mapper: Option<Arc<PrincipalMapper>>,
    pub sasl: Option<Arc<SaslSettings>>,
    /// OAUTHBEARER keys, shared by the listener's connections.
    pub jwks: Arc<JwksCache>,
}

/// How long a TLS handshake may take before the connection is dropped (bounded by
/// `connections.max.idle.ms` too): a client that opens a connection and stalls in the
/// handshake holds a slot for at most this long.
const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// How often TLS listeners look for changed certificate and key files.
const TLS_RELOAD_CHECK_MS: u64 = 5_000;

/// Everything an accept loop shares with the others.
#[derive(Clone)]
struct AcceptShared {
    connection: Shared,
    connections: Arc<Semaphore>,
    counts: Arc<ConnectionCounts>,
    closed: Arc<AtomicU64>,
    limits: ConnectionLimits,
    max_connections: usize,
}

/// Accepts connections on every listener until `shutdown` fires, then waits for open
/// connections to finish.
pub async fn run(
    listeners: Vec<ListenerSetup>,
    broker: Arc<Broker>,
    stats: Arc<NetworkStats>,
    limits: ConnectionLimits,
    max_connections: usize,
    queued_max_request_bytes: usize,
    shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(max_connections));
    let shared = AcceptShared {
        connection: Shared {
            broker,
            memory: Arc::new(Semaphore::new(
                queued_max_request_bytes.min(Semaphore::MAX_PERMITS),
            )),
            latency: Arc::clone(&stats.latency),
            failed_auth: Arc::new(FailedAuthLimiter::default()),
            authentication: Arc::clone(&stats.authentication),
        },
        connections: Arc::clone(&connections),
        counts: Arc::clone(&stats.connections),
        closed: Arc::new(AtomicU64::new(0)),
        limits,
        max_connections,
    };
    let releasing = tokio::spawn(release_memory_after_closes(
        Arc::clone(&shared.closed),
        shutdown.clone(),
    ));
    let mut loops = Vec::new();
    for setup in listeners {
        if let Some(tls) = &setup.security.tls {
            let name = setup.security.bound.name.clone();
            loops.push(tokio::spawn(reload_tls(
                Arc::clone(tls),
                name,
                shutdown.clone(),
            )));
        }
        loops.push(tokio::spawn(accept_loop(
            setup,
            shared.clone(),
            shutdown.clone(),
        )));
    }
    for task in loops {
        if let Err(err) = task.await {
            error!("accept loop failed: {err}");
        }
    }
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(
        Duration::from_millis(DRAIN_TIMEOUT_MS),
        connections.acquire_many(all),
    )
    .await;
    if drained.is_err() {
        warn!("some connections were still busy at shutdown");
    }
    releasing.abort();
}

/// Re-reads a TLS listener's certificate and key files when they change, so certificates
/// can be rotated without a restart (new connections use the new ones).
async fn reload_tls(tls: Arc<TlsReloader>, listener: String, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(TLS_RELOAD_CHECK_MS));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let tls = Arc::clone(&tls);
        match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
            Ok(Ok(true)) => info!(listener = %listener, "TLS certificate reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => error!(
                listener = %listener,
                "TLS files changed but cannot be used; keeping the previous certificate: {err}"
            ),
            Err(err) => error!("TLS reload failed: {err}"),
        }
    }
}

/// Accepts connections on one listener until `shutdown` fires.
async fn accept_loop(
    setup: ListenerSetup,
    shared: AcceptShared,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff_ms = 5;
    let ListenerSetup { socket, security } = setup;
    let setup = Arc::new(security);
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff_ms = 5;
                pair
            }
            Err(err) => {
                error!("accept failed: {err}; retrying in {backoff_ms} ms");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(ACCEPT_BACKOFF_MAX_MS);
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            crate::warn_peer!(
                peer,
                "refusing connection: max.connections={} reached",
                shared.max_connections
            );
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let open = shared.counts.opened();
        let setup = Arc::clone(&setup);
        tokio::spawn(async move {
            serve_stream(stream, peer, &setup, &shared, shutdown).await;
            drop(permit);
            drop(open);
            shared.closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Stop accepting at once: a listening socket left open while connections drain would
    // still complete clients' TCP handshakes, only to reset them when it closes.
    drop(socket);
}

/// Runs a connection: plain, or TLS after its handshake.
async fn serve_stream(
    stream: TcpStream,
    peer: SocketAddr,
    setup: &ListenerSecurity,
    shared: &AcceptShared,
    shutdown: watch::Receiver<bool>,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "cannot set TCP_NODELAY: {err}");
    }
    let security = |principal| ConnectionSecurity {
        listener: Arc::clone(&setup.bound),
        principal,
        sasl: setup.sasl.clone(),
        jwks: Arc::clone(&setup.jwks),
    };
    let Some(tls) = &setup.tls else {
        let security = security(Principal::anonymous());
        connection::serve(
            stream,
            peer,
            shared.connection.clone(),
            shared.limits,
            security,
            shutdown,
        )
        .await;
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let timeout_ms = TLS_HANDSHAKE_TIMEOUT_MS.min(shared.limits.idle_timeout_ms);
    let stream = match tokio::time::timeout(
        Duration::from_millis(timeout_ms),
        acceptor.accept(stream),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            super::AuthenticationCounts::count(
                &shared.connection.authentication.tls_handshakes_failed,
            );
            crate::warn_peer!(peer, "closing connection: TLS handshake failed: {err}");
            return;
        }
        Err(_) => {
            super::AuthenticationCounts::count(
                &shared.connection.authentication.tls_handshakes_failed,
            );
            crate::warn_peer!(
                peer,
                "closing connection: TLS handshake took longer than {timeout_ms} ms"
            );
            return;
        }
    };
    // On SASL_SSL the principal comes from SASL; on SSL from the client certificate.
    let principal = match (&setup.sasl, &setup.principal_mapper) {
        (None, Some(mapper)) => {
            match crate::security::tls::principal_of(stream.get_ref().1.peer_certificates(), mapper)
            {
                Ok(principal) => principal,
                Err(reason) => {
                    crate::warn_peer!(peer, "closing connection: {reason}");
                    return;
                }
            }
        }
        _ => Principal::anonymous(),
    };
    connection::serve(
        stream,
        peer,
        shared.connection.clone(),
        shared.limits,
        security(principal),
        shutdown,
    )
    .await;
}
