//! The topic registry: which topics exist, their ids, configs and partitions. Changes
//! (create, delete, grow, reconfigure) are serialised by one admin lock and persisted
//! through the data directory before they become visible; lookups on the data path take
//! only a read lock on the name map.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use tracing::{error, info, warn};
use uuid::Uuid;

use super::now_ms;
use super::partition::{Partition, Services};
use crate::config::topic::TopicDefaults;
use crate::config::ConfigError;
use crate::storage::data_dir::{base64_uuid, DataDir, TopicRecord};
use crate::storage::log::{Log, LogCheckpoint, LogConfig};
use crate::storage::StorageError;

/// Topics written only by the broker's coordinators.
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// Most partitions one topic may have (`ferry.max.partitions.per.topic`; Kafka has no such
/// cap, but every partition costs open files and memory).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub topic_id: Uuid,
    /// Config overrides set on this topic.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// Kafka's internal topics (`Topic.INTERNAL_TOPICS`): clients cannot produce to them
    /// and they cannot be deleted.
    pub fn is_internal(&self) -> bool {
        INTERNAL_TOPICS.contains(&self.name.as_str())
    }
}

/// Why a topic operation was refused.
#[derive(Debug)]
pub enum TopicError {
    AlreadyExists { name: String },
    InvalidName { name: String, reason: String },
    Collides { name: String, existing: String },
    InvalidPartitions { reason: String },
    InvalidReplicationFactor { reason: String },
    InvalidReplicaAssignment { reason: String },
    InvalidConfig(ConfigError),
    Unknown { name: String },
    Storage(StorageError),
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::AlreadyExists { name } => write!(f, "Topic '{name}' already exists."),
            TopicError::InvalidName { name, reason } => {
                write!(f, "Topic name {name:?} is invalid: {reason}")
            }
            TopicError::Collides { name, existing } => write!(
                f,
                "Topic '{name}' collides with existing topic '{existing}': '.' and '_' are \
                 interchangeable in metric names"
            ),
            TopicError::InvalidPartitions { reason }
            | TopicError::InvalidReplicationFactor { reason }
            | TopicError::InvalidReplicaAssignment { reason } => write!(f, "{reason}"),
            TopicError::InvalidConfig(err) => write!(f, "{err}"),
            TopicError::Unknown { name } => write!(f, "Topic '{name}' does not exist."),
            TopicError::Storage(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for TopicError {}

impl From<StorageError> for TopicError {
    fn from(err: StorageError) -> Self {
        TopicError::Storage(err)
    }
}

/// Checks a topic name against Kafka's rules (`org.apache.kafka.common.internals.Topic`).
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason: &str| TopicError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("the empty string is not allowed"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_BYTES {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "contains a character other than ASCII alphanumerics, '.', '_' and '-'",
        ));
    }
    Ok(())
}

fn metric_name(name: &str) -> String {
    name.replace('.', "_")
}

/// What a CreateTopics entry asks for, after defaults are applied.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// How a clean shutdown left the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseOutcome {
    /// Every log durable with its indexes, the checkpoints and the clean-shutdown marker
    /// written: the next start trusts the files.
    Clean,
    /// Everything acknowledged is durable, but something the next start can rebuild was
    /// not written (indexes, checkpoints or the marker, e.g. on a full disk), or a
    /// partition was offline: the next start recovers the logs from their files.
    Recoverable,
    /// A log's data could not be fsynced: what it received since its last fsync may not
    /// survive a power failure.
    DataAtRisk,
}

/// All topics of the broker.
pub struct TopicRegistry {
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    admin: Mutex<()>,
    /// Serialises checkpoint writes (the timer, DeleteRecords, topic deletion, shutdown):
    /// each collects the offsets and replaces the files under it, so a slower writer can
    /// neither clobber another's temporary file nor put older offsets back.
    checkpoints: Mutex<()>,
    data_dir: Arc<DataDir>,
    defaults: TopicDefaults,
    services: Services,
    node_id: i32,
    /// Topics clients may not write (mirror topics until promoted).
    pub read_only: super::read_only::ReadOnlyTopics,
}

