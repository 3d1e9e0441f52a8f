//! Topic compression (`compression.type` other than `producer`): a produced batch whose
//! codec differs from the topic's is rewritten with the topic's codec before it is
//! appended, as Kafka's `LogValidator` does. Only the records area changes: the records'
//! own bytes (offset and timestamp deltas, keys, values, headers) are decompressed and
//! compressed again unchanged, and the header keeps its base and last offset delta,
//! timestamps, producer id, epoch and sequence, record count and flags; the codec bits,
//! the length and the CRC are updated.
//!
//! Snappy output uses the xerial framing that Kafka's broker and Java client write (every
//! client reads it); lz4 the LZ4 frame format of Kafka's magic-2 batches.

use std::io::Write;

use super::batch::{self, BatchHeader, Compression, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};
use super::error::StorageError;
use super::records::{self, RecordsError};

/// What `compression.type` asks of appended batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    /// `producer`: store batches as produced.
    Producer,
    /// A codec every batch is stored with (`uncompressed` is `Compression::None`), and the
    /// level its `compression.<codec>.level` key sets.
    Codec { codec: Compression, level: i32 },
}

impl TopicCompression {
    /// The codec a batch written with `current` must be rewritten to, if any.
    pub fn rewrite_to(self, current: Compression) -> Option<(Compression, i32)> {
        match self {
            TopicCompression::Codec { codec, level } if codec != current => Some((codec, level)),
            _ => None,
        }
    }
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// Uncompressed bytes per xerial snappy block (snappy-java's default).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// Attribute bits of the compression codec.
const CODEC_BITS: i16 = 0x07;

/// The decompressed records area of a batch, within `max_decompressed_bytes`.
pub(crate) fn records_area(
    batch: &[u8],
    header: &BatchHeader,
    max_decompressed_bytes: usize,
) -> Result<Vec<u8>, StorageError> {
    let body =
        batch
            .get(BATCH_HEADER_BYTES..header.total_bytes())
            .ok_or(StorageError::InvalidRecord {
                reason: "batch shorter than its header says",
            })?;
    Ok(records::decompress(
        header.compression()?,
        body,
        max_decompressed_bytes,
    )?)
}
/// Writes `batch` (whose header is `header`) into `out` with its records compressed by
/// `codec` at `level`. Decompression is capped at `max_decompressed_bytes`.
pub fn recompress_into(
    batch: &[u8],
    header: &BatchHeader,
    (codec, level): (Compression, i32),
    max_decompressed_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<BatchHeader, StorageError> {
    let raw = records_area(batch, header, max_decompressed_bytes)?;
    out.clear();
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    compress(codec, level, &raw, out)?;
    let batch_length =
        i32::try_from(out.len() - LOG_OVERHEAD_BYTES).map_err(|_| StorageError::InvalidRecord {
            reason: "the recompressed batch is larger than 2 GiB",
        })?;
    let attributes = (header.attributes & !CODEC_BITS) | codec_id(codec);
    batch::set_length_and_attributes(out, batch_length, attributes);
    Ok(batch::validate(out)?)
}

pub(crate) fn codec_id(codec: Compression) -> i16 {
    match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

fn failed(codec: &'static str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Records(RecordsError::Decompression {
        codec,
        reason: format!("compressing failed: {err}"),
    })
}

/// The level a codec uses when no `compression.<codec>.level` applies (the cleaner
/// rewriting a producer's batch): each library's default.
pub(crate) fn default_level(codec: Compression) -> i32 {
    match codec {
        Compression::Zstd => 3,
        // Gzip takes a negative level as its default; snappy and lz4 have none.
        _ => -1,
    }
}

/// Appends `raw` compressed with `codec` to `out`.
pub(crate) fn compress(
    codec: Compression,
    level: i32,
    raw: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), StorageError> {
    match codec {
        Compression::None => out.extend_from_slice(raw),
        Compression::Gzip => {
            let level = u32::try_from(level)
                .map_or(flate2::Compression::default(), flate2::Compression::new);
            let mut encoder = flate2::write::GzEncoder::new(out, level);
            encoder.write_all(raw).map_err(|e| failed("gzip", e))?;
            encoder.finish().map_err(|e| failed("gzip", e))?;
        }
        Compression::Snappy => {
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in raw.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|e| failed("snappy", e))?;
                let length = u32::try_from(compressed.len()).map_err(|e| failed("snappy", e))?;
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
        }
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(out);
            encoder.write_all(raw).map_err(|e| failed("lz4", e))?;
            encoder.finish().map_err(|e| failed("lz4", e))?;
        }
        Compression::Zstd => {
            let compressed = zstd::stream::encode_all(raw, level).map_err(|e| failed("zstd", e))?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::test_support::build_batch;

    #[test]
    fn every_codec_round_trips_with_the_records_and_header_intact() {
        let values: Vec<Vec<u8>> = (0..50u32)
            .map(|i| format!("value-{i}-{}", "x".repeat(i as usize * 7)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let original = build_batch(0, 1_700_000_000_000, &refs);
        let header = batch::validate(&original).unwrap();
        let expected = records::parse_records(&original, &header, 1 << 20).unwrap();
        let mut previous = original.clone();
        for codec in [
            Compression::Zstd,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::None,
        ] {
            let from = batch::validate(&previous).unwrap();
            let mut out = Vec::new();
            let rewritten =
                recompress_into(&previous, &from, (codec, 3), 1 << 20, &mut out).unwrap();
            assert_eq!(rewritten.compression().unwrap(), codec);
            for (a, b) in [
                (rewritten.last_offset_delta, header.last_offset_delta),
                (rewritten.records_count, header.records_count),
                (rewritten.base_sequence, header.base_sequence),
            ] {
                assert_eq!(a, b, "{codec:?}");
            }
            assert_eq!(
                (
                    rewritten.base_timestamp,
                    rewritten.max_timestamp,
                    rewritten.producer_id
                ),
                (
                    header.base_timestamp,
                    header.max_timestamp,
                    header.producer_id
                )
            );
            let records = records::parse_records(&out, &rewritten, 1 << 20).unwrap();
            assert_eq!(records, expected, "{codec:?}");
            if codec != Compression::None {
                assert!(out.len() < original.len(), "{codec:?} compresses");
            }
            previous = out;
        }
    }

    #[test]
    fn decompression_stays_capped() {
        let big = vec![0u8; 200_000];
        let original = build_batch(0, 0, &[&big]);
        let header = batch::validate(&original).unwrap();
        let mut out = Vec::new();
        let err = recompress_into(&original, &header, (Compression::Zstd, 3), 1_000, &mut out);
        assert!(matches!(
            err,
            Err(StorageError::Records(RecordsError::TooLarge { .. }))
        ));
    }
}
