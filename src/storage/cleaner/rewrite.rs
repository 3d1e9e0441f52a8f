//! Rewriting one batch with fewer records, as Kafka's `MemoryRecords.filterTo` does for
//! magic-2 batches: the header keeps its base offset and last offset delta (so the batch
//! still spans the offsets it spanned), its producer id, epoch, base sequence, leader
//! epoch, codec and flags; the kept records are copied byte for byte, compressed again
//! with the batch's codec; the record count, max timestamp, length and CRC follow.
//!
//! A delete horizon (KIP-534) is stored in the base timestamp field with attribute bit
//! `0x40`; the kept records' timestamp deltas are then re-encoded against it, so every
//! record's timestamp (base + delta) stays what it was.

use super::super::batch::{self, BatchHeader, CleanedFields, TimestampType};
use super::super::batch::{ATTR_DELETE_HORIZON, BATCH_HEADER_BYTES};
use super::super::error::StorageError;
use super::super::recompress;
use super::super::records::{self, RawRecord};

/// The batch's base timestamp plus a record's delta: the record's timestamp.
fn record_timestamp(header: &BatchHeader, record: &RawRecord<'_>) -> i64 {
    header.base_timestamp.saturating_add(record.timestamp_delta)
}

/// Writes into `out` the batch `batch` (header `header`) holding only `kept`, stamped
/// with `horizon` as its delete horizon when given. `kept` must not be empty (a batch
/// with nothing left is dropped, or kept as [`batch::empty_batch`]).
pub fn rewrite(
    batch: &[u8],
    header: &BatchHeader,
    kept: &[RawRecord<'_>],
    horizon: Option<i64>,
    out: &mut Vec<u8>,
) -> Result<BatchHeader, StorageError> {
    let mut area = Vec::with_capacity(kept.iter().map(|r| r.bytes.len() + 4).sum());
    let mut record = Vec::new();
    for raw in kept {
        match horizon {
            None => area.extend_from_slice(raw.bytes),
            Some(horizon) => {
                record.clear();
                record.push(raw.attributes);
                let timestamp = record_timestamp(header, raw);
                records::put_varint(&mut record, timestamp.saturating_sub(horizon));
                records::put_varint(&mut record, raw.offset_delta);
                record.extend_from_slice(raw.after_deltas);
                records::put_varint(&mut area, record.len() as i64);
                area.extend_from_slice(&record);
            }
        }
    }
    let codec = header.compression()?;
    out.clear();
    out.extend_from_slice(
        batch
            .get(..BATCH_HEADER_BYTES)
            .ok_or(StorageError::InvalidRecord {
                reason: "batch shorter than its header",
            })?,
    );
    recompress::compress(codec, recompress::default_level(codec), &area, out)?;
    let max_timestamp = match header.timestamp_type() {
        TimestampType::LogAppendTime => header.max_timestamp,
        TimestampType::CreateTime => kept
            .iter()
            .map(|r| record_timestamp(header, r))
            .max()
            .unwrap_or(header.max_timestamp),
    };
    let fields = CleanedFields {
        attributes: match horizon {
            Some(_) => header.attributes | ATTR_DELETE_HORIZON,
            None => header.attributes,
        },
        base_timestamp: horizon.unwrap_or(header.base_timestamp),
        max_timestamp,
        records_count: i32::try_from(kept.len()).map_err(|_| StorageError::InvalidRecord {
            reason: "more than 2^31 records in a batch",
        })?,
    };
    batch::set_cleaned_fields(out, fields)?;
    Ok(batch::validate(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::Compression;
    use crate::storage::records::{build_batch, BatchSpec, NewRecord};

    fn keyed_batch(base_offset: i64) -> Vec<u8> {
        let records: Vec<NewRecord<'_>> = [
            (Some(&b"a"[..]), Some(&b"1"[..]), 1_000),
            (Some(b"b"), None, 1_005),
            (Some(b"c"), Some(b"3"), 1_010),
        ]
        .iter()
        .map(|&(key, value, timestamp)| NewRecord {
            key,
            value,
            timestamp,
        })
        .collect();
        let mut bytes = build_batch(BatchSpec::PLAIN, &records);
        batch::set_base_offset_and_epoch(&mut bytes, base_offset, 0);
        bytes
    }

    fn compressed(bytes: &[u8], codec: Compression) -> Vec<u8> {
        let header = batch::validate(bytes).unwrap();
        let mut out = Vec::new();
        recompress::recompress_into(bytes, &header, (codec, 3), 1 << 20, &mut out).unwrap();
        out
    }

    #[test]
    fn kept_records_keep_offsets_timestamps_and_the_batch_keeps_its_span() {
        for codec in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let original = compressed(&keyed_batch(40), codec);
            let header = batch::validate(&original).unwrap();
            let area = recompress::records_area(&original, &header, 1 << 20).unwrap();
            let raw = records::raw_records(&area, header.records_count).unwrap();
            let kept = [raw[1], raw[2]];
            for horizon in [None, Some(9_999_000)] {
                let mut out = Vec::new();
                let rewritten = rewrite(&original, &header, &kept, horizon, &mut out).unwrap();
                assert_eq!(rewritten.base_offset, 40);
                assert_eq!(rewritten.last_offset(), 42, "the span stays");
                assert_eq!(rewritten.records_count, 2);
                assert_eq!(rewritten.compression().unwrap(), codec);
                assert_eq!(rewritten.delete_horizon_ms(), horizon);
                assert_eq!(rewritten.max_timestamp, 1_010);
                let records = records::parse_records(&out, &rewritten, 1 << 20).unwrap();
                let seen: Vec<(i64, i64, Option<Vec<u8>>)> = records
                    .into_iter()
                    .map(|r| (r.offset, r.timestamp, r.value))
                    .collect();
                assert_eq!(
                    seen,
                    vec![(41, 1_005, None), (42, 1_010, Some(b"3".to_vec()))]
                );
            }
        }
    }

    #[test]
    fn an_empty_batch_keeps_offsets_and_producer_fields() {
        let spec = BatchSpec {
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 11,
            transactional: true,
            control: false,
        };
        let record = NewRecord {
            key: Some(b"k"),
            value: Some(b"v"),
            timestamp: 5,
        };
        let mut bytes = build_batch(spec, &[record, record]);
        batch::set_base_offset_and_epoch(&mut bytes, 100, 0);
        let header = batch::validate(&bytes).unwrap();
        let empty = batch::empty_batch(&header);
        let kept = batch::validate(&empty).unwrap();
        assert_eq!(
            (kept.base_offset, kept.last_offset(), kept.records_count),
            (100, 101, 0)
        );
        assert_eq!(
            (kept.producer_id, kept.producer_epoch, kept.base_sequence),
            (7, 2, 11)
        );
        assert!(kept.is_transactional() && !kept.is_control());
        assert!(records::parse_records(&empty, &kept, 1 << 10)
            .unwrap()
            .is_empty());
    }
}
