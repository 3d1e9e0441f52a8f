//! Broker configuration: Kafka's own `server.properties` keys where they mean the same
//! thing, a few Ferry-specific limits (prefixed `ferry.`), and command-line overrides.
//! The only module that reads configuration; everything else receives typed values.

pub mod listeners;
mod security;
pub mod topic;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::coordinator::group::GroupConfig;
use crate::coordinator::txn::TxnConfig;
use crate::properties;
use crate::storage::cleaner::CleanerConfig;

/// A configuration value that cannot be used, with the key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Most `ferry.worker.threads` accepted.
pub const MAX_WORKER_THREADS: usize = 1024;
/// Accepted range of `ferry.journal.file.bytes`.
pub const JOURNAL_FILE_BYTES_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(1 << 30);

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A host and port as published to clients in Metadata responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// Every broker setting Ferry reads, with Kafka's defaults unless noted.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `listeners` with their security protocols, advertised addresses and TLS/SASL
    /// settings (`listeners` module); at least one.
    pub listeners: Vec<listeners::ListenerConfig>,
    /// `log.dirs` (or `log.dir`): the data directory.
    pub data_dir: PathBuf,
    /// `node.id` (or `broker.id`).
    pub node_id: i32,
    /// `num.partitions`: partitions of auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `socket.request.max.bytes`: largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// `ferry.max.request.bytes.without.records`: largest frame of any API but Produce.
    pub max_request_bytes_without_records: usize,
    /// `queued.max.request.bytes`: bytes of request frames larger than 64 KiB held in memory
    /// across all connections (Kafka's default is unbounded; Ferry's is 512 MiB). Smaller
    /// frames are bounded per connection instead (see `network::connection`).
    pub queued_max_request_bytes: usize,
    /// `max.connections`: open client connections (Ferry default 10,000).
    pub max_connections: usize,
    /// `connections.max.idle.ms`: idle connections are closed after this long.
    pub connections_max_idle_ms: u64,
    /// `ferry.max.inflight.requests.per.connection`: requests read ahead of their responses.
    pub max_inflight_requests_per_connection: usize,
    /// `ferry.connection.warnings.per.peer.per.minute`: warnings about misbehaving
    /// connections (malformed frames, broken limits) logged per client address per minute;
    /// more are counted and reported with the next one logged.
    pub connection_warnings_per_peer_per_minute: u32,
    /// `ferry.worker.threads`: threads running connections and request handlers; 0 means
    /// one per CPU core. On a small machine shared with the clients, fewer threads than
    /// cores cost less CPU per small request (docs/performance.md).
    pub worker_threads: usize,
    /// `ferry.journal.file.bytes`: size of each durable-mode journal file; a file is
    /// retired (its partitions' segments fsynced) when three quarters are written.
    pub journal_file_bytes: u64,
    /// `fetch.max.bytes`: cap on one Fetch response's record bytes.
    pub fetch_max_bytes: usize,
    /// `log.flush.offset.checkpoint.interval.ms`: how often recovery points are saved.
    pub flush_checkpoint_interval_ms: u64,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// Broker-level defaults for topic configs (`log.segment.bytes`, ...).
    pub topic_defaults: topic::TopicDefaults,
    /// Group coordinator settings (`group.*`, `offsets.*`).
    pub group: GroupConfig,
    /// Transaction coordinator settings (`transaction.*`, `transactional.id.*`).
    pub txn: TxnConfig,
    /// `producer.id.expiration.ms`: idle producers' idempotence state is dropped.
    pub producer_id_expiration_ms: i64,
    /// `ferry.replication.factor.cap`: accept CreateTopics asking for more than one
    /// replica and serve the topic with one (logged), for tooling written for replicated
    /// clusters. Off by default: Kafka rejects what it cannot replicate.
    pub replication_factor_cap: bool,
    /// The log cleaner's `log.cleaner.*` settings.
    pub cleaner: CleanerConfig,
    /// `offsets.topic.segment.bytes` and `transaction.state.log.segment.bytes`: the
    /// `segment.bytes` the internal topics are created with.
    pub offsets_topic_segment_bytes: i32,
    pub transaction_state_segment_bytes: i32,
    /// `ferry.metrics.listen` (`ferry serve --metrics-listen`): the address of the HTTP
    /// endpoint serving Prometheus metrics on `/metrics`; none (the default) serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// `ferry.sasl.bootstrap.users.file`: `user:password` lines; each user without SCRAM
    /// credentials gets SCRAM-SHA-256 and SCRAM-SHA-512 ones at startup (also read from the
    /// `FERRY_SASL_BOOTSTRAP_USERS` environment variable), so a new secured broker can be
    /// administered.
    pub sasl_bootstrap_users_file: Option<PathBuf>,
    /// Keys that came from the config file or overrides, for DescribeConfigs sources.
    pub explicit: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: vec![listeners::ListenerConfig {
                name: "PLAINTEXT".to_string(),
                protocol: listeners::SecurityProtocol::Plaintext,
                bind: SocketAddr::from(([127, 0, 0, 1], 9092)),
                advertised: None,
                tls: None,
                sasl: None,
            }],
            data_dir: PathBuf::from("ferry-data"),
            node_id: 1,
            num_partitions: 1,
            auto_create_topics_enable: true,
            socket_request_max_bytes: 104_857_600,
            max_request_bytes_without_records: 2 << 20,
            queued_max_request_bytes: 512 << 20,
            max_connections: 10_000,
            connections_max_idle_ms: 600_000,
            max_inflight_requests_per_connection: 32,
            connection_warnings_per_peer_per_minute: 10,
            worker_threads: 0,
            journal_file_bytes: 16 << 20,
            fetch_max_bytes: 57_671_680,
            flush_checkpoint_interval_ms: 60_000,
            retention_check_interval_ms: 300_000,
            topic_defaults: topic::TopicDefaults::default(),
            group: GroupConfig::default(),
            txn: TxnConfig::default(),
            producer_id_expiration_ms: 86_400_000,
            replication_factor_cap: false,
            cleaner: CleanerConfig::default(),
            offsets_topic_segment_bytes: 104_857_600,
            transaction_state_segment_bytes: 104_857_600,
            metrics_listen: None,
            sasl_bootstrap_users_file: None,
            explicit: BTreeMap::new(),
        }
    }
}

