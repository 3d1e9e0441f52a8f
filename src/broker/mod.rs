//! Request handling: the broker's shared state, dispatch by API key to one handler per
//! API, partitions and their waiters, the flusher, and the mapping of errors to Kafka
//! codes. Transport-agnostic: a decoded request goes in, an encoded response comes out.

pub mod activity;
pub mod admin_api;
pub mod authorized_ops;
mod coordinators;
pub mod delayed_deletes;
pub mod dispatch;
pub mod error_code;
pub mod flusher;
pub mod handlers;
pub mod internal_log;
pub mod journal;
pub mod log_cleaner;
pub mod partition;
pub mod producer_ids;
pub mod read_ahead;
pub mod read_only;
pub mod topics;
pub mod txn_env;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::config::listeners::BoundListener;
use crate::config::BrokerConfig;
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::txn::TransactionCoordinator;
use crate::security::credentials::CredentialStore;
use crate::storage::data_dir::DataDir;
use crate::storage::StorageError;
use activity::Activity;
use flusher::Flusher;
use journal::Journal;
use partition::Services;
use read_ahead::ReadAhead;
use topics::{CloseOutcome, TopicRegistry};

/// Kafka's internal topic for committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's internal topic for transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// How often the group coordinator's timers are advanced.
const GROUP_TICK_MS: u64 = 100;
/// How often transaction timeouts and producer expiry are checked.
const TXN_TICK_MS: u64 = 1_000;

/// Milliseconds since the Unix epoch (Kafka's timestamp unit).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs one round of periodic work; a panic in it (a bug) is logged and the next round
/// runs as usual, instead of ending the timer for the broker's lifetime.
fn survive(what: &str, work: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
        error!("{what} panicked (please report the panic above); it runs again next time");
    }
}

/// Everything request handlers share.
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub node_id: i32,
    /// The listeners as bound, with the addresses published to clients of each.
    pub listeners: Vec<Arc<BoundListener>>,
    /// SCRAM users (SASL PLAIN and SCRAM authenticate against it).
    pub credentials: Arc<CredentialStore>,
    pub topics: Arc<TopicRegistry>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: TransactionCoordinator,
    /// Producer ids never handed out twice (and never one a mirrored batch carries).
    pub producer_ids: Arc<producer_ids::ProducerIds>,
    /// Broker-wide counters of background work (retention, the journal).
    pub activity: Arc<Activity>,
    flusher: Arc<Flusher>,
    journal: Arc<Journal>,
    flusher_thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    delayed_deletes: Arc<delayed_deletes::DelayedDeletes>,
    pub cleaner: Arc<log_cleaner::LogCleaner>,
    /// Ferry's admin API (the mirror's control plane), installed once at startup.
    pub admin_service: std::sync::OnceLock<Arc<dyn admin_api::AdminService>>,
}

impl Broker {
    /// Opens the data directory, recovers every log (replaying the durable-mode journal
    /// into them) and starts the flusher and journal threads.
    pub fn open(
        config: BrokerConfig,
        listeners: Vec<Arc<BoundListener>>,
        credentials: Arc<CredentialStore>,
    ) -> Result<Arc<Broker>, StorageError> {
        let data_dir = Arc::new(DataDir::open(&config.data_dir, config.node_id)?);
        if !data_dir.was_clean_shutdown() && !data_dir.is_new() {
            info!(dir = %config.data_dir.display(), "no clean shutdown marker: recovering logs from their recovery points");
        }
        let cluster_id = data_dir.identity().cluster_id.clone();
        let activity = Arc::new(Activity::default());
        let (flusher, flusher_thread) = Flusher::start();
        let (journal, leftover) = Journal::start(
            data_dir.root(),
            config.journal_file_bytes,
            Arc::clone(&activity),
        )?;
        let read_ahead = ReadAhead::new();
        let services = Services {
            flusher: Arc::clone(&flusher),
            journal: Arc::clone(&journal),
            read_ahead,
        };
        let topics = Arc::new(TopicRegistry::open(
            Arc::clone(&data_dir),
            config.topic_defaults.clone(),
            services,
            config.node_id,
        )?);
        journal::replay(leftover, &topics)?;
        let groups = coordinators::open_groups(&config, &topics)?;
        let producer_ids = Arc::new(producer_ids::ProducerIds::open(
            config.data_dir.join("ferry-producer-ids"),
        )?);
        let txns = coordinators::open_transactions(&config, &topics, &groups, &producer_ids)?;
        let delayed_deletes = Arc::new(delayed_deletes::DelayedDeletes::default());
        let cleaner = log_cleaner::LogCleaner::start(
            config.cleaner.clone(),
            Arc::clone(&topics),
            Arc::clone(&delayed_deletes),
            data_dir.root(),
        );
        Ok(Arc::new(Broker {
            node_id: config.node_id,
            config,
            cluster_id,
            listeners,
            credentials,
            topics,
            groups,
            txns,
            producer_ids,
            activity,
            flusher,
            journal,
            flusher_thread: std::sync::Mutex::new(Some(flusher_thread)),
            delayed_deletes,
            cleaner,
            admin_service: std::sync::OnceLock::new(),
        }))
    }

