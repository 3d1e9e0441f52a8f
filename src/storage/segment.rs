//! One log segment: a `.log` file of concatenated v2 batches named by its 20-digit base
//! offset, plus its in-memory offset and time indexes.
//!
//! Writes go through `pwrite` at the segment's known size; reads go through `pread` on a
//! shared file handle so that fetches never hold the partition lock while copying bytes.
//! Bytes below a snapshot of `size_bytes` never change except by truncation, which only
//! recovery performs before the log is shared.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchError, BatchHeader, BATCH_HEADER_BYTES};
use super::index::{OffsetIndex, TimeIndex};

/// File name stem of a segment: the base offset zero-padded to 20 digits.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// The extensions of a segment's files: the `.log` and its three indexes.
pub const FILE_EXTENSIONS: [&str; 4] = ["log", "index", "timeindex", "txnindex"];

/// Path of one of a segment's files: `<dir>/<stem>.<extension><suffix>`, where the suffix
/// is empty for a segment of the log, or marks a cleaner's replacement in the making
/// (`.cleaned`) or committed (`.swap`), see `storage::log::cleaning`.
pub fn file_path(dir: &Path, base_offset: i64, extension: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}.{extension}{suffix}", file_stem(base_offset)))
}

/// Parses a segment file stem back into its base offset.
pub fn parse_file_stem(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A segment reserves disk blocks ahead of its end once it holds this much, by as much as
/// it holds (so at most twice its data, until it is sealed or the broker stops), and never
/// more than `RESERVE_AHEAD_MAX_BYTES` ahead. A partition that sees little traffic reserves
/// nothing: 10,000 idle partitions cost their data, not a chunk each (docs/performance.md
/// has the measurements behind this).
const RESERVE_FROM_BYTES: u64 = 64 << 10;
const RESERVE_AHEAD_MAX_BYTES: u64 = 64 << 20;

/// Most non-empty parts one append may write (the leader path passes two, verbatim appends
/// and markers one), so the `iovec`s live on the stack: no allocation per append.
pub const MAX_WRITE_PARTS: usize = 4;

/// Writes all of `parts`, in order, at `offset`: one `pwritev`, more only if the kernel
/// writes part of them. More than `MAX_WRITE_PARTS` non-empty parts is an `InvalidInput`
/// error, before anything is written.
pub(crate) fn write_all_vectored_at(
    file: &File,
    parts: &[&[u8]],
    mut offset: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut slices = [io::IoSlice::new(&[]); MAX_WRITE_PARTS];
    let mut used = 0;
    for part in parts.iter().filter(|part| !part.is_empty()) {
        let slot = slices.get_mut(used).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an append of more than {MAX_WRITE_PARTS} parts"),
            )
        })?;
        *slot = io::IoSlice::new(part);
        used += 1;
    }
    let mut left = &mut slices[..used];
    while !left.is_empty() {
        let at = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // At most MAX_WRITE_PARTS slices, far below IOV_MAX.
        let count = libc::c_int::try_from(left.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, the slices borrow live
        // buffers for the duration of the call, and the descriptor is open (held by `file`).
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                left.as_ptr().cast::<libc::iovec>(),
                count,
                at,
            )
        };
        match written {
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                // n > 0 here, and at most the bytes passed.
                let n = n.unsigned_abs();
                offset += n as u64;
                io::IoSlice::advance_slices(&mut left, n);
            }
        }
    }
    Ok(())
}

/// Reserves disk blocks for `[from, from + len)` without changing the file's size
/// (`fallocate(FALLOC_FL_KEEP_SIZE)`). Appending into reserved blocks is several times
/// faster on ext4 than appending into unallocated space, where every buffered write must
/// allocate blocks (measured: 2.6 GB/s against 0.45 GB/s, see docs/performance.md). The
/// file's size still says exactly how much data it holds, so recovery is unchanged.
#[cfg(target_os = "linux")]
fn reserve(file: &File, from: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(from), libc::off_t::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: fallocate only reads its integer arguments; the fd is owned by `file`,
    // which outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn reserve(_file: &File, _from: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Sizes that decide when an index entry is written.
#[derive(Debug, Clone, Copy)]
pub struct IndexPolicy {
    /// `log.index.interval.bytes`: log bytes between two index entries.
    pub index_interval_bytes: u64,
}

/// What recovery found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOutcome {
    /// Bytes cut off the end because they did not form valid batches.
    pub truncated_bytes: u64,
    /// Number of valid batches kept.
    pub batches: u64,
}

