//! The log's side of compaction: what a cleaning pass may read, the cleaned segment it
//! writes, and the swap that puts the cleaned segment in place of the ones it replaces.
//! The pass itself (what to keep) lives in `storage::cleaner`; it runs without the
//! partition lock, reading the closed segments through their shared files, and takes the
//! lock only for [`Log::replace_segments`].
//!
//! # Swap scheme (crash safety)
//!
//! A cleaned segment with base offset `X` replaces the consecutive closed segments
//! `[X, E)`; it may end before `E` (records at the end of the range went), so `E` is
//! written next to it in `X.replaces`. Its files are written as `X.<ext>.cleaned` and made
//! durable, then:
//!
//! 1. `X.{index,timeindex,txnindex,replaces}.cleaned` are renamed `*.swap`;
//! 2. `X.log.cleaned` is renamed `X.log.swap` and the directory fsynced: **the commit
//!    point**;
//! 3. every file of the replaced segments is renamed `*.deleted` (removed after
//!    `file.delete.delay.ms`, like retention's);
//! 4. `X.log.swap` becomes `X.log`, then each index `.swap` its final name; the directory
//!    is fsynced, and `X.replaces.swap` removed.
//!
//! [`recover_swap_files`] runs when a log is opened and finishes or undoes a swap a crash
//! interrupted: an `X.log.cleaned` means step 2 did not happen, so every `X.*.cleaned`
//! and `X.*.swap` goes and the old segments stand; an `X.log.swap` means it did, so every
//! segment file with a base in `[X, E)` goes (`E` read from `X.replaces.swap`) and the
//! swap files take their final names; index `.swap` files left alone mean step 4 was
//! interrupted after the log's rename, and take their final names. Other `*.cleaned`
//! files are leftovers of a pass and go, as does a `.replaces` file left alone. Either the old segments or the new one are in
//! the log, never both and never neither.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::retention::deleted_name;
use super::{Log, LogConfig};
use crate::storage::batch::BatchHeader;
use crate::storage::error::StorageError;
use crate::storage::fsync;
use crate::storage::producer_state::{self, AbortedTxn};
use crate::storage::segment::{self, IndexPolicy, ReadLimits, ReadPlan, Segment};

/// Suffix of a cleaned segment's files while they are written.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment's files once the swap is committed.
pub const SWAP_SUFFIX: &str = ".swap";
/// The index extensions of a segment (every file but the `.log`).
const INDEX_EXTENSIONS: [&str; 3] = ["index", "timeindex", "txnindex"];
/// The file beside a cleaned segment that holds the end offset of the segments it
/// replaces (the swap's range, for crash recovery).
const RANGE_EXTENSION: &str = "replaces";
/// The files renamed `.cleaned` to `.swap` before the commit point.
const STAGED_EXTENSIONS: [&str; 4] = ["index", "timeindex", "txnindex", RANGE_EXTENSION];

/// A closed segment as a cleaning pass sees it: its bounds and its file, which no append
/// touches any more.
#[derive(Debug, Clone)]
pub struct SourceSegment {
    pub base_offset: i64,
    /// One past its last offset.
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Largest timestamp in it (-1 if none).
    pub max_timestamp: i64,
    pub file: Arc<File>,
}

/// What a cleaning pass needs to know of a log, copied under the partition lock.
#[derive(Debug)]
pub struct CleaningView {
    pub dir: PathBuf,
    /// Every segment but the active one, in offset order.
    pub segments: Vec<SourceSegment>,
    pub active_base_offset: i64,
    pub log_start_offset: i64,
    /// Offsets at or above this may not be cleaned: the first offset of an open
    /// transaction or the high watermark, whichever is lower.
    pub stable_offset: i64,
    /// Aborted transactions whose markers lie at or above the log start, by marker offset
    /// (a marker in the active segment still makes the data before it aborted).
    pub aborted: Vec<AbortedTxn>,
    /// Per producer id, the last offset of its last data batch: that batch keeps at least
    /// its header, so the producer's sequence survives cleaning (Kafka's rule).
    pub last_data_offsets: HashMap<i64, i64>,
    pub config: LogConfig,
}

