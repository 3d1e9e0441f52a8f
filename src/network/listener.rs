//! The accept loop: enforces `max.connections`, backs off on accept errors (such as running
//! out of file descriptors), and stops accepting on shutdown, then waits for open
//! connections to finish their in-flight work. It counts the connections it serves
//! (`ConnectionCounts`, read by the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{error, warn};

use super::connection::{self, Shared};
use super::{ConnectionLimits, NetworkStats};
use crate::broker::Broker;

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

/// Accepts connections until `shutdown` fires.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    stats: Arc<NetworkStats>,
    limits: ConnectionLimits,
    max_connections: usize,
    queued_max_request_bytes: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(max_connections));
    let shared = Shared {
        broker,
        memory: Arc::new(Semaphore::new(
            queued_max_request_bytes.min(Semaphore::MAX_PERMITS),
        )),
        latency: Arc::clone(&stats.latency),
    };
    let closed = Arc::new(AtomicU64::new(0));
    let releasing = tokio::spawn(release_memory_after_closes(
        Arc::clone(&closed),
        shutdown.clone(),
    ));
    let mut backoff_ms = 5;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
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
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            crate::warn_peer!(
                peer,
                "refusing connection: max.connections={max_connections} reached"
            );
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let closed = Arc::clone(&closed);
        let open = stats.connections.opened();
        tokio::spawn(async move {
            connection::serve(stream, peer, shared, limits, shutdown).await;
            drop(permit);
            drop(open);
            closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Stop accepting at once: a listening socket left open while connections drain would
    // still complete clients' TCP handshakes, only to reset them when it closes.
    drop(listener);
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
