//! Sockets: the accept loop with its connection limit, and per-connection tasks that read
//! size-prefixed frames within the configured limits, hand them to the broker in order and
//! write responses back in request order. The only module that touches sockets.

pub mod authenticate;
pub mod connection;
pub mod listener;
pub mod request_latency;
pub mod transport;

use std::sync::Arc;

/// What the network layer counts for operators: request latency per API (the SIGUSR1
/// report, the metrics endpoint) and connections (the metrics endpoint).
#[derive(Default)]
pub struct NetworkStats {
    pub latency: Arc<request_latency::RequestLatency>,
    pub connections: Arc<listener::ConnectionCounts>,
    pub authentication: Arc<AuthenticationCounts>,
}

/// Logins and TLS handshakes since the process started (relaxed counters; Kafka's
/// `successful-authentication-total` and `failed-authentication-total`).
#[derive(Debug, Default)]
pub struct AuthenticationCounts {
    pub succeeded: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub tls_handshakes_failed: std::sync::atomic::AtomicU64,
}

impl AuthenticationCounts {
    pub fn count(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub max_frame_bytes: usize,
    /// `ferry.max.request.bytes.without.records`: the largest frame of any API other than
    /// Produce. Such requests decode into structures up to ~90 times their size (a
    /// 100 MiB Metadata request naming 50 million topics would need ~9 GB), so they get a
    /// much smaller limit than record-carrying requests.
    pub max_frame_bytes_without_records: usize,
    /// Requests read ahead of their responses per connection.
    pub max_inflight_requests: usize,
    /// `connections.max.idle.ms`: a connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
}
