//! Reading a closed segment's batches in order through one reusable buffer of
//! `log.cleaner.io.buffer.size` bytes, grown for a larger batch up to a limit (Kafka's
//! cleaner grows its buffers to the largest batch the topic allows, and fails beyond).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::super::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use super::super::error::StorageError;
use super::super::log::SourceSegment;
use super::super::segment;

/// A cursor over one segment's batches.
pub struct BatchSource<'a> {
    file: &'a File,
    path: PathBuf,
    /// Readable bytes of the segment (its size when the pass began).
    end_position: u64,
    /// File position of `buffer[0]`.
    buffer_start: u64,
    buffer: Vec<u8>,
    /// Next batch's file position.
    position: u64,
    /// Largest batch the buffer may grow to hold, in bytes.
    max_batch_bytes: usize,
    read_bytes: u64,
}

impl<'a> BatchSource<'a> {
    /// A cursor at the start of `segment`, reading `io_buffer_bytes` at a time.
    pub fn new(
        dir: &Path,
        segment: &'a SourceSegment,
        io_buffer_bytes: usize,
        max_batch_bytes: usize,
    ) -> Self {
        BatchSource {
            file: &segment.file,
            path: segment::file_path(dir, segment.base_offset, "log", ""),
            end_position: segment.size_bytes,
            buffer_start: 0,
            buffer: Vec::with_capacity(io_buffer_bytes.max(BATCH_HEADER_BYTES)),
            position: 0,
            max_batch_bytes: max_batch_bytes.max(io_buffer_bytes),
            read_bytes: 0,
        }
    }

    /// Bytes read from the file so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Makes `[position, position + len)` of the file available in the buffer.
    fn fill(&mut self, len: usize) -> Result<(), StorageError> {
        let buffered_end = self.buffer_start + self.buffer.len() as u64;
        if self.position >= self.buffer_start && self.position + len as u64 <= buffered_end {
            return Ok(());
        }
        let want = len.max(self.buffer.capacity());
        let available = self.end_position.saturating_sub(self.position);
        let read = usize::try_from(available).map_or(want, |a| a.min(want));
        self.buffer.resize(read, 0);
        self.file
            .read_exact_at(&mut self.buffer, self.position)
            .map_err(|e| StorageError::io("read a segment to clean", &self.path, e))?;
        self.read_bytes += read as u64;
        self.buffer_start = self.position;
        Ok(())
    }

    /// The next batch, CRC checked, or `None` at the end of the segment.
    pub fn next_batch(&mut self) -> Result<Option<(BatchHeader, &[u8])>, StorageError> {
        if self.position + BATCH_HEADER_BYTES as u64 > self.end_position {
            return Ok(None);
        }
        self.fill(BATCH_HEADER_BYTES)?;
        let at = (self.position - self.buffer_start) as usize;
        let header = BatchHeader::parse_prefix(&self.buffer[at..])?;
        let total = header.total_bytes();
        if total > self.max_batch_bytes {
            return Err(StorageError::RecordTooLarge {
                batch_bytes: total,
                max_message_bytes: self.max_batch_bytes,
            });
        }
        if self.position + total as u64 > self.end_position {
            return Err(StorageError::InvalidRecord {
                reason: "a batch runs past the end of its segment",
            });
        }
        self.fill(total)?;
        let at = (self.position - self.buffer_start) as usize;
        let bytes = &self.buffer[at..at + total];
        let header = batch::validate(bytes)?;
        self.position += total as u64;
        Ok(Some((header, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::batch::test_support::build_batch;

    /// A segment file holding one batch of `value_bytes`, then one small batch.
    fn segment(dir: &Path, value_bytes: usize) -> SourceSegment {
        let big = vec![b'x'; value_bytes];
        let mut first = build_batch(0, 1, &[&big]);
        batch::set_base_offset_and_epoch(&mut first, 0, 0);
        let mut second = build_batch(0, 2, &[b"small"]);
        batch::set_base_offset_and_epoch(&mut second, 1, 0);
        let path = segment::file_path(dir, 0, "log", "");
        std::fs::write(&path, [first, second].concat()).unwrap();
        let file = File::open(&path).unwrap();
        SourceSegment {
            base_offset: 0,
            next_offset: 2,
            size_bytes: file.metadata().unwrap().len(),
            max_timestamp: 2,
            file: Arc::new(file),
        }
    }

    #[test]
    fn the_buffer_grows_for_a_batch_up_to_its_limit_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let source_segment = segment(dir.path(), 10_000);
        // A 4 KiB buffer grows to read the 10 KB batch when the limit allows it.
        let mut source = BatchSource::new(dir.path(), &source_segment, 4_096, 64 * 1024);
        let offsets: Vec<i64> =
            std::iter::from_fn(|| source.next_batch().unwrap().map(|(h, _)| h.base_offset))
                .collect();
        assert_eq!(offsets, vec![0, 1]);
        // The first 4 KiB are read again when the buffer grows for the large batch.
        let read = source.read_bytes();
        assert!(
            (source_segment.size_bytes..=source_segment.size_bytes + 4_096).contains(&read),
            "read {read} bytes"
        );
        // With the limit at the buffer size, the large batch is refused, not read.
        let mut source = BatchSource::new(dir.path(), &source_segment, 4_096, 4_096);
        assert!(matches!(
            source.next_batch(),
            Err(StorageError::RecordTooLarge {
                max_message_bytes: 4_096,
                ..
            })
        ));
    }
}