/// One segment written by a cleaning pass, not yet part of the log.
#[derive(Debug)]
pub struct CleanedSegment {
    segment: Segment,
    /// The segments it replaces: base offset and file, to check they are still there.
    replaces: Vec<(i64, Arc<File>)>,
    /// One past the last offset of the last segment it replaces.
    source_end_offset: i64,
    /// Offsets of the ABORT markers the pass removed from these segments.
    removed_abort_markers: Vec<i64>,
    policy: IndexPolicy,
}

/// What [`Log::replace_segments`] did.
#[derive(Debug)]
pub enum SwapOutcome {
    /// The cleaned segment is in the log; these files (the replaced segments', renamed
    /// `*.deleted`) are to be removed after `delete_delay_ms`.
    Swapped {
        deleted: Vec<PathBuf>,
        delete_delay_ms: i64,
    },
    /// The replaced segments are no longer all in the log (retention or DeleteRecords
    /// took some meanwhile): nothing changed and the cleaned files were removed.
    Stale,
}

fn io_error(what: &'static str, path: &Path, err: std::io::Error) -> StorageError {
    StorageError::io(what, path, err)
}

/// Writes `bytes` to `path` and makes them durable.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    std::fs::write(path, bytes)
        .and_then(|()| File::open(path))
        .and_then(|file| fsync::sync_data(&file))
        .map_err(|e| io_error("write a cleaned index", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| fsync::sync_all(&d))
        .map_err(|e| io_error("fsync the log directory", dir, e))
}

/// Renames `from` to `to`; a missing `from` is not an error (an index that was never
/// written). Returns whether a file moved.
fn rename_if_present(from: &Path, to: &Path) -> Result<bool, StorageError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("rename a segment file", from, e)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error("remove a segment file", path, e))
        }
        _ => Ok(()),
    }
}

