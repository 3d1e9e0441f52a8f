//! One cleaning pass over one log, as Kafka's `Cleaner.clean` does it:
//!
//! 1. [`select`] decides whether the log needs cleaning: the dirty part runs from the
//!    cleaner checkpoint to the first uncleanable offset (the active segment, an open
//!    transaction or the high watermark, and segments younger than
//!    `min.compaction.lag.ms`); it is cleaned when its share of the log's closed bytes is
//!    above `min.cleanable.dirty.ratio`, when its oldest batch is older than
//!    `max.compaction.lag.ms`, or when a delete horizon stamped by an earlier pass has
//!    passed.
//! 2. The key map is filled with the latest offset of every key in the dirty part, batch by
//!    batch, skipping control batches and aborted transactions, until it is full; the pass
//!    cleans up to where the map ends (the new checkpoint).
//! 3. Every closed segment below that end is copied, in groups of consecutive segments
//!    whose sizes add up to at most `segment.bytes`, into one cleaned segment per group,
//!    keeping a record when no later record has its key and it is not a tombstone past its
//!    delete horizon, and dropping aborted data and markers with no data left (see
//!    [`super::txn`]). Batches whose records all stay are copied byte for byte; the others
//!    are rewritten with their offsets, producer fields and timestamps (`rewrite`). Each
//!    cleaned segment replaces its group through the caller's swap.
//!
//! Offsets never move, and producer state survives: the last data batch of every producer
//! the log knows keeps at least its header (so its sequence survives, Kafka's
//! `RETAIN_EMPTY`). Tombstones and removable markers are first stamped with a
//! delete horizon (now + `delete.retention.ms`) and go in a pass after it (KIP-534).

use std::sync::atomic::{AtomicBool, Ordering};

use super::offset_map::OffsetMap;
use super::rewrite;
use super::source::BatchSource;
use super::throttle::Throttler;
use super::txn::TxnTracker;
use crate::storage::batch::{self, BatchHeader};
use crate::storage::error::StorageError;
use crate::storage::log::{marker_of, CleanedSegment, CleaningView, SourceSegment, SwapOutcome};
use crate::storage::producer_state::CONTROL_ABORT;
use crate::storage::recompress;
use crate::storage::records::{self, RawRecord};

/// Why a log is cleaned now, and the range it may clean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// Where the dirty part starts (the cleaner checkpoint, or the log start).
    pub first_dirty_offset: i64,
    /// Nothing at or above this is cleaned.
    pub first_uncleanable_offset: i64,
    /// Bytes of the segments in the dirty part.
    pub cleanable_bytes: u64,
    /// `cleanable / (clean + cleanable)` bytes: the log's "filthiness".
    pub dirty_ratio: f64,
    /// `max.compaction.lag.ms` forces the pass.
    pub urgent: bool,
}

/// Why a pass ended early.
#[derive(Debug)]
pub enum PassError {
    Storage(StorageError),
    /// The broker is shutting down or the partition went away.
    Stopped,
    /// The log changed under the pass (retention took a segment): it runs again later.
    Stale,
    /// One batch has more records than the key map can ever hold.
    MapTooSmall {
        records: i32,
        offset: i64,
    },
}

impl From<StorageError> for PassError {
    fn from(err: StorageError) -> Self {
        PassError::Storage(err)
    }
}

impl From<batch::BatchError> for PassError {
    fn from(err: batch::BatchError) -> Self {
        PassError::Storage(err.into())
    }
}

impl From<records::RecordsError> for PassError {
    fn from(err: records::RecordsError) -> Self {
        PassError::Storage(err.into())
    }
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassError::Storage(err) => write!(f, "{err}"),
            PassError::Stopped => write!(f, "stopped"),
            PassError::Stale => write!(f, "the log changed during the pass"),
            PassError::MapTooSmall { records, offset } => write!(
                f,
                "the batch at offset {offset} has {records} records, more than the cleaner's \
                 key map holds; raise log.cleaner.dedupe.buffer.size"
            ),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PassStats {
    /// The new cleaner checkpoint: everything below it is clean.
    pub end_offset: i64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub batches_removed: u64,
    /// Cleaned segments swapped in.
    pub segments_written: u64,
    /// Segments they replaced.
    pub segments_replaced: u64,
    /// The earliest delete horizon still pending in the cleaned part, if any: a pass after
    /// it removes more.
    pub next_horizon_ms: Option<i64>,
}

/// What a pass works with, owned by the cleaner thread running it.
pub struct PassContext<'a> {
    pub map: &'a mut OffsetMap,
    pub throttler: &'a Throttler,
    pub stop: &'a AtomicBool,
    /// `log.cleaner.io.buffer.size`.
    pub io_buffer_bytes: usize,
    pub now_ms: i64,
}

