//! Composition root: binds the listener, opens the broker (recovering its logs), runs the
//! accept loop and background work, and performs a clean shutdown on SIGTERM or SIGINT.
//! With `ferry.metrics.listen` set it also serves Prometheus metrics (`metrics`).
//! SIGUSR1 logs the fsyncs and the request latency per API since the previous SIGUSR1 (see
//! `network::request_latency`, `storage::fsync`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::broker::topics::CloseOutcome;
use crate::broker::Broker;
use crate::config::listeners::{BoundListener, SaslMechanism};
use crate::config::BrokerConfig;
use crate::metrics;
use crate::network::listener::{ListenerSecurity, ListenerSetup};
use crate::network::request_latency::{ReportBaseline, RequestLatency};
use crate::network::{listener, ConnectionLimits, NetworkStats};
use crate::security::credentials::{self, CredentialStore};
use crate::security::tls::{PrincipalMapper, TlsReloader};
use crate::storage::{fsync, StorageError};

/// Why the server could not start or stop cleanly.
#[derive(Debug)]
pub enum ServerError {
    Bind {
        address: String,
        source: std::io::Error,
    },
    Storage(StorageError),
    Runtime(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { address, source } => {
                write!(f, "cannot listen on {address}: {source}")
            }
            ServerError::Storage(err) => write!(f, "{err}"),
            ServerError::Runtime(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// SIGTERM and SIGINT, caught from before the broker says it is ready: a signal sent the
/// moment the ready line appears (a supervisor, a test) must start a clean shutdown, not
/// kill the process with the signal's default action.
struct TerminationSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl TerminationSignals {
    fn install() -> Result<TerminationSignals, ServerError> {
        use tokio::signal::unix::{signal, SignalKind};
        let failed =
            |e: std::io::Error| ServerError::Runtime(format!("cannot handle signals: {e}"));
        Ok(TerminationSignals {
            term: signal(SignalKind::terminate()).map_err(failed)?,
            int: signal(SignalKind::interrupt()).map_err(failed)?,
        })
    }

    /// Resolves when the process receives SIGTERM or SIGINT.
    async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => info!("received SIGTERM"),
            _ = self.int.recv() => info!("received SIGINT"),
        }
    }
}

/// Logs the number of fsyncs and one line per API with the request latency percentiles
/// since the previous report (each line carries the report's number, counting from 1),
/// each time the process receives SIGUSR1 (`usr1`, installed before the broker says it is
/// ready, so an early signal cannot kill the process), until `stopped` fires.
async fn report_latency_on_signal(
    latency: Arc<RequestLatency>,
    mut usr1: tokio::signal::unix::Signal,
    mut stopped: watch::Receiver<bool>,
) {
    let mut fsyncs_before = fsync::fsyncs_so_far();
    let mut baseline = ReportBaseline::default();
    for report in 1u64.. {
        tokio::select! {
            _ = usr1.recv() => {}
            _ = stopped.changed() => return,
        }
        let fsyncs = fsync::fsyncs_so_far();
        info!(
            report,
            fsyncs = fsyncs - fsyncs_before,
            "fsyncs since the previous report"
        );
        fsyncs_before = fsyncs;
        let apis = latency.report_since(&mut baseline);
        if apis.is_empty() {
            info!(
                report,
                "request latency since the previous report: no requests"
            );
        }
        for api in apis {
            info!(
                report,
                api = %api.api_name(),
                requests = api.requests,
                p50_us = api.p50_us,
                p99_us = api.p99_us,
                p999_us = api.p999_us,
                max_us = api.max_us,
                "request latency since the previous report"
            );
        }
    }
}

/// A write past the process's file size limit (RLIMIT_FSIZE) raises SIGXFSZ, whose default
/// action kills the process. Ignored, the write fails with EFBIG instead, which the storage
/// layer handles like a full disk: the write is undone and the producer gets
/// KAFKA_STORAGE_ERROR.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; it is
    // done once at startup before any thread writes files.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Binds the metrics endpoint's address, if one is configured, and logs where it serves.
async fn bind_metrics(address: Option<SocketAddr>) -> Result<Option<TcpListener>, ServerError> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            address: format!("{address} (ferry.metrics.listen)"),
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::Runtime(e.to_string()))?;
    info!(metrics_listen = %bound, "serving Prometheus metrics on http://{bound}/metrics");
    Ok(Some(listener))
}