impl CleanedSegment {
    /// Starts the cleaned segment that replaces `first` and the segments after it that the
    /// pass adds with [`Self::replaces`].
    pub fn create(
        dir: &Path,
        first: &SourceSegment,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<CleanedSegment, StorageError> {
        let segment = Segment::create_with_suffix(dir, first.base_offset, CLEANED_SUFFIX, now_ms)
            .map_err(|e| io_error("create a cleaned segment", dir, e))?;
        Ok(CleanedSegment {
            segment,
            replaces: vec![(first.base_offset, Arc::clone(&first.file))],
            source_end_offset: first.next_offset,
            removed_abort_markers: Vec::new(),
            policy: IndexPolicy {
                index_interval_bytes: config.index_interval_bytes,
            },
        })
    }

    /// Adds `next`, the segment after the last one replaced, to those this one replaces.
    pub fn replaces(&mut self, next: &SourceSegment) {
        self.replaces
            .push((next.base_offset, Arc::clone(&next.file)));
        self.source_end_offset = next.next_offset;
    }

    pub fn base_offset(&self) -> i64 {
        self.segment.base_offset()
    }

    /// Records that the ABORT marker at `offset` was removed: its transaction leaves the
    /// transaction index with it.
    pub fn removed_abort_marker(&mut self, offset: i64) {
        self.removed_abort_markers.push(offset);
    }

    /// One past the last offset written so far (the base offset when empty).
    pub fn next_offset(&self) -> i64 {
        self.segment.next_offset()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segment.size_bytes()
    }

    /// One past the last offset of the segments it replaces.
    pub fn source_end_offset(&self) -> i64 {
        self.source_end_offset
    }

    /// Appends one batch (its offsets above everything written so far).
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<(), StorageError> {
        if header.base_offset < self.segment.next_offset()
            || !self.segment.fits_relative_offset(header.last_offset())
        {
            return Err(StorageError::Inconsistent {
                dir: self.dir(),
                reason: format!(
                    "a cleaned batch at offset {} does not follow offset {} in segment {}",
                    header.base_offset,
                    self.segment.next_offset(),
                    self.base_offset()
                ),
            });
        }
        let dir = self.dir();
        self.segment
            .append(&[batch], std::slice::from_ref(header), self.policy)
            .map_err(|e| io_error("write a cleaned segment", &dir, e.source))
    }

    fn dir(&self) -> PathBuf {
        self.segment
            .file_paths()
            .first()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default()
    }

    /// Writes the indexes, the transaction index (the aborted transactions of `aborted`
    /// whose markers fall in its range) and the range file, and makes every file durable.
    pub fn finish(&mut self, aborted: &[AbortedTxn]) -> Result<(), StorageError> {
        let dir = self.dir();
        if self.segment.next_offset() > self.source_end_offset {
            return Err(StorageError::Inconsistent {
                dir,
                reason: format!(
                    "the cleaned segment {} ends at {}, beyond {}",
                    self.base_offset(),
                    self.segment.next_offset(),
                    self.source_end_offset
                ),
            });
        }
        self.segment
            .write_indexes()
            .map_err(|e| io_error("write cleaned indexes", &dir, e))?;
        fsync::sync_data(self.segment.file())
            .map_err(|e| io_error("fsync a cleaned segment", &dir, e))?;
        let base = self.base_offset();
        for extension in ["index", "timeindex"] {
            let path = segment::file_path(&dir, base, extension, CLEANED_SUFFIX);
            File::open(&path)
                .and_then(|f| fsync::sync_data(&f))
                .map_err(|e| io_error("fsync a cleaned index", &path, e))?;
        }
        let entries: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|a| a.last_offset >= base && a.last_offset < self.source_end_offset)
            .filter(|a| !self.removed_abort_markers.contains(&a.last_offset))
            .copied()
            .collect();
        if !entries.is_empty() {
            let path = segment::file_path(&dir, base, "txnindex", CLEANED_SUFFIX);
            write_durably(&path, &producer_state::encode_txn_index(&entries))?;
        }
        let range = segment::file_path(&dir, base, RANGE_EXTENSION, CLEANED_SUFFIX);
        write_durably(&range, format!("{}\n", self.source_end_offset).as_bytes())
    }

    /// Removes the cleaned files (a pass that stopped or went stale).
    pub fn discard(self) {
        let range = segment::file_path(
            &self.dir(),
            self.base_offset(),
            RANGE_EXTENSION,
            CLEANED_SUFFIX,
        );
        for path in self.segment.file_paths().into_iter().chain([range]) {
            if let Err(err) = remove_if_present(&path) {
                warn!("{err}");
            }
        }
    }
}

impl Log {
    /// A copy of what a cleaning pass needs; `high_watermark` bounds what it may clean.
    pub fn cleaning_view(&self, high_watermark: i64) -> Result<CleaningView, StorageError> {
        self.check_online()?;
        let active_base_offset = self.active_ref()?.base_offset();
        let segments = self
            .segments
            .values()
            .filter(|s| s.base_offset() < active_base_offset)
            .map(|s| SourceSegment {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size_bytes: s.size_bytes(),
                max_timestamp: s.max_timestamp(),
                file: Arc::clone(s.file()),
            })
            .collect();
        let stable_offset = self
            .producers
            .first_unstable_offset()
            .unwrap_or(self.log_end_offset)
            .min(high_watermark);
        let aborted = self
            .producers
            .aborted()
            .iter()
            .filter(|a| a.last_offset >= self.log_start_offset)
            .copied()
            .collect();
        let last_data_offsets = self
            .producers
            .producers()
            .filter_map(|p| p.batches.back().map(|b| (p.producer_id, b.last_offset)))
            .collect();
        Ok(CleaningView {
            dir: self.dir.clone(),
            segments,
            active_base_offset,
            log_start_offset: self.log_start_offset,
            stable_offset,
            aborted,
            last_data_offsets,
            config: self.config.clone(),
        })
    }

