//! The log's producer state: sequence checks on leader appends, transaction markers,
//! `.snapshot` and `.txnindex` files, and rebuilding the state at startup from the latest
//! snapshot plus a replay of the log after it.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::{AppendInfo, Log};
use crate::storage::batch::{self, BatchHeader, BatchIter};
use crate::storage::error::StorageError;
use crate::storage::producer_state::{self, AbortedTxn, Check, ProducerState, TXN_ENTRY_BYTES};
use crate::storage::records::{self, BatchSpec, NewRecord};
use crate::storage::segment;

/// Snapshots kept per log (older ones are deleted when a new one is written).
const SNAPSHOTS_KEPT: usize = 3;
/// Bytes read per step when replaying the log into producer state.
const REPLAY_READ_BYTES: usize = 4 << 20;

/// A transaction marker to append (written by the transaction coordinator).
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// [`producer_state::CONTROL_COMMIT`] or [`producer_state::CONTROL_ABORT`].
    pub control_type: i16,
    pub coordinator_epoch: i32,
}

/// The control type and coordinator epoch of a marker batch, if it is one.
pub fn marker_of(batch_bytes: &[u8], header: &BatchHeader) -> Option<(i16, i32)> {
    if !header.is_control() {
        return None;
    }
    let records = records::parse_records(batch_bytes, header, 1 << 16).ok()?;
    let record = records.first()?;
    let key = record.key.as_deref()?;
    let control_type = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    let coordinator_epoch = record
        .value
        .as_deref()
        .and_then(|v| v.get(2..6))
        .and_then(|v| producer_state::be_i32(v, 0))
        .unwrap_or(-1);
    Some((control_type, coordinator_epoch))
}

/// Encodes a marker batch: one control record with key `version i16 (0) | type i16` and
/// value `version i16 (0) | coordinator_epoch i32`.
pub fn marker_batch(marker: &Marker, timestamp: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.control_type.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let spec = BatchSpec {
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        base_sequence: -1,
        transactional: true,
        control: true,
    };
    records::build_batch(
        spec,
        &[NewRecord {
            key: Some(&key),
            value: Some(&value),
            timestamp,
        }],
    )
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{}.snapshot", segment::file_stem(offset)))
}

/// Snapshot offsets present in `dir`, ascending.
fn list_snapshots(dir: &Path) -> Vec<i64> {
    let mut offsets: Vec<i64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            segment::parse_file_stem(name.strip_suffix(".snapshot")?)
        })
        .collect();
    offsets.sort_unstable();
    offsets
}

impl Log {
    /// Producer-side checks before a leader append: a retried batch is answered with its
    /// original offsets instead of being written again.
    pub(super) fn check_producer(
        &self,
        header: &BatchHeader,
    ) -> Result<Option<AppendInfo>, StorageError> {
        if !header.has_producer_id() {
            return Ok(None);
        }
        match self
            .producers
            .check(header)
            .map_err(StorageError::Sequence)?
        {
            Check::Append => Ok(None),
            Check::Duplicate(meta) => Ok(Some(AppendInfo {
                first_offset: meta.first_offset(),
                last_offset: meta.last_offset,
                log_append_time_ms: -1,
                records: 0,
            })),
        }
    }

    /// Appends a COMMIT or ABORT marker for a producer's transaction.
    pub fn append_marker(
        &mut self,
        marker: &Marker,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.check_online()?;
        self.producers
            .check_marker(marker.producer_id, marker.producer_epoch)
            .map_err(StorageError::Sequence)?;
        let mut bytes = marker_batch(marker, now_ms);
        let offset = self.log_end_offset;
        self.maybe_roll(bytes.len(), offset, now_ms)?;
        batch::set_base_offset_and_epoch(&mut bytes, offset, 0);
        let header = batch::validate(&bytes)?;
        self.write_to_active(&[&bytes], &[header])?;
        self.log_end_offset = offset + 1;
        self.producers.record_marker(
            marker.producer_id,
            marker.producer_epoch,
            marker.control_type,
            marker.coordinator_epoch,
            offset,
            now_ms,
        );
        Ok(AppendInfo {
            first_offset: offset,
            last_offset: offset,
            log_append_time_ms: -1,
            records: 1,
        })
    }

    /// Applies one stored batch to the producer state (replay and verbatim appends).
    pub(super) fn replay_batch(&mut self, header: &BatchHeader, bytes: &[u8]) {
        if !header.has_producer_id() {
            return;
        }
        match marker_of(bytes, header) {
            Some((control_type, coordinator_epoch)) => {
                self.producers.record_marker(
                    header.producer_id,
                    header.producer_epoch,
                    control_type,
                    coordinator_epoch,
                    header.base_offset,
                    header.max_timestamp,
                );
            }
            None if header.is_control() => {}
            None => self.producers.record_batch(header),
        }
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset()
    }

