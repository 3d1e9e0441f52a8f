//! `ferry bench` (feature `bench`): the reproducible benchmark harness. It owns everything
//! about measuring a Kafka-compatible broker from the outside: the machine's limits
//! (`limits`), starting and watching a broker process (`broker_process`), the fixed
//! workloads W1-W8 (`workloads`; W8's mirroring Ferry in `mirror`), librdkafka producers, readers and topic administration
//! (`clients`), running one phase (`driver`), and the tables and JSON (`report`, `stats`).
//! The broker never depends on this module or on librdkafka.

pub mod broker_log;
pub mod broker_process;
pub mod clients;
pub mod device;
pub mod driver;
pub mod limits;
pub mod mirror;
pub mod noise;
pub mod producer;
pub mod reader;
pub mod report;
pub mod secure;
pub mod stats;
pub mod topic_handle;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::signal::unix::SignalKind;

use broker_process::{BrokerProcess, ProcessProbe};
use clients::Admin;
use driver::{PhaseEnv, PhaseResult};
use report::{RunInfo, WorkloadOutcome};
use workloads::WorkloadId;

/// What to run and where.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub workloads: Vec<WorkloadId>,
    /// An existing broker; `None` starts a fresh Ferry.
    pub bootstrap: Option<String>,
    /// The external broker's process id, for its CPU and memory figures.
    pub broker_pid: Option<u32>,
    pub quick: bool,
    pub json_path: PathBuf,
    /// Where the scratch directory (own broker's data, disk-limit files) is created; it
    /// should be on the filesystem the broker under test writes to.
    pub work_dir: PathBuf,
}

/// A directory removed (with everything in it) when dropped.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create(parent: &Path) -> Result<ScratchDir, String> {
        let path = parent.join(format!(
            "ferry-bench-{}-{}",
            std::process::id(),
            stats::unix_micros()
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {e}", self.path.display());
        }
    }
}

/// On Ctrl-C or SIGTERM: stops the broker the harness started (its pid is in `broker_pid`
/// once known, 0 before), removes the scratch directory and exits with 130.
fn clean_up_on_interrupt(broker_pid: Arc<AtomicU32>, scratch: PathBuf) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let interrupted = runtime.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(SignalKind::terminate()) else {
                return false;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => true,
                _ = term.recv() => true,
            }
        });
        if !interrupted {
            return;
        }
        eprintln!(
            "interrupted: stopping the broker and removing {}",
            scratch.display()
        );
        if let Ok(pid) = libc::pid_t::try_from(broker_pid.load(Ordering::Acquire)) {
            if pid > 0 {
                // SAFETY: signals and reaps our own child process only.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
                let deadline = std::time::Instant::now() + broker_process::STOP_TIMEOUT;
                // SAFETY: as above; WNOHANG never blocks.
                while unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        std::process::exit(130);
    });
}

/// One line per phase on stderr while the run goes on.
fn progress(result: &PhaseResult) {
    let figure = |v: Option<f64>| stats::fmt_figure(v);
    match &result.error {
        Some(e) => eprintln!("    {}: ERROR {e}", result.name),
        None => eprintln!(
            "    {}: in {} rec/s {} MiB/s, out {} MiB/s, e2e p99 {} us, broker {} cores",
            result.name,
            figure(result.produce_records_s()),
            figure(result.produce_mib_s()),
            figure(result.consume_mib_s()),
            result.e2e.map_or("-".to_string(), |p| p.p99_us.to_string()),
            figure(result.broker_cpu_cores()),
        ),
    }
}

/// Topics deleted as soon as their workload no longer needs them, with the time taken.
#[derive(Default)]
struct EarlyDeletes {
    deleted: Vec<String>,
    failed: Vec<String>,
    ms: f64,
    error: Option<String>,
}

impl EarlyDeletes {
    fn delete(&mut self, admin: &Admin, topic: &str) {
        match admin.delete_topics(&[topic]) {
            Ok(took) => {
                self.ms += took.as_secs_f64() * 1000.0;
                self.deleted.push(topic.to_string());
            }
            Err(e) => {
                self.failed.push(topic.to_string());
                self.error.get_or_insert(e);
            }
        }
    }

