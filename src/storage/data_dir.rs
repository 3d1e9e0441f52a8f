//! The broker's data directory (Kafka's `log.dirs`, one directory for now):
//!
//! ```text
//! <data-dir>/.lock                                held with flock while the broker runs
//! <data-dir>/meta.properties                      version, cluster.id, node.id, directory.id
//! <data-dir>/.kafka_cleanshutdown                 present only after a clean shutdown
//! <data-dir>/recovery-point-offset-checkpoint     per partition: offset below which all is flushed
//! <data-dir>/log-start-offset-checkpoint          per partition: first readable offset
//! <data-dir>/ferry-topics/<topic>.properties      topic id, partition count and configs
//! <data-dir>/<topic>-<partition>/                 one partition's log (see `log.rs`)
//! ```
//!
//! Topic files are written atomically; a topic exists exactly when its file does. Deleting
//! a topic renames its partition directories to `<topic>-<p>.<topic id>-delete` first, so
//! that a crash midway can be completed at the next start.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use tracing::{info, warn};
use uuid::Uuid;

use super::checkpoint::{self, CheckpointEntries};
use super::error::StorageError;
use crate::properties;

const META_PROPERTIES: &str = "meta.properties";
const CLEAN_SHUTDOWN: &str = ".kafka_cleanshutdown";
const RECOVERY_POINTS: &str = "recovery-point-offset-checkpoint";
const LOG_START_OFFSETS: &str = "log-start-offset-checkpoint";
const TOPICS_DIR: &str = "ferry-topics";
const DELETE_SUFFIX: &str = "-delete";

/// A topic as persisted in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    /// Topic-level config overrides (Kafka keys such as `retention.ms`).
    pub configs: BTreeMap<String, String>,
}

/// Identity of the broker's storage, from `meta.properties`.
#[derive(Debug, Clone)]
pub struct DirIdentity {
    pub cluster_id: String,
    pub node_id: i32,
}

/// An opened, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Held for the broker's lifetime; the OS releases the lock if the process dies.
    _lock: File,
    identity: DirIdentity,
    /// Whether the previous run ended with a clean shutdown.
    was_clean_shutdown: bool,
    /// Whether this run created the directory's identity (a fresh data directory).
    is_new: bool,
}

/// A UUID in URL-safe base64 without padding (22 characters), as Kafka prints cluster and
/// topic ids.
pub fn base64_uuid(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = u128::from_be_bytes(*id.as_bytes());
    let mut out = String::with_capacity(22);
    // 21 groups of 6 bits, then the last 2 bits padded with zeros.
    for _ in 0..22 {
        out.push(ALPHABET[(bits >> 122) as usize & 63] as char);
        bits <<= 6;
    }
    out
}

fn random_cluster_id() -> String {
    base64_uuid(Uuid::new_v4())
}

impl DataDir {
    /// Creates (if needed), locks and reads the data directory. Fails if another process
    /// holds the lock or `meta.properties` names a different node id.
    pub fn open(root: &Path, node_id: i32) -> Result<DataDir, StorageError> {
        std::fs::create_dir_all(root.join(TOPICS_DIR))
            .map_err(|e| StorageError::io("create data dir", root, e))?;
        let lock_path = root.join(".lock");
        let lock = File::create(&lock_path)
            .map_err(|e| StorageError::io("create lock file", &lock_path, e))?;
        lock.try_lock().map_err(|_| {
            StorageError::io(
                "lock data dir (is another broker using it?)",
                &lock_path,
                std::io::Error::new(std::io::ErrorKind::WouldBlock, "already locked"),
            )
        })?;
        let is_new = !root.join(META_PROPERTIES).exists();
        let identity = load_or_create_identity(root, node_id)?;
        let clean_path = root.join(CLEAN_SHUTDOWN);
        let was_clean_shutdown = clean_path.exists();
        if was_clean_shutdown {
            std::fs::remove_file(&clean_path)
                .map_err(|e| StorageError::io("remove clean shutdown marker", &clean_path, e))?;
            File::open(root)
                .and_then(|d| super::fsync::sync_all(&d))
                .map_err(|e| StorageError::io("sync data dir", root, e))?;
        }
        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: lock,
            identity,
            was_clean_shutdown,
            is_new,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn identity(&self) -> &DirIdentity {
        &self.identity
    }

    pub fn was_clean_shutdown(&self) -> bool {
        self.was_clean_shutdown
    }

    /// True when this run created the data directory.
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    /// Directory of one partition's log.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root.join(format!("{topic}-{partition}"))
    }

