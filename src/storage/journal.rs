//! The durable-mode journal's files: one append-only file that every durable partition
//! writes a copy of its appends to, so that a single `fdatasync` makes a whole round of
//! appends durable, however many partitions they went to (group commit across partitions).
//! The partitions' segments stay the source of truth and keep Kafka's format; the journal
//! only has to cover what their own fsyncs have not yet covered, and is replayed into
//! them after a crash (`broker::journal` owns when files are written, synced, rotated and
//! deleted).
//!
//! A file is `<sequence>.journal` in the data directory's `journal/` folder (sequence as 20
//! digits, so names sort in write order), and holds entries back to back:
//!
//! ```text
//! length      u32 BE   bytes after the CRC field (ENTRY_FIXED_BYTES + batch bytes)
//! crc         u32 BE   CRC-32C of everything after this field
//! sequence    u64 BE   the file's sequence: tells this use of a recycled file from the last
//! topic_id    16 bytes the topic's UUID (a recreated topic of the same name differs)
//! partition   i32 BE
//! batches     bytes    whole record batches exactly as written to the segment
//! ```
//!
//! A crash can leave a torn entry at the end of the newest file; reading stops at the
//! first entry whose length or CRC does not hold, and at the first intact entry of another
//! sequence or an all-zero header (the clean end of a file written in place).
//!
//! Files after the first are written in place, into blocks that already exist: that lets
//! `fdatasync` skip the filesystem's metadata commit that every appending write needs,
//! which halves its latency on ext4 (measured in docs/performance.md). Such a file is
//! either created zero-filled (`JournalFile::create_zeroed`) or is a retired file whose
//! entries the segments no longer need, renamed to the new sequence
//! (`JournalFile::recycle`), which spares writing the zeros.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::fsync::{self, WriteBack};
use super::segment::write_all_vectored_at;

/// The folder, inside the data directory, that holds the journal files.
pub const JOURNAL_DIR: &str = "journal";
const EXTENSION: &str = "journal";
/// Sequence, topic id and partition: the part of an entry after the CRC that is not
/// batches.
const ENTRY_FIXED_BYTES: usize = 8 + 16 + 4;
/// Length and CRC fields plus the fixed part.
const ENTRY_HEADER_BYTES: usize = 4 + 4 + ENTRY_FIXED_BYTES;
/// Largest batch bytes one entry may carry. An entry is one append, which the broker's
/// request limits already keep far smaller; replay refuses anything larger as corrupt
/// rather than allocating it.
pub const MAX_ENTRY_BATCH_BYTES: usize = 1 << 30;
/// Bytes per read when a recycled file is read back into the page cache.
const RECYCLE_READ_CHUNK_BYTES: usize = 1 << 20;
/// Written after each entry inside preallocated bytes: reads as a clean end.
const END_MARK: [u8; ENTRY_HEADER_BYTES] = [0; ENTRY_HEADER_BYTES];
/// Zeros written per system call when a zero-filled file is created: one page, so the page
/// cache keeps small folios and an entry dirties (and accounts) only the pages it touches
/// (with 1 MiB writes, ext4 on Linux 6.18 made 1 MiB folios and every small entry counted
/// as 1 MiB written).
const ZERO_CHUNK_BYTES: usize = 4 << 10;
/// Zeros written back to the device (and waited for) at a time while a zero-filled file
/// is created: the device never holds more than this of the file's writes queued ahead of
/// the journal's own small writes and flushes, instead of the whole file at its final
/// fsync (16 MiB by default, which stalled durable acknowledgements for 10-16 ms).
const ZERO_WRITEBACK_STEP_BYTES: u64 = 256 << 10;

/// One appended run of batches, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub topic_id: Uuid,
    pub partition: i32,
    pub batches: Vec<u8>,
}

/// The journal file being appended to.
#[derive(Debug)]
pub struct JournalFile {
    path: PathBuf,
    file: Arc<File>,
    sequence: u64,
    /// Where the next entry goes: the bytes of entries written so far.
    size_bytes: u64,
    /// Bytes that existed when the file was taken into use (zero-filled or recycled; 0 for
    /// a plain appending file): entries within them overwrite in place.
    preallocated_bytes: u64,
}

impl JournalFile {
    /// Creates `<sequence>.journal` in `dir` (which must exist) and makes its name durable.
    pub fn create(dir: &Path, sequence: u64) -> io::Result<JournalFile> {
        let path = file_path(dir, sequence);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        fsync::sync_all(&File::open(dir)?)?;
        Ok(JournalFile {
            path,
            file: Arc::new(file),
            sequence,
            size_bytes: 0,
            preallocated_bytes: 0,
        })
    }

