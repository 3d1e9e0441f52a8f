//! Every fsync the storage layer issues goes through here, so the broker can say how many
//! it did (the SIGUSR1 report, and `ferry bench`'s fsyncs per second): Linux exposes no
//! per-process fsync count. The count is process-wide, like the system calls it counts.
//! Also the one place that asks for writeback without durability (`write_back`), which is
//! not counted: it flushes no device cache.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// `fdatasync`: the file's data and the metadata needed to read it back.
pub fn sync_data(file: &File) -> std::io::Result<()> {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_data()
}

/// `fsync`: the file's data and all its metadata (also used on directories).
pub fn sync_all(file: &File) -> std::io::Result<()> {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_all()
}

/// How far `write_back` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    /// Queue the writes and return (`SYNC_FILE_RANGE_WRITE`). Does not consume a writeback
    /// error: a later fdatasync still reports it (only the waiting flags advance the
    /// file's error cursor).
    Start,
    /// Queue them and wait until they reached the device (both wait flags as well).
    AndWait,
}

/// `sync_file_range`: sends `len_bytes` of `file` from `offset_bytes` (0 and 0: the whole
/// file) from the page cache to the device. No device cache flush and no metadata, so
/// nothing becomes durable by itself; a later fsync has that much less left to write.
pub fn write_back(
    file: &File,
    offset_bytes: u64,
    len_bytes: u64,
    how: WriteBack,
) -> std::io::Result<()> {
    let flags = match how {
        WriteBack::Start => libc::SYNC_FILE_RANGE_WRITE,
        WriteBack::AndWait => {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        }
    };
    let (offset, len) = (
        i64::try_from(offset_bytes).map_err(std::io::Error::other)?,
        i64::try_from(len_bytes).map_err(std::io::Error::other)?,
    );
    // SAFETY: the descriptor is open (borrowed from `file`) and no memory is passed.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// fsync and fdatasync calls since the process started, failed ones included.
pub fn fsyncs_so_far() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let before = fsyncs_so_far();
        sync_data(&file).unwrap();
        sync_all(&file).unwrap();
        // Other tests may fsync concurrently, so at least the two calls made here.
        assert!(fsyncs_so_far() >= before + 2);
    }

    #[test]
    fn write_back_takes_ranges_and_refuses_offsets_the_kernel_cannot_represent() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        std::io::Write::write_all(&mut file, &[7u8; 8192]).unwrap();
        write_back(&file, 0, 0, WriteBack::Start).unwrap();
        write_back(&file, 4096, 4096, WriteBack::AndWait).unwrap();
        let error = write_back(&file, u64::MAX, 1, WriteBack::AndWait).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::Other);
    }
}
