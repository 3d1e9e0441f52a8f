//! `ferry log`: reading a data directory's files offline, without a broker, like Kafka's
//! `DumpLogSegments`. `dump` shows a segment's batches and records or an index's entries;
//! `verify` checks a whole data directory (CRCs, offsets in order and inside their segment,
//! indexes consistent with their `.log`, checkpoints inside their logs) and names the first
//! problem. Files are only read: never truncated, repaired or locked, so both are safe on
//! a copy or beside a stopped broker. A damaged file is reported up to where it stops
//! making sense, never a panic.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::storage::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::storage::checkpoint;
use crate::storage::index::{OffsetIndex, TimeIndex, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use crate::storage::records;
use crate::storage::segment;

/// Largest decompressed records area `dump` materialises per batch.
const MAX_DUMP_DECOMPRESSED_BYTES: usize = 64 << 20;

/// One batch of a `.log` file as `dump` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDump {
    pub position: u64,
    pub header: BatchHeader,
    pub crc_valid: bool,
    /// The batch's records, or why they could not be read.
    pub records: Result<Vec<records::Record>, String>,
}

/// What `dump` found in a `.log` file: the batches, and where and why reading stopped
/// early, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDump {
    pub batches: Vec<BatchDump>,
    pub stopped: Option<(u64, String)>,
}

/// Reads every batch of a `.log` file.
pub fn dump_log(path: &Path) -> io::Result<LogDump> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut dump = LogDump {
        batches: Vec::new(),
        stopped: None,
    };
    let mut position = 0u64;
    while position < size {
        match read_batch(&file, position, size) {
            Ok((bytes, header)) => {
                let crc_valid = batch::compute_crc(&bytes) == header.crc;
                let records = records::parse_records(&bytes, &header, MAX_DUMP_DECOMPRESSED_BYTES)
                    .map_err(|e| e.to_string());
                dump.batches.push(BatchDump {
                    position,
                    header,
                    crc_valid,
                    records,
                });
                position += bytes.len() as u64;
            }
            Err(reason) => {
                dump.stopped = Some((position, reason));
                break;
            }
        }
    }
    Ok(dump)
}

/// The batch at `position`, or why there is none.
fn read_batch(file: &File, position: u64, size: u64) -> Result<(Vec<u8>, BatchHeader), String> {
    let left = size - position;
    if left < BATCH_HEADER_BYTES as u64 {
        return Err(format!("{left} trailing bytes, too few for a batch header"));
    }
    let mut head = [0u8; BATCH_HEADER_BYTES];
    file.read_exact_at(&mut head, position)
        .map_err(|e| e.to_string())?;
    let header = BatchHeader::parse_prefix(&head).map_err(|e| e.to_string())?;
    let total = header.total_bytes() as u64;
    if total > left {
        return Err(format!(
            "a batch of {total} bytes, but only {left} bytes are left in the file"
        ));
    }
    let mut bytes = vec![0u8; header.total_bytes()];
    file.read_exact_at(&mut bytes, position)
        .map_err(|e| e.to_string())?;
    Ok((bytes, header))
}

/// An index file's entries, and the bytes left over after the last whole entry, if any
/// (the entries before them are still listed).
pub struct IndexDump<E> {
    pub entries: Vec<E>,
    pub trailing_bytes: Option<usize>,
}

/// A `.index` file's entries as absolute `(offset, position)`.
pub fn dump_offset_index(path: &Path) -> io::Result<IndexDump<(i64, u32)>> {
    let (base, bytes) = base_and_bytes(path)?;
    let entries = bytes
        .chunks_exact(OFFSET_ENTRY_BYTES)
        .map(|c| {
            let relative = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let position = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            (base.saturating_add(i64::from(relative)), position)
        })
        .collect();
    Ok(IndexDump {
        entries,
        trailing_bytes: remainder(bytes.len(), OFFSET_ENTRY_BYTES),
    })
}

/// A `.timeindex` file's entries as absolute `(timestamp, offset)`.
pub fn dump_time_index(path: &Path) -> io::Result<IndexDump<(i64, i64)>> {
    let (base, bytes) = base_and_bytes(path)?;
    let entries = bytes
        .chunks_exact(TIME_ENTRY_BYTES)
        .map(|c| {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&c[..8]);
            let relative = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            (
                i64::from_be_bytes(timestamp),
                base.saturating_add(i64::from(relative)),
            )
        })
        .collect();
    Ok(IndexDump {
        entries,
        trailing_bytes: remainder(bytes.len(), TIME_ENTRY_BYTES),
    })
}