    /// Creates `<sequence>.journal` holding `zeroed_bytes` zeros, all durable, so that
    /// entries written into that range overwrite existing blocks.
    pub fn create_zeroed(dir: &Path, sequence: u64, zeroed_bytes: u64) -> io::Result<JournalFile> {
        let mut journal = JournalFile::create(dir, sequence)?;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES];
        let mut written = 0u64;
        let mut written_back = 0u64;
        while written < zeroed_bytes {
            let len = (zeroed_bytes - written).min(ZERO_CHUNK_BYTES as u64) as usize;
            write_all_vectored_at(&journal.file, &[&zeros[..len]], written)?;
            written += len as u64;
            if written - written_back >= ZERO_WRITEBACK_STEP_BYTES || written == zeroed_bytes {
                fsync::write_back(
                    &journal.file,
                    written_back,
                    written - written_back,
                    WriteBack::AndWait,
                )?;
                written_back = written;
            }
        }
        fsync::sync_all(&journal.file)?;
        journal.preallocated_bytes = zeroed_bytes;
        Ok(journal)
    }

    /// Takes a retired file whose entries are no longer needed into use again as
    /// `<sequence>.journal`: renamed (durably), then read once so that its pages are cached
    /// and the small writes into it never wait for a read. Its old entries carry another
    /// sequence, so reading stops where the new ones end.
    pub fn recycle(dir: &Path, old: &Path, sequence: u64) -> io::Result<JournalFile> {
        let path = file_path(dir, sequence);
        std::fs::rename(old, &path)?;
        fsync::sync_all(&File::open(dir)?)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let length = file.metadata()?.len();
        let mut chunk = vec![0u8; RECYCLE_READ_CHUNK_BYTES];
        let mut reader = &file;
        while reader.read(&mut chunk)? > 0 {}
        Ok(JournalFile {
            path,
            file: Arc::new(file),
            sequence,
            size_bytes: 0,
            preallocated_bytes: length,
        })
    }

    /// Bytes that existed when the file was taken into use (0 for an appending file).
    pub fn preallocated_bytes(&self) -> u64 {
        self.preallocated_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The open file, to fdatasync without holding whatever guards appends.
    pub fn handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Appends one entry with one `pwritev`. A failed write is cut back off the file; if
    /// even that fails the error says so and the file must not be appended to again.
    pub fn append(&mut self, topic_id: Uuid, partition: i32, batches: &[u8]) -> io::Result<()> {
        if batches.len() > MAX_ENTRY_BATCH_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a journal entry of {} batch bytes", batches.len()),
            ));
        }
        let header = entry_header(self.sequence, topic_id, partition, batches);
        // Inside preallocated bytes, a zero header after the entry marks the end, so that
        // reading never mistakes what a recycled file held there for a torn write.
        let end = self.size_bytes + (header.len() + batches.len()) as u64;
        let end_mark: &[u8] = if end + END_MARK.len() as u64 <= self.preallocated_bytes {
            &END_MARK
        } else {
            &[]
        };
        let parts: [&[u8]; 3] = [&header, batches, end_mark];
        match write_all_vectored_at(&self.file, &parts, self.size_bytes) {
            Ok(()) => {
                self.size_bytes += (header.len() + batches.len()) as u64;
                Ok(())
            }
            // Inside a zero-filled file the length stays: a half-written entry there fails
            // its CRC on replay and ends the file, and the next append overwrites it.
            Err(err) if self.size_bytes < self.preallocated_bytes => Err(err),
            Err(err) => match self.file.set_len(self.size_bytes) {
                Ok(()) => Err(err),
                Err(cut) => Err(io::Error::new(
                    cut.kind(),
                    format!("{err}; cutting the partial entry off failed too: {cut}"),
                )),
            },
        }
    }
}

fn entry_header(
    sequence: u64,
    topic_id: Uuid,
    partition: i32,
    batches: &[u8],
) -> [u8; ENTRY_HEADER_BYTES] {
    let mut header = [0u8; ENTRY_HEADER_BYTES];
    // Bounded by MAX_ENTRY_BATCH_BYTES (checked by the caller), so it fits a u32.
    let length = u32::try_from(ENTRY_FIXED_BYTES + batches.len()).unwrap_or(u32::MAX);
    header[0..4].copy_from_slice(&length.to_be_bytes());
    header[8..16].copy_from_slice(&sequence.to_be_bytes());
    header[16..32].copy_from_slice(topic_id.as_bytes());
    header[32..36].copy_from_slice(&partition.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[8..]), batches);
    header[4..8].copy_from_slice(&crc.to_be_bytes());
    header
}

fn file_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:020}.{EXTENSION}"))
}

