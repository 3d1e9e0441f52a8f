//! A partition as the broker serves it: its log behind a lock held only for in-memory work
//! and the write system call, the high watermark, and the waiters (delayed fetches and
//! durable produces) to wake when the high watermark moves.
//!
//! High watermark rule: in the default flush policy the high watermark is the log end
//! offset right after each append; in durable mode (`flush.messages=1`) it advances only
//! after an fsync covered the data, so consumers never see what a power loss could take
//! back, and producers are acknowledged when it passes their batch.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::{error, warn};

use uuid::Uuid;

use super::flusher::Flusher;
use super::journal::Journal;
use super::read_ahead::ReadAhead;

/// How far a catch-up read's read-ahead reaches, in reads of the size just served: the
/// consumer's next four reads, so the disk stays busy while the client works through a
/// response and while the broker sends the next. Two were enough while the harness's
/// reader took records one at a time; since it takes them in batches (warm catch-up
/// 680-890 MiB/s), W5's cold catch-up on the development VM was 415-550 MiB/s with four
/// against 272-351 with two (three alternating pairs), and 472-508 with eight against
/// 424-604 with four (two pairs): four, the smallest that kept up.
const READ_AHEAD_SPANS: usize = 4;
use crate::config::topic::ResolvedTopicConfig;
use crate::protocol::fetch_encoder::RecordsOut;
use crate::protocol::frame::FileRegion;
use crate::storage::log::{
    self, AppendInfo, AppendOrigin, CleanedSegment, CleaningView, FlushPlan, Log, Marker,
    RetiredSegments, SwapOutcome,
};
use crate::storage::producer_state::AbortedTxn;
use crate::storage::segment::ReadLimits;
use crate::storage::StorageError;

/// Ferry is a single node; the leader epoch never changes.
pub const LEADER_EPOCH: i32 = 0;

/// Waiters on a partition are pruned of dropped entries once the list reaches this length.
const WAITERS_PRUNE_LEN: usize = 16;

struct PartitionState {
    log: Log,
    durable: bool,
    flush_messages: i64,
    flush_ms: i64,
    unflushed_messages: i64,
    last_flush_ms: i64,
}

/// The broker-wide threads a partition hands work to: the shared journal (durable mode's
/// acknowledgements), the flusher (segment fsyncs) and read-ahead (catch-up reads).
#[derive(Clone)]
pub struct Services {
    pub flusher: Arc<Flusher>,
    pub journal: Arc<Journal>,
    pub read_ahead: Arc<ReadAhead>,
}

/// What produce appended to a partition and fetches served from it since the broker
/// started: relaxed atomic counters on the request path, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct Traffic {
    bytes_in: AtomicU64,
    records_in: AtomicU64,
    bytes_out: AtomicU64,
    records_out: AtomicU64,
}

/// A reading of [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Batch bytes produced (as received) and appended; duplicates are not counted.
    pub bytes_in: u64,
    pub records_in: u64,
    /// Record bytes sent in Fetch responses.
    pub bytes_out: u64,
    /// Records in the batches sent, as their headers count them.
    pub records_out: u64,
}

impl Traffic {
    fn appended(&self, bytes: usize, records: u32) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_in
            .fetch_add(u64::from(records), Ordering::Relaxed);
    }

    /// Counts record batches a Fetch response carries.
    pub fn served(&self, bytes: usize, records: u64) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }

    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            records_in: self.records_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
        }
    }
}

/// One partition of a topic.
pub struct Partition {
    topic: String,
    topic_id: Uuid,
    index: i32,
    state: Mutex<PartitionState>,
    high_watermark: AtomicI64,
    log_start_offset: AtomicI64,
    offline: AtomicBool,
    flush_queued: AtomicBool,
    waiters: Mutex<Vec<Weak<Notify>>>,
    services: Services,
    traffic: Traffic,
}

/// A flush whose writeback has been started (`Partition::begin_flush`).
pub struct FlushStarted {
    plan: FlushPlan,
    /// Appended messages the flush covers (for `flush.messages`).
    pending: i64,
    /// Whether starting the writeback failed (the flush then fails).
    writeback: std::io::Result<()>,
}

