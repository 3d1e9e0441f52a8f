//! The SCRAM credential store: per user and mechanism the salt, iterations, StoredKey and
//! ServerKey (never a password), in `scram-credentials.json` in the data directory,
//! replaced atomically on every change and applied to new authentications at once.
//! PLAIN checks passwords against the same credentials.
//!
//! Each change is one whole-file write, which keeps the form of Kafka's metadata records
//! (`UserScramCredentialRecord`: name, mechanism, salt, keys, iterations) so the store can
//! later become records of a replicated metadata log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::storage::checkpoint::write_private_atomically;

const FILE_NAME: &str = "scram-credentials.json";
/// Largest credential file read at startup.
const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most users the store holds.
pub const MAX_USERS: usize = 100_000;
/// Longest user name accepted.
pub const MAX_USER_NAME_BYTES: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StoredCredential {
    salt: String,
    stored_key: String,
    server_key: String,
    iterations: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    /// user → mechanism name → credential
    users: BTreeMap<String, BTreeMap<String, StoredCredential>>,
}

type Users = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;

/// Why the store could not be read or changed.
#[derive(Debug)]
pub enum CredentialError {
    Corrupt { path: PathBuf, reason: String },
    Write(String),
}

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialError::Corrupt { path, reason } => write!(
                f,
                "the SCRAM credential file {} cannot be read ({reason}); restore it from a \
                 backup or move it away (users then have to be created again)",
                path.display()
            ),
            CredentialError::Write(reason) => {
                write!(f, "saving SCRAM credentials failed: {reason}")
            }
        }
    }
}

impl std::error::Error for CredentialError {}

/// One requested change.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    Delete {
        user: String,
        mechanism: Option<ScramMechanism>,
    },
    Upsert {
        user: String,
        mechanism: Option<ScramMechanism>,
        iterations: i32,
        credential: ScramCredential,
    },
}

/// Why one change was refused, with Kafka's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    UnknownMechanism,
    Unacceptable(String),
    NotFound(String),
    TooMany,
}

/// The credential store.
#[derive(Debug)]
pub struct CredentialStore {
    path: PathBuf,
    users: RwLock<Users>,
}

fn decode(field: &str, text: &str) -> Result<Vec<u8>, String> {
    BASE64
        .decode(text)
        .map_err(|e| format!("{field} is not base64: {e}"))
}

impl CredentialStore {
    /// Reads the store (empty if there is no file yet).
    pub fn open(data_dir: &Path) -> Result<CredentialStore, CredentialError> {
        let path = data_dir.join(FILE_NAME);
        let corrupt = |reason: String| CredentialError::Corrupt {
            path: path.clone(),
            reason,
        };
        let users = match std::fs::metadata(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Users::new(),
            Err(err) => return Err(corrupt(err.to_string())),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(corrupt(format!("larger than {MAX_FILE_BYTES} bytes")))
            }
            Ok(_) => {
                let bytes = std::fs::read(&path).map_err(|e| corrupt(e.to_string()))?;
                let file: StoreFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                from_file(file).map_err(corrupt)?
            }
        };
        Ok(CredentialStore {
            path,
            users: RwLock::new(users),
        })
    }

    /// The credential of `user` for `mechanism`.
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        crate::sync::read(&self.users, "SCRAM credentials")
            .get(user)?
            .get(&mechanism)
            .cloned()
    }

    /// Every credential of `user` (PLAIN tries each).
    pub fn all_of(&self, user: &str) -> Vec<(ScramMechanism, ScramCredential)> {
        crate::sync::read(&self.users, "SCRAM credentials")
            .get(user)
            .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    /// Users with their (mechanism, iterations), in name order.
    pub fn describe(&self) -> Vec<(String, Vec<(ScramMechanism, u32)>)> {
        crate::sync::read(&self.users, "SCRAM credentials")
            .iter()
            .map(|(user, m)| {
                (
                    user.clone(),
                    m.iter().map(|(k, c)| (*k, c.iterations)).collect(),
                )
            })
            .collect()
    }

    /// Applies the changes that pass validation as one atomic file write; returns one
    /// result per change, in order. A failed write changes nothing.
    pub fn apply(
        &self,
        changes: &[CredentialChange],
    ) -> Result<Vec<Result<(), ChangeError>>, CredentialError> {
        let mut users = crate::sync::write(&self.users, "SCRAM credentials");
        let mut next = users.clone();
        let results: Vec<_> = changes.iter().map(|c| apply_one(&mut next, c)).collect();
        if next != *users {
            let bytes = serde_json::to_vec_pretty(&to_file(&next))
                .map_err(|e| CredentialError::Write(e.to_string()))?;
            write_private_atomically(&self.path, &bytes)
                .map_err(|e| CredentialError::Write(e.to_string()))?;
            *users = next;
        }
        Ok(results)
    }
}

/// Creates SCRAM-SHA-256 and SCRAM-SHA-512 credentials for each `user:password` line of
/// `text` whose user has none yet (a user already present keeps its credentials, so a
/// password changed later is not reset at the next start). Returns the users created.
pub fn bootstrap(store: &CredentialStore, text: &str) -> Result<Vec<String>, String> {
    let mut changes = Vec::new();
    let mut created = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, password) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected user:password", number + 1))?;
        if user.is_empty() || password.is_empty() {
            return Err(format!("line {}: empty user or password", number + 1));
        }
        if !store.all_of(user).is_empty() {
            continue;
        }
        for mechanism in ScramMechanism::ALL {
            let credential = ScramCredential::from_password(
                mechanism,
                password,
                super::scram::DEFAULT_ITERATIONS,
            )
            .map_err(|e| format!("no randomness for a salt: {e}"))?;
            changes.push(CredentialChange::Upsert {
                user: user.to_string(),
                mechanism: Some(mechanism),
                iterations: super::scram::DEFAULT_ITERATIONS as i32,
                credential,
            });
        }
        created.push(user.to_string());
    }
    let results = store.apply(&changes).map_err(|e| e.to_string())?;
    if let Some(Err(err)) = results.into_iter().find(Result::is_err) {
        return Err(format!("{err:?}"));
    }
    Ok(created)
}

