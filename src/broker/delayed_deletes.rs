//! Files removed after a delay: segments retention took out of their logs stay on disk,
//! renamed `*.deleted`, for `file.delete.delay.ms` (a fetch that planned a read of one just
//! before keeps its open file anyway, on Linux; the delay is Kafka's, for operators and
//! other readers), then the periodic work removes them. Files still waiting at shutdown
//! are removed when their log is next opened.
//!
//! The queue holds at most the files of the segments retention deleted within one delay;
//! each entry is a path and a time.

use std::path::PathBuf;
use std::sync::Mutex;

use tracing::warn;

/// Paths to remove and when (milliseconds since the epoch).
#[derive(Default)]
pub struct DelayedDeletes {
    due: Mutex<Vec<(i64, PathBuf)>>,
}

impl DelayedDeletes {
    /// Removes `paths` once `due_ms` has passed.
    pub fn schedule(&self, paths: Vec<PathBuf>, due_ms: i64) {
        let mut due = crate::sync::lock(&self.due, "delayed deletes");
        due.extend(paths.into_iter().map(|path| (due_ms, path)));
    }

    /// Removes every file whose time has come; returns how many went.
    pub fn remove_due(&self, now_ms: i64) -> usize {
        let ready: Vec<PathBuf> = {
            let mut due = crate::sync::lock(&self.due, "delayed deletes");
            let (ready, waiting) = std::mem::take(&mut *due)
                .into_iter()
                .partition(|(at, _)| *at <= now_ms);
            *due = waiting;
            ready.into_iter().map(|(_, path)| path).collect()
        };
        let mut removed = 0;
        for path in ready {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(file = %path.display(), "removing a deleted segment failed: {e}"),
            }
        }
        removed
    }

    /// Files waiting.
    pub fn pending(&self) -> usize {
        crate::sync::lock(&self.due, "delayed deletes").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_only_once_their_delay_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let (early, late) = (dir.path().join("a.deleted"), dir.path().join("b.deleted"));
        std::fs::write(&early, b"x").unwrap();
        std::fs::write(&late, b"y").unwrap();
        let deletes = DelayedDeletes::default();
        deletes.schedule(vec![early.clone()], 100);
        deletes.schedule(vec![late.clone(), dir.path().join("gone.deleted")], 200);
        assert_eq!(deletes.remove_due(99), 0);
        assert_eq!(deletes.remove_due(150), 1);
        assert!(!early.exists() && late.exists());
        assert_eq!(deletes.remove_due(200), 1);
        assert!(!late.exists());
        assert_eq!(deletes.pending(), 0);
    }
}