/// Records read for a fetch, with the offsets the response reports.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    /// The batches read: a file region to send as is, or bytes.
    pub records: RecordsOut,
    /// Records in those batches, as their headers count them.
    pub record_count: u64,
    pub high_watermark: i64,
    /// The last stable offset: below the oldest open transaction, at most the high watermark.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Aborted transactions in the range read (read_committed only).
    pub aborted: Vec<AbortedTxn>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}-{})", self.topic, self.index)
    }
}

impl Partition {
    pub fn new(
        (topic, topic_id, index): (&str, Uuid, i32),
        mut log: Log,
        config: &ResolvedTopicConfig,
        services: Services,
        now_ms: i64,
    ) -> Arc<Partition> {
        // On open, everything in the log survived a restart: it is all visible.
        let end = log.log_end_offset();
        let start = log.log_start_offset();
        let offline = log.is_offline();
        log.keep_written(config.is_durable());
        Arc::new(Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            state: Mutex::new(PartitionState {
                log,
                durable: config.is_durable(),
                flush_messages: config.flush_messages,
                flush_ms: config.flush_ms,
                unflushed_messages: 0,
                last_flush_ms: now_ms,
            }),
            high_watermark: AtomicI64::new(end),
            log_start_offset: AtomicI64::new(start),
            offline: AtomicBool::new(offline),
            flush_queued: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            services,
            traffic: Traffic::default(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn index(&self) -> i32 {
        self.index
    }

    /// The partition's state. A panic while an operation held this lock leaves the log in
    /// an unknown state, so the next user takes the partition offline (KAFKA_STORAGE_ERROR
    /// until a restart recovers the log from its files) instead of serving it or panicking
    /// in turn; every other partition goes on serving.
    fn lock(&self) -> MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|poisoned| {
            self.state.clear_poison();
            let mut state = poisoned.into_inner();
            state.log.set_offline();
            self.offline.store(true, Ordering::Release);
            error!(
                topic = %self.topic, partition = self.index,
                "an operation panicked while holding the partition's lock: the partition is \
                 offline until a restart recovers its log (please report the panic above)"
            );
            state
        })
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.lock().log.log_end_offset()
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// What produce and fetch moved through this partition (see [`Traffic`]).
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// `(log end offset, bytes of the log's segments)`, under one short hold of the lock.
    pub fn end_and_size(&self) -> (i64, u64) {
        let state = self.lock();
        (state.log.log_end_offset(), state.log.size_bytes())
    }

    /// Applies changed topic configs.
    pub fn reconfigure(&self, config: &ResolvedTopicConfig) {
        let mut state = self.lock();
        state.log.set_config(config.log.clone());
        state.log.keep_written(config.is_durable());
        state.durable = config.is_durable();
        state.flush_messages = config.flush_messages;
        state.flush_ms = config.flush_ms;
    }

    /// Appends a producer's batch. Returns the append and, in durable mode, the high
    /// watermark the acknowledgement must wait for.
    pub fn append_as_leader(
        self: &Arc<Self>,
        records: &[u8],
        now_ms: i64,
    ) -> Result<(AppendInfo, Option<i64>), StorageError> {
        let appended = self.append_with(|log| {
            log.append_as_leader(records, LEADER_EPOCH, AppendOrigin::Client, now_ms)
        });
        if let Ok((info, _)) = &appended {
            if !info.is_duplicate() {
                self.traffic.appended(records.len(), info.records);
            }
        }
        appended
    }

    /// Appends a batch written by a coordinator (no producer sequence checks).
    pub fn append_internal(
        self: &Arc<Self>,
        records: &[u8],
        now_ms: i64,
    ) -> Result<(AppendInfo, Option<i64>), StorageError> {
        self.append_with(|log| {
            log.append_as_leader(records, LEADER_EPOCH, AppendOrigin::Coordinator, now_ms)
        })
    }

    /// Appends a transaction marker (from the transaction coordinator).
    pub fn append_marker(
        self: &Arc<Self>,
        marker: &Marker,
        now_ms: i64,
    ) -> Result<(AppendInfo, Option<i64>), StorageError> {
        self.append_with(|log| log.append_marker(marker, now_ms))
    }

    fn append_with(
        self: &Arc<Self>,
        append: impl FnOnce(&mut Log) -> Result<AppendInfo, StorageError>,
    ) -> Result<(AppendInfo, Option<i64>), StorageError> {
        let mut state = self.lock();
        let segments_before = state.log.segment_count();
        let info = match append(&mut state.log) {
            Ok(info) => info,
            Err(err) => {
                drop(state);
                self.note_failure(&err);
                return Err(err);
            }
        };
        let durable = state.durable;
        if info.is_duplicate() {
            // Nothing was written; a durable acknowledgement still waits for the original.
            return Ok((info, durable.then_some(info.last_offset + 1)));
        }
        state.unflushed_messages += i64::from(info.records);
        let rolled = state.log.segment_count() != segments_before;
        let end = state.log.log_end_offset();
        let journaled = durable && self.journal_written(&mut state, end);
        let flush = (durable && !journaled)
            || rolled
            || (!durable && state.unflushed_messages >= state.flush_messages);
        drop(state);
        if flush {
            self.request_flush();
        }
        if durable {
            Ok((info, Some(end)))
        } else {
            self.advance_high_watermark(end);
            Ok((info, None))
        }
    }

    /// Appends batches at their own offsets (mirror / follower path).
    pub fn append_verbatim(
        self: &Arc<Self>,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<Option<AppendInfo>, StorageError> {
        let mut state = self.lock();
        let result = state.log.append_verbatim(batches, now_ms);
        let end = state.log.log_end_offset();
        let durable = state.durable;
        let journaled = durable && self.journal_written(&mut state, end);
        drop(state);
        match &result {
            Ok(Some(_)) if !durable => self.advance_high_watermark(end),
            Ok(Some(_)) if !journaled => self.request_flush(),
            Ok(_) => {}
            Err(err) => self.note_failure(err),
        }
        result
    }

    /// Hands what the last append wrote to the journal (with the partition lock held, so
    /// entries keep log order). False if the journal did not take it.
    fn journal_written(self: &Arc<Self>, state: &mut PartitionState, end: i64) -> bool {
        let written = state.log.take_written();
        written.is_empty()
            || self
                .services
                .journal
                .append(self, self.topic_id, &written, end)
    }

    /// A journal round made everything below `end` durable.
    pub(super) fn journal_synced(&self, end: i64) {
        self.advance_high_watermark(end);
    }

    /// Crash recovery: appends the batches of a journal entry that the log lost (see
    /// `Log::append_journaled`). Returns the records appended.
    pub fn replay_journaled(&self, batches: &[u8], now_ms: i64) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let appended = state.log.append_journaled(batches, now_ms)?;
        // Replayed bytes are already in the journal; they are not journaled twice.
        state.log.take_written();
        let end = state.log.log_end_offset();
        drop(state);
        self.advance_high_watermark(end);
        Ok(appended.map_or(0, |a| u64::from(a.records)))
    }

    /// Everything below this offset is known to be on stable storage in the segments.
    pub fn recovery_point(&self) -> i64 {
        self.lock().log.recovery_point()
    }

    fn note_failure(&self, err: &StorageError) {
        if err.is_storage_failure() {
            error!(topic = %self.topic, partition = self.index, "append failed: {err}");
            if self.lock().log.is_offline() {
                self.offline.store(true, Ordering::Release);
                self.wake_waiters();
            }
        }
    }

    fn advance_high_watermark(&self, offset: i64) {
        let previous = self.high_watermark.fetch_max(offset, Ordering::AcqRel);
        if offset > previous {
            self.wake_waiters();
        }
    }

    pub(super) fn request_flush(self: &Arc<Self>) {
        if !self.flush_queued.swap(true, Ordering::AcqRel) {
            self.services.flusher.request(Arc::clone(self));
        }
    }

    /// Queues a flush if `flush.ms` has passed since the last one and data is waiting.
    pub fn flush_if_due(self: &Arc<Self>, now_ms: i64) {
        let due = {
            let state = self.lock();
            state.unflushed_messages > 0 && now_ms - state.last_flush_ms >= state.flush_ms
        };
        if due {
            self.request_flush();
        }
    }

    /// First half of a flush (flusher thread): takes what must be fsynced and starts its
    /// writeback without waiting, so that a round's partitions write in parallel.
    pub fn begin_flush(&self) -> FlushStarted {
        self.flush_queued.store(false, Ordering::Release);
        let (plan, pending) = {
            let state = self.lock();
            (state.log.flush_plan(), state.unflushed_messages)
        };
        let writeback = plan.start_writeback();
        FlushStarted {
            plan,
            pending,
            writeback,
        }
    }

    /// Second half of a flush: fsyncs what `begin_flush` took (never with the partition
    /// lock held during the fsync itself) and, in durable mode, moves the high watermark.
    /// Any failure takes the partition offline until a restart recovers it.
    pub fn finish_flush(&self, started: FlushStarted, now_ms: i64) {
        let FlushStarted {
            plan,
            pending,
            writeback,
        } = started;
        if let Err(err) = writeback.and_then(|()| plan.sync_data()) {
            error!(
                topic = %self.topic, partition = self.index,
                "fsync failed, taking the partition offline until restart: {err}"
            );
            self.lock().log.set_offline();
            self.offline.store(true, Ordering::Release);
            self.wake_waiters();
            return;
        }
        let durable = {
            let mut state = self.lock();
            state.log.mark_flushed(&plan);
            state.unflushed_messages = (state.unflushed_messages - pending).max(0);
            state.last_flush_ms = now_ms;
            state.durable
        };
        if durable {
            self.advance_high_watermark(plan.end_offset);
        }
    }

    /// The last stable offset: the first offset of the oldest open transaction, or the
    /// high watermark if that is lower or there is none.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        let first_unstable = self.lock().log.first_unstable_offset();
        first_unstable.map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// Reads batches for a fetch from `fetch_offset`: below the high watermark, or for
    /// read_committed below the last stable offset, with the aborted transactions in range.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<PartitionRead, StorageError> {
        let high_watermark = self.high_watermark();
        let (plans, last_stable_offset, aborted) = {
            let state = self.lock();
            let plans = state.log.read_plans(fetch_offset)?;
            let first_unstable = state.log.first_unstable_offset();
            let lso = first_unstable.map_or(high_watermark, |f| f.min(high_watermark));
            let aborted = if read_committed {
                state.log.aborted_between(fetch_offset, lso)
            } else {
                Vec::new()
            };
            (plans, lso, aborted)
        };
        let limits = ReadLimits {
            fetch_offset,
            upper_offset: if read_committed {
                last_stable_offset
            } else {
                high_watermark
            },
            max_bytes,
            min_one_batch,
        };
        let mut records = RecordsOut::Bytes(Bytes::new());
        let mut record_count = 0;
        for plan in plans {
            let span = plan.locate(limits).map_err(|e| self.read_error(e))?;
            if let Some(span) = span {
                if span.next_offset < limits.upper_offset {
                    // The budget, not the data, ended this read: the consumer will ask
                    // for what follows next.
                    self.services.read_ahead.hint(
                        &plan.file,
                        span.start_position + span.len as u64,
                        READ_AHEAD_SPANS * span.len,
                        plan.end_position,
                    );
                }
                records = RecordsOut::File(FileRegion {
                    file: Arc::clone(&plan.file),
                    position: span.start_position,
                    len: span.len,
                });
                record_count = span.records;
                break;
            }
        }
        Ok(PartitionRead {
            records,
            record_count,
            high_watermark,
            last_stable_offset,
            log_start_offset: self.log_start_offset(),
            aborted,
        })
    }

    fn read_error(&self, err: std::io::Error) -> StorageError {
        let dir = self.lock().log.dir().to_path_buf();
        error!(topic = %self.topic, partition = self.index, "read failed: {err}");
        StorageError::io("read segment", dir, err)
    }

    /// First offset whose record timestamp is at or after `timestamp`, below the high
    /// watermark: `(offset, timestamp)`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let (plan, max_decompressed, log_start) = {
            let state = self.lock();
            let plan = state.log.timestamp_plan(timestamp);
            (
                plan,
                state.log.config().max_decompressed_batch_bytes,
                state.log.log_start_offset(),
            )
        };
        let Some(plan) = plan else { return Ok(None) };
        let found = plan
            .find_batch_by_timestamp(timestamp, log_start)
            .map_err(|e| self.read_error(e))?;
        let Some((header, batch)) = found else {
            return Ok(None);
        };
        let record =
            log::first_record_at_or_after(&batch, &header, timestamp, log_start, max_decompressed)?;
        Ok(record
            .filter(|r| r.offset < self.high_watermark())
            .map(|r| (r.offset, r.timestamp)))
    }

    /// The record with the largest timestamp: `(offset, timestamp)`.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let (plan, max_decompressed, log_start) = {
            let state = self.lock();
            let plan = state.log.max_timestamp_plan();
            (
                plan,
                state.log.config().max_decompressed_batch_bytes,
                state.log.log_start_offset(),
            )
        };
        let Some((max_timestamp, plan)) = plan else {
            return Ok(None);
        };
        let found = plan
            .find_batch_by_timestamp(max_timestamp, log_start)
            .map_err(|e| self.read_error(e))?;
        let Some((header, batch)) = found else {
            return Ok(None);
        };
        let record = log::first_record_at_or_after(
            &batch,
            &header,
            max_timestamp,
            log_start,
            max_decompressed,
        )?;
        Ok(record
            .filter(|r| r.offset < self.high_watermark())
            .map(|r| (r.offset, r.timestamp)))
    }

    /// Moves the log start offset forward (DeleteRecords); returns the new start.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let target = if offset == -1 {
            self.high_watermark()
        } else {
            offset
        };
        // Kafka: a negative offset other than -1 (the high watermark) is out of range too.
        if target < 0 || target > self.high_watermark() {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.high_watermark(),
            });
        }
        let mut state = self.lock();
        state.log.advance_log_start_offset(target)?;
        let start = state.log.log_start_offset();
        self.log_start_offset.store(start, Ordering::Release);
        Ok(start)
    }

    /// Makes an empty partition start at `offset` (a mirror of an empty source partition
    /// whose log start is `offset`); see `Log::start_empty_at`.
    pub fn start_empty_at(&self, offset: i64, now_ms: i64) -> Result<(), StorageError> {
        let mut state = self.lock();
        state.log.start_empty_at(offset, now_ms)?;
        self.log_start_offset
            .store(state.log.log_start_offset(), Ordering::Release);
        drop(state);
        self.advance_high_watermark(offset);
        Ok(())
    }

    /// The producers this partition remembers (DescribeProducers).
    pub fn producers(&self) -> Vec<crate::storage::producer_state::ProducerEntry> {
        self.lock()
            .log
            .producer_state()
            .producers()
            .cloned()
            .collect()
    }

    /// Forgets producers idle since before `cutoff_ms` (`producer.id.expiration.ms`).
    pub fn expire_producers(&self, cutoff_ms: i64) {
        self.lock().log.expire_producers(cutoff_ms);
    }

    /// Takes out the segments past retention (below the high watermark) and moves the log
    /// start offset past them; their files go once the checkpoint says so (see
    /// `storage::log::retention`).
    pub fn take_retired_segments(&self, now_ms: i64) -> Result<RetiredSegments, StorageError> {
        let high_watermark = self.high_watermark();
        let mut state = self.lock();
        let retired = state.log.take_retired_segments(now_ms, high_watermark)?;
        self.log_start_offset
            .store(state.log.log_start_offset(), Ordering::Release);
        Ok(retired)
    }

    /// Whether the log is compacted (`cleanup.policy` includes `compact`) and online.
    pub fn is_compacted(&self) -> bool {
        let state = self.lock();
        state.log.config().compacted && !state.log.is_offline()
    }

    /// What the log cleaner may read of the log, bounded by the high watermark.
    pub fn cleaning_view(&self) -> Result<CleaningView, StorageError> {
        let high_watermark = self.high_watermark();
        self.lock().log.cleaning_view(high_watermark)
    }

    /// Swaps a cleaned segment in (the lock is held for the renames only; see
    /// `storage::log::cleaning`). A failed swap takes the partition offline.
    pub fn replace_segments(&self, cleaned: CleanedSegment) -> Result<SwapOutcome, StorageError> {
        let mut state = self.lock();
        let outcome = state.log.replace_segments(cleaned);
        if state.log.is_offline() {
            self.offline.store(true, Ordering::Release);
        }
        outcome
    }

    /// `(recovery point, log start offset)` for the checkpoint files.
    pub fn checkpoint(&self) -> (i64, i64) {
        let state = self.lock();
        let checkpoint = state.log.checkpoint();
        (checkpoint.recovery_point, checkpoint.log_start_offset)
    }

    /// Clean shutdown: fsyncs the log and writes its indexes. `Ok(true)` when both
    /// happened; `Ok(false)` when the data is durable but the indexes could not be written
    /// (a full disk; the next start rebuilds them from the log); an error when the log is
    /// offline or its data could not be fsynced.
    pub fn close(&self) -> Result<bool, StorageError> {
        let mut state = self.lock();
        if state.log.is_offline() {
            return Err(StorageError::LogOffline {
                dir: state.log.dir().to_path_buf(),
            });
        }
        let indexes = state.log.write_all_indexes();
        if let Err(err) = &indexes {
            warn!(
                topic = %self.topic, partition = self.index,
                "writing indexes at shutdown failed; the next start rebuilds them: {err}"
            );
        }
        let plan = state.log.flush_plan();
        plan.sync_data()
            .map_err(|e| StorageError::io("fsync segment", state.log.dir().to_path_buf(), e))?;
        state.log.mark_flushed(&plan);
        Ok(indexes.is_ok())
    }

    /// Bytes of the log's segments on disk.
    pub fn size_bytes(&self) -> u64 {
        self.lock().log.size_bytes()
    }

    /// The directory of this partition's log.
    pub fn dir(&self) -> std::path::PathBuf {
        self.lock().log.dir().to_path_buf()
    }

    /// Registers `notify` to be woken when the high watermark moves or the partition fails.
    pub fn register_waiter(&self, notify: &Arc<Notify>) {
        let mut waiters = crate::sync::lock(&self.waiters, "waiters lock");
        if waiters.len() >= WAITERS_PRUNE_LEN {
            waiters.retain(|w| w.strong_count() > 0);
        }
        waiters.push(Arc::downgrade(notify));
    }

    fn wake_waiters(&self) {
        let waiters = {
            let mut guard = crate::sync::lock(&self.waiters, "waiters lock");
            if guard.is_empty() {
                return;
            }
            std::mem::take(&mut *guard)
        };
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            waiter.notify_one();
        }
    }
}