    /// Advances the coordinators' timers until stopped.
    pub async fn run_coordinator_timers(
        self: Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut groups = tokio::time::interval(Duration::from_millis(GROUP_TICK_MS));
        let mut txns = tokio::time::interval(Duration::from_millis(TXN_TICK_MS));
        loop {
            tokio::select! {
                _ = groups.tick() => survive("the group coordinator's timer", || self.groups.tick(now_ms())),
                _ = txns.tick() => survive("the transaction coordinator's timer", || self.txns.tick(now_ms())),
                _ = stop.changed() => return,
            }
        }
    }

    /// Runs the periodic work: checkpoints, `flush.ms` flushes and retention.
    pub async fn run_background(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let tick_ms = 1_000u64;
        let mut ticker = tokio::time::interval(Duration::from_millis(tick_ms));
        let mut since_checkpoint_ms = 0u64;
        let mut since_retention_ms = 0u64;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            since_checkpoint_ms += tick_ms;
            since_retention_ms += tick_ms;
            let broker = Arc::clone(&self);
            let checkpoint = since_checkpoint_ms >= self.config.flush_checkpoint_interval_ms;
            let retention = since_retention_ms >= self.config.retention_check_interval_ms;
            if checkpoint {
                since_checkpoint_ms = 0;
            }
            if retention {
                since_retention_ms = 0;
            }
            let result = tokio::task::spawn_blocking(move || {
                broker.periodic_work(checkpoint, retention);
            })
            .await;
            if let Err(err) = result {
                error!("periodic broker work failed: {err}");
            }
        }
    }

    fn periodic_work(&self, checkpoint: bool, retention: bool) {
        let now = now_ms();
        let producer_cutoff_ms = now.saturating_sub(self.config.producer_id_expiration_ms);
        for partition in self.topics.all_partitions() {
            partition.flush_if_due(now);
            partition.expire_producers(producer_cutoff_ms);
        }
        if retention {
            self.apply_retention(now);
        }
        self.delayed_deletes.remove_due(now);
        if checkpoint {
            if let Err(err) = self.topics.write_checkpoints() {
                warn!("writing checkpoints failed: {err}");
            }
        }
    }

    /// Retention for every partition: take out expired segments, write the log-start
    /// checkpoint, then rename their files for deletion after `file.delete.delay.ms`
    /// (`storage::log::retention` says why in that order).
    fn apply_retention(&self, now: i64) {
        let mut retired = Vec::new();
        for partition in self.topics.all_partitions() {
            match partition.take_retired_segments(now) {
                Ok(segments) if !segments.is_empty() => retired.push((partition, segments)),
                Ok(_) => {}
                Err(err) => warn!(
                    topic = partition.topic(),
                    partition = partition.index(),
                    "retention failed: {err}"
                ),
            }
        }
        if retired.is_empty() {
            return;
        }
        if let Err(err) = self.topics.write_checkpoints() {
            // The segments' files stay; the next checkpoint records the new start, and the
            // next start drops what lies below it.
            warn!("writing checkpoints for retention failed; the files stay for now: {err}");
            return;
        }
        for (partition, segments) in retired {
            let (count, delay_ms) = (segments.len(), segments.delete_delay_ms);
            self.activity.retention_segments_deleted.add(count as u64);
            self.activity
                .retention_bytes_deleted
                .add(segments.size_bytes());
            match segments.rename() {
                Ok(paths) => self
                    .delayed_deletes
                    .schedule(paths, now.saturating_add(delay_ms)),
                Err(err) => warn!(
                    topic = partition.topic(),
                    partition = partition.index(),
                    "renaming segments deleted by retention failed: {err}"
                ),
            }
            info!(
                topic = partition.topic(),
                partition = partition.index(),
                segments = count,
                log_start_offset = partition.log_start_offset(),
                "deleted segments past retention"
            );
        }
    }

    /// Clean shutdown: stops the log cleaner, the journal and the flusher, fsyncs every log, writes
    /// indexes, checkpoints and the clean-shutdown marker (see `TopicRegistry::close` for
    /// what happens when some of that fails).
    pub fn shutdown(&self) -> CloseOutcome {
        self.cleaner.shutdown();
        self.journal.stop();
        self.flusher.stop();
        let handle = crate::sync::lock(&self.flusher_thread, "flusher handle lock").take();
        if handle.is_some_and(|h| h.join().is_err()) {
            error!("the flusher thread panicked");
        }
        self.topics.close()
    }
}