/// A trusted segment's end state, read from the batches after its last index entry.
struct TailState {
    next_offset: i64,
    bytes_since_index_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

/// One segment of a partition's log.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    /// Suffix of the segment's file names: empty, or a cleaner's staging suffix.
    suffix: &'static str,
    file: Arc<File>,
    size_bytes: u64,
    /// One past the last offset stored in this segment (`base_offset` when empty).
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
    /// Largest batch max-timestamp in the segment, -1 when there is none.
    max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Wall-clock time the segment was created or opened, for `log.roll.ms`.
    created_at_ms: i64,
    /// End of the disk space reserved ahead of the data (0: none).
    reserved_end: u64,
}

fn open_log_file(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

impl Segment {
    /// Creates an empty segment starting at `base_offset`. Any stale file of that name is
    /// emptied: the caller only creates a segment at the log end, where no data can live.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        Segment::create_with_suffix(dir, base_offset, "", now_ms)
    }

    /// Creates an empty segment whose files carry `suffix` (the cleaner's `.cleaned`
    /// replacements); a stale file of that name is emptied.
    pub fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        suffix: &'static str,
        now_ms: i64,
    ) -> io::Result<Segment> {
        let file = open_log_file(&file_path(dir, base_offset, "log", suffix), true)?;
        file.set_len(0)?;
        let mut segment = Segment::with_file(dir, file, base_offset, 0, now_ms);
        segment.suffix = suffix;
        Ok(segment)
    }

    fn with_file(
        dir: &Path,
        file: File,
        base_offset: i64,
        size_bytes: u64,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            suffix: "",
            file: Arc::new(file),
            size_bytes,
            next_offset: base_offset,
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            created_at_ms: now_ms,
            reserved_end: 0,
        }
    }

    /// Before a write ending at `end`: once the segment holds `RESERVE_FROM_BYTES`, makes
    /// sure blocks are reserved up to `end` plus as much as the segment holds (at most
    /// `RESERVE_AHEAD_MAX_BYTES`), so a busy segment calls fallocate a logarithmic number
    /// of times. Failure is not an error (the file system may not support it); the write
    /// itself reports real ones.
    fn reserve_through(&mut self, end: u64) {
        if end <= self.reserved_end || self.size_bytes < RESERVE_FROM_BYTES {
            return;
        }
        let target = end + self.size_bytes.min(RESERVE_AHEAD_MAX_BYTES);
        match reserve(&self.file, self.size_bytes, target - self.size_bytes) {
            Ok(()) => self.reserved_end = target,
            // Keep trying lazily: no reservation means plain (slower) appends.
            Err(_) => self.reserved_end = end,
        }
    }

    /// Reserves blocks for the segment's whole size limit at once (`preallocate=true`,
    /// Kafka's `log.preallocate`); given back when the segment is sealed or closed.
    pub fn preallocate(&mut self, segment_bytes: u64) {
        if reserve(&self.file, 0, segment_bytes).is_ok() {
            self.reserved_end = segment_bytes;
        }
    }

    /// Gives back reserved blocks beyond the data (when the segment is sealed or closed).
    pub fn release_reservation(&mut self) -> io::Result<()> {
        if self.reserved_end > self.size_bytes {
            self.file.set_len(self.size_bytes)?;
        }
        self.reserved_end = 0;
        Ok(())
    }

    /// Opens an existing segment without reading its batches. Call [`Segment::recover`] or
    /// [`Segment::load_trusted`] next.
    pub fn open(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let file = open_log_file(&file_path(dir, base_offset, "log", ""), false)?;
        let size_bytes = file.metadata()?.len();
        Ok(Segment::with_file(
            dir,
            file,
            base_offset,
            size_bytes,
            now_ms,
        ))
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }

    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    fn index_path(&self, extension: &str) -> PathBuf {
        file_path(&self.dir, self.base_offset, extension, self.suffix)
    }

    /// The suffix of the segment's file names (empty for a segment of the log).
    pub fn suffix(&self) -> &'static str {
        self.suffix
    }

    /// Records that the segment's files were renamed to carry `suffix`.
    pub fn set_suffix(&mut self, suffix: &'static str) {
        self.suffix = suffix;
    }

    /// Whether a batch ending at `last_offset` can still be indexed relative to this
    /// segment's base (relative offsets are 32-bit in Kafka's index format).
    pub fn fits_relative_offset(&self, last_offset: i64) -> bool {
        last_offset
            .checked_sub(self.base_offset)
            .is_some_and(|relative| (0..=i64::from(i32::MAX)).contains(&relative))
    }

    /// Appends `parts`, which together are `headers`' batches, at the end of the file with
    /// one `pwritev` (the client's bytes are written from where they are, not copied).
    /// On a failed write the file is cut back to its previous size, so a failed append
    /// leaves no partial batch; the error says whether that undo worked.
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        headers: &[BatchHeader],
        policy: IndexPolicy,
    ) -> Result<(), AppendIoError> {
        let start = self.size_bytes;
        let len: usize = parts.iter().map(|part| part.len()).sum();
        self.reserve_through(start + len as u64);
        if let Err(source) = write_all_vectored_at(&self.file, parts, start) {
            let undo = self.file.set_len(start);
            return Err(AppendIoError {
                source,
                undone: undo.is_ok(),
            });
        }
        let mut position = start;
        for header in headers {
            self.index_batch(header, position, policy);
            position += header.total_bytes() as u64;
        }
        self.size_bytes = position;
        Ok(())
    }

    /// Updates indexes and offsets for a batch stored at `position` (Kafka's
    /// `LogSegment.append` rule: the entry is written when more than the interval has
    /// accumulated, keyed by the batch's last offset and pointing at its start).
    fn index_batch(&mut self, header: &BatchHeader, position: u64, policy: IndexPolicy) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        // Positions fit in u32: segments roll before 2 GiB (`segment.bytes` is at most
        // i32::MAX). One that did not would only go unindexed (the index is sparse).
        if let (true, Ok(position)) = (
            self.bytes_since_index_entry > policy.index_interval_bytes,
            u32::try_from(position),
        ) {
            self.offset_index.append(header.last_offset(), position);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.total_bytes() as u64;
        self.next_offset = header.next_offset();
    }

    /// Scans the whole segment, keeping the longest prefix of valid batches (length, magic,
    /// CRC, increasing offsets starting at or after `min_offset`), truncating anything after
    /// it, and rebuilding both indexes. `on_batch` sees every kept batch.
    pub fn recover(
        &mut self,
        policy: IndexPolicy,
        min_offset: i64,
        mut on_batch: impl FnMut(&BatchHeader, &[u8]),
    ) -> io::Result<RecoveryOutcome> {
        self.offset_index = OffsetIndex::new(self.base_offset);
        self.time_index = TimeIndex::new(self.base_offset);
        self.bytes_since_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.next_offset = self.base_offset;
        let file_bytes = self.file.metadata()?.len();
        let file = Arc::clone(&self.file);
        let mut reader = SequentialReader::new(&file, file_bytes);
        let mut position = 0u64;
        let mut batches = 0u64;
        let mut expected_min = min_offset.max(self.base_offset);
        while let Some(batch) = reader.batch_at(position)? {
            let Ok(header) = batch::validate(batch) else {
                break;
            };
            if header.base_offset < expected_min
                || !header.offsets_in_range()
                || !self.fits_relative_offset(header.last_offset())
            {
                break;
            }
            on_batch(&header, batch);
            self.index_batch(&header, position, policy);
            expected_min = header.next_offset();
            position += header.total_bytes() as u64;
            batches += 1;
        }
        if position < file_bytes {
            self.file.set_len(position)?;
        }
        self.size_bytes = position;
        Ok(RecoveryOutcome {
            truncated_bytes: file_bytes - position,
            batches,
        })
    }

    /// Loads the `.index` and `.timeindex` files of a segment the log trusts (below the
    /// recovery point, or the last segment after a clean shutdown) and restores its end
    /// state by scanning only the batches after the last index entry. `upper_bound` is the
    /// next segment's base offset, which this segment's offsets must stay below (`None` for
    /// the last segment).
    ///
    /// Returns false, leaving the segment to [`Segment::recover`], when an index file is
    /// missing or fails its checks, or the files disagree with the log: the last index
    /// entry does not name the batch it points at, the tail does not end exactly at the
    /// end of the file, or an offset leaves `[base_offset, upper_bound)` or the range the
    /// 32-bit relative offsets of the index format can express. An empty `.log` holds no
    /// offsets: its next offset is its base offset.
    pub fn load_trusted(&mut self, upper_bound: Option<i64>) -> io::Result<bool> {
        let offset_bytes = std::fs::read(self.index_path("index"));
        let time_bytes = std::fs::read(self.index_path("timeindex"));
        let (Ok(offset_bytes), Ok(time_bytes)) = (offset_bytes, time_bytes) else {
            return Ok(false);
        };
        let Ok(offset_index) =
            OffsetIndex::decode(&offset_bytes, self.base_offset, self.size_bytes)
        else {
            return Ok(false);
        };
        self.offset_index = offset_index;
        let Some(tail) = self.scan_tail()? else {
            self.offset_index = OffsetIndex::new(self.base_offset);
            return Ok(false);
        };
        let in_range = tail.next_offset >= self.base_offset
            && upper_bound.is_none_or(|bound| tail.next_offset <= bound)
            && (tail.next_offset == self.base_offset
                || self.fits_relative_offset(tail.next_offset - 1));
        let time_index = TimeIndex::decode(&time_bytes, self.base_offset, tail.next_offset);
        let (true, Ok(time_index)) = (in_range, time_index) else {
            self.offset_index = OffsetIndex::new(self.base_offset);
            return Ok(false);
        };
        self.time_index = time_index;
        self.next_offset = tail.next_offset;
        self.bytes_since_index_entry = tail.bytes_since_index_entry;
        let (index_ts, index_offset) = self.time_index.last_entry().unwrap_or((-1, -1));
        (self.max_timestamp, self.offset_of_max_timestamp) = if tail.max_timestamp > index_ts {
            (tail.max_timestamp, tail.offset_of_max_timestamp)
        } else {
            (index_ts, index_offset)
        };
        Ok(true)
    }

    /// Reads the batch headers from the last offset index entry to the end of the file.
    /// `None` when they do not agree with the index or do not end exactly at the file's end.
    fn scan_tail(&self) -> io::Result<Option<TailState>> {
        let last_entry = self.offset_index.last_entry();
        let start = last_entry.map_or(0, |(_, position)| u64::from(position));
        let mut scanner = HeaderScanner::new(&self.file, self.size_bytes);
        let mut tail = TailState {
            next_offset: self.base_offset,
            bytes_since_index_entry: self.size_bytes.saturating_sub(start),
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
        };
        let mut position = start;
        let mut expected_min = self.base_offset;
        loop {
            let header = match scanner.header_at(position) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(err) if err.kind() == io::ErrorKind::InvalidData => return Ok(None),
                Err(err) => return Err(err),
            };
            let names_this_batch = last_entry.is_none_or(|(last_offset, at)| {
                u64::from(at) != position || last_offset == header.last_offset()
            });
            if header.base_offset < expected_min || !header.offsets_in_range() || !names_this_batch
            {
                return Ok(None);
            }
            expected_min = header.next_offset();
            tail.next_offset = header.next_offset();
            if header.max_timestamp > tail.max_timestamp {
                tail.max_timestamp = header.max_timestamp;
                tail.offset_of_max_timestamp = header.last_offset();
            }
            position += header.total_bytes() as u64;
        }
        Ok((position == self.size_bytes).then_some(tail))
    }

    /// Writes both index files (whole), e.g. when the segment rolls or at shutdown.
    pub fn write_indexes(&mut self) -> io::Result<()> {
        self.release_reservation()?;
        if self.is_empty() {
            // Kafka appends the final max timestamp on roll; an empty segment has none.
        } else {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        std::fs::write(self.index_path("index"), self.offset_index.encode())?;
        std::fs::write(self.index_path("timeindex"), self.time_index.encode())?;
        Ok(())
    }

    /// Where to start scanning for `offset`, and how far the file is readable now.
    pub fn read_plan(&self, offset: i64) -> ReadPlan {
        ReadPlan {
            file: Arc::clone(&self.file),
            start_position: u64::from(self.offset_index.lookup(offset)),
            end_position: self.size_bytes,
        }
    }

    /// Where to start scanning for the first record at or after `timestamp`.
    pub fn time_read_plan(&self, timestamp: i64) -> ReadPlan {
        self.read_plan(self.time_index.lookup(timestamp))
    }

    /// Cuts the segment at `position` (a batch boundary) and drops index entries past it.
    pub fn truncate_to(&mut self, position: u64, next_offset: i64) -> io::Result<()> {
        self.file.set_len(position)?;
        self.size_bytes = position;
        self.next_offset = next_offset;
        self.offset_index
            .truncate_to_position(u32::try_from(position).unwrap_or(u32::MAX));
        self.time_index.truncate_to_offset(next_offset);
        Ok(())
    }

    /// The paths of the segment's files (`.log` and its indexes), existing or not.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        FILE_EXTENSIONS
            .iter()
            .map(|extension| self.index_path(extension))
            .collect()
    }

    /// Deletes the segment's files.
    pub fn delete_files(&self) -> io::Result<()> {
        for extension in FILE_EXTENSIONS {
            match std::fs::remove_file(self.index_path(extension)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A write that failed, and whether the partial data was removed again.
#[derive(Debug)]
pub struct AppendIoError {
    pub source: io::Error,
    /// True if the file was cut back to its size before the write.
    pub undone: bool,
}

/// A consistent view of a segment to read from without holding the partition lock.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub file: Arc<File>,
    pub start_position: u64,
    pub end_position: u64,
}

/// Batches read from one segment.
#[derive(Debug, Clone)]
pub struct ReadChunk {
    pub bytes: Bytes,
    /// Offset one past the last batch returned.
    pub next_offset: i64,
    /// Byte position of the first batch returned within the segment.
    pub start_position: u64,
}

/// Whole batches found by [`ReadPlan::locate`]: a byte range of the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_position: u64,
    pub len: usize,
    /// Offset one past the last batch in the range.
    pub next_offset: i64,
    /// Records in the range's batches, as their headers count them (a first batch that
    /// starts below the fetch offset counts whole; a transaction marker counts one).
    pub records: u64,
}

/// Limits for one read.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Batches must end at or below this offset (exclusive), e.g. the high watermark.
    pub upper_offset: i64,
    /// Byte budget for the read.
    pub max_bytes: usize,
    /// Return the first batch even if it alone exceeds `max_bytes` (KIP-74).
    pub min_one_batch: bool,
}