    /// Aborted transactions overlapping `[from, to)`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.producers.aborted_between(from, to)
    }

    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    /// Forgets producers idle since before `cutoff_ms` (`producer.id.expiration.ms`).
    pub fn expire_producers(&mut self, cutoff_ms: i64) -> usize {
        self.producers.expire(cutoff_ms)
    }

    /// Writes a producer-state snapshot at the log end and keeps the newest few.
    ///
    /// The snapshot is written to a temporary file and renamed over its name, so a failed
    /// write (a full disk) leaves any earlier snapshot of that offset intact. Without an
    /// fsync: a snapshot only saves replay work, and one torn by a crash is ignored.
    pub(super) fn write_snapshot(&self) -> Result<(), StorageError> {
        let path = snapshot_path(&self.dir, self.log_end_offset);
        let tmp = path.with_extension("snapshot.tmp");
        std::fs::write(&tmp, producer_state::encode_snapshot(&self.producers))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                StorageError::io("write producer snapshot", &path, e)
            })?;
        let offsets = list_snapshots(&self.dir);
        for old in offsets.iter().rev().skip(SNAPSHOTS_KEPT) {
            let _ = std::fs::remove_file(snapshot_path(&self.dir, *old));
        }
        Ok(())
    }

    /// Writes `.txnindex` for the segment at `only` (a segment just sealed) or, with
    /// `None`, for every segment.
    pub(super) fn write_txn_indexes(&self, only: Option<i64>) -> Result<(), StorageError> {
        for (base, segment) in &self.segments {
            if only.is_some_and(|b| b != *base) {
                continue;
            }
            let entries: Vec<AbortedTxn> = self
                .producers
                .aborted()
                .iter()
                .filter(|a| a.last_offset >= *base && a.last_offset < segment.next_offset())
                .copied()
                .collect();
            let path = self
                .dir
                .join(format!("{}.txnindex", segment::file_stem(*base)));
            if entries.is_empty() {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            std::fs::write(&path, producer_state::encode_txn_index(&entries))
                .map_err(|e| StorageError::io("write txn index", &path, e))?;
        }
        Ok(())
    }

    /// Rebuilds producer state after the segments are open: the newest valid snapshot at
    /// or below the log end, then every batch after it. Snapshots beyond the log end (left
    /// by a truncation) are deleted.
    pub(super) fn load_producer_state(&mut self) -> Result<(), StorageError> {
        let mut start = self.log_start_offset;
        let mut state = ProducerState::default();
        for offset in list_snapshots(&self.dir).into_iter().rev() {
            let path = snapshot_path(&self.dir, offset);
            if offset > self.log_end_offset || offset < self.log_start_offset {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| producer_state::decode_snapshot(&b))
            {
                Some(loaded) => {
                    state = loaded;
                    start = offset;
                    break;
                }
                None => warn!(path = %path.display(), "ignoring a corrupt producer snapshot"),
            }
        }
        self.producers = state;
        self.producers.set_aborted(self.load_txn_indexes(start));
        self.replay_from(start)
    }

    /// Aborted transactions from the segments' `.txnindex` files whose markers lie before
    /// `before` (later ones are replayed).
    fn load_txn_indexes(&self, before: i64) -> Vec<AbortedTxn> {
        let mut out = Vec::new();
        for base in self.segments.keys() {
            let path = self
                .dir
                .join(format!("{}.txnindex", segment::file_stem(*base)));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for chunk in bytes.chunks_exact(TXN_ENTRY_BYTES) {
                let at = |i: usize| producer_state::be_i64(chunk, i);
                let (Some(producer_id), Some(first_offset), Some(last_offset), Some(lso)) =
                    (at(2), at(10), at(18), at(26))
                else {
                    continue;
                };
                let entry = AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset,
                    last_stable_offset: lso,
                };
                if entry.last_offset < before && entry.last_offset >= self.log_start_offset {
                    out.push(entry);
                }
            }
        }
        out.sort_by_key(|a| a.last_offset);
        out
    }

    fn replay_from(&mut self, start: i64) -> Result<(), StorageError> {
        let mut offset = start;
        while offset < self.log_end_offset {
            let plans = self.read_plans(offset)?;
            let limits = crate::storage::segment::ReadLimits {
                fetch_offset: offset,
                upper_offset: i64::MAX,
                max_bytes: REPLAY_READ_BYTES,
                min_one_batch: true,
            };
            let mut chunk = None;
            for plan in plans {
                chunk = plan
                    .read(limits)
                    .map_err(|e| StorageError::io("replay log", &self.dir, e))?;
                if chunk.is_some() {
                    break;
                }
            }
            let Some(chunk) = chunk else { break };
            for item in BatchIter::new(&chunk.bytes) {
                let (position, header) = item?;
                let bytes = &chunk.bytes[position..position + header.total_bytes()];
                self.replay_batch(&header, bytes);
            }
            offset = chunk.next_offset;
        }
        Ok(())
    }
}