/// The first batch's max timestamp in `segment` (Kafka's `getFirstBatchTimestamp`).
fn first_batch_timestamp(segment: &SourceSegment) -> Option<i64> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; batch::BATCH_HEADER_BYTES];
    segment.file.read_exact_at(&mut head, 0).ok()?;
    BatchHeader::parse_prefix(&head)
        .ok()
        .map(|h| h.max_timestamp)
}

/// Bytes of the closed segments overlapping `[from, to)`.
fn bytes_between(view: &CleaningView, from: i64, to: i64) -> u64 {
    view.segments
        .iter()
        .filter(|s| s.next_offset > from && s.base_offset < to)
        .map(|s| s.size_bytes)
        .sum()
}

/// Whether and what to clean in `view` (see the module documentation); `checkpoint` is the
/// cleaner checkpoint's offset for the log, `horizon_due` whether a delete horizon an
/// earlier pass stamped has passed.
pub fn select(
    view: &CleaningView,
    checkpoint: Option<i64>,
    now_ms: i64,
    horizon_due: bool,
) -> Option<Selection> {
    let config = &view.config;
    if !config.compacted || view.segments.is_empty() {
        return None;
    }
    let first_dirty_offset = checkpoint
        .filter(|c| (view.log_start_offset..=view.active_base_offset).contains(c))
        .unwrap_or(view.log_start_offset);
    let young = now_ms.saturating_sub(config.min_compaction_lag_ms);
    let lag_bound = view
        .segments
        .iter()
        .filter(|s| s.next_offset > first_dirty_offset)
        .find(|s| config.min_compaction_lag_ms > 0 && s.max_timestamp > young)
        .map_or(i64::MAX, |s| s.base_offset);
    let first_uncleanable_offset = view
        .stable_offset
        .min(view.active_base_offset)
        .min(lag_bound)
        .max(first_dirty_offset);
    let clean = bytes_between(view, view.log_start_offset, first_dirty_offset);
    let cleanable_bytes = bytes_between(view, first_dirty_offset, first_uncleanable_offset);
    let total = clean + cleanable_bytes;
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        cleanable_bytes as f64 / total as f64
    };
    let urgent = cleanable_bytes > 0
        && config.max_compaction_lag_ms < i64::MAX
        && view
            .segments
            .iter()
            .find(|s| s.next_offset > first_dirty_offset)
            .and_then(first_batch_timestamp)
            .is_some_and(|t| now_ms.saturating_sub(t) > config.max_compaction_lag_ms);
    let by_ratio = cleanable_bytes > 0 && dirty_ratio > config.min_cleanable_dirty_ratio;
    let by_horizon = horizon_due && clean > 0;
    (urgent || by_ratio || by_horizon).then_some(Selection {
        first_dirty_offset,
        first_uncleanable_offset,
        cleanable_bytes,
        dirty_ratio,
        urgent,
    })
}

/// What becomes of one batch.
enum Decision {
    /// Copied byte for byte.
    Keep,
    /// Replaced by the pass's scratch buffer.
    Rewritten,
    /// Reduced to its header.
    Empty,
    Drop,
}

