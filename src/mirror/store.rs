//! The mirror's durable state: every link, its source, the topics it mirrors and their
//! state, and which groups it syncs, in one JSON file (`mirror-links.json` in the data
//! directory) replaced atomically (temp file, fsync, rename, fsync of the directory) on
//! every change, readable only by the broker's user (it holds source passwords). The mirrored logs themselves are the data checkpoint: where a partition
//! resumes is its log end, never a number kept here.
//!
//! Invariant: a topic's entry is written (state `mirroring`) before its local topic is
//! created, and `promoted` is written before the topic is made writable, so a crash never
//! leaves a mirror topic that takes produce or a promoted one that does not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::storage::checkpoint::write_private_atomically;

/// The file in the data directory.
pub const FILE_NAME: &str = "mirror-links.json";
/// At most this many links (each runs its own fetch loop and source connections).
pub const MAX_LINKS: usize = 64;
/// Largest state file read back (a corrupt or foreign file must not exhaust memory).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// What a mirrored topic is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TopicState {
    /// Copying from the source; clients may read, not write.
    Mirroring,
    /// Copying stopped by the operator; still read-only.
    Paused,
    /// An ordinary writable Ferry topic now.
    Promoted,
    /// Copying stopped on a problem that needs the operator; still read-only.
    Failed { reason: String },
}

impl TopicState {
    pub fn name(&self) -> &'static str {
        match self {
            TopicState::Mirroring => "mirroring",
            TopicState::Paused => "paused",
            TopicState::Promoted => "promoted",
            TopicState::Failed { .. } => "failed",
        }
    }

    /// Whether clients may not write the topic.
    pub fn is_read_only(&self) -> bool {
        !matches!(self, TopicState::Promoted)
    }
}

/// One mirrored topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    #[serde(flatten)]
    pub state: TopicState,
    /// The source topic's id when first seen (a different id later means the source topic
    /// was deleted and re-created: the mirror stops instead of mixing two topics).
    #[serde(default)]
    pub source_topic_id: Option<String>,
}

/// One link to a source cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub name: String,
    /// The source's bootstrap address.
    pub source: String,
    /// Kafka client properties for the source connection.
    #[serde(default)]
    pub source_config: BTreeMap<String, String>,
    /// Bytes per second the link may copy (None: unlimited).
    #[serde(default)]
    pub max_bytes_per_second: Option<u64>,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicRecord>,
    /// Groups whose committed offsets are synced, by name.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Groups whose committed offsets are synced, by pattern (whole-name match).
    #[serde(default)]
    pub group_regex: Option<String>,
    /// `ferry mirror add --sync-acls` was asked: copy the source's ACLs once Ferry has an
    /// authorizer (pending until then).
    #[serde(default)]
    pub sync_acls: bool,
}

/// Every link, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorState {
    #[serde(default)]
    pub links: BTreeMap<String, LinkRecord>,
}

impl MirrorState {
    /// The link mirroring `topic`, if any.
    pub fn owner_of(&self, topic: &str) -> Option<&LinkRecord> {
        self.links.values().find(|l| l.topics.contains_key(topic))
    }
}

/// Why the state file could not be read or written.
#[derive(Debug)]
pub enum StoreError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Corrupt {
        path: PathBuf,
        reason: String,
    },
    Write(crate::storage::StorageError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StoreError::Corrupt { path, reason } => write!(
                f,
                "{} is not a valid mirror state file ({reason}); restore it from a backup or \
                 move it away to start without links",
                path.display()
            ),
            StoreError::Write(err) => write!(f, "saving the mirror state failed: {err}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Reads the state (empty if the file does not exist).
pub fn load(data_dir: &Path) -> Result<MirrorState, StoreError> {
    let path = data_dir.join(FILE_NAME);
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(MirrorState::default()),
        Err(err) => return Err(io(err)),
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(StoreError::Corrupt {
            path,
            reason: format!("{} bytes, more than {MAX_FILE_BYTES}", metadata.len()),
        });
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path,
        reason: e.to_string(),
    })
}

/// Replaces the state file atomically.
pub fn save(data_dir: &Path, state: &MirrorState) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
        path: data_dir.join(FILE_NAME),
        reason: e.to_string(),
    })?;
    write_private_atomically(&data_dir.join(FILE_NAME), &bytes).map_err(StoreError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), MirrorState::default());
        let mut state = MirrorState::default();
        let mut link = LinkRecord {
            name: "east".into(),
            source: "127.0.0.1:9092".into(),
            source_config: BTreeMap::new(),
            max_bytes_per_second: Some(1 << 20),
            topics: BTreeMap::new(),
            groups: vec!["billing".into()],
            group_regex: Some("app-.*".into()),
            sync_acls: true,
        };
        link.topics.insert(
            "orders".into(),
            TopicRecord {
                state: TopicState::Failed {
                    reason: "source topic re-created".into(),
                },
                source_topic_id: Some("abc".into()),
            },
        );
        state.links.insert("east".into(), link);
        save(dir.path(), &state).unwrap();
        assert_eq!(load(dir.path()).unwrap(), state);
        assert_eq!(state.owner_of("orders").unwrap().name, "east");
    }

    #[test]
    fn a_state_file_over_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join(FILE_NAME)).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid mirror state file"), "{err}");
    }
}
