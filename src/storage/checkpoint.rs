//! Kafka's offset checkpoint files (`recovery-point-offset-checkpoint`,
//! `log-start-offset-checkpoint`): a version line (0), an entry count, then one
//! `topic partition offset` line per partition. Written to a temporary file, fsynced and
//! renamed over the old one, so a crash leaves either the old or the new file.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::error::StorageError;
use super::fsync;

/// A partition's offset in a checkpoint file.
pub type CheckpointEntries = HashMap<(String, i32), i64>;

/// Writes `contents` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), StorageError> {
    write_atomically_with_mode(path, contents, 0o644)
}

/// `write_atomically` for files only the broker's user may read (credentials, a mirror
/// link's source passwords): mode 0600 from the moment the file exists.
pub fn write_private_atomically(path: &Path, contents: &[u8]) -> Result<(), StorageError> {
    write_atomically_with_mode(path, contents, 0o600)
}

fn write_atomically_with_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), StorageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        fsync::sync_all(&file)?;
        std::fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            fsync::sync_all(&File::open(parent)?)?;
        }
        Ok(())
    };
    write().map_err(|e| StorageError::io("write file atomically", path, e))
}

/// Writes an offset checkpoint file in Kafka's format.
pub fn write_offsets(path: &Path, entries: &CheckpointEntries) -> Result<(), StorageError> {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort();
    let mut text = format!("0\n{}\n", sorted.len());
    for ((topic, partition), offset) in sorted {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_atomically(path, text.as_bytes())
}

/// Reads an offset checkpoint file. A missing file is empty; a malformed one is an error
/// (the caller then recovers every log from the start, which is always safe).
pub fn read_offsets(path: &Path) -> Result<CheckpointEntries, StorageError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(StorageError::io("read checkpoint", path, e)),
    };
    parse_offsets(&text).ok_or_else(|| {
        StorageError::io(
            "parse checkpoint",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed checkpoint file"),
        )
    })
}

fn parse_offsets(text: &str) -> Option<CheckpointEntries> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = HashMap::new();
    for line in lines.by_ref().take(count) {
        // Topic names cannot contain spaces, so splitting from the right is unambiguous.
        let mut parts = line.rsplitn(3, ' ');
        let offset: i64 = parts.next()?.parse().ok()?;
        let partition: i32 = parts.next()?.parse().ok()?;
        let topic = parts.next()?.to_string();
        entries.insert((topic, partition), offset);
    }
    (entries.len() == count).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery-point-offset-checkpoint");
        let mut entries = HashMap::new();
        entries.insert(("orders".to_string(), 0), 42);
        entries.insert(("orders".to_string(), 1), 7);
        write_offsets(&path, &entries).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "0\n2\norders 0 42\norders 1 7\n");
        assert_eq!(read_offsets(&path).unwrap(), entries);
    }

    #[test]
    fn missing_is_empty_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        assert!(read_offsets(&path).unwrap().is_empty());
        std::fs::write(&path, "0\n3\na 0 1\n").unwrap();
        assert!(read_offsets(&path).is_err());
        std::fs::write(&path, "1\n0\n").unwrap();
        assert!(read_offsets(&path).is_err());
    }
}