/// The journal files in `dir`, oldest first, with their sequence numbers. Other files are
/// ignored.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let sequence = path
            .extension()
            .filter(|e| *e == EXTENSION)
            .and_then(|_| path.file_stem())
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(sequence) = sequence {
            files.push((sequence, path));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a journal file's entries in order.
pub struct EntryReader {
    reader: BufReader<File>,
    sequence: u64,
    remaining_bytes: u64,
    /// Bytes after the last good entry that did not form one (a write cut short, or what
    /// is left of a recycled file's earlier entries).
    torn_bytes: u64,
}

impl EntryReader {
    /// Opens the file that `list` gave with `sequence`.
    pub fn open(path: &Path, sequence: u64) -> io::Result<EntryReader> {
        let file = File::open(path)?;
        let remaining_bytes = file.metadata()?.len();
        Ok(EntryReader {
            reader: BufReader::with_capacity(1 << 20, file),
            sequence,
            remaining_bytes,
            torn_bytes: 0,
        })
    }

    /// Bytes at the end that were not a whole, intact entry (known once `next` returned
    /// `None`).
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// The next intact entry of this file's sequence, or `None` at the end: the end of
    /// the file, zeros, an intact entry of another sequence (a recycled file's past; all
    /// clean ends), or an entry whose length or CRC is wrong (from there on counts as
    /// torn).
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        if self.remaining_bytes < ENTRY_HEADER_BYTES as u64 {
            return Ok(self.stop());
        }
        let mut header = [0u8; ENTRY_HEADER_BYTES];
        self.reader.read_exact(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            // The zero-filled rest of a file: a clean end, nothing torn.
            self.remaining_bytes = 0;
            return Ok(None);
        }
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let fits = (ENTRY_FIXED_BYTES..=ENTRY_FIXED_BYTES + MAX_ENTRY_BATCH_BYTES)
            .contains(&length)
            && (length - ENTRY_FIXED_BYTES) as u64
                <= self.remaining_bytes - ENTRY_HEADER_BYTES as u64;
        if !fits {
            return Ok(self.stop());
        }
        let mut batches = vec![0u8; length - ENTRY_FIXED_BYTES];
        self.reader.read_exact(&mut batches)?;
        if crc32c::crc32c_append(crc32c::crc32c(&header[8..]), &batches) != crc {
            return Ok(self.stop());
        }
        let mut field = [0u8; 8];
        field.copy_from_slice(&header[8..16]);
        if u64::from_be_bytes(field) != self.sequence {
            self.remaining_bytes = 0;
            return Ok(None);
        }
        self.remaining_bytes -= (ENTRY_HEADER_BYTES + batches.len()) as u64;
        let mut id = [0u8; 16];
        id.copy_from_slice(&header[16..32]);
        Ok(Some(Entry {
            topic_id: Uuid::from_bytes(id),
            partition: i32::from_be_bytes([header[32], header[33], header[34], header[35]]),
            batches,
        }))
    }

    fn stop(&mut self) -> Option<Entry> {
        self.torn_bytes += self.remaining_bytes;
        self.remaining_bytes = 0;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(file: &JournalFile) -> (Vec<Entry>, u64) {
        let mut reader = EntryReader::open(file.path(), file.sequence()).unwrap();
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry().unwrap() {
            entries.push(entry);
        }
        (entries, reader.torn_bytes())
    }

    #[test]
    fn entries_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = JournalFile::create(dir.path(), 7).unwrap();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        file.append(a, 0, b"first").unwrap();
        file.append(b, 3, b"").unwrap();
        file.append(a, 1, &[9u8; 70_000]).unwrap();
        let (entries, torn) = read_all(&file);
        assert_eq!(torn, 0);
        assert_eq!(entries.len(), 3);
        assert_eq!((entries[0].topic_id, entries[0].partition), (a, 0));
        assert_eq!(entries[0].batches, b"first");
        assert_eq!((entries[1].topic_id, entries[1].partition), (b, 3));
        assert_eq!(entries[2].batches, vec![9u8; 70_000]);
        assert_eq!(
            file.size_bytes(),
            std::fs::metadata(file.path()).unwrap().len()
        );
    }

    #[test]
    fn reading_stops_at_a_torn_or_corrupt_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = JournalFile::create(dir.path(), 1).unwrap();
        let topic = Uuid::new_v4();
        file.append(topic, 0, b"kept").unwrap();
        let good_len = file.size_bytes();
        file.append(topic, 0, b"torn away").unwrap();
        // A crash that kept only part of the second entry.
        let handle = file.handle();
        handle.set_len(good_len + 10).unwrap();
        let (entries, torn) = read_all(&file);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].batches, b"kept");
        assert_eq!(torn, 10);

        // A whole entry whose bytes changed: its CRC fails, and nothing after it is read.
        handle.set_len(good_len).unwrap();
        let mut file = JournalFile {
            size_bytes: good_len,
            ..file
        };
        file.append(topic, 0, b"flipped").unwrap();
        file.append(topic, 0, b"after").unwrap();
        let mut bytes = std::fs::read(file.path()).unwrap();
        let last = good_len as usize + ENTRY_HEADER_BYTES;
        bytes[last] ^= 1;
        std::fs::write(file.path(), &bytes).unwrap();
        let (entries, torn) = read_all(&file);
        assert_eq!(entries.len(), 1);
        assert_eq!(torn, bytes.len() as u64 - good_len);
    }

    #[test]
    fn a_zero_filled_file_keeps_its_length_and_ends_cleanly_after_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = JournalFile::create_zeroed(dir.path(), 2, 3 << 20).unwrap();
        let topic = Uuid::new_v4();
        file.append(topic, 1, b"one").unwrap();
        file.append(topic, 2, b"two").unwrap();
        assert_eq!(std::fs::metadata(file.path()).unwrap().len(), 3 << 20);
        let (entries, torn) = read_all(&file);
        assert_eq!(torn, 0);
        let values: Vec<&[u8]> = entries.iter().map(|e| e.batches.as_slice()).collect();
        assert_eq!(values, vec![b"one".as_slice(), b"two".as_slice()]);
    }

    #[test]
    fn zero_filling_in_writeback_steps_covers_a_size_that_is_not_a_multiple_of_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let zeroed_bytes = 2 * ZERO_WRITEBACK_STEP_BYTES + ZERO_CHUNK_BYTES as u64 + 512;
        let file = JournalFile::create_zeroed(dir.path(), 3, zeroed_bytes).unwrap();
        assert_eq!(file.preallocated_bytes(), zeroed_bytes);
        let bytes = std::fs::read(file.path()).unwrap();
        assert_eq!(bytes.len() as u64, zeroed_bytes);
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_recycled_file_reads_only_its_new_entries() {
        let dir = tempfile::tempdir().unwrap();
        let topic = Uuid::new_v4();
        let mut old = JournalFile::create_zeroed(dir.path(), 4, 1 << 20).unwrap();
        for value in [b"old-1", b"old-2", b"old-3"] {
            old.append(topic, 0, value).unwrap();
        }
        let old_path = old.path().to_path_buf();
        drop(old);
        let mut file = JournalFile::recycle(dir.path(), &old_path, 9).unwrap();
        assert!(!old_path.exists());
        assert_eq!(file.preallocated_bytes(), 1 << 20);
        file.append(topic, 1, b"new").unwrap();
        let (entries, torn) = read_all(&file);
        assert_eq!(entries.len(), 1, "the old entries carry sequence 4");
        assert_eq!(entries[0].batches, b"new");
        assert_eq!(torn, 0);
        let listed: Vec<u64> = list(dir.path()).unwrap().iter().map(|f| f.0).collect();
        assert_eq!(listed, vec![9]);
    }

    #[test]
    fn an_intact_entry_of_an_earlier_use_ends_a_recycled_file() {
        let dir = tempfile::tempdir().unwrap();
        let topic = Uuid::new_v4();
        let mut old = JournalFile::create(dir.path(), 4).unwrap();
        for value in [b"aaaaa", b"bbbbb", b"ccccc"] {
            old.append(topic, 0, value).unwrap();
        }
        let old_path = old.path().to_path_buf();
        let old_bytes = std::fs::read(&old_path).unwrap();
        drop(old);
        let mut file = JournalFile::recycle(dir.path(), &old_path, 9).unwrap();
        file.append(topic, 0, b"xxxxx").unwrap();
        // A crash kept the new entry's page but not the end mark's: the old entry after it
        // is intact, with sequence 4.
        let entry = file.size_bytes() as usize;
        let mut bytes = std::fs::read(file.path()).unwrap();
        bytes[entry..entry + END_MARK.len()]
            .copy_from_slice(&old_bytes[entry..entry + END_MARK.len()]);
        std::fs::write(file.path(), &bytes).unwrap();
        let (entries, torn) = read_all(&file);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].batches, b"xxxxx");
        assert_eq!(torn, 0);
    }

    #[test]
    fn a_length_beyond_the_file_is_not_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let file = JournalFile::create(dir.path(), 1).unwrap();
        let mut header = entry_header(1, Uuid::new_v4(), 0, b"");
        header[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        std::fs::write(file.path(), header).unwrap();
        let (entries, torn) = read_all(&file);
        assert!(entries.is_empty());
        assert_eq!(torn, ENTRY_HEADER_BYTES as u64);
    }

    #[test]
    fn files_list_in_sequence_order_and_others_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for sequence in [12, 3, 100] {
            JournalFile::create(dir.path(), sequence).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let sequences: Vec<u64> = list(dir.path()).unwrap().iter().map(|f| f.0).collect();
        assert_eq!(sequences, vec![3, 12, 100]);
        assert!(
            JournalFile::create(dir.path(), 3).is_err(),
            "never reuses a file"
        );
    }
}
