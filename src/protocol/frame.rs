//! Outgoing response frames as a list of chunks: encoded bytes, and regions of segment
//! files (the record data of Fetch responses) that the connection sends straight from the
//! page cache with `sendfile`, or, when small, reads into its write buffer
//! (`network/connection.rs`).

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

/// A byte range of a segment file.
#[derive(Debug, Clone)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

impl FileRegion {
    /// Appends the region's bytes to `out` (a plain read, for small regions and tests).
    pub fn read_into(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let start = out.len();
        out.resize(start + self.len, 0);
        let read = self.file.read_exact_at(&mut out[start..], self.position);
        if read.is_err() {
            out.truncate(start);
        }
        read
    }
}

/// One piece of an outgoing frame.
#[derive(Debug, Clone)]
pub enum Chunk {
    Bytes(Bytes),
    File(FileRegion),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(bytes) => bytes.len(),
            Chunk::File(region) => region.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A complete response frame (size prefix included) in order.
#[derive(Debug, Clone, Default)]
pub struct OutFrame {
    pub chunks: Vec<Chunk>,
}

impl OutFrame {
    /// A frame held entirely in memory.
    pub fn from_bytes(bytes: Bytes) -> OutFrame {
        OutFrame {
            chunks: vec![Chunk::Bytes(bytes)],
        }
    }

    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame's bytes, reading file regions (for tests and for peers without sendfile).
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len());
        for chunk in &self.chunks {
            match chunk {
                Chunk::Bytes(bytes) => out.extend_from_slice(bytes),
                Chunk::File(region) => region.read_into(&mut out)?,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_region_reads_its_bytes_and_a_short_file_leaves_the_buffer_as_it_was() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let file = Arc::new(file);
        let mut out = b"ab".to_vec();
        let region = FileRegion {
            file: Arc::clone(&file),
            position: 3,
            len: 4,
        };
        region.read_into(&mut out).unwrap();
        assert_eq!(out, b"ab3456");
        let past_the_end = FileRegion {
            file,
            position: 8,
            len: 4,
        };
        assert!(past_the_end.read_into(&mut out).is_err());
        assert_eq!(out, b"ab3456");
    }
}
