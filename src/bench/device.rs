//! The block device under the data directory: its count of completed flush requests from
//! `/proc/diskstats` (Linux 5.5+). Every fsync/fdatasync that reaches a disk with a volatile
//! write cache becomes one flush request, so the rate approximates fsyncs per second, but it
//! is device-wide: other processes' fsyncs and the filesystem journal's own flushes count too.
//! Per-process fsync counts are not exposed by `/proc` (`/proc/<pid>/io` has none).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Index of "flush requests completed" among the fields after the device name.
const FLUSHES_COMPLETED_FIELD: usize = 15;

/// A block device, found by the device number of a path on it.
#[derive(Debug, Clone)]
pub struct BlockDevice {
    major: u64,
    minor: u64,
    pub name: String,
}

impl BlockDevice {
    /// The device holding `path`, if `/proc/diskstats` lists it with flush counts (not for
    /// overlay, tmpfs or network filesystems).
    pub fn of(path: &Path) -> Option<BlockDevice> {
        let dev = std::fs::metadata(path).ok()?.dev();
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
        let (name, _) = find(&stats, major, minor)?;
        Some(BlockDevice { major, minor, name })
    }

    /// Flush requests completed since boot.
    pub fn flushes(&self) -> Option<u64> {
        let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
        find(&stats, self.major, self.minor).map(|(_, flushes)| flushes)
    }
}

/// The device's name and flush count in a `/proc/diskstats` text.
fn find(stats: &str, major: u64, minor: u64) -> Option<(String, u64)> {
    stats.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (ma, mi, name) = (fields.first()?, fields.get(1)?, fields.get(2)?);
        if ma.parse::<u64>().ok()? != major || mi.parse::<u64>().ok()? != minor {
            return None;
        }
        let flushes = fields.get(3 + FLUSHES_COMPLETED_FIELD)?.parse().ok()?;
        Some((name.to_string(), flushes))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_flush_counter() {
        let stats = "   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n \
                     254       0 vda 695077 16462 27411554 2765955 703393 200730 108060008 601209 0 195764 3416352 138555 25 92070088 32257 195842 16929\n \
                     254       1 old 1 2 3 4 5 6 7 8 9 10 11\n";
        assert_eq!(find(stats, 254, 0), Some(("vda".to_string(), 195_842)));
        assert_eq!(
            find(stats, 254, 1),
            None,
            "kernels before 5.5 have no flush fields"
        );
        assert_eq!(find(stats, 8, 0), None);
    }
}