impl TopicRegistry {
    /// Loads every persisted topic and opens (recovering where needed) its logs.
    pub fn open(
        data_dir: Arc<DataDir>,
        defaults: TopicDefaults,
        services: Services,
        node_id: i32,
    ) -> Result<TopicRegistry, StorageError> {
        let registry = TopicRegistry {
            topics: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            checkpoints: Mutex::new(()),
            data_dir,
            defaults,
            services,
            node_id,
            read_only: Default::default(),
        };
        let recovery_points = registry
            .data_dir
            .read_recovery_points()
            .unwrap_or_else(|e| {
                warn!("{e}; recovering every log from its start");
                HashMap::new()
            });
        let log_starts = registry
            .data_dir
            .read_log_start_offsets()
            .unwrap_or_else(|e| {
                warn!("{e}; log start offsets default to the first segment");
                HashMap::new()
            });
        let clean = registry.data_dir.was_clean_shutdown();
        let mut map = BTreeMap::new();
        for record in registry.data_dir.load_topics()? {
            let mut partitions = Vec::new();
            for index in 0..record.partitions {
                let key = (record.name.clone(), index);
                let checkpoint = match (recovery_points.get(&key), log_starts.get(&key)) {
                    (Some(&recovery_point), start) => Some(LogCheckpoint {
                        recovery_point,
                        log_start_offset: start.copied().unwrap_or(0),
                    }),
                    (None, _) => None,
                };
                partitions.push(registry.open_partition(&record, index, checkpoint, clean));
            }
            let topic = Arc::new(Topic {
                name: record.name.clone(),
                topic_id: record.topic_id,
                configs: record.configs,
                partitions,
            });
            map.insert(record.name, topic);
        }
        *crate::sync::write(&registry.topics, "registry lock") = map;
        Ok(registry)
    }

    /// Opens one partition's log. A log that cannot be opened (an I/O error, files
    /// recovery cannot make sense of) does not stop the broker: that partition alone is
    /// served offline, KAFKA_STORAGE_ERROR to clients, with one error line naming its
    /// directory and the reason, and a restart tries it again.
    fn open_partition(
        &self,
        record: &TopicRecord,
        index: i32,
        checkpoint: Option<LogCheckpoint>,
        clean: bool,
    ) -> Arc<Partition> {
        let resolved = self.defaults.resolve(&record.configs);
        let dir = self.data_dir.partition_dir(&record.name, index);
        let now = now_ms();
        let log = open_log(&dir, &resolved.log, checkpoint, clean, now)
            .and_then(|log| {
                ensure_partition_metadata(&dir, record.topic_id)?;
                Ok(log)
            })
            .unwrap_or_else(|err| {
                error!(
                    topic = %record.name, partition = index, dir = %dir.display(),
                    "cannot open the partition's log; it stays offline (KAFKA_STORAGE_ERROR) \
                     until a restart opens it: {err}"
                );
                Log::offline(&dir, resolved.log.clone(), checkpoint)
            });
        Partition::new(
            (&record.name, record.topic_id, index),
            log,
            &resolved,
            self.services.clone(),
            now,
        )
    }

    pub fn defaults(&self) -> &TopicDefaults {
        &self.defaults
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        crate::sync::read(&self.topics, "registry lock")
            .get(name)
            .cloned()
    }

    pub fn get_by_id(&self, topic_id: Uuid) -> Option<Arc<Topic>> {
        let topics = crate::sync::read(&self.topics, "registry lock");
        topics.values().find(|t| t.topic_id == topic_id).cloned()
    }