fn remainder(len: usize, entry: usize) -> Option<usize> {
    Some(len % entry).filter(|r| *r != 0)
}

/// The base offset a segment file's name gives, and the file's bytes.
fn base_and_bytes(path: &Path) -> io::Result<(i64, Vec<u8>)> {
    let base = segment_base(path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a segment file name (20 digits and an extension)",
        )
    })?;
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok((base, bytes))
}

/// The base offset in a segment file's name (`00000000000000000042.log` -> 42).
pub fn segment_base(path: &Path) -> Option<i64> {
    segment::parse_file_stem(path.file_stem()?.to_str()?)
}

/// What `verify` checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub partitions: usize,
    pub segments: usize,
    pub batches: u64,
    pub bytes: u64,
}

/// The first problem `verify` found: which file, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Checks every partition directory of a data directory and its checkpoints.
pub fn verify(data_dir: &Path) -> Result<VerifyReport, Problem> {
    let problem = |path: &Path, reason: String| Problem {
        path: path.to_path_buf(),
        reason,
    };
    let entries = std::fs::read_dir(data_dir).map_err(|e| problem(data_dir, e.to_string()))?;
    let mut partition_dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_partition_dir(p))
        .collect();
    partition_dirs.sort();
    let mut report = VerifyReport::default();
    let mut log_ends = std::collections::HashMap::new();
    for dir in &partition_dirs {
        let end = verify_partition(dir, &mut report)?;
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        log_ends.insert(name.to_string(), end);
        report.partitions += 1;
    }
    for file in [
        "recovery-point-offset-checkpoint",
        "log-start-offset-checkpoint",
    ] {
        let path = data_dir.join(file);
        let offsets = checkpoint::read_offsets(&path).map_err(|e| problem(&path, e.to_string()))?;
        for ((topic, partition), offset) in offsets {
            let Some(end) = log_ends.get(&format!("{topic}-{partition}")) else {
                continue;
            };
            if offset < 0 || offset > *end {
                return Err(problem(
                    &path,
                    format!(
                        "{topic}-{partition} at {offset} lies outside its log, which ends at {end}"
                    ),
                ));
            }
        }
    }
    Ok(report)
}

/// `<topic>-<partition>` (not a `-delete` directory of a topic being deleted).
fn is_partition_dir(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.ends_with("-delete")
        && name
            .rsplit_once('-')
            .is_some_and(|(topic, p)| !topic.is_empty() && p.parse::<u32>().is_ok())
}

/// Checks one partition's segments in offset order; returns its log end offset.
fn verify_partition(dir: &Path, report: &mut VerifyReport) -> Result<i64, Problem> {
    let problem = |path: &Path, reason: String| Problem {
        path: path.to_path_buf(),
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| problem(dir, e.to_string()))?;
    let mut logs: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter_map(|p| segment_base(&p).map(|base| (base, p)))
        .collect();
    logs.sort();
    let mut end = logs.first().map_or(0, |(base, _)| *base);
    for (i, (base, path)) in logs.iter().enumerate() {
        if *base < end {
            return Err(problem(
                path,
                format!("starts at {base}, below the previous segment's end {end}"),
            ));
        }
        let next_base = logs.get(i + 1).map(|(b, _)| *b);
        let (segment_end, size) = verify_segment(path, *base, next_base, report)?;
        verify_indexes(path, *base, segment_end, size)?;
        end = segment_end.max(*base);
        report.segments += 1;
    }
    Ok(end)
}