impl ReadPlan {
    /// Finds the first batch holding offsets at or after `fetch_offset` and returns it and
    /// the batches after it, within the limits. `None` when the segment has no such batch
    /// below the upper offset or the budget does not fit the first batch.
    pub fn read(&self, limits: ReadLimits) -> io::Result<Option<ReadChunk>> {
        let Some(span) = self.locate(limits)? else {
            return Ok(None);
        };
        let mut buf = BytesMut::zeroed(span.len);
        self.file.read_exact_at(&mut buf, span.start_position)?;
        Ok(Some(ReadChunk {
            bytes: buf.freeze(),
            next_offset: span.next_offset,
            start_position: span.start_position,
        }))
    }

    /// Like [`Self::read`] but only finds the byte range, for sending it from the file.
    pub fn locate(&self, limits: ReadLimits) -> io::Result<Option<Span>> {
        let mut scanner = HeaderScanner::new(&self.file, self.end_position);
        let mut position = self.start_position;
        let first = loop {
            let Some(header) = scanner.header_at(position)? else {
                return Ok(None);
            };
            if header.last_offset() >= limits.fetch_offset {
                break header;
            }
            position += header.total_bytes() as u64;
        };
        let start_position = position;
        let mut total = 0usize;
        let mut records = 0u64;
        let mut next_offset = first.base_offset;
        let mut current = Some(first);
        while let Some(header) = current {
            let size = header.total_bytes();
            let fits = total + size <= limits.max_bytes || (total == 0 && limits.min_one_batch);
            if header.next_offset() > limits.upper_offset || !fits {
                break;
            }
            total += size;
            records += u64::try_from(header.records_count).unwrap_or(0);
            next_offset = header.next_offset();
            current = scanner.header_at(start_position + total as u64)?;
        }
        if total == 0 {
            return Ok(None);
        }
        Ok(Some(Span {
            start_position,
            len: total,
            next_offset,
            records,
        }))
    }

