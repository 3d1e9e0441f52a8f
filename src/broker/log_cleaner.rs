//! The log cleaner's threads (Kafka's `LogCleaner` and `LogCleanerManager`): each picks
//! the filthiest compacted partition no other thread is cleaning, runs a pass over it
//! (`storage::cleaner::pass`) without the partition lock, and swaps each cleaned segment in
//! under the lock. Progress is kept per partition in Kafka's `cleaner-offset-checkpoint`
//! file in the data directory; the replaced segments' files go through the broker's delayed
//! deletes. When no partition needs cleaning a thread waits `log.cleaner.backoff.ms` (or
//! until shutdown, which stops a pass at its next batch).
//!
//! A partition whose pass fails for a reason other than a change under it (an I/O error,
//! a batch too large for the key map) is left alone until the next restart, with one
//! warning naming the reason, as Kafka marks such a partition uncleanable.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};

use super::delayed_deletes::DelayedDeletes;
use super::now_ms;
use super::partition::Partition;
use super::topics::TopicRegistry;
use crate::storage::checkpoint::{self, CheckpointEntries};
use crate::storage::cleaner::offset_map::OffsetMap;
use crate::storage::cleaner::pass::{self, PassContext, PassError, PassStats, Selection};
use crate::storage::cleaner::throttle::Throttler;
use crate::storage::cleaner::CleanerConfig;
use crate::storage::log::{CleaningView, SwapOutcome};

/// Kafka's name for the file of cleaner progress, in the data directory.
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

type PartitionKey = (String, i32);

/// What the cleaner has done since the broker started (for metrics).
#[derive(Debug, Default)]
pub struct CleanerStats {
    pub passes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records_removed: AtomicU64,
    pub segments_replaced: AtomicU64,
    /// Passes that failed and left their partition uncleanable.
    pub failures: AtomicU64,
}