    pub fn partition(&self, name: &str, index: i32) -> Option<Arc<Partition>> {
        let topic = self.get(name)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        let topics = crate::sync::read(&self.topics, "registry lock");
        topics.values().cloned().collect()
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.list()
            .iter()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    fn check_spec(&self, spec: &TopicSpec) -> Result<(), TopicError> {
        validate_name(&spec.name)?;
        if spec.partitions < 1 || spec.partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions {
                reason: format!(
                    "Number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {}.",
                    spec.partitions
                ),
            });
        }
        if spec.replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor {
                reason: format!(
                    "Unable to replicate the partition {} time(s): The target replication factor \
                     of {} cannot be reached because only 1 broker(s) are registered.",
                    spec.replication_factor, spec.replication_factor
                ),
            });
        }
        self.defaults
            .validate_overrides(&spec.configs)
            .map_err(TopicError::InvalidConfig)?;
        let topics = crate::sync::read(&self.topics, "registry lock");
        if topics.contains_key(&spec.name) {
            return Err(TopicError::AlreadyExists {
                name: spec.name.clone(),
            });
        }
        let metric = metric_name(&spec.name);
        if let Some(existing) = topics.keys().find(|t| metric_name(t) == metric) {
            return Err(TopicError::Collides {
                name: spec.name.clone(),
                existing: existing.clone(),
            });
        }
        Ok(())
    }

    /// Creates a topic (or only validates the request when `validate_only`).
    pub fn create(&self, spec: &TopicSpec, validate_only: bool) -> Result<Arc<Topic>, TopicError> {
        let _admin = crate::sync::lock(&self.admin, "admin lock");
        self.check_spec(spec)?;
        let record = TopicRecord {
            name: spec.name.clone(),
            topic_id: Uuid::new_v4(),
            partitions: spec.partitions,
            configs: spec.configs.clone(),
        };
        if validate_only {
            return Ok(Arc::new(Topic {
                name: record.name,
                topic_id: record.topic_id,
                configs: record.configs,
                partitions: Vec::new(),
            }));
        }
        let mut partitions = Vec::new();
        for index in 0..spec.partitions {
            partitions.push(self.create_partition(&record, index)?);
        }
        self.data_dir.save_topic(&record)?;
        let topic = Arc::new(Topic {
            name: record.name.clone(),
            topic_id: record.topic_id,
            configs: record.configs,
            partitions,
        });
        crate::sync::write(&self.topics, "registry lock").insert(record.name, Arc::clone(&topic));
        info!(topic = %topic.name, partitions = spec.partitions, "created topic");
        Ok(topic)
    }

    fn create_partition(
        &self,
        record: &TopicRecord,
        index: i32,
    ) -> Result<Arc<Partition>, StorageError> {
        let dir = self.data_dir.partition_dir(&record.name, index);
        if dir.exists() {
            // Left over from a crash before the topic file was written: it was never
            // visible, so it holds nothing acknowledged.
            std::fs::remove_dir_all(&dir)
                .map_err(|e| StorageError::io("remove stale partition", &dir, e))?;
        }
        let resolved = self.defaults.resolve(&record.configs);
        let now = now_ms();
        let log = Log::create(&dir, resolved.log.clone(), 0, now)?;
        write_partition_metadata(&dir, record.topic_id)?;
        Ok(Partition::new(
            (&record.name, record.topic_id, index),
            log,
            &resolved,
            self.services.clone(),
            now,
        ))
    }

    /// Returns the topic, creating it from `spec` if it does not exist (internal topics).
    pub fn get_or_create(&self, spec: &TopicSpec) -> Result<Arc<Topic>, TopicError> {
        match self.get(&spec.name) {
            Some(topic) => Ok(topic),
            None => self.create(spec, false),
        }
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let _admin = crate::sync::lock(&self.admin, "admin lock");
        let topic = self.get(name).ok_or_else(|| TopicError::Unknown {
            name: name.to_string(),
        })?;
        crate::sync::write(&self.topics, "registry lock").remove(name);
        // The checkpoints lose the topic's entries before its files go (as Kafka's
        // `asyncDelete` does), so that a topic created again under this name never opens
        // with the deleted one's log start or recovery point.
        if let Err(err) = self.write_checkpoints() {
            crate::sync::write(&self.topics, "registry lock")
                .insert(name.to_string(), Arc::clone(&topic));
            return Err(err.into());
        }
        let record = TopicRecord {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: topic.partitions.len() as i32,
            configs: topic.configs.clone(),
        };
        self.data_dir.delete_topic(&record)?;
        info!(topic = %name, "deleted topic");
        Ok(topic.topic_id)
    }

    /// Grows a topic to `count` partitions.
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = crate::sync::lock(&self.admin, "admin lock");
        let topic = self.get(name).ok_or_else(|| TopicError::Unknown {
            name: name.to_string(),
        })?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions {
                reason: format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}."),
            });
        }
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions {
                reason: format!("Number of partitions must be at most {MAX_PARTITIONS_PER_TOPIC}."),
            });
        }
        if validate_only {
            return Ok(());
        }
        let record = TopicRecord {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: count,
            configs: topic.configs.clone(),
        };
        let mut partitions = topic.partitions.clone();
        for index in current..count {
            partitions.push(self.create_partition(&record, index)?);
        }
        self.data_dir.save_topic(&record)?;
        let grown = Arc::new(Topic {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            configs: topic.configs.clone(),
            partitions,
        });
        crate::sync::write(&self.topics, "registry lock").insert(topic.name.clone(), grown);
        info!(topic = %name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (or only validates them).
    pub fn alter_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = crate::sync::lock(&self.admin, "admin lock");
        let topic = self.get(name).ok_or_else(|| TopicError::Unknown {
            name: name.to_string(),
        })?;
        self.defaults
            .validate_overrides(&configs)
            .map_err(TopicError::InvalidConfig)?;
        if validate_only {
            return Ok(());
        }
        let record = TopicRecord {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: topic.partitions.len() as i32,
            configs: configs.clone(),
        };
        self.data_dir.save_topic(&record)?;
        let resolved = self.defaults.resolve(&configs);
        for partition in &topic.partitions {
            partition.reconfigure(&resolved);
        }
        let altered = Arc::new(Topic {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            configs,
            partitions: topic.partitions.clone(),
        });
        crate::sync::write(&self.topics, "registry lock").insert(topic.name.clone(), altered);
        info!(topic = %name, "altered topic configs");
        Ok(())
    }

    /// Writes the recovery-point and log-start-offset checkpoint files.
    pub fn write_checkpoints(&self) -> Result<(), StorageError> {
        let _serialised = crate::sync::lock(&self.checkpoints, "checkpoint lock");
        let mut recovery_points = HashMap::new();
        let mut log_starts = HashMap::new();
        for topic in self.list() {
            for partition in &topic.partitions {
                let (recovery_point, log_start) = partition.checkpoint();
                recovery_points.insert((topic.name.clone(), partition.index()), recovery_point);
                log_starts.insert((topic.name.clone(), partition.index()), log_start);
            }
        }
        self.data_dir
            .write_checkpoints(&recovery_points, &log_starts)
    }

    /// Flushes every log, writes checkpoints and the clean-shutdown marker.
    ///
    /// Every partition is tried, whatever happened to the ones before. The clean-shutdown
    /// marker (which lets the next start trust the files without a scan) is written only
    /// when every log was closed completely and the checkpoints were written; otherwise
    /// the previous checkpoints stay (they are replaced atomically, and recovery points
    /// only move after fsyncs) and the next start recovers the logs from them.
    pub fn close(&self) -> CloseOutcome {
        let mut outcome = CloseOutcome::Clean;
        for partition in self.all_partitions() {
            match partition.close() {
                Ok(true) => {}
                Ok(false) => outcome = outcome.max(CloseOutcome::Recoverable),
                Err(StorageError::LogOffline { .. }) => {
                    outcome = outcome.max(CloseOutcome::Recoverable);
                }
                Err(err) => {
                    error!(
                        topic = partition.topic(),
                        partition = partition.index(),
                        "making the log durable at shutdown failed: {err}"
                    );
                    outcome = CloseOutcome::DataAtRisk;
                }
            }
        }
        if let Err(err) = self.write_checkpoints() {
            warn!("writing checkpoints at shutdown failed; the previous ones stay: {err}");
            outcome = outcome.max(CloseOutcome::Recoverable);
        }
        if outcome == CloseOutcome::Clean {
            if let Err(err) = self.data_dir.mark_clean_shutdown() {
                warn!("writing the clean-shutdown marker failed: {err}");
                outcome = CloseOutcome::Recoverable;
            }
        }
        outcome
    }
}

