//! A partition's log: an ordered set of segments in one directory, the offsets that bound
//! it, and the two ways to append to it.
//!
//! * [`Log::append_as_leader`] takes one batch from a producer, assigns it the next offsets
//!   and stamps the leader epoch (the only place offsets are assigned).
//! * [`Log::append_verbatim`] stores batches at the offsets someone else chose (a mirror or
//!   follower), which must increase; gaps are allowed.
//!
//! Architecture invariant: `log_start_offset <= recovery_point <= log_end_offset` and every
//! batch in the segments at or above the recovery point was validated (CRC, lengths,
//! increasing offsets) either when it was appended or when the log was opened.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

mod cleaning;
mod producers;
mod retention;

#[cfg(test)]
pub(crate) use cleaning::tests as cleaning_tests;
pub use cleaning::{CleanedSegment, CleaningView, SourceSegment, SwapOutcome};
pub use retention::RetiredSegments;

pub use producers::{marker_of, Marker};

use super::batch::{self, BatchHeader, BatchIter, TimestampType};
use super::error::StorageError;
use super::fsync::{self, WriteBack};
use super::producer_state::ProducerState;
use super::recompress::{self, TopicCompression};
use super::records::{self, Record};
use super::segment::{self, IndexPolicy, ReadPlan, Segment};

/// Per-log settings, resolved from topic configs and broker defaults.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: log bytes between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: largest batch accepted from a producer.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `retention.ms` (-1: keep forever).
    pub retention_ms: i64,
    /// `retention.bytes` (-1: no size limit).
    pub retention_bytes: i64,
    /// Largest decompressed records area Ferry will materialise to look inside a batch.
    pub max_decompressed_batch_bytes: usize,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `preallocate` (`log.preallocate`, default false): reserve disk blocks for a whole
    /// `segment.bytes` when a segment is created, as Kafka does; otherwise a segment
    /// reserves ahead in proportion to what it holds (see `segment::Segment::append`).
    pub preallocate: bool,
    /// `compression.type` with its level: batches in another codec are rewritten on append.
    pub compression: TopicCompression,
    /// `cleanup.policy` includes `delete`: `retention.ms` and `retention.bytes` apply.
    pub delete_enabled: bool,
    /// `file.delete.delay.ms`: how long a segment deleted by retention stays on disk,
    /// renamed `*.deleted`, before its files are removed.
    pub file_delete_delay_ms: i64,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone (and a transaction
    /// marker with no data left) after it first stamped its batch.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: segments with records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this force a cleaning pass.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the dirty share of the log that makes it cleanable.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            max_decompressed_batch_bytes: 64 << 20,
            compacted: false,
            preallocate: false,
            compression: TopicCompression::Producer,
            delete_enabled: true,
            file_delete_delay_ms: 60_000,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// Who is appending as leader (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer: sequence and epoch are checked, duplicates recognised.
    Client,
    /// One of the broker's coordinators writing to an internal topic.
    Coordinator,
}

/// Offsets persisted in the data directory's checkpoint files for one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCheckpoint {
    pub recovery_point: i64,
    pub log_start_offset: i64,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The append time stamped into the batch, or -1 for CreateTime topics.
    pub log_append_time_ms: i64,
    /// Records written; 0 for a retried batch recognised as a duplicate (not written).
    pub records: u32,
}

impl AppendInfo {
    /// True when the batch was a retry of one already in the log.
    pub fn is_duplicate(&self) -> bool {
        self.records == 0
    }
}

/// What opening a log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    /// Segments scanned batch by batch (at or after the recovery point, or with bad indexes).
    pub segments_recovered: usize,
    /// Bytes cut from the tail because they were not valid batches.
    pub truncated_bytes: u64,
    /// Segments deleted because they followed a truncation point.
    pub segments_deleted: usize,
}

/// Files to fsync to make the log durable up to `end_offset`.
#[derive(Debug)]
pub struct FlushPlan {
    pub files: Vec<Arc<File>>,
    pub end_offset: i64,
    /// The log's directory, when segments were created since its last fsync (a new file's
    /// name is only durable once its directory is), with the log's count of such changes.
    pub dir: Option<(PathBuf, u64)>,
}

impl FlushPlan {
    /// Starts writing the files' dirty pages to the device without waiting, so that the
    /// flusher can have the next partition's data under way while it fsyncs this one (see
    /// `broker::flusher`). This makes nothing durable by itself and does not consume a
    /// writeback error: the `fdatasync` still reports it.
    pub fn start_writeback(&self) -> std::io::Result<()> {
        for file in &self.files {
            fsync::write_back(file, 0, 0, WriteBack::Start)?;
        }
        Ok(())
    }

    /// Makes the files' data durable, in order, then the directory's entries if new
    /// segments appeared; the first failure stops.
    pub fn sync_data(&self) -> std::io::Result<()> {
        self.files
            .iter()
            .try_for_each(|file| fsync::sync_data(file))?;
        match self.dir.as_ref().map(|(dir, _)| File::open(dir)) {
            Some(Ok(dir)) => fsync::sync_all(&dir),
            // Renamed or removed by a topic deletion meanwhile (as Kafka, nothing to keep).
            Some(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Some(Err(err)) => Err(err),
            None => Ok(()),
        }
    }
}

/// A partition's log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    recovery_point: i64,
    /// Reused buffer for the leader's copy of a produced batch.
    scratch: Vec<u8>,
    /// When on (durable partitions), a copy of every byte written since the last
    /// `take_written`, for the broker's journal.
    tap: Option<Vec<u8>>,
    /// Segments created so far, and how many of those creations an fsync of the
    /// directory has made durable.
    dir_changes: u64,
    dir_changes_synced: u64,
    offline: bool,
    /// Idempotence and transaction state of the producers writing to this log.
    producers: ProducerState,
}

fn leader_epoch_checkpoint(start_offset: i64) -> String {
    format!("0\n1\n0 {start_offset}\n")
}

