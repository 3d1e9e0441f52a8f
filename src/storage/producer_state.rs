//! Per-partition producer state (Kafka's `ProducerStateManager`): for each producer id its
//! epoch and the metadata of its last five batches (so a retried batch is recognised and
//! answered with its original offset), its open transaction, and the partition's aborted
//! transactions and ongoing ones (which bound the last stable offset).
//!
//! Sequence rules (Kafka's `ProducerAppendInfo`):
//! * an epoch older than the producer's current one is INVALID_PRODUCER_EPOCH;
//! * a newer epoch must start at sequence 0 (unless the producer is unknown);
//! * within an epoch, a batch must start right after the last one (wrapping at i32::MAX),
//!   except that a batch equal to one of the last five is a duplicate;
//! * an unknown producer (never seen, expired, or removed by retention) may start at any
//!   sequence (KIP-360).
//!
//! State is rebuilt at startup from the latest `.snapshot` file plus a replay of the log
//! after it; snapshots are written when a segment rolls and at clean shutdown, in Kafka's
//! format (see `encode_snapshot`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use super::batch::BatchHeader;

/// Kafka's `NUM_BATCHES_TO_RETAIN`: why clients cap in-flight requests at five.
pub const BATCHES_TO_RETAIN: usize = 5;

/// Control record types in a marker's key.
pub const CONTROL_ABORT: i16 = 0;
pub const CONTROL_COMMIT: i16 = 1;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceError {
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
}

impl fmt::Display for SequenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceError::InvalidProducerEpoch { producer_id, epoch, current_epoch } => write!(
                f,
                "producer {producer_id} epoch {epoch} is older than its current epoch {current_epoch}"
            ),
            SequenceError::OutOfOrderSequence { producer_id, expected, got } => write!(
                f,
                "out of order sequence for producer {producer_id}: expected {expected}, got {got}"
            ),
        }
    }
}

/// What the log remembers of one of a producer's recent batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub last_offset: i64,
    pub offset_delta: i32,
    pub timestamp: i64,
}

impl BatchMeta {
    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// One producer's state in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction in this partition.
    pub current_txn_first_offset: Option<i64>,
    /// Timestamp of its last write, for expiry.
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn new(producer_id: i64, epoch: i16) -> ProducerEntry {
        ProducerEntry {
            producer_id,
            epoch,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp: -1,
        }
    }

    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// An aborted transaction, as Kafka's `.txnindex` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

/// Result of checking a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// Already appended: answer with this earlier batch's offsets.
    Duplicate(BatchMeta),
}

/// The producer state of one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions, ordered by marker offset.
    aborted: Vec<AbortedTxn>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn producers(&self) -> impl Iterator<Item = &ProducerEntry> {
        self.producers.values()
    }

    /// First offset of the oldest open transaction, if any.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Checks a producer's data batch before it is appended.
    pub fn check(&self, header: &BatchHeader) -> Result<Check, SequenceError> {
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(Check::Append);
        };
        let last_seq = header.base_sequence.wrapping_add(header.last_offset_delta);
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::InvalidProducerEpoch {
                producer_id,
                epoch: header.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if header.producer_epoch == entry.epoch {
            if let Some(duplicate) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == header.base_sequence && b.last_seq == last_seq)
            {
                return Ok(Check::Duplicate(*duplicate));
            }
            let in_sequence = entry
                .last_seq()
                .is_none_or(|last| header.base_sequence == next_seq(last));
            if !in_sequence {
                return Err(SequenceError::OutOfOrderSequence {
                    producer_id,
                    expected: entry.last_seq().map_or(0, next_seq),
                    got: header.base_sequence,
                });
            }
        } else if header.base_sequence != 0 {
            return Err(SequenceError::OutOfOrderSequence {
                producer_id,
                expected: 0,
                got: header.base_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Records an appended data batch (leader appends after [`Self::check`], and replay).
    pub fn record_batch(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_id, header.producer_epoch));
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if header.base_sequence >= 0 {
            entry.batches.push_back(BatchMeta {
                first_seq: header.base_sequence,
                last_seq: header.base_sequence.wrapping_add(header.last_offset_delta),
                last_offset: header.last_offset(),
                offset_delta: header.last_offset_delta,
                timestamp: header.max_timestamp,
            });
            while entry.batches.len() > BATCHES_TO_RETAIN {
                entry.batches.pop_front();
            }
        }
        entry.last_timestamp = header.max_timestamp;
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(header.base_offset);
            self.ongoing.insert(header.base_offset, header.producer_id);
        }
    }

    /// Checks a transaction marker's epoch (markers from an older epoch are refused).
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), SequenceError> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(SequenceError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current_epoch: entry.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Records a COMMIT or ABORT marker at `offset`; `high_watermark` is the last stable
    /// offset stored with an aborted transaction. Returns the aborted transaction, if any.
    pub fn record_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        control_type: i16,
        coordinator_epoch: i32,
        offset: i64,
        timestamp: i64,
    ) -> Option<AbortedTxn> {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(producer_id, epoch));
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = timestamp;
        let first_offset = entry.current_txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        if control_type != CONTROL_ABORT {
            return None;
        }
        let aborted = AbortedTxn {
            producer_id,
            first_offset,
            last_offset: offset,
            last_stable_offset: self
                .first_unstable_offset()
                .unwrap_or(offset + 1)
                .min(offset + 1),
        };
        self.aborted.push(aborted);
        Some(aborted)
    }

    /// Aborted transactions overlapping `[from, to)`, for read_committed fetches.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Replaces the aborted-transaction list (loaded from `.txnindex` files).
    pub fn set_aborted(&mut self, aborted: Vec<AbortedTxn>) {
        self.aborted = aborted;
    }

    /// Forgets the aborted transactions whose ABORT markers (at `marker_offsets`) the log
    /// cleaner removed: with the marker gone, a reader could not see where the
    /// transaction ends, so the index must not announce it either (Kafka drops the
    /// `.txnindex` entry with the marker).
    pub fn forget_aborted(&mut self, marker_offsets: &[i64]) {
        self.aborted
            .retain(|a| !marker_offsets.contains(&a.last_offset));
    }

    /// All aborted transactions (for writing `.txnindex` files).
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Forgets state below a new log start offset, keeping producers with open
    /// transactions (DeleteRecords must not lose a producer mid-transaction).
    pub fn truncate_head(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || e.batches
                    .back()
                    .is_none_or(|b| b.last_offset >= log_start_offset)
        });
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }

    /// Drops producers idle since before `cutoff_ms` that have no open transaction.
    pub fn expire(&mut self, cutoff_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.current_txn_first_offset.is_some() || e.last_timestamp >= cutoff_ms);
        before - self.producers.len()
    }
}