/// Parses a plain `HOST:PORT`.
fn parse_host_port(key: &str, value: &str) -> Result<Endpoint, ConfigError> {
    let address = value.trim();
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, format!("expected HOST:PORT, got {address:?}")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, format!("bad port in {address:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

fn resolve(key: &str, endpoint: &Endpoint) -> Result<SocketAddr, ConfigError> {
    let host = if endpoint.host.is_empty() {
        "0.0.0.0"
    } else {
        &endpoint.host
    };
    (host, endpoint.port)
        .to_socket_addrs()
        .map_err(|e| invalid(key, format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{host} resolves to no address")))
}

/// `ferry.metrics.listen`: `HOST:PORT`, or empty for no metrics endpoint.
fn parse_metrics_listen(key: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.contains("://") {
        return Err(invalid(key, format!("expected HOST:PORT, got {value:?}")));
    }
    resolve(key, &parse_host_port(key, value)?).map(Some)
}

pub(crate) fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, format!("expected a number, got {value:?}")))
}

pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(
            key,
            format!("expected true or false, got {value:?}"),
        )),
    }
}

impl BrokerConfig {
    /// Builds the configuration from Kafka-style properties (file contents and overrides,
    /// later entries winning). Unknown keys, and keys accepted without effect (the defaults
    /// of topic keys Ferry does not act on), are returned so the caller can warn about them.
    pub fn from_properties(
        props: &BTreeMap<String, String>,
    ) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let mut config = BrokerConfig::default();
        let mut unknown = Vec::new();
        for (key, value) in props {
            security::check_key(key, value)?;
            if listeners::owns_key(key) {
                continue;
            }
            if !config.apply(key, value)? || topic::is_inert_broker_key(key) {
                unknown.push(key.clone());
            }
        }
        let (listeners, inert) = listeners::from_properties(props)?;
        config.listeners = listeners;
        unknown.extend(inert);
        unknown.sort();
        config.explicit = props.clone();
        config.validate()?;
        Ok((config, unknown))
    }

    /// Reads a `server.properties`-style file.
    pub fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("--config", format!("cannot read {}: {e}", path.display())))?;
        Ok(properties::parse(&text))
    }

    /// Applies one key; returns false if the key is not one Ferry knows.
    fn apply(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        match key {
            "log.dirs" | "log.dir" => {
                let dirs: Vec<&str> = value.split(',').map(str::trim).collect();
                if dirs.len() != 1 || dirs[0].is_empty() {
                    return Err(invalid(key, "exactly one directory is supported"));
                }
                self.data_dir = PathBuf::from(dirs[0]);
            }
            "node.id" | "broker.id" => self.node_id = parse_num(key, value)?,
            "num.partitions" => self.num_partitions = parse_num(key, value)?,
            "default.replication.factor" => {
                if parse_num::<i32>(key, value)? != 1 {
                    return Err(invalid(key, "only 1 is supported by a single-node broker"));
                }
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse_bool(key, value)?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse_num(key, value)?,
            "ferry.max.request.bytes.without.records" => {
                self.max_request_bytes_without_records = parse_num(key, value)?
            }
            "queued.max.request.bytes" => {
                let bytes: i64 = parse_num(key, value)?;
                self.queued_max_request_bytes = if bytes <= 0 {
                    usize::MAX >> 1
                } else {
                    bytes as usize
                };
            }
            "max.connections" => self.max_connections = parse_num(key, value)?,
            "connections.max.idle.ms" => self.connections_max_idle_ms = parse_num(key, value)?,
            "ferry.max.inflight.requests.per.connection" => {
                self.max_inflight_requests_per_connection = parse_num(key, value)?
            }
            "ferry.connection.warnings.per.peer.per.minute" => {
                self.connection_warnings_per_peer_per_minute = parse_num(key, value)?
            }
            "ferry.worker.threads" => self.worker_threads = parse_num(key, value)?,
            "ferry.journal.file.bytes" => self.journal_file_bytes = parse_num(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse_num(key, value)?,
            "log.flush.offset.checkpoint.interval.ms" => {
                self.flush_checkpoint_interval_ms = parse_num(key, value)?
            }
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse_num(key, value)?
            }
            _ => return self.apply_group_key(key, value),
        }
        Ok(true)
    }

    fn apply_group_key(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let group = &mut self.group;
        match key {
            "group.min.session.timeout.ms" => group.min_session_timeout_ms = parse_num(key, value)?,
            "group.max.session.timeout.ms" => group.max_session_timeout_ms = parse_num(key, value)?,
            "group.initial.rebalance.delay.ms" => {
                group.initial_rebalance_delay_ms = parse_num(key, value)?
            }
            "group.max.size" => group.max_size = parse_num(key, value)?,
            "offset.metadata.max.bytes" => group.offset_metadata_max_bytes = parse_num(key, value)?,
            "offsets.retention.minutes" => {
                let minutes: i64 = parse_num(key, value)?;
                group.offsets_retention_ms = minutes.saturating_mul(60_000);
            }
            "offsets.retention.check.interval.ms" => {
                group.offsets_retention_check_interval_ms = parse_num(key, value)?
            }
            "offsets.topic.num.partitions" => {
                group.offsets_topic_partitions = parse_num(key, value)?
            }
            "transaction.max.timeout.ms" => self.txn.max_timeout_ms = parse_num(key, value)?,
            "transactional.id.expiration.ms" => self.txn.id_expiration_ms = parse_num(key, value)?,
            "transaction.state.log.num.partitions" => {
                self.txn.state_topic_partitions = parse_num(key, value)?
            }
            "producer.id.expiration.ms" => self.producer_id_expiration_ms = parse_num(key, value)?,
            "ferry.replication.factor.cap" => self.replication_factor_cap = parse_bool(key, value)?,
            "ferry.metrics.listen" => self.metrics_listen = parse_metrics_listen(key, value)?,
            "ferry.sasl.bootstrap.users.file" => {
                self.sasl_bootstrap_users_file = Some(value.trim())
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            }
            "offsets.topic.segment.bytes" => {
                self.offsets_topic_segment_bytes = parse_num(key, value)?
            }
            "transaction.state.log.segment.bytes" => {
                self.transaction_state_segment_bytes = parse_num(key, value)?
            }
            _ => return self.apply_cleaner_key(key, value),
        }
        Ok(true)
    }

    fn apply_cleaner_key(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let cleaner = &mut self.cleaner;
        match key {
            "log.cleaner.enable" => cleaner.enable = parse_bool(key, value)?,
            "log.cleaner.threads" => cleaner.threads = parse_num(key, value)?,
            "log.cleaner.dedupe.buffer.size" => {
                cleaner.dedupe_buffer_bytes = parse_num(key, value)?
            }
            "log.cleaner.io.buffer.size" => cleaner.io_buffer_bytes = parse_num(key, value)?,
            "log.cleaner.io.buffer.load.factor" => {
                cleaner.io_buffer_load_factor = parse_num(key, value)?
            }
            "log.cleaner.io.max.bytes.per.second" => {
                cleaner.io_max_bytes_per_second = parse_num(key, value)?
            }
            "log.cleaner.backoff.ms" => cleaner.backoff_ms = parse_num(key, value)?,
            _ => return self.topic_defaults.apply_broker_key(key, value),
        }
        Ok(true)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.num_partitions < 1 {
            return Err(invalid("num.partitions", "must be at least 1"));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err(invalid("socket.request.max.bytes", "must be at least 1024"));
        }
        if self.max_inflight_requests_per_connection == 0 {
            return Err(invalid(
                "ferry.max.inflight.requests.per.connection",
                "must be at least 1",
            ));
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(invalid(
                "ferry.worker.threads",
                format!("must be at most {MAX_WORKER_THREADS} (0 = one per CPU core)"),
            ));
        }
        if !JOURNAL_FILE_BYTES_RANGE.contains(&self.journal_file_bytes) {
            return Err(invalid(
                "ferry.journal.file.bytes",
                format!(
                    "must be between {} and {}",
                    JOURNAL_FILE_BYTES_RANGE.start(),
                    JOURNAL_FILE_BYTES_RANGE.end()
                ),
            ));
        }
        if self.txn.state_topic_partitions < 1 {
            return Err(invalid(
                "transaction.state.log.num.partitions",
                "must be at least 1",
            ));
        }
        if self.group.offsets_topic_partitions < 1 {
            return Err(invalid(
                "offsets.topic.num.partitions",
                "must be at least 1",
            ));
        }
        if self.group.min_session_timeout_ms > self.group.max_session_timeout_ms {
            return Err(invalid(
                "group.min.session.timeout.ms",
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        self.validate_cleaner()?;
        for (key, bytes) in [
            (
                "offsets.topic.segment.bytes",
                self.offsets_topic_segment_bytes,
            ),
            (
                "transaction.state.log.segment.bytes",
                self.transaction_state_segment_bytes,
            ),
        ] {
            if bytes < 1 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.queued_max_request_bytes < self.socket_request_max_bytes {
            return Err(invalid(
                "queued.max.request.bytes",
                "must be at least socket.request.max.bytes",
            ));
        }
        self.topic_defaults.validate()
    }

    /// Kafka's ranges for the cleaner's keys (`log.cleaner.threads` at most Ferry's
    /// worker-thread cap).
    fn validate_cleaner(&self) -> Result<(), ConfigError> {
        let c = &self.cleaner;
        if c.threads < 1 || c.threads > MAX_WORKER_THREADS {
            return Err(invalid(
                "log.cleaner.threads",
                format!("must be between 1 and {MAX_WORKER_THREADS}"),
            ));
        }
        if c.io_buffer_bytes < 4096 {
            return Err(invalid(
                "log.cleaner.io.buffer.size",
                "must be at least 4096",
            ));
        }
        if !(c.io_buffer_load_factor > 0.0 && c.io_buffer_load_factor <= 1.0) {
            return Err(invalid(
                "log.cleaner.io.buffer.load.factor",
                "must be in (0, 1]",
            ));
        }
        if c.io_max_bytes_per_second.is_nan() || c.io_max_bytes_per_second <= 0.0 {
            return Err(invalid(
                "log.cleaner.io.max.bytes.per.second",
                "must be above 0",
            ));
        }
        if c.dedupe_buffer_bytes < (1 << 20) * c.threads as u64 {
            return Err(invalid(
                "log.cleaner.dedupe.buffer.size",
                "must be at least 1 MiB per cleaner thread",
            ));
        }
        Ok(())
    }

    /// Broker settings as DescribeConfigs reports them: `(key, value, set explicitly)`.
    /// The type Kafka declares for a broker key Ferry describes (DescribeConfigs v3+).
    pub fn config_type(name: &str) -> topic::ConfigType {
        use topic::ConfigType::{Boolean, Int, Long, String};
        if let Some(kind) = topic::broker_key_type(name) {
            return kind;
        }
        match name {
            "auto.create.topics.enable" | "ferry.replication.factor.cap" => Boolean,
            "log.cleaner.enable" => Boolean,
            "log.cleaner.dedupe.buffer.size" | "log.cleaner.backoff.ms" => Long,
            "log.cleaner.io.buffer.load.factor" | "log.cleaner.io.max.bytes.per.second" => {
                topic::ConfigType::Double
            }
            "queued.max.request.bytes" | "connections.max.idle.ms" => Long,
            "log.retention.check.interval.ms" => Long,
            "listeners" | "advertised.listeners" | "log.dirs" | "ferry.metrics.listen" => String,
            _ => Int,
        }
    }

    pub fn describe(&self, bound: &[Arc<listeners::BoundListener>]) -> Vec<(String, String, bool)> {
        let join = |entry: fn(&listeners::BoundListener) -> String| {
            bound.iter().map(|l| entry(l)).collect::<Vec<_>>().join(",")
        };
        let mut out = vec![
            (
                "listeners".to_string(),
                join(|l| format!("{}://{}", l.name, l.bound)),
            ),
            (
                "advertised.listeners".to_string(),
                join(|l| format!("{}://{}:{}", l.name, l.advertised.host, l.advertised.port)),
            ),
            ("log.dirs".to_string(), self.data_dir.display().to_string()),
            ("node.id".to_string(), self.node_id.to_string()),
            (
                "num.partitions".to_string(),
                self.num_partitions.to_string(),
            ),
            ("default.replication.factor".to_string(), "1".to_string()),
            (
                "auto.create.topics.enable".to_string(),
                self.auto_create_topics_enable.to_string(),
            ),
            (
                "socket.request.max.bytes".to_string(),
                self.socket_request_max_bytes.to_string(),
            ),
            (
                "queued.max.request.bytes".to_string(),
                self.queued_max_request_bytes.to_string(),
            ),
            (
                "max.connections".to_string(),
                self.max_connections.to_string(),
            ),
            (
                "connections.max.idle.ms".to_string(),
                self.connections_max_idle_ms.to_string(),
            ),
            (
                "fetch.max.bytes".to_string(),
                self.fetch_max_bytes.to_string(),
            ),
            (
                "offsets.topic.segment.bytes".to_string(),
                self.offsets_topic_segment_bytes.to_string(),
            ),
            (
                "transaction.state.log.segment.bytes".to_string(),
                self.transaction_state_segment_bytes.to_string(),
            ),
            (
                "log.flush.offset.checkpoint.interval.ms".to_string(),
                self.flush_checkpoint_interval_ms.to_string(),
            ),
            (
                "log.retention.check.interval.ms".to_string(),
                self.retention_check_interval_ms.to_string(),
            ),
            (
                "group.min.session.timeout.ms".to_string(),
                self.group.min_session_timeout_ms.to_string(),
            ),
            (
                "group.max.session.timeout.ms".to_string(),
                self.group.max_session_timeout_ms.to_string(),
            ),
            (
                "group.initial.rebalance.delay.ms".to_string(),
                self.group.initial_rebalance_delay_ms.to_string(),
            ),
            (
                "group.max.size".to_string(),
                self.group.max_size.to_string(),
            ),
            (
                "offset.metadata.max.bytes".to_string(),
                self.group.offset_metadata_max_bytes.to_string(),
            ),
            (
                "offsets.retention.minutes".to_string(),
                (self.group.offsets_retention_ms / 60_000).to_string(),
            ),
            (
                "offsets.topic.num.partitions".to_string(),
                self.group.offsets_topic_partitions.to_string(),
            ),
            (
                "transaction.max.timeout.ms".to_string(),
                self.txn.max_timeout_ms.to_string(),
            ),
            (
                "transactional.id.expiration.ms".to_string(),
                self.txn.id_expiration_ms.to_string(),
            ),
            (
                "transaction.state.log.num.partitions".to_string(),
                self.txn.state_topic_partitions.to_string(),
            ),
            (
                "producer.id.expiration.ms".to_string(),
                self.producer_id_expiration_ms.to_string(),
            ),
            (
                "ferry.replication.factor.cap".to_string(),
                self.replication_factor_cap.to_string(),
            ),
        ];
        out.extend(self.cleaner_entries());
        if let Some(address) = self.metrics_listen {
            out.push(("ferry.metrics.listen".to_string(), address.to_string()));
        }
        // The broker keys behind topic defaults: those set, and those carrying a default.
        for entry in self.topic_defaults.describe(&BTreeMap::new()) {
            for (broker_key, value, _) in entry.synonyms {
                out.push((broker_key, value));
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out.into_iter()
            .map(|(key, value)| {
                let explicit = self.explicit.contains_key(&key);
                (key, value, explicit)
            })
            .collect()
    }

    fn cleaner_entries(&self) -> Vec<(String, String)> {
        let c = &self.cleaner;
        // Kafka shows an unlimited rate as the largest double.
        let rate = if c.io_max_bytes_per_second == f64::MAX {
            "1.7976931348623157E308".to_string()
        } else {
            c.io_max_bytes_per_second.to_string()
        };
        [
            ("log.cleaner.enable", c.enable.to_string()),
            ("log.cleaner.threads", c.threads.to_string()),
            (
                "log.cleaner.dedupe.buffer.size",
                c.dedupe_buffer_bytes.to_string(),
            ),
            ("log.cleaner.io.buffer.size", c.io_buffer_bytes.to_string()),
            (
                "log.cleaner.io.buffer.load.factor",
                c.io_buffer_load_factor.to_string(),
            ),
            ("log.cleaner.io.max.bytes.per.second", rate),
            ("log.cleaner.backoff.ms", c.backoff_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_without_effect_are_listed_with_the_unknown_ones() {
        let (config, listed) = BrokerConfig::from_properties(&props(&[
            ("log.roll.jitter.hours", "1"),
            ("log.message.timestamp.after.max.ms", "1000"),
            ("log.cleaner.min.cleanable.ratio", "0.2"),
            ("log.cleaner.threads", "2"),
        ]))
        .unwrap();
        assert_eq!(
            listed,
            vec![
                "log.message.timestamp.after.max.ms".to_string(),
                "log.roll.jitter.hours".to_string()
            ]
        );
        assert_eq!(config.cleaner.threads, 2);
        assert_eq!(
            config
                .topic_defaults
                .default_value("min.cleanable.dirty.ratio"),
            Some("0.2")
        );
    }

    #[test]
    fn reads_kafka_keys() {
        let (config, unknown) = BrokerConfig::from_properties(&props(&[
            ("listeners", "PLAINTEXT://127.0.0.1:19092"),
            ("advertised.listeners", "PLAINTEXT://broker.example:9092"),
            ("log.dirs", "/var/lib/ferry"),
            ("num.partitions", "4"),
            ("log.segment.bytes", "1048576"),
            ("zookeeper.connect", "nowhere:2181"),
        ]))
        .unwrap();
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].bind, "127.0.0.1:19092".parse().unwrap());
        assert_eq!(
            config.listeners[0].advertised,
            Some(Endpoint {
                host: "broker.example".into(),
                port: 9092
            })
        );
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/ferry"));
        assert_eq!(config.num_partitions, 4);
        assert_eq!(
            config.topic_defaults.default_value("segment.bytes"),
            Some("1048576")
        );
        assert_eq!(unknown, vec!["zookeeper.connect".to_string()]);
        assert_eq!(config.worker_threads, 0, "one per core unless set");
        let (config, _) =
            BrokerConfig::from_properties(&props(&[("ferry.worker.threads", "1")])).unwrap();
        assert_eq!(config.worker_threads, 1);
        assert_eq!(
            config.metrics_listen, None,
            "no metrics endpoint unless set"
        );
        let (config, _) =
            BrokerConfig::from_properties(&props(&[("ferry.metrics.listen", "127.0.0.1:9308")]))
                .unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9308".parse().unwrap())
        );
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for (key, value) in [
            ("default.replication.factor", "3"),
            ("log.dirs", "/a,/b"),
            ("num.partitions", "zero"),
            ("log.segment.bytes", "10"),
            ("ferry.worker.threads", "-1"),
            ("ferry.worker.threads", "100000"),
            ("ferry.journal.file.bytes", "1000"),
            ("ferry.journal.file.bytes", "4294967296"),
            ("ferry.metrics.listen", "127.0.0.1"),
            ("ferry.metrics.listen", "http://127.0.0.1:9308"),
            ("sasl.enabled.mechanisms", "PLAIN"),
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
        ] {
            let err = BrokerConfig::from_properties(&props(&[(key, value)])).unwrap_err();
            assert_eq!(err.key, key);
        }
        // A TLS listener without its certificate names the key that is missing.
        for value in [
            "SSL://0.0.0.0:9093",
            "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094",
        ] {
            let err = BrokerConfig::from_properties(&props(&[("listeners", value)])).unwrap_err();
            assert_eq!(err.key, "ssl.keystore.location", "{value}");
        }
    }
}
