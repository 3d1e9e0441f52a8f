//! The topic registry: which topics exist, their ids, configs and partitions. Changes
//! (create, delete, grow, reconfigure) are serialised by one admin lock and persisted
//! through the data directory before they become visible; lookups on the data path take
//! only a read lock on the name map.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use tracing::{info, warn};
use uuid::Uuid;

use super::now_ms;
use super::partition::{Partition, Services};
use crate::config::topic::TopicDefaults;
use crate::config::ConfigError;
use crate::storage::data_dir::{base64_uuid, DataDir, TopicRecord};
use crate::storage::log::{Log, LogCheckpoint};
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

/// All topics of the broker.
pub struct TopicRegistry {
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    admin: Mutex<()>,
    data_dir: Arc<DataDir>,
    defaults: TopicDefaults,
    services: Services,
    node_id: i32,
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
            data_dir,
            defaults,
            services,
            node_id,
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
                partitions.push(registry.open_partition(&record, index, checkpoint, clean)?);
            }
            let topic = Arc::new(Topic {
                name: record.name.clone(),
                topic_id: record.topic_id,
                configs: record.configs,
                partitions,
            });
            map.insert(record.name, topic);
        }
        *registry
            .topics
            .write()
            .expect("registry lock is never held across a panic") = map;
        Ok(registry)
    }

    fn open_partition(
        &self,
        record: &TopicRecord,
        index: i32,
        checkpoint: Option<LogCheckpoint>,
        clean: bool,
    ) -> Result<Arc<Partition>, StorageError> {
        let resolved = self.defaults.resolve(&record.configs);
        let dir = self.data_dir.partition_dir(&record.name, index);
        let now = now_ms();
        let log = if dir.exists() {
            let (log, report) = Log::open(&dir, resolved.log.clone(), checkpoint, clean, now)?;
            if report.segments_recovered > 0 {
                info!(
                    topic = %record.name, partition = index,
                    segments = report.segments, recovered = report.segments_recovered,
                    truncated_bytes = report.truncated_bytes,
                    deleted_segments = report.segments_deleted,
                    log_end_offset = log.log_end_offset(),
                    "recovered log"
                );
            }
            log
        } else {
            Log::create(&dir, resolved.log.clone(), 0, now)?
        };
        write_partition_metadata(&dir, record.topic_id)?;
        Ok(Partition::new(
            (&record.name, record.topic_id, index),
            log,
            &resolved,
            self.services.clone(),
            now,
        ))
    }

    pub fn defaults(&self) -> &TopicDefaults {
        &self.defaults
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .expect("registry lock is never held across a panic")
            .get(name)
            .cloned()
    }

    pub fn get_by_id(&self, topic_id: Uuid) -> Option<Arc<Topic>> {
        let topics = self
            .topics
            .read()
            .expect("registry lock is never held across a panic");
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
        let topics = self
            .topics
            .read()
            .expect("registry lock is never held across a panic");
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
        let topics = self
            .topics
            .read()
            .expect("registry lock is never held across a panic");
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
        let _admin = self
            .admin
            .lock()
            .expect("admin lock is never held across a panic");
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
        self.topics
            .write()
            .expect("registry lock is never held across a panic")
            .insert(record.name, Arc::clone(&topic));
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
        let _admin = self
            .admin
            .lock()
            .expect("admin lock is never held across a panic");
        let topic = self.get(name).ok_or_else(|| TopicError::Unknown {
            name: name.to_string(),
        })?;
        self.topics
            .write()
            .expect("registry lock is never held across a panic")
            .remove(name);
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
        let _admin = self
            .admin
            .lock()
            .expect("admin lock is never held across a panic");
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
        self.topics
            .write()
            .expect("registry lock is never held across a panic")
            .insert(topic.name.clone(), grown);
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
        let _admin = self
            .admin
            .lock()
            .expect("admin lock is never held across a panic");
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
        self.topics
            .write()
            .expect("registry lock is never held across a panic")
            .insert(topic.name.clone(), altered);
        info!(topic = %name, "altered topic configs");
        Ok(())
    }

    /// Writes the recovery-point and log-start-offset checkpoint files.
    pub fn write_checkpoints(&self) -> Result<(), StorageError> {
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
    pub fn close(&self) -> Result<(), StorageError> {
        for partition in self.all_partitions() {
            partition.close()?;
        }
        self.write_checkpoints()?;
        self.data_dir.mark_clean_shutdown()
    }
}

/// Writes Kafka's `partition.metadata` file (topic id in base64 without padding).
fn write_partition_metadata(dir: &std::path::Path, topic_id: Uuid) -> Result<(), StorageError> {
    let text = format!("version: 0\ntopic_id: {}\n", base64_uuid(topic_id));
    let path = dir.join("partition.metadata");
    std::fs::write(&path, text).map_err(|e| StorageError::io("write partition.metadata", &path, e))
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