    pub fn read_recovery_points(&self) -> Result<CheckpointEntries, StorageError> {
        checkpoint::read_offsets(&self.root.join(RECOVERY_POINTS))
    }

    pub fn read_log_start_offsets(&self) -> Result<CheckpointEntries, StorageError> {
        checkpoint::read_offsets(&self.root.join(LOG_START_OFFSETS))
    }

    pub fn write_checkpoints(
        &self,
        recovery_points: &CheckpointEntries,
        log_start_offsets: &CheckpointEntries,
    ) -> Result<(), StorageError> {
        checkpoint::write_offsets(&self.root.join(RECOVERY_POINTS), recovery_points)?;
        checkpoint::write_offsets(&self.root.join(LOG_START_OFFSETS), log_start_offsets)
    }

    /// Marks the shutdown as clean; the next start skips log recovery.
    pub fn mark_clean_shutdown(&self) -> Result<(), StorageError> {
        checkpoint::write_atomically(&self.root.join(CLEAN_SHUTDOWN), b"{\"version\":0}\n")
    }

    fn topic_path(&self, name: &str) -> PathBuf {
        self.root
            .join(TOPICS_DIR)
            .join(format!("{name}.properties"))
    }

    /// Persists a topic (create, partition growth or config change).
    pub fn save_topic(&self, topic: &TopicRecord) -> Result<(), StorageError> {
        let mut entries = BTreeMap::new();
        entries.insert("version".to_string(), "1".to_string());
        entries.insert("name".to_string(), topic.name.clone());
        entries.insert("topic.id".to_string(), topic.topic_id.to_string());
        entries.insert("partitions".to_string(), topic.partitions.to_string());
        for (key, value) in &topic.configs {
            entries.insert(format!("config.{key}"), value.clone());
        }
        let text = properties::render("Ferry topic metadata", &entries);
        checkpoint::write_atomically(&self.topic_path(&topic.name), text.as_bytes())
    }

    /// Loads every persisted topic, first completing any deletion a crash interrupted.
    pub fn load_topics(&self) -> Result<Vec<TopicRecord>, StorageError> {
        let dir = self.root.join(TOPICS_DIR);
        let entries =
            std::fs::read_dir(&dir).map_err(|e| StorageError::io("list topics", &dir, e))?;
        let mut topics = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| StorageError::io("list topics", &dir, e))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("properties") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| StorageError::io("read topic metadata", &path, e))?;
            match parse_topic(&text) {
                Some(topic) => topics.push(topic),
                None => warn!(path = %path.display(), "ignoring unreadable topic metadata file"),
            }
        }
        let pending = self.pending_deletes()?;
        topics.retain(|t| {
            let interrupted = pending.iter().any(|(_, id)| *id == t.topic_id);
            if interrupted {
                info!(topic = %t.name, "completing a topic deletion interrupted by a crash");
            }
            !interrupted
        });
        for (name, _) in pending.iter().filter(|(n, _)| self.topic_path(n).exists()) {
            self.remove_topic_file(name)?;
        }
        self.remove_pending_deletes()?;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Deletes a topic: renames its partition directories out of the way, removes its
    /// metadata file, then removes the directories.
    pub fn delete_topic(&self, topic: &TopicRecord) -> Result<(), StorageError> {
        for partition in 0..topic.partitions {
            let dir = self.partition_dir(&topic.name, partition);
            let doomed = self.root.join(format!(
                "{}-{partition}.{}{DELETE_SUFFIX}",
                topic.name,
                topic.topic_id.simple()
            ));
            match std::fs::rename(&dir, &doomed) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io("rename partition for deletion", &dir, e));
                }
                _ => {}
            }
        }
        self.remove_topic_file(&topic.name)?;
        self.remove_pending_deletes()
    }

    fn remove_topic_file(&self, name: &str) -> Result<(), StorageError> {
        let path = self.topic_path(name);
        std::fs::remove_file(&path).map_err(|e| StorageError::io("remove topic metadata", &path, e))
    }

    /// Partition directories renamed for deletion: (topic name, topic id).
    fn pending_deletes(&self) -> Result<Vec<(String, Uuid)>, StorageError> {
        let mut out = Vec::new();
        for path in self.doomed_dirs()? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let Some(stem) = name.strip_suffix(DELETE_SUFFIX) else {
                continue;
            };
            let Some((topic_partition, id)) = stem.rsplit_once('.') else {
                continue;
            };
            let Some((topic, _)) = topic_partition.rsplit_once('-') else {
                continue;
            };
            if let Ok(id) = Uuid::parse_str(id) {
                out.push((topic.to_string(), id));
            }
        }
        Ok(out)
    }

    fn doomed_dirs(&self) -> Result<Vec<PathBuf>, StorageError> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| StorageError::io("list data dir", &self.root, e))?;
        Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir() && p.to_string_lossy().ends_with(DELETE_SUFFIX))
            .collect())
    }

    fn remove_pending_deletes(&self) -> Result<(), StorageError> {
        for path in self.doomed_dirs()? {
            std::fs::remove_dir_all(&path)
                .map_err(|e| StorageError::io("remove deleted partition", &path, e))?;
        }
        Ok(())
    }
}