/// Consecutive segments in groups whose sizes add up to at most `max_bytes` and whose
/// offsets stay within one index's 32-bit relative range (Kafka's `groupSegmentsBySize`).
fn group_by_size<'s>(
    segments: &[&'s SourceSegment],
    max_bytes: u64,
) -> Vec<Vec<&'s SourceSegment>> {
    let mut groups = Vec::new();
    let mut group: Vec<&SourceSegment> = Vec::new();
    let mut size = 0u64;
    for &segment in segments {
        let fits = group.first().is_some_and(|first| {
            size.saturating_add(segment.size_bytes) <= max_bytes
                && segment.next_offset.saturating_sub(first.base_offset) <= i64::from(i32::MAX)
        });
        if !group.is_empty() && !fits {
            groups.push(std::mem::take(&mut group));
            size = 0;
        }
        size = size.saturating_add(segment.size_bytes);
        group.push(segment);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// One pass's state.
struct Pass<'v, 'c> {
    view: &'v CleaningView,
    context: PassContext<'c>,
    stats: PassStats,
    scratch: Vec<u8>,
    /// ABORT markers removed from the group being cleaned.
    removed_abort_markers: Vec<i64>,
}

/// Cleans `view` as `selection` says, handing each cleaned segment to `swap` (which puts
/// it in the log under the partition lock); a segment that would come out unchanged is
/// left in place. The log is changed only by `swap`; an error
/// leaves the segments swapped so far in place, each complete.
pub fn run(
    view: &CleaningView,
    selection: &Selection,
    context: PassContext<'_>,
    mut swap: impl FnMut(CleanedSegment) -> Result<SwapOutcome, StorageError>,
) -> Result<PassStats, PassError> {
    let mut pass = Pass {
        view,
        context,
        stats: PassStats::default(),
        scratch: Vec::new(),
        removed_abort_markers: Vec::new(),
    };
    let end = pass.build_map(
        selection.first_dirty_offset,
        selection.first_uncleanable_offset,
    )?;
    pass.stats.end_offset = end;
    let segments: Vec<&SourceSegment> = view
        .segments
        .iter()
        .filter(|s| s.base_offset < end)
        .collect();
    let mut walk = TxnTracker::new(&view.aborted, view.log_start_offset);
    for group in group_by_size(&segments, view.config.segment_bytes) {
        let Some(cleaned) = pass.clean_group(&group, end, &mut walk)? else {
            continue;
        };
        match swap(cleaned)? {
            SwapOutcome::Swapped { .. } => {
                pass.stats.segments_written += 1;
                pass.stats.segments_replaced += group.len() as u64;
            }
            SwapOutcome::Stale => return Err(PassError::Stale),
        }
    }
    Ok(pass.stats)
}

impl Pass<'_, '_> {
    fn check_stop(&self) -> Result<(), PassError> {
        if self.context.stop.load(Ordering::Relaxed) {
            return Err(PassError::Stopped);
        }
        Ok(())
    }

    fn source<'s>(&self, segment: &'s SourceSegment) -> BatchSource<'s> {
        let config = &self.view.config;
        BatchSource::new(
            &self.view.dir,
            segment,
            self.context.io_buffer_bytes,
            config
                .max_message_bytes
                .max(config.max_decompressed_batch_bytes),
        )
    }

    fn account_read(&mut self, bytes: u64) {
        self.stats.bytes_read += bytes;
        self.context.throttler.maybe_throttle(bytes);
    }

    /// Fills the key map from `[from, upper)`, stopping before the first batch that
    /// crosses `upper` or might not fit; returns where it stopped.
    fn build_map(&mut self, from: i64, upper: i64) -> Result<i64, PassError> {
        self.context.map.clear();
        let mut end = from;
        let mut walk = TxnTracker::new(&self.view.aborted, from);
        let view = self.view;
        let dirty = view
            .segments
            .iter()
            .filter(|s| s.next_offset > from && s.base_offset < upper);
        'segments: for segment in dirty {
            let mut source = self.source(segment);
            loop {
                self.check_stop()?;
                let Some((header, bytes)) = source.next_batch()? else {
                    break;
                };
                if header.last_offset() < from {
                    continue;
                }
                if header.next_offset() > upper {
                    break 'segments;
                }
                if header.is_control() {
                    walk.on_control(&header, marker_of(bytes, &header).map(|(t, _)| t));
                } else if !walk.on_data(&header) {
                    let needed = usize::try_from(header.records_count).unwrap_or(0);
                    if needed > self.context.map.room() {
                        if self.context.map.is_empty() {
                            return Err(PassError::MapTooSmall {
                                records: header.records_count,
                                offset: header.base_offset,
                            });
                        }
                        break 'segments;
                    }
                    let area = recompress::records_area(
                        bytes,
                        &header,
                        view.config.max_decompressed_batch_bytes,
                    )?;
                    for record in records::raw_records(&area, header.records_count)? {
                        if let Some(key) = record.key {
                            let offset = header.base_offset.saturating_add(record.offset_delta);
                            self.context.map.put(key, offset);
                        }
                    }
                }
                end = header.next_offset();
            }
            let read = source.read_bytes();
            self.account_read(read);
        }
        Ok(end)
    }

    /// Copies one group into a cleaned segment, finished and durable.
    fn clean_group(
        &mut self,
        group: &[&SourceSegment],
        end: i64,
        walk: &mut TxnTracker,
    ) -> Result<Option<CleanedSegment>, PassError> {
        let Some((first, rest)) = group.split_first() else {
            return Err(PassError::Stale);
        };
        let mut cleaned = CleanedSegment::create(
            &self.view.dir,
            first,
            &self.view.config,
            self.context.now_ms,
        )?;
        for segment in rest {
            cleaned.replaces(segment);
        }
        let filled = self
            .fill_group(group, end, walk, &mut cleaned)
            .and_then(|changed| {
                for offset in self.removed_abort_markers.drain(..) {
                    cleaned.removed_abort_marker(offset);
                }
                if changed {
                    cleaned.finish(&self.view.aborted)?;
                }
                Ok(changed)
            });
        match filled {
            Ok(true) => {
                self.stats.bytes_written += cleaned.size_bytes();
                self.context.throttler.maybe_throttle(cleaned.size_bytes());
                Ok(Some(cleaned))
            }
            Ok(false) => {
                cleaned.discard();
                Ok(None)
            }
            Err(err) => {
                cleaned.discard();
                Err(err)
            }
        }
    }

    /// Copies the group's batches as decided into `cleaned`; false when the group is one
    /// segment whose every batch stays as it is (then nothing was written: a cleaned copy
    /// would be the same bytes). Writing starts at the first batch that changes, after
    /// copying the unchanged ones before it.
    fn fill_group(
        &mut self,
        group: &[&SourceSegment],
        end: i64,
        walk: &mut TxnTracker,
        cleaned: &mut CleanedSegment,
    ) -> Result<bool, PassError> {
        // Merging segments is a change in itself.
        let mut writing = group.len() > 1;
        for segment in group {
            let mut source = self.source(segment);
            loop {
                self.check_stop()?;
                let Some((header, bytes)) = source.next_batch()? else {
                    break;
                };
                let decision = if header.next_offset() > end {
                    Decision::Keep
                } else {
                    self.decide(&header, bytes, walk)?
                };
                if !writing {
                    if matches!(decision, Decision::Keep) {
                        continue;
                    }
                    self.copy_unchanged(segment, header.base_offset, cleaned)?;
                    writing = true;
                }
                match decision {
                    Decision::Keep => cleaned.append(bytes, &header)?,
                    Decision::Rewritten => {
                        let rewritten = batch::validate(&self.scratch)?;
                        cleaned.append(&self.scratch, &rewritten)?;
                    }
                    Decision::Empty => append_empty(cleaned, &header)?,
                    Decision::Drop => self.stats.batches_removed += 1,
                }
            }
            let read = source.read_bytes();
            self.account_read(read);
        }
        Ok(writing)
    }

    /// Appends `segment`'s batches below `before` to `cleaned` as they are.
    fn copy_unchanged(
        &mut self,
        segment: &SourceSegment,
        before: i64,
        cleaned: &mut CleanedSegment,
    ) -> Result<(), PassError> {
        let mut source = self.source(segment);
        while let Some((header, bytes)) = source.next_batch()? {
            if header.base_offset >= before {
                break;
            }
            cleaned.append(bytes, &header)?;
        }
        let read = source.read_bytes();
        self.account_read(read);
        Ok(())
    }

    /// Records that a kept batch holds something (a tombstone, a removable marker) a pass
    /// after `horizon` removes.
    fn note_horizon(&mut self, horizon: i64) {
        let next = self.stats.next_horizon_ms.get_or_insert(horizon);
        *next = (*next).min(horizon);
    }

    fn horizon(&self) -> i64 {
        self.context
            .now_ms
            .saturating_add(self.view.config.delete_retention_ms)
    }

    /// Decides a batch below the map's end (see the module documentation).
    fn decide(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        walk: &mut TxnTracker,
    ) -> Result<Decision, PassError> {
        if header.is_control() {
            return self.decide_control(header, bytes, walk);
        }
        let last_of_producer = header.has_producer_id()
            && self.view.last_data_offsets.get(&header.producer_id) == Some(&header.last_offset());
        let removed_all = |pass: &mut Self| {
            pass.stats.records_removed += u64::try_from(header.records_count).unwrap_or(0);
            if last_of_producer {
                Decision::Empty
            } else {
                Decision::Drop
            }
        };
        if walk.on_data(header) {
            return Ok(removed_all(self));
        }
        let area =
            recompress::records_area(bytes, header, self.view.config.max_decompressed_batch_bytes)?;
        let raw = records::raw_records(&area, header.records_count)?;
        let horizon = header.delete_horizon_ms();
        let now_ms = self.context.now_ms;
        let map = &*self.context.map;
        let keep = |record: &RawRecord<'_>| {
            let Some(key) = record.key else {
                return false;
            };
            let offset = header.base_offset.saturating_add(record.offset_delta);
            let latest = map.get(key).is_none_or(|latest| offset >= latest);
            latest && (!record.value_is_null || horizon.is_none_or(|h| now_ms < h))
        };
        let kept: Vec<RawRecord<'_>> = raw.iter().filter(|r| keep(r)).copied().collect();
        if kept.is_empty() {
            return Ok(removed_all(self));
        }
        self.stats.records_removed += (raw.len() - kept.len()) as u64;
        let tombstones = kept.iter().any(|r| r.value_is_null);
        let stamp = horizon.is_none() && tombstones;
        let new_horizon = stamp.then(|| self.horizon());
        if tombstones {
            if let Some(h) = horizon.or(new_horizon) {
                self.note_horizon(h);
            }
        }
        if kept.len() == raw.len() && !stamp {
            return Ok(Decision::Keep);
        }
        rewrite::rewrite(bytes, header, &kept, new_horizon, &mut self.scratch)?;
        Ok(Decision::Rewritten)
    }

    fn decide_control(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        walk: &mut TxnTracker,
    ) -> Result<Decision, PassError> {
        let control_type = marker_of(bytes, header).map(|(t, _)| t);
        let removable = walk.on_control(header, control_type);
        if !removable {
            return Ok(Decision::Keep);
        }
        match header.delete_horizon_ms() {
            Some(horizon) if horizon <= self.context.now_ms => {
                self.stats.records_removed += u64::try_from(header.records_count).unwrap_or(0);
                if control_type == Some(CONTROL_ABORT) {
                    self.removed_abort_markers.push(header.base_offset);
                }
                Ok(Decision::Drop)
            }
            Some(horizon) => {
                self.note_horizon(horizon);
                Ok(Decision::Keep)
            }
            None if header.records_count == 0 => Ok(Decision::Drop),
            None => {
                let area = recompress::records_area(
                    bytes,
                    header,
                    self.view.config.max_decompressed_batch_bytes,
                )?;
                let raw = records::raw_records(&area, header.records_count)?;
                let horizon = self.horizon();
                self.note_horizon(horizon);
                rewrite::rewrite(bytes, header, &raw, Some(horizon), &mut self.scratch)?;
                Ok(Decision::Rewritten)
            }
        }
    }
}

fn append_empty(cleaned: &mut CleanedSegment, header: &BatchHeader) -> Result<(), PassError> {
    let empty = batch::empty_batch(header);
    let empty_header = batch::validate(&empty)?;
    cleaned.append(&empty, &empty_header)?;
    Ok(())
}
