//! Request handling: the broker's shared state, dispatch by API key to one handler per
//! API, partitions and their waiters, the flusher, and the mapping of errors to Kafka
//! codes. Transport-agnostic: a decoded request goes in, an encoded response comes out.

pub mod dispatch;
pub mod error_code;
pub mod flusher;
pub mod handlers;
pub mod partition;
pub mod topics;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::config::{BrokerConfig, Endpoint};
use crate::storage::data_dir::DataDir;
use crate::storage::StorageError;
use flusher::Flusher;
use topics::TopicRegistry;

/// Milliseconds since the Unix epoch (Kafka's timestamp unit).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Everything request handlers share.
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub node_id: i32,
    /// Host and port published in Metadata.
    pub advertised: Endpoint,
    pub topics: TopicRegistry,
    flusher: Arc<Flusher>,
    flusher_thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Broker {
    /// Opens the data directory, recovers every log and starts the flusher thread.
    pub fn open(config: BrokerConfig, advertised: Endpoint) -> Result<Arc<Broker>, StorageError> {
        let data_dir = Arc::new(DataDir::open(&config.data_dir, config.node_id)?);
        if !data_dir.was_clean_shutdown() {
            info!(dir = %config.data_dir.display(), "no clean shutdown marker: recovering logs from their recovery points");
        }
        let cluster_id = data_dir.identity().cluster_id.clone();
        let (flusher, flusher_thread) = Flusher::start();
        let topics = TopicRegistry::open(
            Arc::clone(&data_dir),
            config.topic_defaults.clone(),
            Arc::clone(&flusher),
            config.node_id,
        )?;
        Ok(Arc::new(Broker {
            node_id: config.node_id,
            config,
            cluster_id,
            advertised,
            topics,
            flusher,
            flusher_thread: std::sync::Mutex::new(Some(flusher_thread)),
        }))
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
        for partition in self.topics.all_partitions() {
            partition.flush_if_due(now);
            if retention {
                match partition.apply_retention(now) {
                    Ok(0) => {}
                    Ok(deleted) => info!(
                        topic = partition.topic(),
                        partition = partition.index(),
                        segments = deleted,
                        "deleted segments past retention"
                    ),
                    Err(err) => warn!(
                        topic = partition.topic(),
                        partition = partition.index(),
                        "retention failed: {err}"
                    ),
                }
            }
        }
        if checkpoint {
            if let Err(err) = self.topics.write_checkpoints() {
                warn!("writing checkpoints failed: {err}");
            }
        }
    }

    /// Clean shutdown: stops the flusher, fsyncs every log, writes indexes, checkpoints and
    /// the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        self.flusher.stop();
        let handle = self
            .flusher_thread
            .lock()
            .expect("flusher handle lock")
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                error!("the flusher thread panicked");
            }
        }
        self.topics.close()
    }
}