impl Log {
    /// Creates a new, empty log whose first offset is `start_offset`.
    pub fn create(
        dir: &Path,
        config: LogConfig,
        start_offset: i64,
        now_ms: i64,
    ) -> Result<Log, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create log dir", dir, e))?;
        let epochs = dir.join("leader-epoch-checkpoint");
        std::fs::write(&epochs, leader_epoch_checkpoint(start_offset))
            .map_err(|e| StorageError::io("write leader epochs", &epochs, e))?;
        let mut segment = Segment::create(dir, start_offset, now_ms)
            .map_err(|e| StorageError::io("create segment", dir, e))?;
        if config.preallocate {
            segment.preallocate(config.segment_bytes);
        }
        Ok(Log {
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::from([(start_offset, segment)]),
            log_start_offset: start_offset,
            log_end_offset: start_offset,
            recovery_point: start_offset,
            scratch: Vec::new(),
            tap: None,
            dir_changes: 0,
            dir_changes_synced: 0,
            offline: false,
            producers: ProducerState::default(),
        })
    }

    /// A log whose directory could not be opened: it holds no segment, refuses all work
    /// (`StorageError::LogOffline`, KAFKA_STORAGE_ERROR to clients) and keeps the
    /// checkpointed offsets, so the checkpoint files go on saying what they said until a
    /// restart tries the directory again. Nothing in the directory is touched.
    pub fn offline(dir: &Path, config: LogConfig, checkpoint: Option<LogCheckpoint>) -> Log {
        let (log_start_offset, recovery_point) = checkpoint.map_or((0, 0), |c| {
            (c.log_start_offset.max(0), c.recovery_point.max(0))
        });
        Log {
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::new(),
            log_start_offset,
            log_end_offset: recovery_point.max(log_start_offset),
            recovery_point,
            scratch: Vec::new(),
            tap: None,
            dir_changes: 0,
            dir_changes_synced: 0,
            offline: true,
            producers: ProducerState::default(),
        }
    }

    /// Opens an existing log directory. Segments wholly below the checkpointed recovery
    /// point (all of them after a clean shutdown) keep their on-disk indexes if those pass
    /// their checks and agree with the `.log` (see [`Segment::load_trusted`]); the others,
    /// or all of them without a checkpoint, are scanned and validated batch by batch. The
    /// first invalid batch truncates the log there and later segments are deleted (Kafka's
    /// `LogLoader` rule). Checkpointed offsets that contradict the files are repaired as
    /// Kafka does: a recovery point beyond the log end is lowered to it, and a log start
    /// beyond the log end starts the log afresh there. A negative checkpointed offset is
    /// ignored.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        checkpoint: Option<LogCheckpoint>,
        clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<(Log, OpenReport), StorageError> {
        retention::remove_leftover_deleted_files(dir)?;
        // A swap the cleaner did not finish leaves indexes written before the crash.
        let swap_recovered = cleaning::recover_swap_files(dir)?;
        let clean_shutdown = clean_shutdown && !swap_recovered;
        let bases = list_segment_bases(dir)?;
        let log_start_checkpoint = checkpoint
            .map(|c| c.log_start_offset)
            .filter(|offset| *offset >= 0);
        if bases.is_empty() {
            let start = log_start_checkpoint.unwrap_or(0);
            return Ok((
                Log::create(dir, config, start, now_ms)?,
                OpenReport::default(),
            ));
        }
        let recovery_point = match checkpoint {
            Some(c) if c.recovery_point >= 0 => c.recovery_point,
            _ => i64::MIN,
        };
        let (segments, report) =
            load_segments(dir, &bases, &config, recovery_point, clean_shutdown, now_ms)?;
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            log_end_offset: 0,
            log_start_offset: 0,
            recovery_point: 0,
            segments,
            scratch: Vec::new(),
            tap: None,
            dir_changes: 0,
            dir_changes_synced: 0,
            offline: false,
            producers: ProducerState::default(),
        };
        let recovery_point = if clean_shutdown {
            i64::MAX
        } else {
            recovery_point
        };
        log.finish_open(log_start_checkpoint, recovery_point, now_ms)?;
        log.load_producer_state()?;
        log.check_invariants()?;
        Ok((log, report))
    }

    fn finish_open(
        &mut self,
        log_start_checkpoint: Option<i64>,
        recovery_point: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.log_end_offset = self.active_ref()?.next_offset();
        let first_base = self.first_base()?;
        let log_start = log_start_checkpoint.unwrap_or(first_base).max(first_base);
        if log_start > self.log_end_offset {
            // Everything up to a point beyond the data was deleted (DeleteRecords, or segment
            // files removed by hand): as Kafka, start afresh there.
            warn!(
                log = %self.dir.display(), log_start_offset = log_start,
                log_end_offset = self.log_end_offset,
                "the checkpointed log start offset is beyond the log end: starting the log \
                 afresh at the log start offset"
            );
            self.roll_to(log_start, now_ms)?;
            self.log_end_offset = log_start;
        }
        self.log_start_offset = log_start;
        self.drop_segments_below(log_start)?;
        self.recovery_point = recovery_point.clamp(self.log_start_offset, self.log_end_offset);
        Ok(())
    }

    /// Checks the offsets that bound the log against each other and against its
    /// segments: `0 <= log_start_offset <= recovery_point <= log_end_offset`, segments in
    /// increasing, non-overlapping offset ranges, the log start inside the first segment
    /// or at its base, and the log end at the active segment's end. Called when a log is
    /// opened and after every change of those offsets other than an append; a violation
    /// is a `StorageError::Inconsistent` and the caller takes the partition offline.
    pub fn check_invariants(&self) -> Result<(), StorageError> {
        let inconsistent = |reason: String| StorageError::Inconsistent {
            dir: self.dir.clone(),
            reason,
        };
        let (start, recovery, end) = (
            self.log_start_offset,
            self.recovery_point,
            self.log_end_offset,
        );
        if !(0 <= start && start <= recovery && recovery <= end) {
            return Err(inconsistent(format!(
                "offsets out of order: log start {start}, recovery point {recovery}, log end {end}"
            )));
        }
        let mut previous_end = i64::MIN;
        for (base, segment) in &self.segments {
            if *base != segment.base_offset()
                || segment.next_offset() < *base
                || *base < previous_end
            {
                return Err(inconsistent(format!(
                    "segment {base} holds offsets [{}, {}) overlapping the previous segment's \
                     end {previous_end}",
                    segment.base_offset(),
                    segment.next_offset()
                )));
            }
            previous_end = segment.next_offset();
        }
        if previous_end != end {
            return Err(inconsistent(format!(
                "the log end {end} is not the active segment's end {previous_end}"
            )));
        }
        if self.first_base()? > start {
            return Err(inconsistent(format!(
                "the log start {start} lies below the first segment"
            )));
        }
        Ok(())
    }

    fn first_base(&self) -> Result<i64, StorageError> {
        self.segments
            .keys()
            .next()
            .copied()
            .ok_or_else(|| self.no_segments())
    }

    fn no_segments(&self) -> StorageError {
        no_segments(&self.dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn checkpoint(&self) -> LogCheckpoint {
        LogCheckpoint {
            recovery_point: self.recovery_point,
            log_start_offset: self.log_start_offset,
        }
    }

    fn check_online(&self) -> Result<(), StorageError> {
        if self.offline {
            return Err(StorageError::LogOffline {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Takes the log offline after an unrecoverable I/O failure (fail-stop: no retries
    /// after a failed fsync, whose outcome is unknowable).
    pub fn set_offline(&mut self) {
        self.offline = true;
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The segment appends go to: the last one. A log always has one (`create`, `open` and
    /// every roll keep it so), so an error here means a bug, reported as an inconsistency
    /// that takes the partition offline instead of a panic.
    fn active(&mut self) -> Result<&mut Segment, StorageError> {
        let dir = &self.dir;
        self.segments
            .values_mut()
            .next_back()
            .ok_or_else(|| no_segments(dir))
    }

    fn active_ref(&self) -> Result<&Segment, StorageError> {
        self.segments
            .values()
            .next_back()
            .ok_or_else(|| self.no_segments())
    }

    /// Validates a producer's batch: exactly one v2 batch, intact, within size, not a
    /// control batch, with a consistent record count.
    fn validate_produced(&self, records: &[u8]) -> Result<BatchHeader, StorageError> {
        if records.len() > self.config.max_message_bytes {
            return Err(StorageError::RecordTooLarge {
                batch_bytes: records.len(),
                max_message_bytes: self.config.max_message_bytes,
            });
        }
        let header = batch::validate(records)?;
        if header.total_bytes() != records.len() {
            return Err(StorageError::InvalidRecord {
                reason: "a produce request must carry exactly one record batch per partition",
            });
        }
        if header.is_control() {
            return Err(StorageError::InvalidRecord {
                reason: "clients may not write control batches",
            });
        }
        if header.records_count <= 0 || header.records_count != header.last_offset_delta + 1 {
            return Err(StorageError::InvalidRecord {
                reason: "record count does not match the batch's offset range",
            });
        }
        if self.config.compacted {
            self.check_keys(records, &header)?;
        }
        Ok(header)
    }

    /// Compacted topics need a key on every record (Kafka's `LogValidator`); the only case
    /// where the produce path decompresses a batch.
    fn check_keys(&self, records: &[u8], header: &BatchHeader) -> Result<(), StorageError> {
        let parsed =
            records::parse_records(records, header, self.config.max_decompressed_batch_bytes)?;
        let keyless: Vec<i32> = parsed
            .iter()
            .enumerate()
            .filter(|(_, r)| r.key.is_none())
            .map(|(i, _)| i32::try_from(i).unwrap_or(i32::MAX))
            .collect();
        if keyless.is_empty() {
            return Ok(());
        }
        Err(StorageError::InvalidRecords {
            reason: "Compacted topic cannot accept message without key.",
            record_indexes: keyless,
        })
    }

    /// Appends one batch, assigning it the next offsets. Client batches go through the
    /// idempotence checks; coordinator batches (transactional offset commits, whose
    /// sequence is always 0, as in Kafka) only update the producer state.
    pub fn append_as_leader(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.check_online()?;
        let mut header = self.validate_produced(records)?;
        if origin == AppendOrigin::Client {
            if let Some(duplicate) = self.check_producer(&header)? {
                return Ok(duplicate);
            }
        }
        let first_offset = self.log_end_offset;
        let last_offset = first_offset
            .checked_add(i64::from(header.last_offset_delta))
            .filter(|last| *last < i64::MAX)
            .ok_or_else(|| StorageError::Inconsistent {
                dir: self.dir.clone(),
                reason: format!("no offsets left after the log end {first_offset}"),
            })?;
        let rewrite_to = self.config.compression.rewrite_to(header.compression()?);
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        let mut log_append_time_ms = -1;
        if rewrite_to.is_some() || log_append_time {
            // Another codec or a new timestamp changes the CRC: the batch is rewritten in a
            // copy.
            let mut scratch = std::mem::take(&mut self.scratch);
            let rewritten = self.rewrite(records, &header, rewrite_to, &mut scratch);
            let result = rewritten.and_then(|rewritten| {
                header = rewritten;
                self.maybe_roll(scratch.len(), last_offset, now_ms)?;
                header.base_offset = first_offset;
                batch::set_base_offset_and_epoch(&mut scratch, first_offset, leader_epoch);
                if log_append_time {
                    batch::set_log_append_time(&mut scratch, now_ms);
                    log_append_time_ms = now_ms;
                    header.max_timestamp = now_ms;
                }
                self.write_to_active(&[&scratch], &[header])
            });
            self.scratch = scratch;
            result?;
        } else {
            self.maybe_roll(records.len(), last_offset, now_ms)?;
            header.base_offset = first_offset;
            // Only the fields before the CRC'd part change: write a patched copy of those
            // 16 bytes and the client's bytes after them as they are.
            let prefix = batch::leader_prefix(records, first_offset, leader_epoch);
            let rest = &records[batch::LEADER_PREFIX_BYTES..];
            self.write_to_active(&[&prefix, rest], &[header])?;
        }
        self.log_end_offset = header.next_offset();
        self.producers.record_batch(&header);
        Ok(AppendInfo {
            first_offset,
            last_offset: header.last_offset(),
            log_append_time_ms,
            records: header.records_count.unsigned_abs(),
        })
    }

    /// Copies a produced batch into `scratch`, recompressed when `rewrite_to` names a codec
    /// (`storage::recompress`); returns the copy's header.
    fn rewrite(
        &self,
        records: &[u8],
        header: &BatchHeader,
        rewrite_to: Option<(batch::Compression, i32)>,
        scratch: &mut Vec<u8>,
    ) -> Result<BatchHeader, StorageError> {
        match rewrite_to {
            Some(target) => recompress::recompress_into(
                records,
                header,
                target,
                self.config.max_decompressed_batch_bytes,
                scratch,
            ),
            None => {
                scratch.clear();
                scratch.extend_from_slice(records);
                Ok(*header)
            }
        }
    }

    /// Turns on or off keeping a copy of what is written (see `take_written`).
    pub fn keep_written(&mut self, on: bool) {
        self.tap = on.then(Vec::new);
    }

    /// The bytes written since the last call (whole batches, exactly as in the segment),
    /// when `keep_written` is on; empty otherwise.
    pub fn take_written(&mut self) -> Vec<u8> {
        self.tap.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Appends batches from the journal after a crash: batches wholly below the log end
    /// are already in the log and skipped, the rest are appended at their own offsets.
    /// A batch that straddles the log end cannot come from this log's own appends and is
    /// refused.
    pub fn append_journaled(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<Option<AppendInfo>, StorageError> {
        let mut skip_bytes = 0;
        for item in BatchIter::new(batches) {
            let (_, header) = item?;
            if header.next_offset() > self.log_end_offset {
                break;
            }
            skip_bytes += header.total_bytes();
        }
        self.append_verbatim(&batches[skip_bytes..], now_ms)
    }

    /// Appends batches at the offsets they carry (mirror and follower path). The batches
    /// must be valid and start at or after the log end; gaps are kept.
    pub fn append_verbatim(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<Option<AppendInfo>, StorageError> {
        self.check_online()?;
        let mut expected_min = self.log_end_offset;
        let mut headers = Vec::new();
        for item in BatchIter::new(batches) {
            let (_, header) = item?;
            if !header.offsets_in_range() {
                return Err(StorageError::InvalidRecord {
                    reason: "the batch's offsets are negative or overflow",
                });
            }
            if header.base_offset < expected_min {
                return Err(StorageError::OffsetsNotIncreasing {
                    batch_base_offset: header.base_offset,
                    log_end_offset: expected_min,
                });
            }
            expected_min = header.next_offset();
            headers.push(header);
        }
        let (Some(first), Some(last)) = (headers.first().copied(), headers.last().copied()) else {
            return Ok(None);
        };
        self.write_verbatim_run(batches, &headers, now_ms)?;
        self.log_end_offset = last.next_offset();
        let mut position = 0;
        for header in &headers {
            let size = header.total_bytes();
            self.replay_batch(header, &batches[position..position + size]);
            position += size;
        }
        let records = headers.iter().map(|h| h.records_count.unsigned_abs()).sum();
        Ok(Some(AppendInfo {
            first_offset: first.base_offset,
            last_offset: last.last_offset(),
            log_append_time_ms: -1,
            records,
        }))
    }

    /// Writes verbatim batches, rolling between them where the roll rules say so.
    fn write_verbatim_run(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let mut run_start_byte = 0usize;
        let mut run_start_batch = 0usize;
        let mut position = 0usize;
        for (i, header) in headers.iter().enumerate() {
            let size = header.total_bytes();
            let run_bytes = position - run_start_byte;
            let must_roll = self.needs_roll_with_pending(run_bytes, size, header, now_ms)?;
            if must_roll {
                self.write_to_active(
                    &[&batches[run_start_byte..position]],
                    &headers[run_start_batch..i],
                )?;
                self.roll_to(header.base_offset, now_ms)?;
                run_start_byte = position;
                run_start_batch = i;
            }
            position += size;
        }
        self.write_to_active(
            &[&batches[run_start_byte..position]],
            &headers[run_start_batch..],
        )
    }

    fn needs_roll_with_pending(
        &self,
        pending_bytes: usize,
        batch_bytes: usize,
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let active = self.active_ref()?;
        let pending_empty = active.is_empty() && pending_bytes == 0;
        if pending_empty {
            // An empty active segment is re-based to the first batch if it would not fit.
            return Ok(!active.fits_relative_offset(header.last_offset())
                || header.base_offset > active.base_offset());
        }
        let size_after = active.size_bytes() + (pending_bytes + batch_bytes) as u64;
        Ok(size_after > self.config.segment_bytes
            || now_ms.saturating_sub(active.created_at_ms()) >= self.config.segment_ms
            || !active.fits_relative_offset(header.last_offset()))
    }

    fn needs_roll(
        &self,
        batch_bytes: usize,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let active = self.active_ref()?;
        if active.is_empty() {
            return Ok(false);
        }
        Ok(
            active.size_bytes() + batch_bytes as u64 > self.config.segment_bytes
                || now_ms.saturating_sub(active.created_at_ms()) >= self.config.segment_ms
                || !active.fits_relative_offset(last_offset),
        )
    }

    fn maybe_roll(
        &mut self,
        batch_bytes: usize,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        if self.needs_roll(batch_bytes, last_offset, now_ms)? {
            self.roll_to(self.log_end_offset, now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment (writing its indexes) and starts a new one at `base_offset`.
    /// An empty active segment is replaced instead of sealed, and only once its successor
    /// exists: a failure at any step (a full disk) leaves the log with its active segment.
    fn roll_to(&mut self, base_offset: i64, now_ms: i64) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        let active = self.active()?;
        let (active_base, active_empty) = (active.base_offset(), active.is_empty());
        if active_empty && active_base == base_offset {
            return Ok(());
        }
        let next_allowed = if active_empty {
            active_base
        } else {
            active.next_offset()
        };
        if base_offset < next_allowed {
            return Err(StorageError::Inconsistent {
                dir,
                reason: format!(
                    "a roll to offset {base_offset} would not follow the active segment \
                     [{active_base}, {})",
                    active.next_offset()
                ),
            });
        }
        if !active_empty {
            active
                .write_indexes()
                .map_err(|e| StorageError::io("write indexes", &dir, e))?;
        }
        let mut segment = Segment::create(&dir, base_offset, now_ms)
            .map_err(|e| StorageError::io("create segment", &dir, e))?;
        if self.config.preallocate {
            segment.preallocate(self.config.segment_bytes);
        }
        self.segments.insert(base_offset, segment);
        self.dir_changes += 1;
        if active_empty {
            if let Some(old) = self.segments.remove(&active_base) {
                old.delete_files()
                    .map_err(|e| StorageError::io("delete empty segment", &dir, e))?;
            }
            return Ok(());
        }
        // Kafka snapshots producer state at every roll, so that recovery replays little.
        self.write_txn_indexes(Some(active_base))?;
        self.write_snapshot()
    }

    /// Appends `parts` (together: whole batches described by `headers`) to the active
    /// segment.
    fn write_to_active(
        &mut self,
        parts: &[&[u8]],
        headers: &[BatchHeader],
    ) -> Result<(), StorageError> {
        if parts.iter().all(|part| part.is_empty()) {
            return Ok(());
        }
        let policy = IndexPolicy {
            index_interval_bytes: self.config.index_interval_bytes,
        };
        let dir = self.dir.clone();
        match self.active()?.append(parts, headers, policy) {
            Ok(()) => {
                if let Some(tap) = self.tap.as_mut() {
                    parts.iter().for_each(|part| tap.extend_from_slice(part));
                }
                Ok(())
            }
            Err(err) => {
                if !err.undone {
                    self.offline = true;
                }
                Err(StorageError::io("append to segment", dir, err.source))
            }
        }
    }

    /// Checks `fetch_offset` against the log's range and returns read plans for the first
    /// two segments holding data at or after it (a fetch offset may fall into a gap at the
    /// end of a segment of a verbatim or cleaned log, and cleaned segments may be empty).
    pub fn read_plans(&self, fetch_offset: i64) -> Result<Vec<ReadPlan>, StorageError> {
        self.check_online()?;
        if fetch_offset < self.log_start_offset || fetch_offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        let mut plans = Vec::with_capacity(2);
        let from = self
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        for segment in self.segments.range(from..).map(|(_, s)| s) {
            // An empty segment (one the cleaner emptied, or an empty active segment) has
            // nothing to read even when its base lies above the fetch offset.
            if segment.next_offset() <= fetch_offset || segment.is_empty() {
                continue;
            }
            plans.push(segment.read_plan(fetch_offset));
            if plans.len() == 2 {
                break;
            }
        }
        Ok(plans)
    }

    /// Plans the search for the first record with a timestamp at or after `timestamp`: the
    /// first segment whose max timestamp reaches it (Kafka's `fetchOffsetByTimestamp`).
    pub fn timestamp_plan(&self, timestamp: i64) -> Option<ReadPlan> {
        self.segments
            .values()
            .find(|s| s.max_timestamp() >= timestamp && s.next_offset() > self.log_start_offset)
            .map(|s| s.time_read_plan(timestamp))
    }

    /// The largest timestamp in the log and a plan to find its record.
    pub fn max_timestamp_plan(&self) -> Option<(i64, ReadPlan)> {
        let mut best: Option<&Segment> = None;
        for segment in self
            .segments
            .values()
            .filter(|s| s.next_offset() > self.log_start_offset)
        {
            if best.is_none_or(|b| segment.max_timestamp() > b.max_timestamp()) {
                best = Some(segment);
            }
        }
        let best = best.filter(|s| s.max_timestamp() >= 0)?;
        Some((
            best.max_timestamp(),
            best.time_read_plan(best.max_timestamp()),
        ))
    }

    /// Files that must be fsynced to make everything up to the log end durable (none for
    /// an offline log, whose files are not served).
    pub fn flush_plan(&self) -> FlushPlan {
        if self.offline {
            return FlushPlan {
                files: Vec::new(),
                end_offset: self.recovery_point,
                dir: None,
            };
        }
        let files = self
            .segments
            .values()
            .filter(|s| {
                s.next_offset() > self.recovery_point || s.base_offset() >= self.recovery_point
            })
            .map(|s| Arc::clone(s.file()))
            .collect();
        let dir = (self.dir_changes != self.dir_changes_synced)
            .then(|| (self.dir.clone(), self.dir_changes));
        FlushPlan {
            files,
            end_offset: self.log_end_offset,
            dir,
        }
    }

    /// Records that `plan` was carried out: everything below its end offset, and the
    /// segment files it saw created, are on stable storage.
    pub fn mark_flushed(&mut self, plan: &FlushPlan) {
        if self.offline {
            // Fail-stop: after a failed fsync nothing more counts as durable.
            return;
        }
        if plan.end_offset > self.recovery_point {
            self.recovery_point = plan.end_offset.min(self.log_end_offset);
        }
        if let Some((_, changes)) = plan.dir {
            self.dir_changes_synced = self.dir_changes_synced.max(changes);
        }
    }

    /// Writes every segment's indexes; used at clean shutdown together with a flush.
    pub fn write_all_indexes(&mut self) -> Result<(), StorageError> {
        self.check_online()?;
        let dir = self.dir.clone();
        for segment in self.segments.values_mut() {
            segment
                .write_indexes()
                .map_err(|e| StorageError::io("write indexes", &dir, e))?;
        }
        self.write_txn_indexes(None)?;
        self.write_snapshot()
    }

    /// Moves the log start offset forward (DeleteRecords) and drops segments wholly below it.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<(), StorageError> {
        self.check_online()?;
        if offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(());
        }
        self.move_log_start(offset);
        self.drop_segments_below(offset)?;
        self.check_invariants()
    }

    /// Makes a log that holds no record start at `offset` (a mirror whose source partition
    /// is empty with its log start at `offset`; Kafka's `truncateFullyAndStartAt` for a log
    /// with nothing to truncate): the active segment is re-based there and log start, log
    /// end and recovery point all become `offset`. Refused if the log serves any offset
    /// (`log_start_offset < log_end_offset`) or `offset` lies below its end.
    pub fn start_empty_at(&mut self, offset: i64, now_ms: i64) -> Result<(), StorageError> {
        self.check_online()?;
        if self.log_start_offset != self.log_end_offset || offset < self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        if offset == self.log_end_offset {
            return Ok(());
        }
        self.roll_to(offset, now_ms)?;
        self.log_end_offset = offset;
        self.move_log_start(offset);
        self.drop_segments_below(offset)?;
        self.check_invariants()
    }

    /// Raises the log start offset (never lowers it), with the recovery point and the
    /// producer state that follow it.
    pub(super) fn move_log_start(&mut self, offset: i64) {
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.recovery_point = self.recovery_point.max(offset);
            self.producers.truncate_head(offset);
        }
    }

    /// Deletes the segments whose successor starts at or below `offset` (all their offsets
    /// are below it); the active segment always stays.
    fn drop_segments_below(&mut self, offset: i64) -> Result<(), StorageError> {
        while self
            .segments
            .keys()
            .nth(1)
            .is_some_and(|next| *next <= offset)
        {
            self.delete_oldest_segment()?;
        }
        Ok(())
    }

    /// Removes the oldest segment (never the only one) and deletes its files.
    fn delete_oldest_segment(&mut self) -> Result<(), StorageError> {
        if self.segments.len() < 2 {
            return Ok(());
        }
        if let Some((_, segment)) = self.segments.pop_first() {
            segment
                .delete_files()
                .map_err(|e| StorageError::io("delete segment", &self.dir, e))?;
        }
        Ok(())
    }
}

/// Finds the exact record for a timestamp search inside a batch.
pub fn first_record_at_or_after(
    batch: &[u8],
    header: &BatchHeader,
    timestamp: i64,
    min_offset: i64,
    max_decompressed_bytes: usize,
) -> Result<Option<Record>, StorageError> {
    let positions = records::parse_records(batch, header, max_decompressed_bytes)?;
    Ok(positions
        .into_iter()
        .find(|r| r.timestamp >= timestamp && r.offset >= min_offset))
}

/// Opens every segment of a log directory in offset order (see [`Log::open`]): trusted
/// segments load their indexes, the others are recovered batch by batch; recovery that cuts
/// bytes from a segment deletes every later one.
fn load_segments(
    dir: &Path,
    bases: &[i64],
    config: &LogConfig,
    recovery_point: i64,
    clean_shutdown: bool,
    now_ms: i64,
) -> Result<(BTreeMap<i64, Segment>, OpenReport), StorageError> {
    let policy = IndexPolicy {
        index_interval_bytes: config.index_interval_bytes,
    };
    let mut report = OpenReport {
        segments: bases.len(),
        ..OpenReport::default()
    };
    let mut segments = BTreeMap::new();
    let mut min_offset = i64::MIN;
    for (i, &base) in bases.iter().enumerate() {
        let mut seg = Segment::open(dir, base, now_ms)
            .map_err(|e| StorageError::io("open segment", dir, e))?;
        let next_base = bases.get(i + 1).copied();
        let trusted = clean_shutdown || next_base.is_some_and(|next| next <= recovery_point);
        // An I/O error while checking a trusted segment falls back to recovering it, which
        // reports the error if it persists.
        let loaded = trusted && base >= min_offset && seg.load_trusted(next_base).unwrap_or(false);
        if !loaded {
            let outcome = seg
                .recover(policy, min_offset, |_, _| {})
                .map_err(|e| StorageError::io("recover segment", seg_path(dir, base), e))?;
            report.segments_recovered += 1;
            if outcome.truncated_bytes > 0 {
                warn!(
                    log = %dir.display(), segment = base, bytes = outcome.truncated_bytes,
                    "truncated invalid bytes at the end of a segment during recovery"
                );
                report.truncated_bytes += outcome.truncated_bytes;
                segments.insert(base, seg);
                report.segments_deleted += delete_segments_after(dir, base, bases)?;
                break;
            }
        }
        min_offset = seg.next_offset();
        segments.insert(base, seg);
    }
    Ok((segments, report))
}

fn seg_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}.log", segment::file_stem(base)))
}

fn no_segments(dir: &Path) -> StorageError {
    StorageError::Inconsistent {
        dir: dir.to_path_buf(),
        reason: "the log has no segment".to_string(),
    }
}

fn list_segment_bases(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list log dir", dir, e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list log dir", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log") {
            if let Some(base) = segment::parse_file_stem(stem) {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn delete_segments_after(dir: &Path, base: i64, bases: &[i64]) -> Result<usize, StorageError> {
    let later: Vec<i64> = bases.iter().copied().filter(|b| *b > base).collect();
    for &later_base in &later {
        let segment = Segment::open(dir, later_base, 0)
            .map_err(|e| StorageError::io("open segment", dir, e))?;
        segment
            .delete_files()
            .map_err(|e| StorageError::io("delete segment", dir, e))?;
        info!(log = %dir.display(), segment = later_base, "deleted segment after truncation point");
    }
    Ok(later.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::test_support::build_batch;
    use crate::storage::segment::ReadLimits;

    impl Log {
        fn append_as_leader_client(
            &mut self,
            records: &[u8],
            leader_epoch: i32,
            now_ms: i64,
        ) -> Result<AppendInfo, StorageError> {
            self.append_as_leader(records, leader_epoch, AppendOrigin::Client, now_ms)
        }
    }

    fn small_config() -> LogConfig {
        LogConfig {
            segment_bytes: 1_000,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    fn read_all(log: &Log, from: i64) -> Vec<BatchHeader> {
        let mut out = Vec::new();
        let mut offset = from;
        while offset < log.log_end_offset() {
            let plans = log.read_plans(offset).unwrap();
            let limits = ReadLimits {
                fetch_offset: offset,
                upper_offset: i64::MAX,
                max_bytes: 1 << 20,
                min_one_batch: true,
            };
            let chunk = plans
                .iter()
                .find_map(|p| p.read(limits).unwrap())
                .expect("data");
            for item in BatchIter::new(&chunk.bytes) {
                out.push(item.unwrap().1);
            }
            offset = chunk.next_offset;
        }
        out
    }

    #[test]
    fn leader_appends_assign_offsets_and_roll_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        for i in 0..50 {
            let batch = build_batch(999, i, &[b"0123456789", b"abcdefghij"]);
            let info = log.append_as_leader_client(&batch, 0, i).unwrap();
            assert_eq!(info.first_offset, i * 2);
            assert_eq!(info.last_offset, i * 2 + 1);
        }
        assert_eq!(log.log_end_offset(), 100);
        assert!(log.segment_count() >= 4, "1000-byte segments must roll");
        let headers = read_all(&log, 0);
        let bases: Vec<i64> = headers.iter().map(|h| h.base_offset).collect();
        assert_eq!(bases, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert!(matches!(
            log.read_plans(101),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn rejects_what_kafka_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_config();
        config.max_message_bytes = 200;
        let mut log = Log::create(dir.path(), config, 0, 0).unwrap();
        let big = build_batch(0, 0, &[&[7u8; 300]]);
        assert!(matches!(
            log.append_as_leader_client(&big, 0, 0),
            Err(StorageError::RecordTooLarge { .. })
        ));
        let mut two = build_batch(0, 0, &[b"a"]);
        two.extend(build_batch(1, 0, &[b"b"]));
        assert!(matches!(
            log.append_as_leader_client(&two, 0, 0),
            Err(StorageError::InvalidRecord { .. })
        ));
        let mut corrupt = build_batch(0, 0, &[b"abc"]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(matches!(
            log.append_as_leader_client(&corrupt, 0, 0),
            Err(StorageError::CorruptBatch(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
    }

    #[test]
    fn verbatim_appends_keep_offsets_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 1_000, 0).unwrap();
        let mut bytes = build_batch(1_000, 0, &[b"a", b"b"]);
        bytes.extend(build_batch(1_010, 0, &[b"c"]));
        bytes.extend(build_batch(1_020, 0, &[b"d"]));
        let info = log.append_verbatim(&bytes, 0).unwrap().unwrap();
        assert_eq!((info.first_offset, info.last_offset), (1_000, 1_020));
        assert_eq!(log.log_end_offset(), 1_021);
        // A fetch inside a gap returns the next batch.
        let headers = read_all(&log, 1_005);
        assert_eq!(headers[0].base_offset, 1_010);
        let stale = build_batch(1_015, 0, &[b"x"]);
        assert!(matches!(
            log.append_verbatim(&stale, 0),
            Err(StorageError::OffsetsNotIncreasing { .. })
        ));
        // A relative-offset overflow forces a roll instead of a corrupt index.
        let far = build_batch(5_000_000_000, 0, &[b"far"]);
        log.append_verbatim(&far, 0).unwrap();
        assert_eq!(read_all(&log, 1_021)[0].base_offset, 5_000_000_000);
    }

    #[test]
    fn an_empty_log_started_at_an_offset_survives_restarts_and_takes_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        log.start_empty_at(5_000, 0).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (5_000, 5_000)
        );
        for clean in [true, false] {
            let checkpoint = close_cleanly(log);
            let (reopened, _) =
                Log::open(dir.path(), small_config(), Some(checkpoint), clean, 0).unwrap();
            log = reopened;
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (5_000, 5_000)
            );
        }
        // Without a checkpoint the segment's name still says where the log starts.
        close_cleanly(log);
        let (mut log, _) = Log::open(dir.path(), small_config(), None, false, 0).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (5_000, 5_000)
        );
        let info = log
            .append_verbatim(&build_batch(5_000, 0, &[b"a"]), 0)
            .unwrap()
            .unwrap();
        assert_eq!(info.first_offset, 5_000);
        // A log with records, or an offset below the end, is refused.
        assert!(log.start_empty_at(9_000, 0).is_err());
        let mut other =
            Log::create(tempfile::tempdir().unwrap().path(), small_config(), 10, 0).unwrap();
        assert!(other.start_empty_at(3, 0).is_err());
        other.start_empty_at(10, 0).unwrap();
    }

    #[test]
    fn written_bytes_replay_a_lost_tail_and_skip_what_the_log_has() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), LogConfig::default(), 0, 0).unwrap();
        log.keep_written(true);
        let mut journal = Vec::new();
        for i in 0..6 {
            log.append_as_leader_client(&build_batch(0, i, &[b"value"]), 0, 0)
                .unwrap();
            journal.push(log.take_written());
        }
        // The copies are the segment's bytes, with the offsets the leader assigned.
        let segment = std::fs::read(dir.path().join("00000000000000000000.log")).unwrap();
        assert_eq!(segment, journal.concat());
        assert!(log.take_written().is_empty());
        drop(log);
        // A crash lost the last three batches from the segment.
        let keep = journal[..3].concat().len() as u64;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("00000000000000000000.log"))
            .unwrap();
        file.set_len(keep).unwrap();
        let checkpoint = LogCheckpoint {
            recovery_point: 0,
            log_start_offset: 0,
        };
        let (mut log, _) =
            Log::open(dir.path(), LogConfig::default(), Some(checkpoint), false, 0).unwrap();
        assert_eq!(log.log_end_offset(), 3);
        // Replaying every entry restores exactly the lost ones.
        for entry in &journal {
            log.append_journaled(entry, 0).unwrap();
        }
        assert_eq!(log.log_end_offset(), 6);
        let bases: Vec<i64> = read_all(&log, 0).iter().map(|h| h.base_offset).collect();
        assert_eq!(bases, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(log.append_journaled(&journal[5], 0).unwrap(), None);
    }

    #[test]
    fn a_flush_after_a_roll_also_syncs_the_directory_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        let append = |log: &mut Log| {
            log.append_as_leader_client(&build_batch(0, 0, &[&[7u8; 300]]), 0, 0)
                .unwrap();
        };
        append(&mut log);
        assert!(log.flush_plan().dir.is_none(), "no segment created yet");
        while log.segment_count() < 2 {
            append(&mut log);
        }
        let plan = log.flush_plan();
        assert_eq!(plan.dir.as_ref().map(|d| d.0.as_path()), Some(dir.path()));
        plan.sync_data().unwrap();
        // A roll between taking the plan and finishing it stays unsynced.
        while log.segment_count() < 3 {
            append(&mut log);
        }
        log.mark_flushed(&plan);
        assert!(log.flush_plan().dir.is_some());
        let plan = log.flush_plan();
        log.mark_flushed(&plan);
        assert!(log.flush_plan().dir.is_none());
        assert_eq!(log.recovery_point(), log.log_end_offset());
    }

    #[test]
    fn reopen_after_clean_and_unclean_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        for i in 0..40 {
            log.append_as_leader_client(&build_batch(0, i, &[b"0123456789"]), 0, 0)
                .unwrap();
        }
        log.write_all_indexes().unwrap();
        let checkpoint = LogCheckpoint {
            recovery_point: 20,
            log_start_offset: 0,
        };
        drop(log);
        let (clean, report) = Log::open(dir.path(), small_config(), None, true, 0).unwrap();
        assert_eq!(clean.log_end_offset(), 40);
        assert_eq!(report.segments_recovered, 0);
        drop(clean);
        let (unclean, report) =
            Log::open(dir.path(), small_config(), Some(checkpoint), false, 0).unwrap();
        assert_eq!(unclean.log_end_offset(), 40);
        assert!(report.segments_recovered >= 1 && report.segments_recovered < report.segments);
        assert_eq!(read_all(&unclean, 0).len(), 40);
    }

    /// What `Partition::close` does at a clean shutdown, and the checkpoint it leaves.
    fn close_cleanly(mut log: Log) -> LogCheckpoint {
        log.write_all_indexes().unwrap();
        let plan = log.flush_plan();
        plan.sync_data().unwrap();
        log.mark_flushed(&plan);
        log.checkpoint()
    }

    #[test]
    fn an_empty_log_keeps_its_offsets_across_clean_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        let checkpoint = close_cleanly(log);
        for round in 0..3i64 {
            let (mut log, report) =
                Log::open(dir.path(), small_config(), Some(checkpoint), true, 0).unwrap();
            assert_eq!(report.segments_recovered, 0);
            assert_eq!(log.log_end_offset(), round, "round {round}");
            let info = log
                .append_as_leader_client(&build_batch(0, 0, &[b"one"]), 0, 0)
                .unwrap();
            assert_eq!(info.first_offset, round);
            let checkpoint = close_cleanly(log);
            assert_eq!(checkpoint.recovery_point, round + 1);
        }
        let (log, _) = Log::open(dir.path(), small_config(), None, true, 0).unwrap();
        assert_eq!(read_all(&log, 0).len(), 3);
    }

    #[test]
    fn an_empty_active_segment_after_a_roll_survives_a_clean_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        while log.segment_count() < 2 {
            log.append_as_leader_client(&build_batch(0, 0, &[&[7u8; 300]]), 0, 0)
                .unwrap();
        }
        let end = log.log_end_offset();
        // DeleteRecords up to the end leaves an empty active segment at the log end.
        log.advance_log_start_offset(end).unwrap();
        log.roll_to(end, 0).unwrap();
        let checkpoint = close_cleanly(log);
        assert_eq!(checkpoint.log_start_offset, end);
        for clean in [true, false] {
            let (mut log, _) =
                Log::open(dir.path(), small_config(), Some(checkpoint), clean, 0).unwrap();
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (end, end),
                "clean={clean}"
            );
            let info = log
                .append_as_leader_client(&build_batch(0, 0, &[b"next"]), 0, 0)
                .unwrap();
            assert_eq!(info.first_offset, end);
            drop(log);
            // Undo the append for the next round.
            let path = dir.path().join(format!("{}.log", segment::file_stem(end)));
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
    }

    #[test]
    fn indexes_that_disagree_with_the_log_are_rebuilt_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        for i in 0..40 {
            log.append_as_leader_client(&build_batch(0, i, &[b"0123456789"]), 0, 0)
                .unwrap();
        }
        let checkpoint = close_cleanly(log);
        let bases = list_segment_bases(dir.path()).unwrap();
        // An index whose last entry names an offset past the segment's data.
        let index = dir
            .path()
            .join(format!("{}.index", segment::file_stem(bases[0])));
        let mut bytes = std::fs::read(&index).unwrap();
        assert!(!bytes.is_empty());
        let last = bytes.len() - 8;
        bytes[last..last + 4].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
        std::fs::write(&index, bytes).unwrap();
        // And a segment whose offset index is missing.
        let stray = dir
            .path()
            .join(format!("{}.index", segment::file_stem(bases[1])));
        std::fs::remove_file(stray).unwrap();
        let (log, report) =
            Log::open(dir.path(), small_config(), Some(checkpoint), true, 0).unwrap();
        assert_eq!(report.segments_recovered, 2);
        assert_eq!(log.log_end_offset(), 40);
        assert_eq!(read_all(&log, 0).len(), 40);
    }

    #[test]
    fn checkpoints_beyond_the_log_are_repaired_as_kafka_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        for i in 0..5 {
            log.append_as_leader_client(&build_batch(0, i, &[b"v"]), 0, 0)
                .unwrap();
        }
        drop(log);
        let beyond = LogCheckpoint {
            recovery_point: 1_000,
            log_start_offset: 0,
        };
        let (log, _) = Log::open(dir.path(), small_config(), Some(beyond), false, 0).unwrap();
        assert_eq!(
            (log.recovery_point(), log.log_end_offset()),
            (5, 5),
            "a recovery point beyond the log end is lowered to it"
        );
        drop(log);
        let start_beyond = LogCheckpoint {
            recovery_point: 0,
            log_start_offset: 700,
        };
        let (mut log, _) =
            Log::open(dir.path(), small_config(), Some(start_beyond), false, 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (700, 700));
        assert_eq!(log.segment_count(), 1);
        let info = log
            .append_as_leader_client(&build_batch(0, 0, &[b"v"]), 0, 0)
            .unwrap();
        assert_eq!(info.first_offset, 700);
        let negative = LogCheckpoint {
            recovery_point: -5,
            log_start_offset: -9,
        };
        drop(log);
        let (log, _) = Log::open(dir.path(), small_config(), Some(negative), false, 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (700, 701));
    }

    #[test]
    fn a_batch_at_an_offset_the_index_cannot_express_is_cut_at_open() {
        // What a broker with the empty-partition bug left behind: a batch stored at
        // offset i64::MAX in a segment based at 0.
        let dir = tempfile::tempdir().unwrap();
        let log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        let checkpoint = close_cleanly(log);
        let mut bogus = build_batch(0, 0, &[b"lost"]);
        batch::set_base_offset_and_epoch(&mut bogus, i64::MAX, 0);
        std::fs::write(dir.path().join("00000000000000000000.log"), &bogus).unwrap();
        for clean in [true, false] {
            let (log, _) =
                Log::open(dir.path(), small_config(), Some(checkpoint), clean, 0).unwrap();
            assert_eq!(log.log_end_offset(), 0, "clean={clean}");
        }
    }

    #[test]
    fn corruption_in_a_middle_segment_truncates_and_drops_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        for i in 0..40 {
            log.append_as_leader_client(&build_batch(0, i, &[b"0123456789"]), 0, 0)
                .unwrap();
        }
        let segments = log.segment_count();
        drop(log);
        let second = list_segment_bases(dir.path()).unwrap()[1];
        let path = dir
            .path()
            .join(format!("{}.log", segment::file_stem(second)));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (log, report) = Log::open(dir.path(), small_config(), None, false, 0).unwrap();
        assert_eq!(report.segments_deleted, segments - 2);
        assert!(log.log_end_offset() > second && log.log_end_offset() < 40);
        let headers = read_all(&log, 0);
        assert_eq!(headers.len() as i64, log.log_end_offset());
        // The log accepts new data right after the truncation point.
        let mut log = log;
        let next = log.log_end_offset();
        let info = log
            .append_as_leader_client(&build_batch(0, 0, &[b"after"]), 0, 0)
            .unwrap();
        assert_eq!(info.first_offset, next);
    }

    #[test]
    fn timestamp_search_finds_first_record_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        for i in 0..30 {
            // Records at timestamps 10*i, 10*i+1.
            log.append_as_leader_client(&build_batch(0, 10 * i, &[b"0123456789", b"x"]), 0, 0)
                .unwrap();
        }
        let plan = log.timestamp_plan(155).unwrap();
        let (header, batch) = plan.find_batch_by_timestamp(155, 0).unwrap().unwrap();
        let found = first_record_at_or_after(&batch, &header, 155, 0, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!((found.offset, found.timestamp), (32, 160));
        assert!(log.timestamp_plan(10_000).is_none());
        let (max_ts, _) = log.max_timestamp_plan().unwrap();
        assert_eq!(max_ts, 291);
    }

    #[test]
    fn retention_deletes_old_segments_and_moves_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_config();
        config.retention_bytes = 2_000;
        let mut log = Log::create(dir.path(), config, 0, 0).unwrap();
        for i in 0..60 {
            log.append_as_leader_client(&build_batch(0, i, &[b"0123456789"]), 0, 0)
                .unwrap();
        }
        let end = log.log_end_offset();
        let retired = log.take_retired_segments(0, end).unwrap();
        assert!(!retired.is_empty());
        for path in retired.rename().unwrap() {
            assert!(path.to_string_lossy().ends_with(".deleted"), "{path:?}");
        }
        assert!(log.size_bytes() <= 3_000);
        assert!(log.log_start_offset() > 0);
        assert!(matches!(
            log.read_plans(0),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.advance_log_start_offset(55).unwrap();
        assert_eq!(read_all(&log, 55)[0].base_offset, 55);
    }

    #[test]
    fn idempotent_and_transactional_state_survives_reopen() {
        use crate::storage::batch::test_support::producer_batch;
        use crate::storage::producer_state::{CONTROL_ABORT, CONTROL_COMMIT};
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), small_config(), 0, 0).unwrap();
        let first = log
            .append_as_leader_client(&producer_batch(5, 0, 0, 3, false), 0, 0)
            .unwrap();
        assert_eq!((first.first_offset, first.last_offset), (0, 2));
        // The retry is answered with the original offsets and not written again.
        let retry = log
            .append_as_leader_client(&producer_batch(5, 0, 0, 3, false), 0, 0)
            .unwrap();
        assert!(retry.is_duplicate());
        assert_eq!(retry.first_offset, 0);
        assert_eq!(log.log_end_offset(), 3);
        assert!(matches!(
            log.append_as_leader_client(&producer_batch(5, 0, 7, 1, false), 0, 0),
            Err(StorageError::Sequence(_))
        ));
        // A transaction from producer 6, aborted; one from producer 7, left open.
        log.append_as_leader_client(&producer_batch(6, 0, 0, 2, true), 0, 0)
            .unwrap();
        let marker = Marker {
            producer_id: 6,
            producer_epoch: 0,
            control_type: CONTROL_ABORT,
            coordinator_epoch: 0,
        };
        let abort = log.append_marker(&marker, 0).unwrap();
        assert_eq!(abort.first_offset, 5);
        log.append_as_leader_client(&producer_batch(7, 0, 0, 1, true), 0, 0)
            .unwrap();
        assert_eq!(log.first_unstable_offset(), Some(6));
        assert_eq!(log.aborted_between(0, 6).len(), 1);
        log.write_all_indexes().unwrap();
        drop(log);
        // Without any snapshot, the state is rebuilt by replaying the whole log.
        let (replayed, _) = Log::open(dir.path(), small_config(), None, false, 0).unwrap();
        drop(replayed);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "snapshot") {
                std::fs::remove_file(path).unwrap();
            }
        }
        for clean in [true, false] {
            let (mut log, _) = Log::open(dir.path(), small_config(), None, clean, 0).unwrap();
            assert_eq!(log.first_unstable_offset(), Some(6), "clean={clean}");
            assert_eq!(log.aborted_between(0, 7).len(), 1, "clean={clean}");
            let retry = log
                .append_as_leader_client(&producer_batch(5, 0, 0, 3, false), 0, 0)
                .unwrap();
            assert!(
                retry.is_duplicate(),
                "dedup survives a restart (clean={clean})"
            );
            if !clean {
                let commit = Marker {
                    producer_id: 7,
                    producer_epoch: 0,
                    control_type: CONTROL_COMMIT,
                    coordinator_epoch: 0,
                };
                log.append_marker(&commit, 0).unwrap();
                assert_eq!(log.first_unstable_offset(), None);
            }
        }
    }
}