    /// Scans from the plan's start for the first batch whose max timestamp reaches
    /// `timestamp` and whose last offset is at least `min_offset`; returns the whole batch.
    pub fn find_batch_by_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> io::Result<Option<(BatchHeader, Vec<u8>)>> {
        let mut scanner = HeaderScanner::new(&self.file, self.end_position);
        let mut position = self.start_position;
        while let Some(header) = scanner.header_at(position)? {
            if header.max_timestamp >= timestamp && header.last_offset() >= min_offset {
                let mut buf = vec![0u8; header.total_bytes()];
                self.file.read_exact_at(&mut buf, position)?;
                return Ok(Some((header, buf)));
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }
}

/// Reads batch headers at arbitrary positions through a small window buffer, so that
/// scanning many small batches costs few system calls.
struct HeaderScanner<'a> {
    file: &'a File,
    end_position: u64,
    window_start: u64,
    window: Vec<u8>,
}

/// Bytes read per window refill when scanning headers.
const SCAN_WINDOW_BYTES: usize = 16 * 1024;

impl<'a> HeaderScanner<'a> {
    fn new(file: &'a File, end_position: u64) -> Self {
        HeaderScanner {
            file,
            end_position,
            window_start: 0,
            window: Vec::new(),
        }
    }

    /// The header of the batch at `position`, or `None` at the end. A header that does not
    /// parse, or a batch that runs past the end, is an `InvalidData` error: the bytes below
    /// the end position were validated when written or recovered.
    fn header_at(&mut self, position: u64) -> io::Result<Option<BatchHeader>> {
        if position >= self.end_position {
            return Ok(None);
        }
        let window_end = self.window_start + self.window.len() as u64;
        if position < self.window_start || position + BATCH_HEADER_BYTES as u64 > window_end {
            let len = (self.end_position - position).min(SCAN_WINDOW_BYTES as u64) as usize;
            self.window.resize(len, 0);
            self.file.read_exact_at(&mut self.window, position)?;
            self.window_start = position;
        }
        let offset = (position - self.window_start) as usize;
        let header = BatchHeader::parse_prefix(&self.window[offset..]).map_err(corrupt)?;
        if position + header.total_bytes() as u64 > self.end_position {
            return Err(corrupt(BatchError::Truncated {
                needed_bytes: header.total_bytes(),
                available_bytes: (self.end_position - position) as usize,
            }));
        }
        Ok(Some(header))
    }
}

fn corrupt(err: BatchError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// Reads whole batches sequentially for recovery, bounded by the file size.
struct SequentialReader<'a> {
    file: &'a File,
    file_bytes: u64,
    buffer: Vec<u8>,
}

impl<'a> SequentialReader<'a> {
    fn new(file: &'a File, file_bytes: u64) -> Self {
        SequentialReader {
            file,
            file_bytes,
            buffer: Vec::new(),
        }
    }