    /// Puts a finished cleaned segment in place of the segments it replaces (see the module
    /// documentation for the steps). A failure after the commit point takes the log
    /// offline: the next start finishes the swap from the files.
    pub fn replace_segments(
        &mut self,
        cleaned: CleanedSegment,
    ) -> Result<SwapOutcome, StorageError> {
        self.check_online()?;
        if !self.still_holds(&cleaned) {
            cleaned.discard();
            return Ok(SwapOutcome::Stale);
        }
        let delete_delay_ms = self.config.file_delete_delay_ms;
        match self.swap_in(cleaned) {
            Ok(deleted) => {
                self.check_invariants()?;
                Ok(SwapOutcome::Swapped {
                    deleted,
                    delete_delay_ms,
                })
            }
            Err(err) => {
                self.offline = true;
                Err(err)
            }
        }
    }

    /// Whether the segments `cleaned` replaces are all still closed segments of the log,
    /// the same files, consecutive, with nothing else between them.
    fn still_holds(&self, cleaned: &CleanedSegment) -> bool {
        let Ok(active_base) = self.active_ref().map(Segment::base_offset) else {
            return false;
        };
        let (Some(first), Some(last)) = (cleaned.replaces.first(), cleaned.replaces.last()) else {
            return false;
        };
        let between = self.segments.range(first.0..=last.0).count();
        between == cleaned.replaces.len()
            && last.0 < active_base
            && cleaned.replaces.iter().all(|(base, file)| {
                self.segments
                    .get(base)
                    .is_some_and(|s| Arc::ptr_eq(s.file(), file))
            })
    }

    fn swap_in(&mut self, cleaned: CleanedSegment) -> Result<Vec<PathBuf>, StorageError> {
        let dir = self.dir.clone();
        let base = cleaned.base_offset();
        let path =
            |extension: &str, suffix: &str| segment::file_path(&dir, base, extension, suffix);
        for extension in STAGED_EXTENSIONS {
            rename_if_present(
                &path(extension, CLEANED_SUFFIX),
                &path(extension, SWAP_SUFFIX),
            )?;
        }
        std::fs::rename(path("log", CLEANED_SUFFIX), path("log", SWAP_SUFFIX))
            .map_err(|e| io_error("commit a cleaned segment", &dir, e))?;
        sync_dir(&dir)?;
        let mut deleted = Vec::new();
        for (replaced_base, _) in &cleaned.replaces {
            let Some(old) = self.segments.remove(replaced_base) else {
                continue;
            };
            for file in old.file_paths() {
                let target = deleted_name(&file);
                if rename_if_present(&file, &target)? {
                    deleted.push(target);
                }
            }
        }
        std::fs::rename(path("log", SWAP_SUFFIX), path("log", ""))
            .map_err(|e| io_error("rename a swapped segment", &dir, e))?;
        for extension in INDEX_EXTENSIONS {
            rename_if_present(&path(extension, SWAP_SUFFIX), &path(extension, ""))?;
        }
        sync_dir(&dir)?;
        remove_if_present(&path(RANGE_EXTENSION, SWAP_SUFFIX))?;
        self.producers
            .forget_aborted(&cleaned.removed_abort_markers);
        let mut segment = cleaned.segment;
        segment.set_suffix("");
        self.segments.insert(base, segment);
        Ok(deleted)
    }
}

