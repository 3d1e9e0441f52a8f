//! Looking inside a batch: decompression with an output cap, and the per-record offsets and
//! timestamps that ListOffsets-by-timestamp needs. The produce and fetch paths never call
//! this; they move batches as opaque bytes.
//!
//! Snappy batches come in two framings: the xerial/snappy-java stream Kafka's Java client
//! writes (magic `\x82SNAPPY\0`, then `[i32 length][raw block]` chunks) and a single raw
//! snappy block, which librdkafka writes and Kafka also accepts.

use std::fmt;
use std::io::Read;

use super::batch::{BatchHeader, Compression, TimestampType, BATCH_HEADER_BYTES};

/// Why the records inside a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsError {
    /// The decompressed records would exceed the configured cap.
    TooLarge { max_decompressed_bytes: usize },
    /// The compressed stream is not valid for its codec.
    Decompression { codec: &'static str, reason: String },
    /// A record's varints or lengths run past the end of the records.
    Malformed { reason: &'static str },
}

impl fmt::Display for RecordsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordsError::TooLarge {
                max_decompressed_bytes,
            } => write!(
                f,
                "records decompress to more than {max_decompressed_bytes} bytes"
            ),
            RecordsError::Decompression { codec, reason } => {
                write!(f, "cannot decompress {codec} records: {reason}")
            }
            RecordsError::Malformed { reason } => write!(f, "malformed record: {reason}"),
        }
    }
}

impl std::error::Error for RecordsError {}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// Reads `reader` to the end, failing once more than `max_bytes` come out.
fn read_capped(
    reader: impl Read,
    max_bytes: usize,
    codec: &'static str,
) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Decompression {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > max_bytes {
        return Err(RecordsError::TooLarge {
            max_decompressed_bytes: max_bytes,
        });
    }
    Ok(out)
}

fn snappy_block(block: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), RecordsError> {
    let err = |e: snap::Error| RecordsError::Decompression {
        codec: "snappy",
        reason: e.to_string(),
    };
    let len = snap::raw::decompress_len(block).map_err(err)?;
    if out.len().saturating_add(len) > max_bytes {
        return Err(RecordsError::TooLarge {
            max_decompressed_bytes: max_bytes,
        });
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(err)?;
    Ok(())
}

fn snappy(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, max_bytes, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_BYTES..)
        .ok_or(RecordsError::Malformed {
            reason: "xerial snappy header truncated",
        })?;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RecordsError::Malformed {
                reason: "xerial snappy chunk length truncated",
            });
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let block = rest.get(4..4 + len).ok_or(RecordsError::Malformed {
            reason: "xerial snappy chunk truncated",
        })?;
        snappy_block(block, max_bytes, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Decompresses a batch's records area, producing at most `max_bytes` bytes.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, RecordsError> {
    match codec {
        Compression::None => {
            if data.len() > max_bytes {
                return Err(RecordsError::TooLarge {
                    max_decompressed_bytes: max_bytes,
                });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => {
            read_capped(flate2::read::MultiGzDecoder::new(data), max_bytes, "gzip")
        }
        Compression::Snappy => snappy(data, max_bytes),
        Compression::Lz4 => read_capped(lz4_flex::frame::FrameDecoder::new(data), max_bytes, "lz4"),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| {
                RecordsError::Decompression {
                    codec: "zstd",
                    reason: e.to_string(),
                }
            })?;
            read_capped(decoder, max_bytes, "zstd")
        }
    }
}

/// A cursor over record bytes that never reads past the end.
struct Cursor<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    /// Reads a record's length varint; returns where the record ends, within the buffer.
    fn record_end(&mut self) -> Result<usize, RecordsError> {
        let length = self.varint()?;
        usize::try_from(length)
            .ok()
            .and_then(|len| self.position.checked_add(len))
            .filter(|end| *end <= self.buf.len())
            .ok_or(RecordsError::Malformed {
                reason: "record length runs past the end",
            })
    }

    fn varint(&mut self) -> Result<i64, RecordsError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.buf.get(self.position).ok_or(RecordsError::Malformed {
                reason: "varint runs past the end",
            })?;
            self.position += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(RecordsError::Malformed {
            reason: "varint longer than 10 bytes",
        })
    }

    /// A varint-length-prefixed byte string; length -1 is null.
    fn bytes(&mut self, limit: usize) -> Result<Option<&'a [u8]>, RecordsError> {
        let length = self.varint()?;
        if length < 0 {
            return Ok(None);
        }
        let end = usize::try_from(length)
            .ok()
            .and_then(|len| self.position.checked_add(len))
            .filter(|end| *end <= limit)
            .ok_or(RecordsError::Malformed {
                reason: "field runs past the end of its record",
            })?;
        let out = &self.buf[self.position..end];
        self.position = end;
        Ok(Some(out))
    }
}