    /// The complete bytes of the batch at `position` as its length field claims, or `None`
    /// if the rest of the file is too short for a header or for that length.
    fn batch_at(&mut self, position: u64) -> io::Result<Option<&[u8]>> {
        let remaining = self.file_bytes.saturating_sub(position);
        if remaining < BATCH_HEADER_BYTES as u64 {
            return Ok(None);
        }
        let mut head = [0u8; BATCH_HEADER_BYTES];
        self.file.read_exact_at(&mut head, position)?;
        let Ok(header) = BatchHeader::parse_prefix(&head) else {
            // Not even a parsable header: recovery stops here.
            self.buffer.clear();
            self.buffer.extend_from_slice(&head);
            return Ok(Some(&self.buffer));
        };
        let total = header.total_bytes() as u64;
        if total > remaining {
            return Ok(None);
        }
        self.buffer.resize(total as usize, 0);
        self.file.read_exact_at(&mut self.buffer, position)?;
        Ok(Some(&self.buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::test_support::build_batch;

    const POLICY: IndexPolicy = IndexPolicy {
        index_interval_bytes: 100,
    };

    fn append_batches(segment: &mut Segment, first_offset: i64, count: i64) {
        for i in 0..count {
            let mut bytes = build_batch(0, 1_000 + i, &[b"value-value-value"]);
            batch::set_base_offset_and_epoch(&mut bytes, first_offset + i, 0);
            let header = batch::validate(&bytes).unwrap();
            segment.append(&[&bytes], &[header], POLICY).unwrap();
        }
    }

    fn limits(fetch_offset: i64, max_bytes: usize) -> ReadLimits {
        ReadLimits {
            fetch_offset,
            upper_offset: i64::MAX,
            max_bytes,
            min_one_batch: true,
        }
    }

    #[test]
    fn a_batch_written_in_parts_reads_back_whole_with_the_leaders_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 7, 0).unwrap();
        let client = build_batch(0, 1_000, &[b"first", b"second"]);
        let prefix = batch::leader_prefix(&client, 7, 3);
        let rest = &client[batch::LEADER_PREFIX_BYTES..];
        let (head, tail) = rest.split_at(rest.len() / 2);
        let mut expected = client.clone();
        batch::set_base_offset_and_epoch(&mut expected, 7, 3);
        let header = batch::validate(&expected).unwrap();
        segment
            .append(&[&prefix, head, &[], tail], &[header], POLICY)
            .unwrap();
        assert_eq!(segment.size_bytes(), expected.len() as u64);
        let read = segment
            .read_plan(7)
            .read(limits(7, 1 << 20))
            .unwrap()
            .unwrap();
        assert_eq!(&read.bytes[..], &expected[..]);
        assert_eq!(
            &client[..8],
            &0i64.to_be_bytes(),
            "the client's bytes are untouched"
        );
        let too_many: Vec<&[u8]> = vec![&expected[..1]; MAX_WRITE_PARTS + 1];
        let err = segment.append(&too_many, &[], POLICY).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            segment.size_bytes(),
            expected.len() as u64,
            "nothing written"
        );
    }