/// Waits until `ready()` holds or `deadline` passes, waking whenever one of `partitions`
/// changes. Returns the final value of `ready()`.
pub async fn wait_for(
    partitions: &[Arc<Partition>],
    deadline: tokio::time::Instant,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let notify = Arc::new(Notify::new());
    loop {
        for partition in partitions {
            partition.register_waiter(&notify);
        }
        if ready() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            return ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::flusher::Flusher;
    use crate::broker::journal::Journal;
    use crate::storage::batch::test_support::build_batch;
    use crate::storage::log::LogConfig;

    fn partition(dir: &std::path::Path, services: &Services, index: i32) -> Arc<Partition> {
        let config = ResolvedTopicConfig {
            log: LogConfig::default(),
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
        };
        let log_dir = dir.join(format!("t-{index}"));
        let log = Log::create(&log_dir, config.log.clone(), 0, 0).unwrap();
        Partition::new(("t", Uuid::nil(), index), log, &config, services.clone(), 0)
    }

    /// A panic in one operation on a partition (a bug) takes that partition offline for
    /// every later request, instead of poisoning its lock so that each of them panics too;
    /// the other partitions go on serving.
    #[test]
    fn a_panic_holding_the_lock_takes_only_that_partition_offline() {
        let dir = tempfile::tempdir().unwrap();
        let (flusher, _flusher_thread) = Flusher::start();
        let (journal, _) = Journal::start(dir.path(), 1 << 20, Arc::default()).unwrap();
        let services = Services {
            flusher,
            journal,
            read_ahead: ReadAhead::new(),
        };
        let broken = partition(dir.path(), &services, 0);
        let healthy = partition(dir.path(), &services, 1);
        let batch = build_batch(0, 0, &[b"value"]);
        broken.append_as_leader(&batch, 0).unwrap();
        let victim = Arc::clone(&broken);
        let panicked = std::thread::spawn(move || {
            let _state = victim.state.lock();
            panic!("a bug while holding the partition's lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(matches!(
            broken.append_as_leader(&batch, 0),
            Err(StorageError::LogOffline { .. })
        ));
        assert!(broken.is_offline());
        assert!(matches!(
            broken.read(0, 1 << 20, true, false),
            Err(StorageError::LogOffline { .. })
        ));
        assert!(
            matches!(broken.close(), Err(StorageError::LogOffline { .. })),
            "an offline partition is not closed as if it were clean"
        );
        let (info, _) = healthy.append_as_leader(&batch, 0).unwrap();
        assert_eq!(info.first_offset, 0);
        assert!(!healthy.is_offline());
        services.journal.stop();
        services.flusher.stop();
    }
}
