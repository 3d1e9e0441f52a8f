//! Record batch v2 headers: parsing, validation and the in-place edits the leader makes.
//!
//! The broker treats a batch as opaque bytes plus this validated 61-byte header. Layout
//! (big-endian, Kafka's `DefaultRecordBatch`):
//!
//! ```text
//!  off len field                  covered by CRC?
//!    0   8 base_offset            no  (assigned by the leader)
//!    8   4 batch_length           no  (bytes after this field)
//!   12   4 partition_leader_epoch no  (stamped by the leader)
//!   16   1 magic (= 2)            no
//!   17   4 crc (CRC-32C of [21, end))
//!   21   2 attributes             yes
//!   23   4 last_offset_delta      yes
//!   27   8 base_timestamp         yes
//!   35   8 max_timestamp          yes
//!   43   8 producer_id            yes
//!   51   2 producer_epoch         yes
//!   53   4 base_sequence          yes
//!   57   4 records_count          yes
//!   61   … records (compressed as one stream when the codec is not none)
//! ```

use std::fmt;

/// Bytes before `batch_length`'s payload starts: base offset (8) plus the length field (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// The only record format Ferry stores.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORDS_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// KIP-534: the batch's base timestamp field holds its delete horizon (set by the log
/// cleaner on batches that keep tombstones or removable transaction markers).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Why a byte range is not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or than `batch_length` promises.
    Truncated {
        needed_bytes: usize,
        available_bytes: usize,
    },
    /// `batch_length` is too small to hold the header.
    InvalidLength { batch_length: i32 },
    /// Magic byte other than 2 (v0/v1 message sets are not supported).
    UnsupportedMagic { magic: i8 },
    /// CRC-32C over the batch body does not match the header.
    CrcMismatch { stored: u32, computed: u32 },
    /// Header fields contradict each other (counts, deltas, codec, sequences).
    InvalidHeader { reason: &'static str },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated {
                needed_bytes,
                available_bytes,
            } => write!(
                f,
                "record batch truncated: needs {needed_bytes} bytes, {available_bytes} available"
            ),
            BatchError::InvalidLength { batch_length } => {
                write!(
                    f,
                    "record batch length {batch_length} is smaller than a batch header"
                )
            }
            BatchError::UnsupportedMagic { magic } => {
                write!(f, "record batch magic {magic} is not supported (only v2)")
            }
            BatchError::CrcMismatch { stored, computed } => write!(
                f,
                "record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            BatchError::InvalidHeader { reason } => write!(f, "invalid record batch: {reason}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Compression codec from the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Whether `max_timestamp` was set by the producer or by the broker on append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The parsed fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC. Checks that the
    /// length field is plausible and that `buf` holds the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse_prefix(buf)?;
        let total = header.total_bytes();
        if buf.len() < total {
            return Err(BatchError::Truncated {
                needed_bytes: total,
                available_bytes: buf.len(),
            });
        }
        Ok(header)
    }

    /// Parses the header only; `buf` may end before the batch does (used when scanning a
    /// file in chunks).
    pub fn parse_prefix(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed_bytes: BATCH_HEADER_BYTES,
                available_bytes: buf.len(),
            });
        }
        let batch_length = read_i32(buf, OFFSET_LENGTH);
        if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::InvalidLength { batch_length });
        }
        let magic = buf[OFFSET_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        Ok(BatchHeader {
            base_offset: read_i64(buf, OFFSET_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: read_i32(buf, OFFSET_LEADER_EPOCH),
            crc: read_i32(buf, OFFSET_CRC) as u32,
            attributes: read_i16(buf, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(buf, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(buf, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(buf, OFFSET_MAX_TIMESTAMP),
            producer_id: read_i64(buf, OFFSET_PRODUCER_ID),
            producer_epoch: read_i16(buf, OFFSET_PRODUCER_EPOCH),
            base_sequence: read_i32(buf, OFFSET_BASE_SEQUENCE),
            records_count: read_i32(buf, OFFSET_RECORDS_COUNT),
        })
    }

    /// Size of the whole batch including the base offset and length fields.
    pub fn total_bytes(&self) -> usize {
        // batch_length >= 49 was checked in parse_prefix, so the cast is lossless.
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }

    /// The batch's last offset. Saturates instead of overflowing: a batch from disk or
    /// the wire may claim any base offset, and [`BatchHeader::offsets_in_range`] tells
    /// whether its offsets are real.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset one past the batch's last record (saturating, as `last_offset`).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Whether the batch's offsets are ones a log can hold: a non-negative base offset and
    /// a next offset that does not overflow. Checked for every batch whose offsets are
    /// stored as they are (recovery, verbatim appends).
    pub fn offsets_in_range(&self) -> bool {
        self.base_offset >= 0
            && self.last_offset_delta >= 0
            && self
                .base_offset
                .checked_add(i64::from(self.last_offset_delta))
                .and_then(|last| last.checked_add(1))
                .is_some()
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(BatchError::InvalidHeader {
                reason: "unknown compression codec",
            }),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// The delete horizon the log cleaner stamped on the batch (KIP-534), if any: after
    /// it, its tombstones and a removable marker may go.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Checks the header's internal consistency (what Kafka's `LogValidator` checks without
    /// looking at records): the record count matches the offset delta and a producer id
    /// comes with a sequence.
    pub fn check_consistency(&self) -> Result<(), BatchError> {
        self.compression()?;
        if self.records_count < 0 || self.last_offset_delta < 0 {
            return Err(BatchError::InvalidHeader {
                reason: "negative record count or delta",
            });
        }
        if self.has_producer_id() && self.base_sequence < 0 && !self.is_control() {
            return Err(BatchError::InvalidHeader {
                reason: "batch has a producer id but no base sequence",
            });
        }
        Ok(())
    }
}

/// Computes the CRC-32C Kafka stores in a batch: over everything after the CRC field.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..])
}

/// Parses and fully validates one batch at the start of `buf`: length, magic, CRC and the
/// header's internal consistency. Returns the header; the batch is `header.total_bytes()`
/// long.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let computed = compute_crc(&buf[..header.total_bytes()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    header.check_consistency()?;
    Ok(header)
}

/// Bytes at the start of a batch that hold the fields the leader owns, base offset and
/// partition leader epoch (with the batch length between them): everything before the
/// magic byte, none of it covered by the CRC.
pub const LEADER_PREFIX_BYTES: usize = OFFSET_MAGIC;

/// Rewrites the fields the leader owns. Neither is covered by the CRC, so the batch stays
/// valid.
pub fn set_base_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// The first `LEADER_PREFIX_BYTES` of a validated batch with the leader's fields set, so
/// the batch can be written as this prefix followed by the rest of the client's bytes,
/// uncopied.
pub fn leader_prefix(
    batch: &[u8],
    base_offset: i64,
    leader_epoch: i32,
) -> [u8; LEADER_PREFIX_BYTES] {
    let mut prefix = [0; LEADER_PREFIX_BYTES];
    prefix.copy_from_slice(&batch[..LEADER_PREFIX_BYTES]);
    set_base_offset_and_epoch(&mut prefix, base_offset, leader_epoch);
    prefix
}

/// Marks the batch as LogAppendTime with `append_time_ms` as its max timestamp and
/// recomputes the CRC (both fields are covered by it), as Kafka does for topics with
/// `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    let attributes = read_i16(batch, OFFSET_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&append_time_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the length and attributes of a batch whose records area was rewritten (another
/// codec) and recomputes the CRC, which covers the attributes.
pub fn set_length_and_attributes(batch: &mut [u8], batch_length: i32, attributes: i16) {
    batch[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The header fields the log cleaner changes when it rewrites a batch's records area.
#[derive(Debug, Clone, Copy)]
pub struct CleanedFields {
    pub attributes: i16,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub records_count: i32,
}

/// Sets a rewritten batch's cleaned fields and length (from `batch.len()`) and recomputes
/// the CRC. `batch` must start with a whole header.
pub fn set_cleaned_fields(batch: &mut [u8], fields: CleanedFields) -> Result<(), BatchError> {
    let batch_length =
        i32::try_from(batch.len() - LOG_OVERHEAD_BYTES).map_err(|_| BatchError::InvalidHeader {
            reason: "a rewritten batch is larger than 2 GiB",
        })?;
    batch[OFFSET_BASE_TIMESTAMP..OFFSET_BASE_TIMESTAMP + 8]
        .copy_from_slice(&fields.base_timestamp.to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&fields.max_timestamp.to_be_bytes());
    batch[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4]
        .copy_from_slice(&fields.records_count.to_be_bytes());
    set_length_and_attributes(batch, batch_length, fields.attributes);
    Ok(())
}

/// A batch with `header`'s offsets, producer fields, timestamp type and transactional and
/// control flags but no records (Kafka's `writeEmptyHeader`): what the cleaner leaves of a
/// batch whose records all went but whose offsets or producer sequence must stay.
pub fn empty_batch(header: &BatchHeader) -> Vec<u8> {
    let keep = ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL | ATTR_CONTROL;
    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8]
        .copy_from_slice(&header.base_offset.to_be_bytes());
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
    batch[OFFSET_MAGIC] = MAGIC_V2 as u8;
    batch[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&header.last_offset_delta.to_be_bytes());
    batch[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8]
        .copy_from_slice(&header.producer_id.to_be_bytes());
    batch[OFFSET_PRODUCER_EPOCH..OFFSET_PRODUCER_EPOCH + 2]
        .copy_from_slice(&header.producer_epoch.to_be_bytes());
    batch[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4]
        .copy_from_slice(&header.base_sequence.to_be_bytes());
    let fields = CleanedFields {
        attributes: header.attributes & keep,
        base_timestamp: header.max_timestamp,
        max_timestamp: header.max_timestamp,
        records_count: 0,
    };
    // 61 bytes always fit the length field.
    let _ = set_cleaned_fields(&mut batch, fields);
    batch
}

/// Iterates over the batch headers in a buffer of concatenated batches, validating each one.
/// Stops with an error at the first invalid batch.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, position: 0 }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    /// The byte position of the batch within the buffer and its header.
    type Item = Result<(usize, BatchHeader), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.buf.len() {
            return None;
        }
        let position = self.position;
        match validate(&self.buf[position..]) {
            Ok(header) => {
                self.position += header.total_bytes();
                Some(Ok((position, header)))
            }
            Err(err) => {
                self.position = self.buf.len();
                Some(Err(err))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Real v2 batches for unit tests.
    use super::set_base_offset_and_epoch;
    use crate::storage::records::{build_batch as build, BatchSpec, NewRecord};

    /// A batch of `count` records from producer `producer_id` starting at `sequence`.
    pub fn producer_batch(
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        count: usize,
        transactional: bool,
    ) -> Vec<u8> {
        let records: Vec<NewRecord<'_>> = (0..count)
            .map(|i| NewRecord {
                key: Some(b"k"),
                value: Some(b"v"),
                timestamp: i as i64,
            })
            .collect();
        let spec = BatchSpec {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            transactional,
            control: false,
        };
        build(spec, &records)
    }

    /// An uncompressed batch at `base_offset` with one keyless record per value, record `i`
    /// stamped `base_timestamp + i`.
    pub fn build_batch(base_offset: i64, base_timestamp: i64, values: &[&[u8]]) -> Vec<u8> {
        let records: Vec<NewRecord<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, value)| NewRecord {
                key: None,
                value: Some(value),
                timestamp: base_timestamp + i as i64,
            })
            .collect();
        let mut batch = build(BatchSpec::PLAIN, &records);
        set_base_offset_and_epoch(&mut batch, base_offset, 0);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::build_batch;
    use super::*;

    #[test]
    fn parses_and_validates_a_built_batch() {
        let batch = build_batch(0, 1_000, &[b"a", b"bb", b"ccc"]);
        let header = validate(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.total_bytes(), batch.len());
        assert_eq!(header.max_timestamp, 1_002);
        assert_eq!(header.compression().unwrap(), Compression::None);
    }

    #[test]
    fn leader_fields_are_outside_the_crc() {
        let mut batch = build_batch(0, 1_000, &[b"x"]);
        set_base_offset_and_epoch(&mut batch, 42, 7);
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 7);
    }

    #[test]
    fn log_append_time_recomputes_the_crc() {
        let mut batch = build_batch(0, 1_000, &[b"x"]);
        set_log_append_time(&mut batch, 5_000);
        let header = validate(&batch).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, 5_000);
    }

    #[test]
    fn detects_flipped_bits_and_truncation() {
        let batch = build_batch(0, 1_000, &[b"hello"]);
        let mut corrupt = batch.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x01;
        assert!(matches!(
            validate(&corrupt),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert!(matches!(
            validate(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate(&batch[..10]),
            Err(BatchError::Truncated { .. })
        ));
        let mut bad_magic = batch.clone();
        bad_magic[OFFSET_MAGIC] = 1;
        assert!(matches!(
            validate(&bad_magic),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        ));
    }

    #[test]
    fn iterates_concatenated_batches_and_stops_at_garbage() {
        let mut buf = build_batch(0, 1, &[b"a"]);
        buf.extend(build_batch(1, 2, &[b"b", b"c"]));
        buf.extend_from_slice(&[0xff; 20]);
        let items: Vec<_> = BatchIter::new(&buf).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
    }
}