    #[test]
    fn reads_from_any_offset_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 50, 0).unwrap();
        append_batches(&mut segment, 50, 40);
        assert_eq!(segment.next_offset(), 90);
        for offset in [50, 51, 70, 89] {
            let chunk = segment
                .read_plan(offset)
                .read(limits(offset, 1 << 20))
                .unwrap()
                .unwrap();
            let first = batch::validate(&chunk.bytes).unwrap();
            assert_eq!(first.base_offset, offset);
            assert_eq!(chunk.next_offset, 90);
            let span = segment
                .read_plan(offset)
                .locate(limits(offset, 1 << 20))
                .unwrap()
                .unwrap();
            assert_eq!(span.records, (90 - offset) as u64, "one record per batch");
        }
        assert!(segment
            .read_plan(90)
            .read(limits(90, 1 << 20))
            .unwrap()
            .is_none());
    }

    #[test]
    fn respects_byte_budget_but_returns_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        append_batches(&mut segment, 0, 10);
        let one = segment.read_plan(0).read(limits(0, 1)).unwrap().unwrap();
        assert_eq!(one.next_offset, 1);
        let mut strict = limits(0, 1);
        strict.min_one_batch = false;
        assert!(segment.read_plan(0).read(strict).unwrap().is_none());
        let mut bounded = limits(0, 1 << 20);
        bounded.upper_offset = 4;
        assert_eq!(
            segment
                .read_plan(0)
                .read(bounded)
                .unwrap()
                .unwrap()
                .next_offset,
            4
        );
    }

    #[test]
    fn recovery_truncates_torn_tail_and_rebuilds_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        append_batches(&mut segment, 0, 20);
        let valid = segment.size_bytes();
        segment
            .file()
            .write_all_at(&[1, 2, 3, 4, 5, 6, 7], valid)
            .unwrap();
        drop(segment);
        let mut reopened = Segment::open(dir.path(), 0, 0).unwrap();
        let outcome = reopened.recover(POLICY, 0, |_, _| {}).unwrap();
        assert_eq!(
            outcome,
            RecoveryOutcome {
                truncated_bytes: 7,
                batches: 20
            }
        );
        assert_eq!(reopened.next_offset(), 20);
        assert_eq!(reopened.size_bytes(), valid);
        let chunk = reopened
            .read_plan(15)
            .read(limits(15, 1 << 20))
            .unwrap()
            .unwrap();
        assert_eq!(batch::validate(&chunk.bytes).unwrap().base_offset, 15);
    }

    #[test]
    fn recovery_stops_at_a_corrupt_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        append_batches(&mut segment, 0, 10);
        let batch_bytes = segment.size_bytes() / 10;
        segment
            .file()
            .write_all_at(&[0xAB], batch_bytes * 6 + 70)
            .unwrap();
        let outcome = segment.recover(POLICY, 0, |_, _| {}).unwrap();
        assert_eq!(outcome.batches, 6);
        assert_eq!(segment.next_offset(), 6);
        assert_eq!(segment.size_bytes(), batch_bytes * 6);
    }

    /// Disk blocks a file occupies, in bytes.
    fn allocated_bytes(file: &File) -> u64 {
        use std::os::unix::fs::MetadataExt;
        file.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn reservations_stay_in_proportion_to_the_data() {
        let dir = tempfile::tempdir().unwrap();
        // A partition that holds a few bytes reserves nothing ahead.
        let mut small = Segment::create(dir.path(), 0, 0).unwrap();
        append_batches(&mut small, 0, 1);
        assert!(small.size_bytes() < 200);
        assert!(
            allocated_bytes(small.file()) <= 8 << 10,
            "{}",
            allocated_bytes(small.file())
        );
        // A busy one reserves at most as much again as it holds.
        let mut busy = Segment::create(dir.path(), 1_000, 0).unwrap();
        let big = vec![7u8; 64 << 10];
        let mut offset = 1_000;
        while busy.size_bytes() < 4 << 20 {
            let mut bytes = build_batch(0, 0, &[&big]);
            batch::set_base_offset_and_epoch(&mut bytes, offset, 0);
            let header = batch::validate(&bytes).unwrap();
            busy.append(&[&bytes], &[header], POLICY).unwrap();
            offset += 1;
        }
        let allocated = allocated_bytes(busy.file());
        assert!(
            allocated <= 2 * busy.size_bytes() + (64 << 10),
            "{allocated} bytes allocated for {} of data",
            busy.size_bytes()
        );
        // Sealing gives the reservation back.
        busy.release_reservation().unwrap();
        assert!(allocated_bytes(busy.file()) <= busy.size_bytes() + (64 << 10));
        // preallocate=true reserves the whole segment size up front, as Kafka does.
        let mut whole = Segment::create(dir.path(), 5_000, 0).unwrap();
        whole.preallocate(8 << 20);
        let reserved = allocated_bytes(whole.file());
        assert!(reserved == 0 || reserved >= 8 << 20, "{reserved}");
    }

    #[test]
    fn indexes_written_and_loaded_match_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        append_batches(&mut segment, 0, 30);
        segment.write_indexes().unwrap();
        let mut loaded = Segment::open(dir.path(), 0, 0).unwrap();
        assert!(loaded.load_trusted(None).unwrap());
        assert_eq!(loaded.next_offset(), 30);
        assert_eq!(loaded.max_timestamp(), 1_029);
        let plan = loaded.time_read_plan(1_010);
        let (header, _) = plan.find_batch_by_timestamp(1_010, 0).unwrap().unwrap();
        assert_eq!(header.base_offset, 10);
        std::fs::write(dir.path().join("00000000000000000000.index"), [1, 2, 3]).unwrap();
        let mut broken = Segment::open(dir.path(), 0, 0).unwrap();
        assert!(!broken.load_trusted(None).unwrap());
    }
}
