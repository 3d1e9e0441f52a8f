//! Retention (`cleanup.policy=delete`): which whole segments `retention.ms` and
//! `retention.bytes` take, and how their files leave, as Kafka's `UnifiedLog` does it.
//!
//! 1. [`Log::take_retired_segments`] picks the oldest segments, in order, while each is
//!    expired by time (its largest timestamp older than `retention.ms`) or the log would
//!    still be at least `retention.bytes` without it. The active segment counts too: when
//!    every segment is to go, the log first rolls a new, empty active segment at its end,
//!    so an idle topic's old records do go away. Segments holding offsets at or above the
//!    high watermark never go. The log start offset moves past them in memory.
//! 2. The caller writes the log-start checkpoint, then [`RetiredSegments::rename`] renames
//!    their files to `*.deleted`, and they are removed after `file.delete.delay.ms`.
//!
//! A crash between the steps is safe: before the checkpoint the files are still the log's
//! and the old start offset comes back with them; after it, opening the log drops the
//! segments below the checkpointed start; `*.deleted` files left over are removed when the
//! log is opened ([`remove_leftover_deleted_files`]). Nothing below the start is served and
//! nothing at or above it is lost.

use std::path::{Path, PathBuf};

use super::Log;
use crate::storage::error::StorageError;
use crate::storage::segment::Segment;

/// Suffix of a segment file that retention removed from the log, awaiting deletion.
pub const DELETED_SUFFIX: &str = ".deleted";

/// Segments retention took out of a log, still on disk under their names.
#[derive(Debug, Default)]
pub struct RetiredSegments {
    segments: Vec<Segment>,
    /// `file.delete.delay.ms` of the log they came from.
    pub delete_delay_ms: i64,
}

impl RetiredSegments {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Bytes of the segments' log files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size_bytes).sum()
    }

    /// Renames every file of the segments to `<name>.deleted` (the log-start checkpoint
    /// must already say they are gone) and returns the new paths, to remove after the
    /// delay. Readers holding a segment's file keep reading it until they let go.
    pub fn rename(self) -> Result<Vec<PathBuf>, StorageError> {
        let mut renamed = Vec::new();
        for segment in &self.segments {
            for path in segment.file_paths() {
                let target = deleted_name(&path);
                match std::fs::rename(&path, &target) {
                    Ok(()) => renamed.push(target),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io("rename deleted segment", path, e)),
                }
            }
        }
        Ok(renamed)
    }
}

/// `<path>.deleted`: where a file removed from the log waits for its delayed deletion.
pub(super) fn deleted_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}

/// Removes `*.deleted` files a crash left in a log directory before their delay ended.
pub(super) fn remove_leftover_deleted_files(dir: &Path) -> Result<(), StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list log dir", dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let leftover = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(DELETED_SUFFIX));
        if leftover {
            std::fs::remove_file(&path)
                .map_err(|e| StorageError::io("remove deleted segment", &path, e))?;
        }
    }
    Ok(())
}