    /// The total time, or the first error.
    fn outcome(&self) -> Result<f64, String> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(self.ms),
        }
    }
}

/// Runs the chosen workloads, prints one table per workload and writes the JSON file.
pub fn run(options: &BenchOptions) -> Result<(), String> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| format!("{}: {e}", options.work_dir.display()))?;
    if let Some(parent) = options
        .json_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    // Declared before the broker so the broker is stopped before its data is removed.
    let scratch = ScratchDir::create(&options.work_dir)?;
    let broker_pid = Arc::new(AtomicU32::new(0));
    clean_up_on_interrupt(Arc::clone(&broker_pid), scratch.path.clone());
    eprintln!(
        "measuring the machine's limits in {}{} ...",
        scratch.path.display(),
        if options.quick { " (quick)" } else { "" }
    );
    let limits = limits::measure(&scratch.path, options.quick)
        .map_err(|e| format!("measuring limits in {}: {e}", scratch.path.display()))?;
    println!("Machine limits\n");
    print!("{}", report::limits_table(&limits).to_text());
    println!();

    let data_dir = scratch.path.join("data");
    let broker_log = options.json_path.with_extension("broker.log");
    // W9 compares PLAINTEXT with SASL_SSL: the harness's own Ferry gets both listeners.
    let secure = match (
        &options.bootstrap,
        options.workloads.contains(&WorkloadId::W9),
    ) {
        (None, true) => Some(secure::SecureSetup::prepare(&scratch.path)?),
        _ => None,
    };
    let mut broker = match &options.bootstrap {
        None => {
            let extra = secure.as_ref().map_or(&[][..], |s| &s.broker_overrides[..]);
            let started = BrokerProcess::start(&data_dir, &broker_log, extra)?;
            broker_pid.store(started.pid(), Ordering::Release);
            eprintln!(
                "started ferry (pid {}) on {}; its log: {}",
                started.pid(),
                started.bootstrap,
                broker_log.display()
            );
            Some(started)
        }
        Some(_) => None,
    };
    let bootstrap = match (&broker, &options.bootstrap) {
        (Some(b), _) => b.bootstrap.clone(),
        (None, Some(addr)) => addr.clone(),
        (None, None) => unreachable!("a broker is started when no bootstrap is given"),
    };
    let probe = broker
        .as_ref()
        .map(|b| ProcessProbe::new(b.pid()))
        .or_else(|| options.broker_pid.map(ProcessProbe::new));
    // Against a broker the harness does not own, topic names carry a run id.
    let suffix = match broker {
        Some(_) => String::new(),
        None => format!("-{}", stats::unix_micros() / 1_000_000),
    };
    let own_data_dir = broker.as_ref().map(|b| b.data_dir.clone());
    let device = device::BlockDevice::of(&scratch.path);
    let admin = Admin::connect(&bootstrap)?;
    let mirror = if options.workloads.contains(&WorkloadId::W8) {
        let log = options.json_path.with_extension("mirror.log");
        let target = mirror::MirrorTarget::start(&scratch.path.join("mirror-data"), &log)?;
        eprintln!(
            "started the mirroring ferry (pid {}) on {}; its log: {}",
            target.process.pid(),
            target.process.bootstrap,
            log.display()
        );
        Some(target)
    } else {
        None
    };
    let secure_endpoint = match (
        &secure,
        broker.as_ref().and_then(|b| b.secure_bootstrap.clone()),
    ) {
        (Some(setup), Some(address)) => Some(setup.endpoint(address)),
        _ => None,
    };
    let env = PhaseEnv {
        secure: secure_endpoint.as_ref(),
        bootstrap: &bootstrap,
        quick: options.quick,
        topic_suffix: &suffix,
        admin: &admin,
        broker: probe.as_ref(),
        data_dir: own_data_dir.as_deref(),
        latency_reports_pid: broker.as_ref().map(BrokerProcess::pid),
        device: device.as_ref(),
        mirror: mirror.as_ref(),
        reader_bootstrap: None,
    };

    let mut outcomes = Vec::new();
    let mut left_topics = Vec::new();
    let mut broker_gone = None;
    for &workload in &options.workloads {
        if broker_gone.is_some() {
            break;
        }
        eprintln!("{}: {}", workload.name(), workload.description());
        let mut phases = Vec::new();
        let specs = workload.phases();
        // Topics no later phase uses are deleted at once: an unthrottled phase can write
        // tens of GiB, and several such phases in a row would fill the disk.
        let mut early = EarlyDeletes::default();
        for (index, spec) in specs.iter().enumerate() {
            eprintln!("  {} ...", spec.name);
            let mut result = driver::run_phase(&env, spec);
            if let Some(b) = broker.as_mut() {
                let lines = b.new_log_lines();
                result.broker_log_problems = broker_log::problems(&lines);
                result.broker_produce = broker_log::newest_latency(&lines, "Produce");
                result.broker_fsyncs = broker_log::newest_fsyncs(&lines);
                if let Some(status) = b.try_exit_status() {
                    broker_gone = Some(format!(
                        "the broker exited during {} {}: {status}",
                        workload.name(),
                        spec.name
                    ));
                }
            } else if probe.as_ref().is_some_and(|p| !p.is_alive()) {
                broker_gone = Some(format!(
                    "the broker process ended during {} {}",
                    workload.name(),
                    spec.name
                ));
            }
            progress(&result);
            let reused = specs[index + 1..]
                .iter()
                .any(|later| later.topic == spec.topic);
            if broker_gone.is_none() && !reused {
                early.delete(&admin, &result.topic);
            }
            phases.push(result);
            if broker_gone.is_some() {
                break;
            }
        }
        let mut topics: Vec<&str> = phases
            .iter()
            .map(|p| p.topic.as_str())
            .filter(|t| !early.deleted.iter().any(|d| d == t))
            .collect();
        topics.dedup();
        let topics_deleted = if broker_gone.is_some() {
            Err("the broker is gone".to_string())
        } else if topics.is_empty() {
            early.outcome()
        } else {
            admin
                .delete_topics(&topics)
                .map(|d| d.as_secs_f64() * 1000.0)
                .and_then(|ms| early.outcome().map(|early_ms| early_ms + ms))
        };
        topics.extend(early.failed.iter().map(String::as_str));
        match &topics_deleted {
            Ok(ms) => eprintln!("  deleted {} topic(s) in {ms:.0} ms", topics.len()),
            Err(e) => {
                eprintln!("  could not delete the topics: {e}");
                left_topics.extend(topics.iter().map(|t| t.to_string()));
            }
        }
        let outcome = WorkloadOutcome {
            id: workload,
            phases,
            topics_deleted,
        };
        println!("{}: {}\n", workload.name(), workload.description());
        print!("{}", report::workload_table(&outcome, &limits).to_text());
        for phase in &outcome.phases {
            if let Some(e) = &phase.error {
                println!("  {}: error: {e}", phase.name);
            }
            for e in &phase.client_errors {
                println!("  {}: client error: {e}", phase.name);
            }
            for line in phase.broker_log_problems.iter().take(5) {
                println!("  {}: broker log: {line}", phase.name);
            }
        }
        println!();
        outcomes.push(outcome);
    }

    let info = RunInfo {
        quick: options.quick,
        bootstrap: bootstrap.clone(),
        own_broker: broker.is_some(),
        broker_pid: probe.as_ref().map(ProcessProbe::pid),
        work_dir: options.work_dir.display().to_string(),
    };
    let json = report::run_json(&info, &limits, &outcomes).render();
    std::fs::write(&options.json_path, json + "\n")
        .map_err(|e| format!("{}: {e}", options.json_path.display()))?;
    println!("Results written to {}", options.json_path.display());

    if let Some(mut target) = mirror {
        if let Err(e) = target.process.stop() {
            eprintln!("warning: stopping the mirroring ferry: {e}");
        }
    }
    if let Some(mut b) = broker.take() {
        match b.stop() {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("warning: the broker exited with {status}"),
            Err(e) => eprintln!("warning: {e}"),
        }
        let late = broker_log::problems(&b.new_log_lines());
        for line in late.iter().take(5) {
            eprintln!("broker log at shutdown: {line}");
        }
    } else if !left_topics.is_empty() {
        println!("Topics left on {bootstrap}: {}", left_topics.join(", "));
    }
    drop(scratch);
    match broker_gone {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