/// Binds every listener and builds its TLS configuration; an unusable certificate or
/// key stops startup naming the key.
async fn bind_listeners(config: &BrokerConfig) -> Result<Vec<ListenerSetup>, ServerError> {
    let mut setups = Vec::new();
    for listener in &config.listeners {
        let socket =
            TcpListener::bind(listener.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    address: format!("{} (listener {})", listener.bind, listener.name),
                    source,
                })?;
        let local = socket
            .local_addr()
            .map_err(|e| ServerError::Runtime(e.to_string()))?;
        let (tls, principal_mapper) = match &listener.tls {
            None => (None, None),
            Some(settings) => {
                let reloader = TlsReloader::new(settings.clone()).map_err(|e| {
                    ServerError::Runtime(format!("listener {}: {e}", listener.name))
                })?;
                let mapper =
                    PrincipalMapper::parse(&settings.principal_mapping_rules).map_err(|e| {
                        ServerError::Runtime(format!("listener {}: {e}", listener.name))
                    })?;
                (Some(Arc::new(reloader)), Some(Arc::new(mapper)))
            }
        };
        setups.push(ListenerSetup {
            socket,
            security: ListenerSecurity {
                bound: Arc::new(listener.bound_at(local)),
                tls,
                principal_mapper,
                sasl: listener.sasl.clone().map(Arc::new),
                jwks: Arc::default(),
            },
        });
    }
    Ok(setups)
}