impl Log {
    /// Takes out the segments retention deletes (see the module documentation), moving the
    /// log start offset past them; `high_watermark` bounds what may go. Their files stay
    /// until [`RetiredSegments::rename`].
    pub fn take_retired_segments(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<RetiredSegments, StorageError> {
        self.check_online()?;
        let delete_delay_ms = self.config.file_delete_delay_ms;
        let count = self.retired_count(now_ms, high_watermark);
        if count == 0 {
            return Ok(RetiredSegments {
                segments: Vec::new(),
                delete_delay_ms,
            });
        }
        if count == self.segments.len() {
            // Kafka rolls first, so that the log keeps an (empty) active segment.
            self.roll_to(self.log_end_offset, now_ms)?;
        }
        let mut segments = Vec::with_capacity(count);
        for _ in 0..count {
            if let Some((_, segment)) = self.segments.pop_first() {
                segments.push(segment);
            }
        }
        let first_kept = self.first_base()?;
        self.move_log_start(first_kept);
        self.check_invariants()?;
        Ok(RetiredSegments {
            segments,
            delete_delay_ms,
        })
    }

    /// How many segments, oldest first, retention takes now.
    fn retired_count(&self, now_ms: i64, high_watermark: i64) -> usize {
        if !self.config.delete_enabled {
            return 0;
        }
        let (retention_ms, retention_bytes) =
            (self.config.retention_ms, self.config.retention_bytes);
        let mut remaining = self.size_bytes();
        let mut count = 0;
        for segment in self.segments.values() {
            if segment.is_empty() || segment.next_offset() > high_watermark {
                break;
            }
            let max_timestamp = segment.max_timestamp();
            let expired = retention_ms >= 0
                && max_timestamp >= 0
                && now_ms.saturating_sub(max_timestamp) > retention_ms;
            let over_size = u64::try_from(retention_bytes)
                .is_ok_and(|limit| remaining.saturating_sub(segment.size_bytes()) >= limit);
            if !(expired || over_size) {
                break;
            }
            remaining = remaining.saturating_sub(segment.size_bytes());
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::test_support::build_batch;
    use crate::storage::log::{AppendOrigin, LogCheckpoint, LogConfig};

    const DAY_MS: i64 = 86_400_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1_000,
            retention_ms: DAY_MS,
            ..LogConfig::default()
        }
    }

    /// A log with `batches` one-record batches stamped `timestamp`.
    fn log_with(dir: &Path, config: LogConfig, batches: i64, timestamp: i64) -> Log {
        let mut log = Log::create(dir, config, 0, 0).unwrap();
        for _ in 0..batches {
            let batch = build_batch(0, timestamp, &[b"0123456789abcdef"]);
            log.append_as_leader(&batch, 0, AppendOrigin::Client, timestamp)
                .unwrap();
        }
        log
    }

    fn files_named(dir: &Path, suffix: &str) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(suffix)
            })
            .count()
    }

    #[test]
    fn an_idle_log_whose_records_expired_is_emptied_by_rolling_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with(dir.path(), config(), 40, 1_000);
        let end = log.log_end_offset();
        assert!(log.segment_count() > 1);
        // Not yet expired: nothing goes.
        assert!(log
            .take_retired_segments(1_000 + DAY_MS, end)
            .unwrap()
            .is_empty());
        let retired = log.take_retired_segments(2_000 + DAY_MS, end).unwrap();
        assert!(!retired.is_empty());
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
        assert_eq!(log.segment_count(), 1, "one new, empty active segment");
        retired.rename().unwrap();
        assert_eq!(files_named(dir.path(), ".log"), 1);
        assert!(files_named(dir.path(), ".log.deleted") >= 3);
        // Producing goes on at the log end.
        let batch = build_batch(0, 5_000 + DAY_MS, &[b"new"]);
        let info = log
            .append_as_leader(&batch, 0, AppendOrigin::Client, 5_000 + DAY_MS)
            .unwrap();
        assert_eq!(info.first_offset, end);
    }

    #[test]
    fn size_retention_keeps_the_newest_bytes_and_the_high_watermark_bounds_both() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: -1,
            retention_bytes: 1_500,
            ..config()
        };
        let mut log = log_with(dir.path(), config, 60, 1_000);
        // Nothing at or above the high watermark goes: here it is the first segment's end.
        let first_end = log.segments.values().next().unwrap().next_offset();
        let retired = log.take_retired_segments(0, first_end).unwrap();
        assert_eq!(retired.len(), 1);
        assert_eq!(log.log_start_offset(), first_end);
        let end = log.log_end_offset();
        log.take_retired_segments(0, end).unwrap();
        assert!(
            log.size_bytes() >= 1_500 && log.size_bytes() < 2_500,
            "{}",
            log.size_bytes()
        );
        assert_eq!(log.log_end_offset(), end);
    }

    #[test]
    fn logs_without_the_delete_policy_are_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            delete_enabled: false,
            ..config()
        };
        let mut log = log_with(dir.path(), config, 40, 1_000);
        let end = log.log_end_offset();
        assert!(log.take_retired_segments(i64::MAX, end).unwrap().is_empty());
        assert_eq!(log.log_start_offset(), 0);
    }

    /// Retention's three steps with a crash after each: whatever the checkpoint says is
    /// what the log holds after a restart.
    #[test]
    fn a_crash_at_any_step_leaves_a_log_that_opens_cleanly() {
        for crash_after in ["take", "checkpoint", "rename"] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = log_with(dir.path(), config(), 40, 1_000);
            let end = log.log_end_offset();
            let old = log.checkpoint();
            let retired = log.take_retired_segments(2_000 + DAY_MS, end).unwrap();
            let new = log.checkpoint();
            let checkpoint = match crash_after {
                "take" => old,
                _ => new,
            };
            if crash_after == "rename" {
                retired.rename().unwrap();
            }
            drop(log);
            let (log, _) = Log::open(dir.path(), config(), Some(checkpoint), false, 0).unwrap();
            assert_eq!(log.log_end_offset(), end, "{crash_after}");
            assert_eq!(
                log.log_start_offset(),
                checkpoint.log_start_offset,
                "{crash_after}"
            );
            assert_eq!(files_named(dir.path(), ".deleted"), 0, "{crash_after}");
            if crash_after != "take" {
                assert_eq!(files_named(dir.path(), ".log"), 1, "{crash_after}");
            }
            let LogCheckpoint { recovery_point, .. } = log.checkpoint();
            assert!(recovery_point <= end);
        }
    }
}
