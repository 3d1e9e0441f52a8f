//! Every fsync the storage layer issues goes through here, so the broker can say how many
//! it did (the SIGUSR1 report, and `ferry bench`'s fsyncs per second): Linux exposes no
//! per-process fsync count. The count is process-wide, like the system calls it counts.

use std::fs::File;
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
}
