//! The machine's limits, measured in the same run as the workloads so every throughput can
//! be given as a fraction of what the hardware allows: sequential append bandwidth of the
//! data directory's disk (buffered, and with fdatasync after every MiB), sequential read
//! bandwidth with the file's pages dropped from the page cache, fsync latency of small
//! appends, and loopback TCP bandwidth.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::stats::{Latency, MIB_BYTES};

/// Size of every write and read of the disk and loopback measurements.
pub const IO_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes appended (then read back) for the disk bandwidth figures.
pub const DISK_APPEND_BYTES_FULL: u64 = 512 * 1024 * 1024;
pub const DISK_APPEND_BYTES_QUICK: u64 = 64 * 1024 * 1024;
/// Size of each append in the fsync latency measurement.
pub const FSYNC_WRITE_BYTES: usize = 4096;
/// Number of 4 KiB append + fdatasync samples.
pub const FSYNC_SAMPLES_FULL: usize = 200;
pub const FSYNC_SAMPLES_QUICK: usize = 50;
/// Bytes sent through one loopback TCP connection.
pub const LOOPBACK_BYTES_FULL: u64 = 2 * 1024 * 1024 * 1024;
pub const LOOPBACK_BYTES_QUICK: u64 = 256 * 1024 * 1024;
/// Bytes after which a random block gets a fresh stamp, so no two blocks on disk are equal.
const UNIQUE_BLOCK_BYTES: usize = 4096;

/// What the machine can do, in MiB/s and microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Buffered 1 MiB appends, timed until one final fdatasync returned.
    pub disk_append_mib_s: f64,
    /// 1 MiB appends each followed by fdatasync.
    pub disk_append_fdatasync_mib_s: f64,
    /// Sequential 1 MiB reads of a file whose pages were dropped from the page cache;
    /// `None` when dropping them failed (the figure would be the page cache's).
    pub disk_read_mib_s: Option<f64>,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub loopback_mib_s: f64,
}

/// Fills `buf` with xorshift64 output: incompressible, and cheap enough to make once.
pub fn fill_random(buf: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Stamps `counter` into the first bytes of every 4 KiB block so repeated writes of the
/// same random buffer never produce two equal blocks (no dedup or compression can help).
fn stamp_blocks(buf: &mut [u8], counter: u64) {
    for (i, block) in buf.chunks_mut(UNIQUE_BLOCK_BYTES).enumerate() {
        let tag = counter.wrapping_mul(1 << 20).wrapping_add(i as u64);
        let len = block.len().min(8);
        block[..len].copy_from_slice(&tag.to_le_bytes()[..len]);
    }
}

/// Asks the kernel to drop the file's cached pages (they must be clean: sync first).
pub fn drop_page_cache(file: &File) -> io::Result<()> {
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB_BYTES / elapsed.as_secs_f64().max(1e-9)
}

/// Appends `total` bytes in 1 MiB writes; fdatasync after each write or once at the end.
fn append(path: &Path, total: u64, sync_each: bool, block: &mut [u8]) -> io::Result<f64> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let start = Instant::now();
    let mut written = 0u64;
    let mut counter = 0u64;
    while written < total {
        stamp_blocks(block, counter);
        counter += 1;
        file.write_all(block)?;
        written += block.len() as u64;
        if sync_each {
            file.sync_data()?;
        }
    }
    file.sync_data()?;
    Ok(mib_per_s(written, start.elapsed()))
}

/// Drops the file's pages, then reads it sequentially in 1 MiB reads.
fn read_back(path: &Path) -> io::Result<Option<f64>> {
    let mut file = File::open(path)?;
    if drop_page_cache(&file).is_err() {
        return Ok(None);
    }
    let mut buf = vec![0u8; IO_CHUNK_BYTES];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(Some(mib_per_s(total, start.elapsed())))
}