fn parse_topic(text: &str) -> Option<TopicRecord> {
    let map = properties::parse(text);
    if map.get("version")? != "1" {
        return None;
    }
    let configs = map
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("config.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    Some(TopicRecord {
        name: map.get("name")?.clone(),
        topic_id: Uuid::parse_str(map.get("topic.id")?).ok()?,
        partitions: map.get("partitions")?.parse().ok()?,
        configs,
    })
}

fn load_or_create_identity(root: &Path, node_id: i32) -> Result<DirIdentity, StorageError> {
    let path = root.join(META_PROPERTIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let map = properties::parse(&text);
            let bad = |what: &str| {
                StorageError::io(
                    "read meta.properties",
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
                )
            };
            let cluster_id = map
                .get("cluster.id")
                .ok_or_else(|| bad("no cluster.id"))?
                .clone();
            let stored: i32 = map
                .get("node.id")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("no valid node.id"))?;
            if stored != node_id {
                return Err(bad(&format!(
                    "data dir belongs to node.id={stored}, but this broker is node.id={node_id}"
                )));
            }
            Ok(DirIdentity {
                cluster_id,
                node_id,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = DirIdentity {
                cluster_id: random_cluster_id(),
                node_id,
            };
            let mut map = BTreeMap::new();
            map.insert("version".to_string(), "1".to_string());
            map.insert("cluster.id".to_string(), identity.cluster_id.clone());
            map.insert("node.id".to_string(), node_id.to_string());
            map.insert("directory.id".to_string(), random_cluster_id());
            let text = properties::render("Ferry data directory identity", &map);
            checkpoint::write_atomically(&path, text.as_bytes())?;
            Ok(identity)
        }
        Err(e) => Err(StorageError::io("read meta.properties", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: i32) -> TopicRecord {
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        TopicRecord {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs,
        }
    }

    #[test]
    fn base64_ids_match_kafkas_encoding() {
        assert_eq!(base64_uuid(Uuid::from_u128(0)), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            base64_uuid(Uuid::from_u128(u128::MAX)),
            "_____________________w"
        );
    }

    #[test]
    fn identity_and_topics_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (cluster_id, saved) = {
            let dir = DataDir::open(tmp.path(), 1).unwrap();
            assert!(!dir.was_clean_shutdown());
            let saved = topic("orders", 3);
            dir.save_topic(&saved).unwrap();
            dir.mark_clean_shutdown().unwrap();
            (dir.identity().cluster_id.clone(), saved)
        };
        let dir = DataDir::open(tmp.path(), 1).unwrap();
        assert!(dir.was_clean_shutdown());
        assert_eq!(dir.identity().cluster_id, cluster_id);
        assert_eq!(cluster_id.len(), 22);
        assert_eq!(dir.load_topics().unwrap(), vec![saved]);
        drop(dir);
        assert!(
            DataDir::open(tmp.path(), 2).is_err(),
            "node id mismatch must be refused"
        );
    }

    #[test]
    fn a_second_broker_cannot_lock_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = DataDir::open(tmp.path(), 1).unwrap();
        assert!(DataDir::open(tmp.path(), 1).is_err());
    }

    #[test]
    fn interrupted_delete_is_completed_on_load() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path(), 1).unwrap();
        let doomed = topic("doomed", 2);
        dir.save_topic(&doomed).unwrap();
        std::fs::create_dir_all(dir.partition_dir("doomed", 0)).unwrap();
        // Simulate a crash after the rename, before the metadata file was removed.
        let renamed = tmp.path().join(format!(
            "doomed-0.{}{DELETE_SUFFIX}",
            doomed.topic_id.simple()
        ));
        std::fs::rename(dir.partition_dir("doomed", 0), &renamed).unwrap();
        assert!(dir.load_topics().unwrap().is_empty());
        assert!(!renamed.exists());
        let kept = topic("kept", 1);
        dir.save_topic(&kept).unwrap();
        dir.delete_topic(&kept).unwrap();
        assert!(dir.load_topics().unwrap().is_empty());
    }
}
