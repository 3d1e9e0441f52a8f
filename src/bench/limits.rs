//! The machine's limits, measured in the same run as the workloads so every throughput can
//! be given as a fraction of what the hardware allows: sequential append bandwidth of the
//! data directory's disk (buffered, and with fdatasync after every MiB), sequential read
//! bandwidth with the file's pages dropped from the page cache, fsync latency of small
//! appends, the group-commit floor (below), and loopback TCP bandwidth.
//!
//! The group-commit floor is the latency a durable write would see on this device if
//! everything but the device were free: fdatasyncs of small in-place writes run back to
//! back for a few seconds (as a journal's rounds do under load), and a write arriving at any
//! moment waits for the fdatasync in progress to end and the next one to complete. Its
//! percentiles weight each fdatasync by how long it took, so the device's rare stalls,
//! which a per-call p99 of a few hundred samples hides, show up as the stalls every record
//! arriving during them sees.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::stats::{Latency, Percentiles, MIB_BYTES};

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
/// How long the group-commit floor probe runs back-to-back fdatasyncs, in milliseconds.
pub const GROUP_COMMIT_PROBE_MS_FULL: u64 = 5_000;
pub const GROUP_COMMIT_PROBE_MS_QUICK: u64 = 2_000;
/// The probe's file, written in place in `FSYNC_WRITE_BYTES` pieces (zero-filled first, so
/// its fdatasyncs need no metadata, like a preallocated journal file's).
const GROUP_COMMIT_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most fdatasyncs the probe records (about 20 s at 200 us each); it stops early beyond.
const GROUP_COMMIT_MAX_SYNCS: usize = 100_000;
/// Spacing of the simulated arrivals over the probe's time line, in microseconds.
const GROUP_COMMIT_ARRIVAL_STEP_US: u64 = 5;
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
    /// Group-commit floor (see the module doc): p50 and p99 of a write's wait for the
    /// fdatasync after the one in progress, fdatasyncs running back to back.
    pub group_commit_floor_p50_us: u64,
    pub group_commit_floor_p99_us: u64,
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
    let p = latency.percentiles().unwrap_or_default();
    Ok((p.p50_us, p.p99_us))
}

/// Runs fdatasyncs of 4 KiB in-place writes back to back for `duration` and returns each
/// one's (start, end) in microseconds since the probe started.
fn back_to_back_syncs(path: &Path, duration: Duration) -> io::Result<Vec<(u64, u64)>> {
    use std::os::unix::fs::FileExt;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; IO_CHUNK_BYTES];
    for _ in 0..GROUP_COMMIT_FILE_BYTES / IO_CHUNK_BYTES as u64 {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    let mut block = vec![0u8; FSYNC_WRITE_BYTES];
    fill_random(&mut block, 0x9c0_ff1e);
    let slots = GROUP_COMMIT_FILE_BYTES / FSYNC_WRITE_BYTES as u64;
    let micros = |start: Instant| u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let probe_start = Instant::now();
    let mut syncs = Vec::new();
    while probe_start.elapsed() < duration && syncs.len() < GROUP_COMMIT_MAX_SYNCS {
        let n = syncs.len() as u64;
        stamp_blocks(&mut block, n);
        file.write_all_at(&block, (n % slots) * FSYNC_WRITE_BYTES as u64)?;
        let start = micros(probe_start);
        file.sync_data()?;
        syncs.push((start, micros(probe_start)));
    }
    Ok(syncs)
}

/// The waits of writes arriving every `step_us` along a time line of back-to-back
/// fdatasyncs (sorted (start, end) pairs): one arriving at `t` while sync `i` runs (from its
/// start to the next one's) is made durable by sync `i + 1`, so it waits until that ends.
fn arrival_waits(syncs: &[(u64, u64)], step_us: u64) -> Latency {
    let mut waits = Latency::new();
    for pair in syncs.windows(2) {
        let ((start, _), (next_start, next_end)) = (pair[0], pair[1]);
        let mut t = start;
        while t < next_start {
            waits.record(next_end - t);
            t += step_us.max(1);
        }
    }
    waits
}