/// One record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Headers in order; repeated keys are kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Decodes every record of a batch (LogAppendTime batches report the batch's max timestamp
/// for every record, as Kafka does). Allocation is bounded by the decompressed size.
pub fn parse_records(
    batch: &[u8],
    header: &BatchHeader,
    max_decompressed_bytes: usize,
) -> Result<Vec<Record>, RecordsError> {
    let codec = header.compression().map_err(|_| RecordsError::Malformed {
        reason: "unknown compression codec",
    })?;
    let body = &batch[BATCH_HEADER_BYTES..header.total_bytes()];
    let records = decompress(codec, body, max_decompressed_bytes)?;
    let count = usize::try_from(header.records_count).unwrap_or(0);
    // Each record takes at least 7 bytes, which bounds the allocation by the input size.
    let mut out = Vec::with_capacity(count.min(records.len() / 7 + 1));
    let mut cursor = Cursor {
        buf: &records,
        position: 0,
    };
    for _ in 0..count {
        let end = cursor.record_end()?;
        cursor.position += 1; // attributes
        let timestamp_delta = cursor.varint()?;
        let offset_delta = cursor.varint()?;
        let key = cursor.bytes(end)?.map(<[u8]>::to_vec);
        let value = cursor.bytes(end)?.map(<[u8]>::to_vec);
        let header_count =
            usize::try_from(cursor.varint()?).map_err(|_| RecordsError::Malformed {
                reason: "negative header count",
            })?;
        let mut headers = Vec::with_capacity(header_count.min(end - cursor.position));
        for _ in 0..header_count {
            let name = cursor.bytes(end)?.ok_or(RecordsError::Malformed {
                reason: "null header key",
            })?;
            let name = String::from_utf8_lossy(name).into_owned();
            headers.push((name, cursor.bytes(end)?.map(<[u8]>::to_vec)));
        }
        let timestamp = match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.wrapping_add(timestamp_delta),
        };
        // Records are not parsed on produce, so the delta is whatever the client wrote;
        // outside the batch's own range it is malformed (and must not overflow the add).
        if !(0..=i64::from(header.last_offset_delta)).contains(&offset_delta) {
            return Err(RecordsError::Malformed {
                reason: "record offset delta outside its batch",
            });
        }
        out.push(Record {
            offset: header.base_offset + offset_delta,
            timestamp,
            key,
            value,
            headers,
        });
        cursor.position = end;
    }
    Ok(out)
}

/// One record as it lies in a batch's (decompressed) records area, for code that keeps or
/// drops records without re-encoding the ones it keeps (the log cleaner).
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The whole record, its length varint included.
    pub bytes: &'a [u8],
    pub attributes: u8,
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    /// True for a tombstone (a null value).
    pub value_is_null: bool,
    /// The record from its key to its end (key, value, headers), unchanged when only the
    /// timestamp delta is rewritten.
    pub after_deltas: &'a [u8],
}

/// Splits a decompressed records area into its `count` records, checking every length.
pub fn raw_records(records: &[u8], count: i32) -> Result<Vec<RawRecord<'_>>, RecordsError> {
    let count = usize::try_from(count).unwrap_or(0);
    // Each record takes at least 7 bytes, which bounds the allocation by the input size.
    let mut out = Vec::with_capacity(count.min(records.len() / 7 + 1));
    let mut cursor = Cursor {
        buf: records,
        position: 0,
    };
    for _ in 0..count {
        let start = cursor.position;
        let end = cursor.record_end()?;
        let attributes = *records
            .get(cursor.position)
            .ok_or(RecordsError::Malformed {
                reason: "record without attributes",
            })?;
        cursor.position += 1;
        let timestamp_delta = cursor.varint()?;
        let offset_delta = cursor.varint()?;
        let key_start = cursor.position;
        let key = cursor.bytes(end)?;
        let value_is_null = cursor.bytes(end)?.is_none();
        let after_deltas = records.get(key_start..end).ok_or(RecordsError::Malformed {
            reason: "record fields run past its end",
        })?;
        out.push(RawRecord {
            bytes: &records[start..end],
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value_is_null,
            after_deltas,
        });
        cursor.position = end;
    }
    Ok(out)
}

/// Appends `value` as a zigzag varint (Kafka's record field encoding).
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_varbytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// Batch-level fields of a batch Ferry writes itself (internal topics, transaction markers).
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: bool,
}

impl BatchSpec {
    /// A plain batch without producer information.
    pub const PLAIN: BatchSpec = BatchSpec {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
        control: false,
    };
}

/// A record to write: key, value and timestamp, without headers.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
}

