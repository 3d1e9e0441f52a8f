//! How much the machine itself disturbed a phase, independent of any broker: CPU time the
//! hypervisor stole from this virtual machine (`/proc/stat`), and how late a thread that
//! only sleeps wakes up (a "hiccup" meter: the latency floor any process on the machine
//! sees at that moment). A broker's tail latency cannot be read below these. Also the
//! harness's own punctuality: fixed-rate sends sleep with the finest timer slack.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::stats::{Latency, Percentiles};

/// How long the hiccup meter asks to sleep each time; its figure is the oversleep.
pub const HICCUP_SLEEP: Duration = Duration::from_millis(1);

/// Jiffies of all CPUs together from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Time this machine's virtual CPUs wanted to run but the hypervisor ran something else.
    pub steal: u64,
    /// Every state (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total: u64,
}

impl CpuTicks {
    pub fn now() -> Option<CpuTicks> {
        parse_cpu_line(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Share of all CPU time between `self` (earlier) and `later` that was stolen.
    pub fn steal_fraction_until(self, later: CpuTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq steal [guest...].
/// Guest time is already counted in user and nice, so it is left out of the total.
fn parse_cpu_line(stat: &str) -> Option<CpuTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 8 {
        return None;
    }
    Some(CpuTicks {
        steal: fields[7],
        total: fields.iter().sum(),
    })
}

/// A thread sleeping `HICCUP_SLEEP` at a time and recording by how much each wake-up came
/// late, until stopped.
pub struct HiccupMeter {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Latency>,
}

impl HiccupMeter {
    pub fn start() -> HiccupMeter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut late = Latency::new();
            while !flag.load(Ordering::Acquire) {
                let asked = Instant::now();
                thread::sleep(HICCUP_SLEEP);
                let overslept = asked.elapsed().saturating_sub(HICCUP_SLEEP);
                late.record(u64::try_from(overslept.as_micros()).unwrap_or(u64::MAX));
            }
            late
        });
        HiccupMeter { stop, thread }
    }

    /// Stops the meter; `None` if it recorded nothing or its thread died.
    pub fn finish(self) -> Option<Percentiles> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().ok()?.percentiles()
    }
}

/// While alive, this thread's sleeps end as close to their deadline as the kernel can: its
/// timer slack is 1 ns instead of Linux's default 50 us, which lets every sleep end up to
/// 50 us late. A fixed-rate producer sleeps until each record is due and its latencies
/// count from that instant, so the default slack would add the load generator's own
/// lateness to every figure. The previous slack is restored on drop.
pub struct PunctualSleeps {
    previous_slack_ns: Option<libc::c_ulong>,
}

impl PunctualSleeps {
    const SLACK_NS: libc::c_ulong = 1;

    pub fn start() -> PunctualSleeps {
        // SAFETY: PR_GET_TIMERSLACK takes no pointers and returns this thread's slack (or
        // -1 on error).
        let previous = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        let previous_slack_ns = libc::c_ulong::try_from(previous).ok();
        if previous_slack_ns.is_some() {
            set_timer_slack_ns(Self::SLACK_NS);
        }
        PunctualSleeps { previous_slack_ns }
    }
}

impl Drop for PunctualSleeps {
    fn drop(&mut self) {
        if let Some(previous) = self.previous_slack_ns {
            set_timer_slack_ns(previous);
        }
    }
}

/// Sets this thread's timer slack; a failure leaves it as it was, which only makes sleeps
/// coarser.
fn set_timer_slack_ns(slack_ns: libc::c_ulong) {
    // SAFETY: PR_SET_TIMERSLACK takes the value itself, no pointers, and affects only the
    // calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, slack_ns, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer_slack_ns() -> libc::c_int {
        // SAFETY: as in `PunctualSleeps::start`.
        unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) }
    }

    #[test]
    fn punctual_sleeps_set_the_finest_timer_slack_and_restore_the_previous_one() {
        let before = timer_slack_ns();
        assert!(before > 0, "prctl(PR_GET_TIMERSLACK) failed");
        {
            let _punctual = PunctualSleeps::start();
            assert_eq!(timer_slack_ns(), 1);
        }
        assert_eq!(timer_slack_ns(), before);
    }

    #[test]
    fn steal_is_the_eighth_field_and_guest_time_is_not_counted_twice() {
        let stat = "cpu  100 5 50 800 10 1 2 32 7 0\ncpu0 50 2 25 400 5 0 1 16 3 0\n";
        let ticks = parse_cpu_line(stat).expect("a well-formed cpu line");
        assert_eq!(
            ticks,
            CpuTicks {
                steal: 32,
                total: 1000
            }
        );
        let later = CpuTicks {
            steal: 82,
            total: 1200,
        };
        assert_eq!(ticks.steal_fraction_until(later), Some(0.25));
        assert_eq!(later.steal_fraction_until(ticks), None);
        assert_eq!(parse_cpu_line("cpu  1 2 3\n"), None);
    }

    #[test]
    fn the_hiccup_meter_records_oversleeps() {
        let meter = HiccupMeter::start();
        thread::sleep(Duration::from_millis(30));
        let late = meter.finish().expect("a running meter records wake-ups");
        assert!(late.count >= 1);
        assert!(late.max_us >= late.p50_us);
    }
}