fn group_commit_floor(path: &Path, duration: Duration) -> io::Result<Percentiles> {
    let syncs = back_to_back_syncs(path, duration)?;
    Ok(arrival_waits(&syncs, GROUP_COMMIT_ARRIVAL_STEP_US)
        .percentiles()
        .unwrap_or_default())
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
    let (disk_bytes, fsync_samples, probe_ms, loopback_bytes) = if quick {
        (
            DISK_APPEND_BYTES_QUICK,
            FSYNC_SAMPLES_QUICK,
            GROUP_COMMIT_PROBE_MS_QUICK,
            LOOPBACK_BYTES_QUICK,
        )
    } else {
        (
            DISK_APPEND_BYTES_FULL,
            FSYNC_SAMPLES_FULL,
            GROUP_COMMIT_PROBE_MS_FULL,
            LOOPBACK_BYTES_FULL,
        )
    };
    let mut block = vec![0u8; IO_CHUNK_BYTES];
    fill_random(&mut block, 0xfe11_5eed);
    let buffered = dir.join("limits-append-buffered.tmp");
    let synced = dir.join("limits-append-fdatasync.tmp");
    let fsync_file = dir.join("limits-fsync.tmp");
    let floor_file = dir.join("limits-group-commit.tmp");
    let result = (|| {
        let disk_append_mib_s = append(&buffered, disk_bytes, false, &mut block)?;
        let disk_read_mib_s = read_back(&buffered)?;
        std::fs::remove_file(&buffered)?;
        let disk_append_fdatasync_mib_s = append(&synced, disk_bytes, true, &mut block)?;
        std::fs::remove_file(&synced)?;
        let (fsync_p50_us, fsync_p99_us) = fsync_latency(&fsync_file, fsync_samples)?;
        std::fs::remove_file(&fsync_file)?;
        let floor = group_commit_floor(&floor_file, Duration::from_millis(probe_ms))?;
        std::fs::remove_file(&floor_file)?;
        let loopback_mib_s = loopback(loopback_bytes)?;
        Ok(Limits {
            disk_append_mib_s,
            disk_append_fdatasync_mib_s,
            disk_read_mib_s,
            fsync_p50_us,
            fsync_p99_us,
            group_commit_floor_p50_us: floor.p50_us,
            group_commit_floor_p99_us: floor.p99_us,
            loopback_mib_s,
        })
    })();
    for path in [&buffered, &synced, &fsync_file, &floor_file] {
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

    /// (start, end) of `durations_us` run back to back from time 0.
    fn timeline(durations_us: &[u64]) -> Vec<(u64, u64)> {
        let mut at = 0;
        durations_us
            .iter()
            .map(|d| {
                let sync = (at, at + d);
                at += d;
                sync
            })
            .collect()
    }

    #[test]
    fn steady_syncs_make_writes_wait_between_one_and_two_of_them() {
        let waits = arrival_waits(&timeline(&[100; 1_000]), 1)
            .percentiles()
            .unwrap();
        assert!((145..=155).contains(&waits.p50_us), "{waits:?}");
        assert!((195..=200).contains(&waits.p99_us), "{waits:?}");
        assert_eq!(waits.max_us, 200);
    }

    #[test]
    fn one_stall_weighs_by_its_length_not_as_one_call() {
        // 1,000 syncs of 100 us and one of 10 ms: under 0.1% of calls, but 9% of the time,
        // so every write arriving during it or in the sync before waits milliseconds.
        let mut durations = vec![100; 1_000];
        durations[500] = 10_000;
        let waits = arrival_waits(&timeline(&durations), 1)
            .percentiles()
            .unwrap();
        assert!(waits.p50_us < 200, "{waits:?}");
        assert!(waits.p99_us >= 5_000, "{waits:?}");
        assert!(waits.max_us >= 10_000, "{waits:?}");
    }
}