/// Builds an uncompressed v2 batch at base offset 0 (the leader assigns real offsets on
/// append). `records` must not be empty.
pub fn build_batch(spec: BatchSpec, records: &[NewRecord<'_>]) -> Vec<u8> {
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let mut body = Vec::new();
    let mut record = Vec::new();
    for (index, new) in records.iter().enumerate() {
        record.clear();
        record.push(0); // attributes
        put_varint(&mut record, new.timestamp - base_timestamp);
        put_varint(&mut record, index as i64);
        put_varbytes(&mut record, new.key);
        put_varbytes(&mut record, new.value);
        put_varint(&mut record, 0); // headers
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = i32::try_from(records.len()).expect("a built batch holds fewer than 2^31 records");
    let mut attributes: i16 = 0;
    if spec.transactional {
        attributes |= 0x10;
    }
    if spec.control {
        attributes |= 0x20;
    }
    let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    let length = i32::try_from(BATCH_HEADER_BYTES - 12 + body.len())
        .expect("a built batch is smaller than 2 GiB");
    batch.extend_from_slice(&length.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    batch.extend_from_slice(&attributes.to_be_bytes());
    batch.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    batch.extend_from_slice(&base_timestamp.to_be_bytes());
    batch.extend_from_slice(&max_timestamp.to_be_bytes());
    batch.extend_from_slice(&spec.producer_id.to_be_bytes());
    batch.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    batch.extend_from_slice(&spec.base_sequence.to_be_bytes());
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(&body);
    let crc = super::batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{test_support::build_batch, validate};
    use std::io::Write;

    #[test]
    fn lists_record_offsets_and_timestamps() {
        let batch = build_batch(100, 5_000, &[b"a", b"b", b"c"]);
        let header = validate(&batch).unwrap();
        let positions: Vec<(i64, i64)> = parse_records(&batch, &header, 1 << 20)
            .unwrap()
            .iter()
            .map(|r| (r.offset, r.timestamp))
            .collect();
        let expected: Vec<_> = (0..3).map(|i| (100 + i, 5_000 + i)).collect();
        assert_eq!(positions, expected);
    }

    #[test]
    fn caps_decompressed_output() {
        let zeros = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let compressed = gz.finish().unwrap();
        assert!(compressed.len() < 10_000);
        let err = decompress(Compression::Gzip, &compressed, 64 * 1024).unwrap_err();
        assert_eq!(
            err,
            RecordsError::TooLarge {
                max_decompressed_bytes: 64 * 1024
            }
        );
        assert_eq!(
            decompress(Compression::Gzip, &compressed, 1 << 20).unwrap(),
            zeros
        );
    }

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let lz4 = {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let zstd = zstd::stream::encode_all(&data[..], 3).unwrap();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        for (codec, bytes) in [
            (Compression::Lz4, lz4),
            (Compression::Zstd, zstd),
            (Compression::Snappy, raw_snappy),
            (Compression::Snappy, xerial),
        ] {
            assert_eq!(
                decompress(codec, &bytes, 1 << 20).unwrap(),
                data,
                "{codec:?}"
            );
            assert!(matches!(
                decompress(codec, &bytes, 1000),
                Err(RecordsError::TooLarge { .. })
            ));
        }
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let batch = build_batch(0, 0, &[b"abc"]);
        let header = validate(&batch).unwrap();
        let mut lying = header;
        lying.records_count = 5;
        assert!(parse_records(&batch, &lying, 1 << 20).is_err());
    }

    #[test]
    fn built_batches_parse_back_with_keys_values_and_nulls() {
        let record = |key: Option<&'static [u8]>, value: Option<&'static [u8]>| NewRecord {
            key,
            value,
            timestamp: 77,
        };
        let records = [
            record(Some(b"k1"), Some(b"v1")),
            record(None, Some(b"")),
            record(Some(b"k3"), None),
        ];
        let mut batch = super::build_batch(BatchSpec::PLAIN, &records);
        crate::storage::batch::set_base_offset_and_epoch(&mut batch, 10, 0);
        let header = validate(&batch).unwrap();
        let parsed = parse_records(&batch, &header, 1 << 20).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(parsed[1].key, None);
        assert_eq!(parsed[1].value.as_deref(), Some(&b""[..]));
        assert_eq!(parsed[2].value, None);
        assert_eq!((parsed[2].offset, parsed[2].timestamp), (12, 77));
    }

    #[test]
    fn offset_deltas_outside_the_batch_are_malformed() {
        // One record, appended at a high offset; its delta is rewritten to i64::MAX
        // (zigzag varint of 10 bytes) and then to 1 (beyond last_offset_delta 0).
        let batch = build_batch(1 << 40, 0, &[b"abc"]);
        let header = validate(&batch).unwrap();
        let records = &batch[BATCH_HEADER_BYTES..];
        // length varint, attributes, timestamp delta 0, offset delta 0, ...
        assert_eq!(&records[2..4], &[0, 0]);
        for delta in [i64::MAX, 1, -1] {
            let mut zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
            let mut varint = Vec::new();
            while zigzag >= 0x80 {
                varint.push(zigzag as u8 | 0x80);
                zigzag >>= 7;
            }
            varint.push(zigzag as u8);
            let mut body = records[1..3].to_vec(); // attributes, timestamp delta
            body.extend_from_slice(&varint);
            body.extend_from_slice(&records[4..]);
            let mut area = vec![(body.len() as u8) << 1];
            area.extend_from_slice(&body);
            let mut hostile = batch[..BATCH_HEADER_BYTES].to_vec();
            hostile.extend_from_slice(&area);
            let mut hostile_header = header;
            hostile_header.batch_length = (hostile.len() - 12) as i32;
            assert_eq!(
                parse_records(&hostile, &hostile_header, 1 << 20),
                Err(RecordsError::Malformed {
                    reason: "record offset delta outside its batch"
                }),
                "delta {delta}"
            );
        }
    }
}