fn apply_one(users: &mut Users, change: &CredentialChange) -> Result<(), ChangeError> {
    match change {
        CredentialChange::Delete { user, mechanism } => {
            if user.is_empty() {
                return Err(ChangeError::Unacceptable(
                    "Username must not be empty".into(),
                ));
            }
            let mechanism = mechanism.ok_or(ChangeError::UnknownMechanism)?;
            let missing = || {
                ChangeError::NotFound(
                    "Attempt to delete a user credential that does not exist".into(),
                )
            };
            let of_user = users.get_mut(user).ok_or_else(missing)?;
            of_user.remove(&mechanism).ok_or_else(missing)?;
            if of_user.is_empty() {
                users.remove(user);
            }
            Ok(())
        }
        CredentialChange::Upsert {
            user,
            mechanism,
            iterations,
            credential,
        } => {
            if user.is_empty() {
                return Err(ChangeError::Unacceptable(
                    "Username must not be empty".into(),
                ));
            }
            if user.len() > MAX_USER_NAME_BYTES {
                return Err(ChangeError::Unacceptable(format!(
                    "Username must not exceed {MAX_USER_NAME_BYTES} bytes"
                )));
            }
            let mechanism = mechanism.ok_or(ChangeError::UnknownMechanism)?;
            if *iterations < MIN_ITERATIONS as i32 {
                return Err(ChangeError::Unacceptable("Too few iterations".into()));
            }
            if *iterations > MAX_ITERATIONS as i32 {
                return Err(ChangeError::Unacceptable("Too many iterations".into()));
            }
            if !users.contains_key(user) && users.len() >= MAX_USERS {
                return Err(ChangeError::TooMany);
            }
            users
                .entry(user.clone())
                .or_default()
                .insert(mechanism, credential.clone());
            Ok(())
        }
    }
}

fn from_file(file: StoreFile) -> Result<Users, String> {
    let mut users = Users::new();
    for (user, mechanisms) in file.users {
        let mut of_user = BTreeMap::new();
        for (name, stored) in mechanisms {
            let mechanism = ScramMechanism::from_name(&name)
                .ok_or_else(|| format!("user {user:?}: unknown mechanism {name:?}"))?;
            of_user.insert(
                mechanism,
                ScramCredential {
                    salt: decode("salt", &stored.salt)?,
                    stored_key: decode("stored_key", &stored.stored_key)?,
                    server_key: decode("server_key", &stored.server_key)?,
                    iterations: stored.iterations,
                },
            );
        }
        users.insert(user, of_user);
    }
    Ok(users)
}

fn to_file(users: &Users) -> StoreFile {
    StoreFile {
        users: users
            .iter()
            .map(|(user, m)| {
                let entries = m
                    .iter()
                    .map(|(mechanism, c)| {
                        (
                            mechanism.name().to_string(),
                            StoredCredential {
                                salt: BASE64.encode(&c.salt),
                                stored_key: BASE64.encode(&c.stored_key),
                                server_key: BASE64.encode(&c.server_key),
                                iterations: c.iterations,
                            },
                        )
                    })
                    .collect();
                (user.clone(), entries)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(user: &str, password: &str, iterations: i32) -> CredentialChange {
        CredentialChange::Upsert {
            user: user.into(),
            mechanism: Some(ScramMechanism::Sha256),
            iterations,
            credential: ScramCredential::from_password(
                ScramMechanism::Sha256,
                password,
                MIN_ITERATIONS,
            )
            .unwrap(),
        }
    }

    #[test]
    fn changes_persist_and_invalid_ones_are_refused_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let results = store
            .apply(&[
                upsert("alice", "a", 4096),
                upsert("", "b", 4096),
                upsert("carol", "c", 100),
                CredentialChange::Delete {
                    user: "dave".into(),
                    mechanism: Some(ScramMechanism::Sha512),
                },
            ])
            .unwrap();
        assert_eq!(results[0], Ok(()));
        assert!(matches!(results[1], Err(ChangeError::Unacceptable(_))));
        assert!(matches!(results[2], Err(ChangeError::Unacceptable(_))));
        assert!(matches!(results[3], Err(ChangeError::NotFound(_))));
        let reopened = CredentialStore::open(dir.path()).unwrap();
        let credential = reopened.get("alice", ScramMechanism::Sha256).unwrap();
        assert!(credential.matches_password(ScramMechanism::Sha256, "a"));
        assert_eq!(reopened.describe().len(), 1);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("\"a\""), "no password is stored");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the broker's user reads it");
        reopened
            .apply(&[CredentialChange::Delete {
                user: "alice".into(),
                mechanism: Some(ScramMechanism::Sha256),
            }])
            .unwrap();
        assert!(CredentialStore::open(dir.path())
            .unwrap()
            .describe()
            .is_empty());
    }

    #[test]
    fn a_corrupt_file_stops_startup_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"users\": {\"a\": 1}}").unwrap();
        let err = CredentialStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE_NAME), "{err}");
    }
}
