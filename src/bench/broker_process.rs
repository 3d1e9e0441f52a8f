//! The broker under test as a process: starting a fresh Ferry (this same executable, `serve`
//! on an ephemeral port), waiting for its ready line, stopping it with SIGTERM, and reading
//! its CPU time, memory and disk traffic from `/proc/<pid>` (which works for any broker
//! process on this machine, Ferry or not).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest a started broker may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a broker may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// What Ferry prints once it listens.
const READY_MARKER: &str = "ready to accept connections on ";
/// Clock ticks per second assumed when `sysconf(_SC_CLK_TCK)` fails.
const DEFAULT_CLOCK_TICKS_PER_S: f64 = 100.0;

/// Reads a process's counters from `/proc/<pid>`.
#[derive(Debug, Clone)]
pub struct ProcessProbe {
    pid: u32,
    clock_ticks_per_s: f64,
}

/// Cumulative disk traffic of a process (`/proc/<pid>/io`): bytes it caused to be read from
/// or written to storage, page-cache hits excluded.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskBytes {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl ProcessProbe {
    pub fn new(pid: u32) -> ProcessProbe {
        // SAFETY: sysconf only reads its integer argument.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ProcessProbe {
            pid,
            clock_ticks_per_s: if ticks > 0 {
                ticks as f64
            } else {
                DEFAULT_CLOCK_TICKS_PER_S
            },
        }
    }

    /// This process (the harness and its librdkafka clients).
    pub fn this_process() -> ProcessProbe {
        ProcessProbe::new(std::process::id())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn proc_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.pid)).ok()
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = self.proc_file("stat")?;
        // Fields after the command name (which may contain spaces) start at field 3.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / self.clock_ticks_per_s)
    }

    fn status_kib(&self, key: &str) -> Option<u64> {
        let status = self.proc_file("status")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS")
    }

    /// Peak resident set size since start or the last [`ProcessProbe::reset_peak_rss`].
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM")
    }

    /// Resets the peak RSS to the current RSS (`echo 5 > /proc/<pid>/clear_refs`); false
    /// when not permitted.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    pub fn disk_bytes(&self) -> Option<DiskBytes> {
        let io = self.proc_file("io")?;
        let field = |key: &str| -> Option<u64> {
            io.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.trim().parse().ok())
        };
        Some(DiskBytes {
            read_bytes: field("read_bytes:")?,
            write_bytes: field("write_bytes:")?,
        })
    }

    pub fn is_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// A Ferry broker started by the harness. Killed (SIGKILL) when dropped unless stopped.
pub struct BrokerProcess {
    child: Option<Child>,
    pub bootstrap: String,
    /// The SASL_SSL listener's address, when the broker has one (W9).
    pub secure_bootstrap: Option<String>,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    /// How far the log has been scanned for warnings and errors.
    log_scanned_bytes: u64,
}

impl BrokerProcess {
    /// Re-executes this executable as `ferry serve` on 127.0.0.1 (ephemeral port) with a
    /// fresh `data_dir` and `extra_args` (`--override` pairs); its log (stderr) goes to
    /// `log_path`.
    pub fn start(
        data_dir: &Path,
        log_path: &Path,
        extra_args: &[String],
    ) -> Result<BrokerProcess, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let log = File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut command = Command::new(&exe);
        command.arg("serve");
        // W9's listeners come as an override; a `--listen` flag would replace them.
        if !extra_args.iter().any(|a| a.starts_with("listeners=")) {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            // W7 measures the cleaner within a phase of seconds: look for work every
            // second instead of Kafka's 15 (no other workload has a compacted topic to
            // clean; the internal topics' 100 MiB segments never fill in a run).
            .args(["--override", "log.cleaner.backoff.ms=1000"])
            // A deleted phase topic's files go at once, not a minute later: unthrottled
            // phases write tens of GiB each (the harness deletes each topic when done).
            .args(["--override", "log.segment.delete.delay.ms=1000"])
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe
        // system call: the broker gets SIGTERM if the harness dies first.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {} serve: {e}", exe.display()))?;
        let mut broker = BrokerProcess {
            child: Some(child),
            bootstrap: String::new(),
            secure_bootstrap: None,
            data_dir: data_dir.to_path_buf(),
            log_path: log_path.to_path_buf(),
            log_scanned_bytes: 0,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            if let Some(rest) = log.split(READY_MARKER).nth(1) {
                // "listener SASL_SSL (SASL_SSL) on ADDRESS"
                broker.secure_bootstrap = log
                    .split(" listener SASL_SSL (SASL_SSL) on ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string);
                broker.bootstrap = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Ok(broker);
            }
            if let Some(status) = broker.try_exit_status() {
                return Err(format!(
                    "the broker exited before it was ready ({status}); its log:\n{log}"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the broker was not ready within {READY_TIMEOUT:?}; its log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Whole lines the broker logged since the last call.
    pub fn new_log_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = File::open(&self.log_path) else {
            return Vec::new();
        };
        let mut text = String::new();
        if file.seek(SeekFrom::Start(self.log_scanned_bytes)).is_err()
            || file.read_to_string(&mut text).is_err()
        {
            return Vec::new();
        }
        // Only whole lines; a partial last line is read next time.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        self.log_scanned_bytes += complete as u64;
        text[..complete].lines().map(str::to_string).collect()
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("the broker was already stopped".to_string());
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill only sends a signal to our own child, which has not been reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the broker did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed"
                    ));
                }
            }
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_this_process() {
        let probe = ProcessProbe::this_process();
        assert!(probe.cpu_seconds().is_some());
        assert!(probe.rss_kib().unwrap() > 0);
        assert!(probe.peak_rss_kib().unwrap() >= probe.rss_kib().unwrap() / 2);
        assert!(probe.is_alive());
    }
}