fn fsync_latency(path: &Path, samples: usize) -> io::Result<(u64, u64)> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let mut block = vec![0u8; FSYNC_WRITE_BYTES];
    fill_random(&mut block, 0x05ee_df5c);
    let mut latency = Latency::new();
    for i in 0..samples {
        stamp_blocks(&mut block, i as u64);
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        latency.record(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let p = latency.percentiles().unwrap_or(super::stats::Percentiles {
        count: 0,
        p50_us: 0,
        p99_us: 0,
        p999_us: 0,
        max_us: 0,
    });
    Ok((p.p50_us, p.p99_us))
}

fn loopback(total: u64) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = std::thread::spawn(move || -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        let mut buf = vec![0u8; IO_CHUNK_BYTES];
        fill_random(&mut buf, 0x100b);
        let mut sent = 0u64;
        while sent < total {
            stream.write_all(&buf)?;
            sent += buf.len() as u64;
        }
        Ok(())
    });
    let (mut stream, _) = listener.accept()?;
    let mut buf = vec![0u8; IO_CHUNK_BYTES];
    let start = Instant::now();
    let mut received = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let elapsed = start.elapsed();
    sender
        .join()
        .map_err(|_| io::Error::other("loopback sender panicked"))??;
    Ok(mib_per_s(received, elapsed))
}

/// Measures everything, with scratch files in `dir` (on the data directory's filesystem);
/// the files are removed afterwards.
pub fn measure(dir: &Path, quick: bool) -> io::Result<Limits> {
    let (disk_bytes, fsync_samples, loopback_bytes) = if quick {
        (
            DISK_APPEND_BYTES_QUICK,
            FSYNC_SAMPLES_QUICK,
            LOOPBACK_BYTES_QUICK,
        )
    } else {
        (
            DISK_APPEND_BYTES_FULL,
            FSYNC_SAMPLES_FULL,
            LOOPBACK_BYTES_FULL,
        )
    };
    let mut block = vec![0u8; IO_CHUNK_BYTES];
    fill_random(&mut block, 0xfe11_5eed);
    let buffered = dir.join("limits-append-buffered.tmp");
    let synced = dir.join("limits-append-fdatasync.tmp");
    let fsync_file = dir.join("limits-fsync.tmp");
    let result = (|| {
        let disk_append_mib_s = append(&buffered, disk_bytes, false, &mut block)?;
        let disk_read_mib_s = read_back(&buffered)?;
        std::fs::remove_file(&buffered)?;
        let disk_append_fdatasync_mib_s = append(&synced, disk_bytes, true, &mut block)?;
        std::fs::remove_file(&synced)?;
        let (fsync_p50_us, fsync_p99_us) = fsync_latency(&fsync_file, fsync_samples)?;
        std::fs::remove_file(&fsync_file)?;
        let loopback_mib_s = loopback(loopback_bytes)?;
        Ok(Limits {
            disk_append_mib_s,
            disk_append_fdatasync_mib_s,
            disk_read_mib_s,
            fsync_p50_us,
            fsync_p99_us,
            loopback_mib_s,
        })
    })();
    for path in [&buffered, &synced, &fsync_file] {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_blocks_are_distinct_after_stamping() {
        let mut a = vec![0u8; 2 * UNIQUE_BLOCK_BYTES];
        fill_random(&mut a, 42);
        assert_ne!(a[..UNIQUE_BLOCK_BYTES], a[UNIQUE_BLOCK_BYTES..]);
        let mut b = a.clone();
        stamp_blocks(&mut a, 1);
        stamp_blocks(&mut b, 2);
        assert_ne!(a[..8], b[..8]);
        assert_eq!(a[8..UNIQUE_BLOCK_BYTES], b[8..UNIQUE_BLOCK_BYTES]);
        // Odd lengths are filled too.
        let mut odd = vec![0u8; 13];
        fill_random(&mut odd, 7);
        assert!(odd[8..].iter().any(|&x| x != 0));
    }
}