/// Opens a partition's log directory, or creates it when it is missing (at the
/// checkpointed log start offset, as Kafka does).
fn open_log(
    dir: &Path,
    config: &LogConfig,
    checkpoint: Option<LogCheckpoint>,
    clean: bool,
    now: i64,
) -> Result<Log, StorageError> {
    if !dir.exists() {
        let start = checkpoint.map_or(0, |c| c.log_start_offset.max(0));
        return Log::create(dir, config.clone(), start, now);
    }
    let (log, report) = Log::open(dir, config.clone(), checkpoint, clean, now)?;
    if report.segments_recovered > 0 {
        info!(
            dir = %dir.display(),
            segments = report.segments, recovered = report.segments_recovered,
            truncated_bytes = report.truncated_bytes,
            deleted_segments = report.segments_deleted,
            log_end_offset = log.log_end_offset(),
            "recovered log"
        );
    }
    Ok(log)
}

fn partition_metadata(topic_id: Uuid) -> String {
    format!("version: 0\ntopic_id: {}\n", base64_uuid(topic_id))
}

/// Writes Kafka's `partition.metadata` file (topic id in base64 without padding).
fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<(), StorageError> {
    let path = dir.join("partition.metadata");
    std::fs::write(&path, partition_metadata(topic_id))
        .map_err(|e| StorageError::io("write partition.metadata", &path, e))
}

/// Writes `partition.metadata` at startup only when it is missing or differs, so that
/// opening a log writes nothing (a full disk must not keep a broker from starting).
fn ensure_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<(), StorageError> {
    let current = std::fs::read_to_string(dir.join("partition.metadata"));
    if current.is_ok_and(|text| text == partition_metadata(topic_id)) {
        return Ok(());
    }
    write_partition_metadata(dir, topic_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for ok in ["orders", "a.b_c-d", &"x".repeat(249)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/name",
            "ünï",
            &"x".repeat(250),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
