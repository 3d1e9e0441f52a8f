//! Outgoing response frames as a list of chunks: encoded bytes, and regions of segment
//! files that the connection sends straight from the page cache with `sendfile` (the record
//! data of Fetch responses), so record bytes are never copied through user space.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

/// A byte range of a segment file, sent with `sendfile`.
#[derive(Debug, Clone)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
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
        use std::os::unix::fs::FileExt;
        let mut out = Vec::with_capacity(self.len());
        for chunk in &self.chunks {
            match chunk {
                Chunk::Bytes(bytes) => out.extend_from_slice(bytes),
                Chunk::File(region) => {
                    let start = out.len();
                    out.resize(start + region.len, 0);
                    region
                        .file
                        .read_exact_at(&mut out[start..], region.position)?;
                }
            }
        }
        Ok(out)
    }
}