/// Snapshot file version (Kafka's `ProducerSnapshot` v1).
const SNAPSHOT_VERSION: i16 = 1;
/// Bytes of one snapshot entry.
const SNAPSHOT_ENTRY_BYTES: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

/// Encodes a snapshot in Kafka's format: `version i16 | crc u32 (CRC-32C of the rest) |
/// count i32 | [producer_id i64, epoch i16, last_sequence i32, last_offset i64,
/// offset_delta i32, timestamp i64, coordinator_epoch i32, current_txn_first_offset i64]`.
/// Only each producer's last batch is kept, as in Kafka.
pub fn encode_snapshot(state: &ProducerState) -> Vec<u8> {
    let mut entries: Vec<&ProducerEntry> = state.producers.values().collect();
    entries.sort_by_key(|e| e.producer_id);
    let mut body = Vec::with_capacity(4 + entries.len() * SNAPSHOT_ENTRY_BYTES);
    body.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for e in entries {
        let last = e.batches.back();
        body.extend_from_slice(&e.producer_id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.extend_from_slice(&last.map_or(-1, |b| b.last_seq).to_be_bytes());
        body.extend_from_slice(&last.map_or(-1, |b| b.last_offset).to_be_bytes());
        body.extend_from_slice(&last.map_or(0, |b| b.offset_delta).to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
    }
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a snapshot; `None` if it is corrupt (the log is then replayed instead).
/// The big-endian i64 at `at` in bytes read from disk, if they reach that far.
pub(crate) fn be_i64(bytes: &[u8], at: usize) -> Option<i64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    field.try_into().ok().map(i64::from_be_bytes)
}

/// The big-endian i32 at `at`, if the bytes reach that far.
pub(crate) fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    field.try_into().ok().map(i32::from_be_bytes)
}

pub fn decode_snapshot(bytes: &[u8]) -> Option<ProducerState> {
    let version = i16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?);
    let crc = u32::from_be_bytes(bytes.get(2..6)?.try_into().ok()?);
    let body = bytes.get(6..)?;
    if version != SNAPSHOT_VERSION || crc32c::crc32c(body) != crc {
        return None;
    }
    let count = usize::try_from(i32::from_be_bytes(body.get(0..4)?.try_into().ok()?)).ok()?;
    if body.len() != 4 + count.checked_mul(SNAPSHOT_ENTRY_BYTES)? {
        return None;
    }
    let mut state = ProducerState::default();
    for chunk in body[4..].chunks_exact(SNAPSHOT_ENTRY_BYTES) {
        let producer_id = be_i64(chunk, 0)?;
        let epoch = i16::from_be_bytes([chunk[8], chunk[9]]);
        let (last_seq, last_offset, offset_delta) =
            (be_i32(chunk, 10)?, be_i64(chunk, 14)?, be_i32(chunk, 22)?);
        let mut entry = ProducerEntry::new(producer_id, epoch);
        entry.last_timestamp = be_i64(chunk, 26)?;
        entry.coordinator_epoch = be_i32(chunk, 34)?;
        let txn_first = be_i64(chunk, 38)?;
        if last_offset >= 0 && last_seq >= 0 {
            entry.batches.push_back(BatchMeta {
                first_seq: last_seq.wrapping_sub(offset_delta),
                last_seq,
                last_offset,
                offset_delta,
                timestamp: entry.last_timestamp,
            });
        }
        if txn_first >= 0 {
            entry.current_txn_first_offset = Some(txn_first);
            state.ongoing.insert(txn_first, producer_id);
        }
        state.producers.insert(producer_id, entry);
    }
    Some(state)
}

