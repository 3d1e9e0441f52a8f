//! Producer ids that are never reused, even across crashes: ids are handed out from a
//! block whose end is persisted (fsynced, atomically replaced) before the first id of the
//! block is used. A crash wastes at most the rest of a block.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::storage::checkpoint::write_atomically;
use crate::storage::StorageError;

/// Ids reserved per write of the block file.
const BLOCK_SIZE: i64 = 1_000;

struct Range {
    next: i64,
    end: i64,
}

pub struct ProducerIds {
    path: PathBuf,
    range: Mutex<Range>,
}

impl ProducerIds {
    /// Opens the allocator; the first id handed out is the persisted block end.
    pub fn open(path: PathBuf) -> Result<ProducerIds, StorageError> {
        let start = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| {
                StorageError::io(
                    "read producer id block",
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StorageError::io("read producer id block", &path, e)),
        };
        Ok(ProducerIds {
            path,
            range: Mutex::new(Range {
                next: start,
                end: start,
            }),
        })
    }

    /// Makes every id handed out from now on larger than `id` (a producer id another
    /// cluster gave out, arriving in mirrored batches: a local producer must never share
    /// it, or its sequence 0 would meet the mirrored producer's sequences). Persisted
    /// before it returns; cheap when `id` is already below the next id.
    pub fn reserve_above(&self, id: i64) -> Result<(), StorageError> {
        let mut range = crate::sync::lock(&self.range, "producer id lock");
        if id < range.next {
            return Ok(());
        }
        let next = id.saturating_add(1);
        if next > range.end {
            let end = next.saturating_add(BLOCK_SIZE);
            write_atomically(&self.path, format!("{end}\n").as_bytes())?;
            range.end = end;
        }
        range.next = next;
        Ok(())
    }

    /// A producer id never handed out before.
    pub fn next(&self) -> Result<i64, StorageError> {
        let mut range = crate::sync::lock(&self.range, "producer id lock");
        if range.next >= range.end {
            let end = range.next + BLOCK_SIZE;
            write_atomically(&self.path, format!("{end}\n").as_bytes())?;
            range.end = end;
        }
        let id = range.next;
        range.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry-producer-ids");
        let first = ProducerIds::open(path.clone()).unwrap();
        let a = first.next().unwrap();
        let b = first.next().unwrap();
        assert_eq!((a, b), (0, 1));
        drop(first);
        let second = ProducerIds::open(path).unwrap();
        assert!(second.next().unwrap() >= BLOCK_SIZE);
    }

    #[test]
    fn ids_seen_elsewhere_are_never_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry-producer-ids");
        let ids = ProducerIds::open(path.clone()).unwrap();
        assert_eq!(ids.next().unwrap(), 0);
        ids.reserve_above(5_000).unwrap();
        ids.reserve_above(7).unwrap();
        assert_eq!(ids.next().unwrap(), 5_001);
        drop(ids);
        let reopened = ProducerIds::open(path).unwrap();
        assert!(reopened.next().unwrap() > 5_001);
    }
}