/// Checks a `.log` file's batches; returns the segment's end offset and size.
fn verify_segment(
    path: &Path,
    base: i64,
    next_base: Option<i64>,
    report: &mut VerifyReport,
) -> Result<(i64, u64), Problem> {
    let problem = |reason: String| Problem {
        path: path.to_path_buf(),
        reason,
    };
    let dump = dump_log(path).map_err(|e| problem(e.to_string()))?;
    if let Some((position, reason)) = &dump.stopped {
        return Err(problem(format!("at byte {position}: {reason}")));
    }
    let mut expected_min = base;
    let mut size = 0;
    for batch in &dump.batches {
        let h = &batch.header;
        let at = batch.position;
        if !batch.crc_valid {
            return Err(problem(format!(
                "the batch at byte {at} (offset {}) fails its CRC",
                h.base_offset
            )));
        }
        if let Err(e) = h.check_consistency() {
            return Err(problem(format!("the batch at byte {at}: {e}")));
        }
        if !h.offsets_in_range() || h.base_offset < expected_min {
            return Err(problem(format!(
                "the batch at byte {at} starts at offset {}, below {expected_min}",
                h.base_offset
            )));
        }
        let fits = h.last_offset().saturating_sub(base) <= i64::from(i32::MAX)
            && next_base.is_none_or(|next| h.next_offset() <= next);
        if !fits {
            return Err(problem(format!(
                "the batch at byte {at} holds offsets up to {}, outside the segment",
                h.last_offset()
            )));
        }
        expected_min = h.next_offset();
        size = at + h.total_bytes() as u64;
        report.batches += 1;
    }
    report.bytes += size;
    Ok((expected_min, size))
}

/// Checks a segment's `.index` and `.timeindex` against its data, when they exist (a
/// missing index is rebuilt by the broker, not a problem).
fn verify_indexes(log: &Path, base: i64, end: i64, size: u64) -> Result<(), Problem> {
    let index = log.with_extension("index");
    if let Ok(bytes) = std::fs::read(&index) {
        OffsetIndex::decode(&bytes, base, size.max(1)).map_err(|e| Problem {
            path: index.clone(),
            reason: e.to_string(),
        })?;
    }
    let time_index = log.with_extension("timeindex");
    if let Ok(bytes) = std::fs::read(&time_index) {
        TimeIndex::decode(&bytes, base, end).map_err(|e| Problem {
            path: time_index.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::log::{AppendOrigin, Log, LogConfig};

    fn data_dir_with_log(root: &Path) -> PathBuf {
        let dir = root.join("orders-0");
        let config = LogConfig {
            segment_bytes: 1_000,
            ..LogConfig::default()
        };
        let mut log = Log::create(&dir, config, 0, 0).unwrap();
        for i in 0..30 {
            let batch = batch::test_support::build_batch(0, 1_000 + i, &[b"key-less value"]);
            log.append_as_leader(&batch, 0, AppendOrigin::Client, 0)
                .unwrap();
        }
        log.write_all_indexes().unwrap();
        dir
    }

    #[test]
    fn dump_lists_batches_and_records_and_stops_at_damage() {
        let root = tempfile::tempdir().unwrap();
        let dir = data_dir_with_log(root.path());
        let first = dir.join("00000000000000000000.log");
        let dump = dump_log(&first).unwrap();
        assert!(dump.stopped.is_none());
        assert!(dump.batches.len() > 3);
        let batch = &dump.batches[1];
        assert!(batch.crc_valid);
        assert_eq!(batch.records.as_ref().unwrap()[0].offset, 1);
        // A flipped byte shows as a bad CRC; a cut file as where reading stopped.
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[batch.position as usize + 70] ^= 0xff;
        let cut = bytes.len() - 5;
        bytes.truncate(cut);
        std::fs::write(&first, &bytes).unwrap();
        let dump = dump_log(&first).unwrap();
        assert!(!dump.batches[1].crc_valid);
        assert!(dump
            .stopped
            .as_ref()
            .is_some_and(|(_, why)| why.contains("left")));
        let index = dump_offset_index(&dir.join("00000000000000000000.index")).unwrap();
        assert!(index.trailing_bytes.is_none());
        assert!(index.entries.windows(2).all(|w| w[0].0 < w[1].0));
        // verify names the damaged file.
        let problem = verify(root.path()).unwrap_err();
        assert!(
            problem.path.ends_with("00000000000000000000.log"),
            "{problem}"
        );
    }

    #[test]
    fn verify_accepts_a_healthy_directory_and_catches_a_bad_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        data_dir_with_log(root.path());
        let report = verify(root.path()).unwrap();
        assert_eq!((report.partitions, report.batches), (1, 30));
        let mut offsets = std::collections::HashMap::new();
        offsets.insert(("orders".to_string(), 0), 31);
        checkpoint::write_offsets(&root.path().join("log-start-offset-checkpoint"), &offsets)
            .unwrap();
        let problem = verify(root.path()).unwrap_err();
        assert!(problem.reason.contains("outside its log"), "{problem}");
    }
}