/// Bytes of one `.txnindex` entry: version i16, producer_id i64, first_offset i64,
/// last_offset i64, last_stable_offset i64.
pub const TXN_ENTRY_BYTES: usize = 34;

/// Encodes aborted transactions in Kafka's `.txnindex` format.
pub fn encode_txn_index(aborted: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(aborted.len() * TXN_ENTRY_BYTES);
    for a in aborted {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&a.producer_id.to_be_bytes());
        out.extend_from_slice(&a.first_offset.to_be_bytes());
        out.extend_from_slice(&a.last_offset.to_be_bytes());
        out.extend_from_slice(&a.last_stable_offset.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{self, test_support::build_batch};

    fn header(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        records: i32,
        base_offset: i64,
    ) -> BatchHeader {
        let values: Vec<&[u8]> = (0..records).map(|_| &b"v"[..]).collect();
        let mut header = batch::validate(&build_batch(base_offset, 0, &values)).unwrap();
        header.producer_id = producer_id;
        header.producer_epoch = epoch;
        header.base_sequence = base_sequence;
        header
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut state = ProducerState::default();
        let first = header(7, 0, 0, 3, 0);
        assert_eq!(state.check(&first), Ok(Check::Append));
        state.record_batch(&first);
        let next = header(7, 0, 3, 2, 3);
        assert_eq!(state.check(&next), Ok(Check::Append));
        state.record_batch(&next);
        // A retry of the first batch is a duplicate answered with its offsets.
        match state.check(&header(7, 0, 0, 3, 99)).unwrap() {
            Check::Duplicate(meta) => assert_eq!((meta.first_offset(), meta.last_offset), (0, 2)),
            Check::Append => panic!("duplicate not detected"),
        }
        assert!(matches!(
            state.check(&header(7, 0, 9, 1, 5)),
            Err(SequenceError::OutOfOrderSequence {
                expected: 5,
                got: 9,
                ..
            })
        ));
        assert!(matches!(
            state.check(&header(7, 1, 4, 1, 5)),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
        assert_eq!(state.check(&header(7, 1, 0, 1, 5)), Ok(Check::Append));
        state.record_batch(&header(7, 1, 0, 1, 5));
        assert!(matches!(
            state.check(&header(7, 0, 5, 1, 6)),
            Err(SequenceError::InvalidProducerEpoch { .. })
        ));
        // An unknown producer may start anywhere (KIP-360).
        assert_eq!(state.check(&header(8, 3, 42, 1, 6)), Ok(Check::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut state = ProducerState::default();
        for i in 0..7 {
            state.record_batch(&header(1, 0, i, 1, i64::from(i)));
        }
        assert!(matches!(
            state.check(&header(1, 0, 2, 1, 9)),
            Ok(Check::Duplicate(_))
        ));
        assert!(matches!(
            state.check(&header(1, 0, 1, 1, 9)),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn transactions_bound_the_lso_and_aborts_are_listed() {
        let mut state = ProducerState::default();
        let mut txn = header(3, 0, 0, 2, 10);
        txn.attributes |= 0x10;
        state.record_batch(&txn);
        assert_eq!(state.first_unstable_offset(), Some(10));
        let aborted = state.record_marker(3, 0, CONTROL_ABORT, 0, 12, 0).unwrap();
        assert_eq!((aborted.first_offset, aborted.last_offset), (10, 12));
        assert_eq!(state.first_unstable_offset(), None);
        assert_eq!(state.aborted_between(0, 11).len(), 1);
        assert!(state.aborted_between(13, 20).is_empty());
        assert!(state
            .record_marker(3, 0, CONTROL_COMMIT, 0, 13, 0)
            .is_none());
    }

    #[test]
    fn snapshots_round_trip_and_detect_corruption() {
        let mut state = ProducerState::default();
        state.record_batch(&header(1, 2, 10, 5, 100));
        let mut txn = header(9, 0, 0, 1, 200);
        txn.attributes |= 0x10;
        state.record_batch(&txn);
        let bytes = encode_snapshot(&state);
        let back = decode_snapshot(&bytes).unwrap();
        assert_eq!(
            back.producer(1).unwrap().batches.back().unwrap().last_seq,
            14
        );
        assert_eq!(back.first_unstable_offset(), Some(200));
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(decode_snapshot(&corrupt).is_none());
        assert!(decode_snapshot(&bytes[..7]).is_none());
    }
}