/// One file name of a log directory split into its segment base, extension and suffix.
fn parse_segment_file(name: &str) -> Option<(i64, &str, &str)> {
    let (stem, rest) = name.split_once('.')?;
    let base = segment::parse_file_stem(stem)?;
    let (extension, suffix) = match rest.split_once('.') {
        Some((extension, suffix)) => (extension, suffix),
        None => (rest, ""),
    };
    (segment::FILE_EXTENSIONS.contains(&extension) || extension == RANGE_EXTENSION)
        .then_some((base, extension, suffix))
}

/// The segment files in `dir` as (base, extension, suffix without its dot).
fn segment_files(dir: &Path) -> Result<Vec<(i64, String, String)>, StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("list log dir", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list log dir", dir, e))?;
        let name = entry.file_name();
        if let Some((base, extension, suffix)) = name.to_str().and_then(parse_segment_file) {
            files.push((base, extension.to_string(), suffix.to_string()));
        }
    }
    files.sort();
    Ok(files)
}

/// One past the last offset of the batches in `path`, if it holds any.
fn swap_file_end(path: &Path) -> Result<Option<i64>, StorageError> {
    let file = File::open(path).map_err(|e| io_error("open a swap file", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| io_error("open a swap file", path, e))?
        .len();
    let plan = ReadPlan {
        file: Arc::new(file),
        start_position: 0,
        end_position: size,
    };
    let limits = ReadLimits {
        fetch_offset: i64::MIN,
        upper_offset: i64::MAX,
        max_bytes: usize::MAX,
        min_one_batch: true,
    };
    match plan.locate(limits) {
        Ok(span) => Ok(span.map(|s| s.next_offset)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(io_error("read a swap file", path, e)),
    }
}

/// Finishes or undoes a swap a crash interrupted (see the module documentation); returns
/// whether anything was found, in which case the log's indexes are not to be trusted.
pub(super) fn recover_swap_files(dir: &Path) -> Result<bool, StorageError> {
    let suffix_of = |s: &str| s.trim_start_matches('.').to_string();
    let (cleaned, swap) = (suffix_of(CLEANED_SUFFIX), suffix_of(SWAP_SUFFIX));
    let files = segment_files(dir)?;
    let staged = |suffix: &str| -> Vec<i64> {
        files
            .iter()
            .filter(|(_, ext, s)| ext == "log" && s == suffix)
            .map(|(base, _, _)| *base)
            .collect()
    };
    let (uncommitted, committed) = (staged(&cleaned), staged(&swap));
    let mut found = false;
    for base in uncommitted {
        for extension in segment::FILE_EXTENSIONS.iter().chain([&RANGE_EXTENSION]) {
            remove_if_present(&segment::file_path(dir, base, extension, CLEANED_SUFFIX))?;
            remove_if_present(&segment::file_path(dir, base, extension, SWAP_SUFFIX))?;
        }
        found = true;
    }
    for base in committed {
        finish_swap(dir, base, &files)?;
        found = true;
    }
    // What is left: cleaned files of an interrupted pass, and index swaps whose log was
    // already renamed.
    for (base, extension, suffix) in segment_files(dir)? {
        if suffix == cleaned || (extension == RANGE_EXTENSION && suffix == swap) {
            remove_if_present(&segment::file_path(
                dir,
                base,
                &extension,
                &format!(".{suffix}"),
            ))?;
            found = true;
        } else if suffix == swap {
            rename_if_present(
                &segment::file_path(dir, base, &extension, SWAP_SUFFIX),
                &segment::file_path(dir, base, &extension, ""),
            )?;
            found = true;
        }
    }
    if found {
        sync_dir(dir)?;
        warn!(log = %dir.display(), "completed a log cleaner segment swap interrupted by a crash");
    }
    Ok(found)
}

/// Completes the committed swap of `X.log.swap` (base `base`).
fn finish_swap(dir: &Path, base: i64, files: &[(i64, String, String)]) -> Result<(), StorageError> {
    let swap_log = segment::file_path(dir, base, "log", SWAP_SUFFIX);
    let range = segment::file_path(dir, base, RANGE_EXTENSION, SWAP_SUFFIX);
    let Some(end) = read_range(&range).or(swap_file_end(&swap_log)?) else {
        // Cannot happen after durable writes; the old segments are kept if present.
        warn!(file = %swap_log.display(), "a committed cleaned segment has no range: discarding it");
        for extension in STAGED_EXTENSIONS.iter().chain(&["log"]) {
            remove_if_present(&segment::file_path(dir, base, extension, SWAP_SUFFIX))?;
        }
        return Ok(());
    };
    for (old_base, extension, suffix) in files {
        if suffix.is_empty() && (base..end).contains(old_base) {
            remove_if_present(&segment::file_path(dir, *old_base, extension, ""))?;
        }
    }
    // The log first: once it has its name, index swaps left over are known to be its own.
    std::fs::rename(&swap_log, segment::file_path(dir, base, "log", ""))
        .map_err(|e| io_error("rename a swapped segment", &swap_log, e))?;
    for extension in INDEX_EXTENSIONS {
        rename_if_present(
            &segment::file_path(dir, base, extension, SWAP_SUFFIX),
            &segment::file_path(dir, base, extension, ""),
        )?;
    }
    remove_if_present(&range)
}

/// The end offset a range file holds, if it is there and readable.
fn read_range(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::storage::batch::BatchIter;
    use crate::storage::cleaner::offset_map::OffsetMap;
    use crate::storage::cleaner::pass::{self, PassContext, PassError};
    use crate::storage::cleaner::throttle::Throttler;
    use crate::storage::log::{AppendOrigin, LogCheckpoint};
    use crate::storage::records::{self, build_batch, BatchSpec, NewRecord};

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 64,
            compacted: true,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        }
    }

    /// A log of 60 writes over 4 keys: many closed segments, most records superseded.
    fn dirty_log(dir: &Path) -> Log {
        let mut log = Log::create(dir, config(), 0, 0).unwrap();
        for i in 0..60u32 {
            let key = [(i % 4) as u8];
            let value = format!("value-{i}");
            let record = NewRecord {
                key: Some(&key),
                value: Some(value.as_bytes()),
                timestamp: 1_000,
            };
            let bytes = build_batch(BatchSpec::PLAIN, &[record]);
            log.append_as_leader(&bytes, 0, AppendOrigin::Client, 1_000)
                .unwrap();
        }
        log
    }

    /// Every batch left in the log with its records, in order, read as a fetch would
    /// (shared with the cleaner's model test).
    pub(crate) fn read_everything(log: &Log) -> Vec<(BatchHeader, Vec<records::Record>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let limits = ReadLimits {
                fetch_offset: offset,
                upper_offset: i64::MAX,
                max_bytes: 1 << 20,
                min_one_batch: true,
            };
            let plans = log.read_plans(offset).unwrap();
            let Some(chunk) = plans.iter().find_map(|p| p.read(limits).unwrap()) else {
                break;
            };
            for item in BatchIter::new(&chunk.bytes) {
                let (position, header) = item.unwrap();
                let bytes = &chunk.bytes[position..position + header.total_bytes()];
                let records = records::parse_records(bytes, &header, 1 << 20).unwrap();
                out.push((header, records));
            }
            offset = chunk.next_offset;
        }
        out
    }

    /// Every (offset, value) left in the log, in order.
    fn contents(log: &Log) -> Vec<(i64, Vec<u8>)> {
        read_everything(log)
            .into_iter()
            .flat_map(|(_, records)| records)
            .map(|r| (r.offset, r.value.unwrap_or_default()))
            .collect()
    }

    /// Runs a pass whose first cleaned segment is handed to `swap` instead of the log.
    fn clean_first_group(log: &mut Log, swap: impl FnOnce(CleanedSegment)) {
        let view = log.cleaning_view(log.log_end_offset()).unwrap();
        let selection = pass::select(&view, None, 10_000, false).unwrap();
        let mut map = OffsetMap::new(1 << 10, 0.9);
        let context = PassContext {
            map: &mut map,
            throttler: &Throttler::new(f64::MAX),
            stop: &AtomicBool::new(false),
            io_buffer_bytes: 256,
            now_ms: 10_000,
        };
        let mut swap = Some(swap);
        let result = pass::run(&view, &selection, context, |cleaned| {
            if let Some(swap) = swap.take() {
                swap(cleaned);
            }
            Ok(SwapOutcome::Stale)
        });
        assert!(matches!(result, Err(PassError::Stale)));
    }

    fn rename(dir: &Path, base: i64, extension: &str, from: &str, to: &str) {
        let _ = std::fs::rename(
            segment::file_path(dir, base, extension, from),
            segment::file_path(dir, base, extension, to),
        );
    }

    /// Every point a crash can interrupt a swap at: the log reopens with either all the
    /// old segments or the cleaned one, and the same latest value per key either way.
    #[test]
    fn a_crash_at_any_step_of_a_swap_leaves_the_old_or_the_new_segments() {
        for step in 0..=4 {
            let dir = tempfile::tempdir().unwrap();
            let mut log = dirty_log(dir.path());
            let before = contents(&log);
            let end = log.log_end_offset();
            let bases: Vec<i64> = log.segments.keys().copied().collect();
            let mut replaced = Vec::new();
            // Larger segments for the cleaned ones, so that one replaces several.
            log.set_config(LogConfig {
                segment_bytes: 3_000,
                ..config()
            });
            clean_first_group(&mut log, |cleaned| {
                let base = cleaned.base_offset();
                replaced = cleaned.replaces.iter().map(|(b, _)| *b).collect();
                let dir = dir.path();
                if step >= 1 {
                    for extension in STAGED_EXTENSIONS {
                        rename(dir, base, extension, CLEANED_SUFFIX, SWAP_SUFFIX);
                    }
                }
                if step >= 2 {
                    rename(dir, base, "log", CLEANED_SUFFIX, SWAP_SUFFIX);
                }
                if step >= 3 {
                    // Step 3 interrupted after the first segment, or complete.
                    let renamed = if step == 3 { 1 } else { replaced.len() };
                    for old in replaced.iter().take(renamed) {
                        for extension in segment::FILE_EXTENSIONS {
                            let path = segment::file_path(dir, *old, extension, "");
                            let _ = std::fs::rename(&path, deleted_name(&path));
                        }
                    }
                }
                if step >= 4 {
                    rename(dir, base, "log", SWAP_SUFFIX, "");
                }
            });
            assert!(replaced.len() > 1, "the group spans several segments");
            drop(log);
            let checkpoint = LogCheckpoint {
                recovery_point: 0,
                log_start_offset: 0,
            };
            let opened = Log::open(dir.path(), config(), Some(checkpoint), false, 0);
            let (log, _) = opened.unwrap_or_else(|e| panic!("step {step}: {e}"));
            let after = contents(&log);
            assert_eq!(log.log_end_offset(), end, "step {step}");
            let latest = |records: &[(i64, Vec<u8>)]| {
                let mut latest = std::collections::BTreeMap::new();
                for (offset, value) in records {
                    latest.insert(offset % 4, value.clone());
                }
                latest
            };
            assert_eq!(latest(&after), latest(&before), "step {step}");
            let now: Vec<i64> = log.segments.keys().copied().collect();
            if step < 2 {
                assert_eq!(after, before, "step {step}: the old segments stand");
                assert_eq!(now, bases);
            } else {
                assert!(
                    after.len() < before.len(),
                    "step {step}: the cleaned one is in"
                );
                assert_eq!(now.len(), bases.len() - replaced.len() + 1, "step {step}");
            }
            let leftovers: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                .collect();
            assert!(leftovers.is_empty(), "step {step}: {leftovers:?}");
        }
    }
}