/// Opens the SCRAM credential store and creates the bootstrap users
/// (`ferry.sasl.bootstrap.users.file`, `FERRY_SASL_BOOTSTRAP_USERS`).
fn open_credentials(config: &BrokerConfig) -> Result<Arc<CredentialStore>, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ServerError::Runtime(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let store =
        CredentialStore::open(&config.data_dir).map_err(|e| ServerError::Runtime(e.to_string()))?;
    let mut sources = Vec::new();
    if let Some(path) = &config.sasl_bootstrap_users_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerError::Runtime(format!(
                "invalid configuration ferry.sasl.bootstrap.users.file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        sources.push(("ferry.sasl.bootstrap.users.file", text));
    }
    if let Ok(text) = std::env::var("FERRY_SASL_BOOTSTRAP_USERS") {
        sources.push(("FERRY_SASL_BOOTSTRAP_USERS", text));
    }
    for (source, text) in sources {
        let created = credentials::bootstrap(&store, &text)
            .map_err(|e| ServerError::Runtime(format!("{source}: {e}")))?;
        for user in created {
            info!(user = %user, "created SCRAM credentials for bootstrap user {user} ({source})");
        }
    }
    let password_logins = config.listeners.iter().any(|l| {
        l.sasl.as_ref().is_some_and(|s| {
            s.mechanisms
                .iter()
                .any(|m| *m != SaslMechanism::OAuthBearer)
        })
    });
    if password_logins && store.describe().is_empty() {
        warn!(
            "a SASL listener takes passwords but there are no users yet, so nobody can log \
             in there: give ferry.sasl.bootstrap.users.file or FERRY_SASL_BOOTSTRAP_USERS \
             (user:password lines), or create users with `ferry users set-password` through \
             another listener"
        );
    }
    Ok(Arc::new(store))
}

/// Runs a broker until a termination signal, then shuts it down cleanly.
pub async fn serve(config: BrokerConfig) -> Result<(), ServerError> {
    ignore_file_size_signal();
    // Before anything else: a SIGTERM during recovery waits for the start to finish and
    // then stops cleanly.
    let termination = TerminationSignals::install()?;
    info!(data_dir = %config.data_dir.display(), "opening the data directory");
    crate::logging::limit_peer_warnings(config.connection_warnings_per_peer_per_minute);
    let listeners = bind_listeners(&config).await?;
    let metrics_listener = bind_metrics(config.metrics_listen).await?;
    let bound: Vec<Arc<BoundListener>> = listeners
        .iter()
        .map(|l| Arc::clone(&l.security.bound))
        .collect();
    let credentials = open_credentials(&config)?;
    let data_dir = config.data_dir.clone();
    let limits = ConnectionLimits {
        max_frame_bytes: config.socket_request_max_bytes,
        max_frame_bytes_without_records: config.max_request_bytes_without_records,
        max_inflight_requests: config.max_inflight_requests_per_connection,
        idle_timeout_ms: config.connections_max_idle_ms,
    };
    let (max_connections, queued_bytes) = (config.max_connections, config.queued_max_request_bytes);
    let broker_listeners = bound.clone();
    let broker =
        tokio::task::spawn_blocking(move || Broker::open(config, broker_listeners, credentials))
            .await
            .map_err(|e| ServerError::Runtime(format!("broker startup panicked: {e}")))?
            .map_err(ServerError::Storage)?;
    // Mirror topics are marked read-only before anyone can connect.
    let mirror = crate::mirror::Mirror::open(Arc::clone(&broker))
        .map_err(|e| ServerError::Runtime(e.to_string()))?;
    let (stop, stopped) = watch::channel(false);
    let stats = Arc::new(NetworkStats::default());
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(|e| ServerError::Runtime(format!("cannot handle SIGUSR1: {e}")))?;
    let latency_reports = tokio::spawn(report_latency_on_signal(
        Arc::clone(&stats.latency),
        usr1,
        stopped.clone(),
    ));
    let metrics_endpoint = metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve(
            listener,
            Arc::clone(&broker),
            Arc::clone(&stats),
            Arc::downgrade(&mirror),
            stopped.clone(),
        ))
    });
    let background = tokio::spawn(Arc::clone(&broker).run_background(stopped.clone()));
    let coordinator_timers =
        tokio::spawn(Arc::clone(&broker).run_coordinator_timers(stopped.clone()));
    let accept = tokio::spawn(listener::run(
        listeners,
        Arc::clone(&broker),
        stats,
        limits,
        max_connections,
        queued_bytes,
        stopped,
    ));
    mirror.start();
    for listener in &broker.config.listeners {
        if let Some(b) = bound.iter().find(|b| b.name == listener.name) {
            info!(
                listener = %b.name,
                protocol = b.protocol.name(),
                listen = %b.bound,
                advertised = %format!("{}:{}", b.advertised.host, b.advertised.port),
                sasl_mechanisms = %listener.sasl.as_ref().map(|s| s.mechanisms.iter().map(|m| m.name()).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                client_auth = ?listener.tls.as_ref().map(|t| t.client_auth),
                "listener {} ({}) on {}", b.name, b.protocol.name(), b.bound
            );
        }
    }
    let first = bound
        .first()
        .map(|b| b.bound.to_string())
        .unwrap_or_default();
    info!(
        data_dir = %data_dir.display(),
        cluster_id = %broker.cluster_id,
        "Ferry is ready to accept connections on {first}"
    );
    termination.received().await;
    info!("shutting down");
    let _ = stop.send(true);
    mirror.stop();
    if let Err(err) = accept.await {
        error!("accept loop failed: {err}");
    }
    if let Some(task) = metrics_endpoint {
        if let Err(err) = task.await {
            error!("metrics endpoint failed: {err}");
        }
    }
    if let Err(err) = background.await {
        error!("background task failed: {err}");
    }
    if let Err(err) = coordinator_timers.await {
        error!("coordinator timer task failed: {err}");
    }
    if let Err(err) = latency_reports.await {
        error!("latency report task failed: {err}");
    }
    let outcome = tokio::task::spawn_blocking(move || broker.shutdown())
        .await
        .map_err(|e| ServerError::Runtime(format!("shutdown panicked: {e}")))?;
    match outcome {
        CloseOutcome::Clean => {
            info!("shutdown complete");
            Ok(())
        }
        CloseOutcome::Recoverable => {
            warn!(
                "shutdown complete, but not everything could be written (see above): the \
                 next start recovers the logs from their files"
            );
            Ok(())
        }
        CloseOutcome::DataAtRisk => Err(ServerError::Runtime(
            "shutdown could not make every log durable (see above); the next start \
             recovers what is on disk"
                .to_string(),
        )),
    }
}