impl CleanerStats {
    fn add(&self, pass: &PassStats) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.bytes_read
            .fetch_add(pass.bytes_read, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(pass.bytes_written, Ordering::Relaxed);
        self.records_removed
            .fetch_add(pass.records_removed, Ordering::Relaxed);
        self.segments_replaced
            .fetch_add(pass.segments_replaced, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Progress {
    /// The cleaner checkpoint: per partition, the offset below which the log is clean.
    checkpoints: CheckpointEntries,
    /// Partitions a thread is cleaning now.
    in_progress: HashSet<PartitionKey>,
    /// Partitions whose pass failed: not cleaned again until a restart.
    uncleanable: HashSet<PartitionKey>,
    /// The earliest delete horizon a pass left pending, per partition.
    horizons: HashMap<PartitionKey, i64>,
}

/// The cleaner threads' shared state.
pub struct LogCleaner {
    config: CleanerConfig,
    topics: Arc<TopicRegistry>,
    delayed_deletes: Arc<DelayedDeletes>,
    checkpoint_path: PathBuf,
    progress: Mutex<Progress>,
    wake: Condvar,
    stop: AtomicBool,
    throttler: Throttler,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub stats: CleanerStats,
}

/// The partition a thread chose and why.
struct Chosen {
    partition: Arc<Partition>,
    key: PartitionKey,
    view: CleaningView,
    selection: Selection,
}

fn key_of(partition: &Partition) -> PartitionKey {
    (partition.topic().to_string(), partition.index())
}

impl LogCleaner {
    /// Starts `log.cleaner.threads` threads (none when `log.cleaner.enable` is false).
    pub fn start(
        config: CleanerConfig,
        topics: Arc<TopicRegistry>,
        delayed_deletes: Arc<DelayedDeletes>,
        data_dir: &Path,
    ) -> Arc<LogCleaner> {
        let checkpoint_path = data_dir.join(CHECKPOINT_FILE);
        let checkpoints = checkpoint::read_offsets(&checkpoint_path).unwrap_or_else(|err| {
            warn!("{err}; the log cleaner starts every compacted log from its start");
            CheckpointEntries::new()
        });
        let cleaner = Arc::new(LogCleaner {
            throttler: Throttler::new(config.io_max_bytes_per_second),
            config,
            topics,
            delayed_deletes,
            checkpoint_path,
            progress: Mutex::new(Progress {
                checkpoints,
                ..Progress::default()
            }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            stats: CleanerStats::default(),
        });
        if cleaner.config.enable {
            let mut threads = crate::sync::lock(&cleaner.threads, "cleaner threads");
            for i in 0..cleaner.config.threads {
                let worker = Arc::clone(&cleaner);
                let spawned = std::thread::Builder::new()
                    .name(format!("log-cleaner-{i}"))
                    .spawn(move || worker.run());
                match spawned {
                    Ok(handle) => threads.push(handle),
                    Err(err) => warn!("starting a log cleaner thread failed: {err}"),
                }
            }
        }
        cleaner
    }

    /// Stops the threads (a pass stops at its next batch) and waits for them.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _progress = crate::sync::lock(&self.progress, "cleaner progress");
            self.wake.notify_all();
        }
        let threads = std::mem::take(&mut *crate::sync::lock(&self.threads, "cleaner threads"));
        for handle in threads {
            if handle.join().is_err() {
                warn!("a log cleaner thread panicked");
            }
        }
    }

    fn run(&self) {
        let mut map = OffsetMap::new(
            self.config.map_slots_per_thread(),
            self.config.io_buffer_load_factor,
        );
        while !self.stop.load(Ordering::Acquire) {
            let cleaned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.clean_filthiest(&mut map)
            }))
            .unwrap_or_else(|_| {
                warn!("a log cleaner pass panicked (please report the panic above)");
                false
            });
            map.clear();
            if !cleaned {
                self.back_off();
            }
        }
    }

    fn back_off(&self) {
        let progress = crate::sync::lock(&self.progress, "cleaner progress");
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let wait = Duration::from_millis(self.config.backoff_ms);
        let _ = self.wake.wait_timeout(progress, wait);
    }

    /// Chooses the partition most in need of cleaning (forced ones first, then by dirty
    /// ratio) and marks it in progress.
    fn choose(&self, now_ms: i64) -> Option<Chosen> {
        let mut progress = crate::sync::lock(&self.progress, "cleaner progress");
        let mut best: Option<Chosen> = None;
        for partition in self.topics.all_partitions() {
            let key = key_of(&partition);
            if progress.in_progress.contains(&key)
                || progress.uncleanable.contains(&key)
                || !partition.is_compacted()
                || self.topics.read_only.contains(partition.topic())
            {
                continue;
            }
            let Ok(view) = partition.cleaning_view() else {
                continue;
            };
            let checkpoint = progress.checkpoints.get(&key).copied();
            let horizon_due = progress.horizons.get(&key).is_some_and(|h| *h <= now_ms);
            let Some(selection) = pass::select(&view, checkpoint, now_ms, horizon_due) else {
                continue;
            };
            let rank = |s: &Selection| (s.urgent, s.dirty_ratio);
            if best
                .as_ref()
                .is_none_or(|b| rank(&selection) > rank(&b.selection))
            {
                best = Some(Chosen {
                    partition,
                    key,
                    view,
                    selection,
                });
            }
        }
        if let Some(chosen) = &best {
            progress.in_progress.insert(chosen.key.clone());
        }
        best
    }

    /// Cleans one partition if any needs it; false when none did.
    fn clean_filthiest(&self, map: &mut OffsetMap) -> bool {
        let now_ms = now_ms();
        let Some(chosen) = self.choose(now_ms) else {
            return false;
        };
        let context = PassContext {
            map,
            throttler: &self.throttler,
            stop: &self.stop,
            io_buffer_bytes: self.config.io_buffer_bytes,
            now_ms,
        };
        let partition = &chosen.partition;
        let result = pass::run(&chosen.view, &chosen.selection, context, |cleaned| {
            let outcome = partition.replace_segments(cleaned)?;
            if let SwapOutcome::Swapped {
                deleted,
                delete_delay_ms,
            } = &outcome
            {
                self.delayed_deletes
                    .schedule(deleted.clone(), now_ms.saturating_add(*delete_delay_ms));
            }
            Ok(outcome)
        });
        self.finish(&chosen, now_ms, result);
        true
    }

    fn finish(&self, chosen: &Chosen, now_ms: i64, result: Result<PassStats, PassError>) {
        let (topic, index) = (&chosen.key.0, chosen.key.1);
        let mut progress = crate::sync::lock(&self.progress, "cleaner progress");
        progress.in_progress.remove(&chosen.key);
        match result {
            Ok(stats) => {
                progress
                    .checkpoints
                    .insert(chosen.key.clone(), stats.end_offset);
                // A horizon already past that the pass left in place cannot be acted on
                // (nothing more to remove there): it must not bring the log back at once.
                match stats.next_horizon_ms.filter(|h| *h > now_ms) {
                    Some(horizon) => progress.horizons.insert(chosen.key.clone(), horizon),
                    None => progress.horizons.remove(&chosen.key),
                };
                self.stats.add(&stats);
                info!(
                    topic,
                    partition = index,
                    dirty_ratio = format!("{:.2}", chosen.selection.dirty_ratio),
                    cleaned_to = stats.end_offset,
                    read_bytes = stats.bytes_read,
                    written_bytes = stats.bytes_written,
                    records_removed = stats.records_removed,
                    segments = format!("{} -> {}", stats.segments_replaced, stats.segments_written),
                    "cleaned log"
                );
                self.write_checkpoint(&progress.checkpoints);
            }
            Err(PassError::Stale | PassError::Stopped) => {}
            Err(_) if !self.still_registered(&chosen.partition) => {}
            Err(err) => {
                progress.uncleanable.insert(chosen.key.clone());
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                warn!(
                    topic,
                    partition = index,
                    "the log cleaner failed and leaves this partition alone until a restart: {err}"
                );
            }
        }
    }

    /// Whether the partition is still one of the registry's (not deleted meanwhile).
    fn still_registered(&self, partition: &Arc<Partition>) -> bool {
        self.topics
            .get(partition.topic())
            .is_some_and(|topic| topic.partitions.iter().any(|p| Arc::ptr_eq(p, partition)))
    }

    /// Writes the checkpoint file with the partitions that still exist.
    fn write_checkpoint(&self, checkpoints: &CheckpointEntries) {
        let existing: HashSet<PartitionKey> = self
            .topics
            .all_partitions()
            .iter()
            .map(|p| key_of(p))
            .collect();
        let entries: CheckpointEntries = checkpoints
            .iter()
            .filter(|(key, _)| existing.contains(*key))
            .map(|(key, offset)| (key.clone(), *offset))
            .collect();
        if let Err(err) = checkpoint::write_offsets(&self.checkpoint_path, &entries) {
            warn!("writing the log cleaner's checkpoint failed: {err}");
        }
    }
}
