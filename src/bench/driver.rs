//! Runs one phase: creates its topic, attaches the readers, produces (unthrottled, by the
//! clock at a fixed rate, or a fixed number of bytes), waits for the readers to drain, and
//! gathers the figures while watching the broker process's CPU, memory and disk traffic.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use super::broker_process::{DiskBytes, ProcessProbe};
use super::clients::{Admin, ErrorLog, STATISTICS_INTERVAL_MS};
use super::device::BlockDevice;
use super::limits::{drop_page_cache, fill_random};
use super::noise::{CpuTicks, HiccupMeter, PunctualSleeps};
use super::producer::{Producer, ProducerStats};
use super::reader::{Reader, ReaderControl, ReaderMode, ReaderOutcome, ReaderSpec};
use super::stats::{unix_micros, Latency, Percentiles};
use super::topic_handle::TopicHandle;
use super::workloads::{
    Load, PhaseKind, PhaseSpec, Readers, Transport, Values, PHASE_DURATION_FULL,
    PHASE_DURATION_QUICK, PRODUCER_BATCH_BYTES, W4_DISTINCT_KEYS,
};

/// Longest a producer may take to deliver what it has queued once sending stops.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Readers keep reading after producing ended, to drain what they lag behind, for this
/// long plus `DRAIN_PER_PRODUCE_SECOND` for every second of producing: one reader of small
/// records reads about a quarter of what one producer writes (W1), so a 30 s phase needs
/// about two minutes to be read back.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
pub const DRAIN_PER_PRODUCE_SECOND: u32 = 4;
/// Longest a catch-up read may take.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(900);
/// Longest a consumer group member may wait for its assignment.
pub const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Readers poll this long after attaching before producing starts, so their first fetches
/// are in flight and the first records' latency is not the readers' start-up.
pub const READER_SETTLE: Duration = Duration::from_millis(500);
/// How often the broker's RSS is sampled during a phase (besides its peak counter).
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Records an unthrottled producer queues per call, all stamped with one clock reading
/// (`TopicHandle::send_copies` says why batches). A stamp is then at most the time to
/// queue 63 records early (about 30 us at two million records a second; the clock is read
/// again after every wait for queue space), which can only overstate a latency, by that
/// much. librdkafka itself reads two clocks per record through `rd_kafka_produce`, and a
/// profile of W1's producing thread (the harness's bottleneck) put clock reads at about a
/// fifth of its time.
const SEND_BATCH_RECORDS: usize = 64;
/// Records an unthrottled producer sends to one partition before moving to the next, as
/// librdkafka's sticky partitioner does with unkeyed records (it moves every
/// `sticky.partitioning.linger.ms`, 10 ms: about this many records at 1.6 M/s).
const STICKY_RECORDS: u64 = 16_384;
/// Pause when librdkafka's queue is full before sending again.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(500);
/// Longest to wait after the flush for librdkafka's last statistics window.
const LAST_STATISTICS_WAIT: Duration = Duration::from_millis(STATISTICS_INTERVAL_MS as u64 + 200);

/// What a phase needs to know about where it runs.
pub struct PhaseEnv<'a> {
    pub bootstrap: &'a str,
    pub quick: bool,
    /// Appended to topic names (empty when the harness owns the broker).
    pub topic_suffix: &'a str,
    pub admin: &'a Admin,
    /// The broker process, when known, for CPU, memory and disk figures.
    pub broker: Option<&'a ProcessProbe>,
    /// The broker's data directory, when the harness started it (for cold reads).
    pub data_dir: Option<&'a Path>,
    /// The process id of a Ferry the harness started: it gets SIGUSR1 at the start and
    /// end of each phase so that its newest request latency report covers the phase.
    /// (Never set for other brokers: SIGUSR1 could stop them.)
    pub latency_reports_pid: Option<u32>,
    /// The block device of the work directory, for its flush count.
    pub device: Option<&'a BlockDevice>,
    /// W8's mirroring Ferry, started by the harness when W8 runs.
    pub mirror: Option<&'a super::mirror::MirrorTarget>,
    /// Where readers connect when not to `bootstrap` (W8's reader on the mirror).
    pub reader_bootstrap: Option<&'a str>,
    /// The SASL_SSL listener of the harness's own Ferry (W9), when it has one.
    pub secure: Option<&'a super::secure::SecureEndpoint>,
}

impl PhaseEnv<'_> {
    pub fn topic(&self, spec: &PhaseSpec) -> String {
        format!("{}{}", spec.topic, self.topic_suffix)
    }

    fn duration(&self) -> Duration {
        if self.quick {
            PHASE_DURATION_QUICK
        } else {
            PHASE_DURATION_FULL
        }
    }

    fn backlog_bytes(&self, full_bytes: u64, quick_bytes: u64) -> u64 {
        if self.quick {
            quick_bytes
        } else {
            full_bytes
        }
    }

    /// The same phase environment seen from W8's mirroring Ferry: its CPU and memory are
    /// the broker figures, readers read it, producers still write the broker under test.
    fn on_mirror<'b>(&'b self, mirror: &'b super::mirror::MirrorTarget) -> PhaseEnv<'b> {
        PhaseEnv {
            broker: Some(&mirror.probe),
            data_dir: None,
            latency_reports_pid: None,
            reader_bootstrap: Some(&mirror.process.bootstrap),
            secure: None,
            ..*self
        }
    }
}

/// Broker resource use over a phase.
#[derive(Debug, Clone, Default)]
pub struct BrokerUsage {
    pub cpu_seconds: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    pub disk: Option<DiskBytes>,
}

/// Everything measured in one phase. Byte counts are keys plus values.
#[derive(Debug, Clone, Default)]
pub struct PhaseResult {
    pub name: &'static str,
    pub topic: String,
    pub partitions: i32,
    pub value_bytes: usize,
    pub key_bytes: usize,
    pub acks: &'static str,
    pub target_records_s: Option<u64>,
    pub durable: bool,
    pub readers: usize,
    pub topic_create_ms: Option<f64>,
    pub produced_records: u64,
    pub produced_bytes: u64,
    pub produce_seconds: f64,
    pub failed_records: u64,
    pub consumed_records: u64,
    pub consumed_bytes: u64,
    pub consume_seconds: f64,
    /// Delivered records some reader did not get before its deadline (summed over readers).
    pub unconsumed_records: u64,
    pub ack: Option<Percentiles>,
    pub e2e: Option<Percentiles>,
    pub wall_seconds: f64,
    pub broker: BrokerUsage,
    pub client_cpu_seconds: Option<f64>,
    /// Flush requests the work directory's device completed (device-wide, all processes).
    pub device_flushes: Option<u64>,
    /// Share of the machine's CPU time the hypervisor stole during the phase.
    pub cpu_steal_fraction: Option<f64>,
    /// How late a sleeping thread in the harness woke up during the phase.
    pub hiccup: Option<Percentiles>,
    /// Produce requests as the broker saw them: frame read to response handed to the
    /// writer (own Ferry only; `count` is the number of requests).
    pub broker_produce: Option<Percentiles>,
    /// fsyncs the broker issued during the phase (own Ferry only, from the same report).
    pub broker_fsyncs: Option<u64>,
    pub records_per_batch: Option<f64>,
    /// Cold catch-up: whether the topic's pages were dropped from the page cache.
    pub cache_dropped: Option<bool>,
    /// Client errors (librdkafka's error callback, failed deliveries, consume errors).
    pub client_error_count: u64,
    pub client_errors: Vec<String>,
    /// Warnings and errors the broker logged during the phase (own broker only).
    pub broker_log_problems: Vec<String>,
    /// Why the phase could not run or finish.
    pub error: Option<String>,
}

/// Watches the broker between `start` and `finish`.
struct UsageWatch {
    probe: Option<ProcessProbe>,
    cpu_start: Option<f64>,
    disk_start: Option<DiskBytes>,
    peak_reset: bool,
    sampled_peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
    client_cpu_start: Option<f64>,
    device: Option<BlockDevice>,
    flushes_start: Option<u64>,
    ticks_start: Option<CpuTicks>,
    hiccups: HiccupMeter,
    latency_reports_pid: Option<u32>,
    started: Instant,
}

/// How long the broker gets to log its latency report after SIGUSR1 before its log is read.
const LATENCY_REPORT_WAIT: Duration = Duration::from_millis(200);

/// Asks a Ferry the harness started to log its request latency since its previous report.
fn request_latency_report(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: signals our own child process, which handles SIGUSR1 from before it
        // printed its ready line.
        unsafe {
            libc::kill(pid, libc::SIGUSR1);
        }
    }
}

impl UsageWatch {
    fn start(env: &PhaseEnv<'_>) -> UsageWatch {
        if let Some(pid) = env.latency_reports_pid {
            request_latency_report(pid);
        }
        let (probe, device) = (env.broker.cloned(), env.device);
        let sampled_peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = probe.clone().map(|probe| {
            let peak = Arc::clone(&sampled_peak_kib);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Some(rss) = probe.rss_kib() {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    thread::sleep(RSS_SAMPLE_INTERVAL);
                }
            })
        });
        UsageWatch {
            cpu_start: probe.as_ref().and_then(ProcessProbe::cpu_seconds),
            disk_start: probe.as_ref().and_then(ProcessProbe::disk_bytes),
            peak_reset: probe.as_ref().is_some_and(ProcessProbe::reset_peak_rss),
            probe,
            sampled_peak_kib,
            stop,
            sampler,
            client_cpu_start: ProcessProbe::this_process().cpu_seconds(),
            flushes_start: device.and_then(BlockDevice::flushes),
            device: device.cloned(),
            ticks_start: CpuTicks::now(),
            hiccups: HiccupMeter::start(),
            latency_reports_pid: env.latency_reports_pid,
            started: Instant::now(),
        }
    }

    fn finish(mut self, result: &mut PhaseResult) {
        self.stop.store(true, Ordering::Release);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        result.wall_seconds = self.started.elapsed().as_secs_f64();
        if let Some(pid) = self.latency_reports_pid {
            request_latency_report(pid);
            thread::sleep(LATENCY_REPORT_WAIT);
        }
        let client_cpu = ProcessProbe::this_process().cpu_seconds();
        result.client_cpu_seconds = client_cpu
            .zip(self.client_cpu_start)
            .map(|(end, start)| end - start);
        result.device_flushes = self
            .device
            .as_ref()
            .and_then(BlockDevice::flushes)
            .zip(self.flushes_start)
            .map(|(end, start)| end.saturating_sub(start));
        result.cpu_steal_fraction = self
            .ticks_start
            .zip(CpuTicks::now())
            .and_then(|(start, end)| start.steal_fraction_until(end));
        result.hiccup = self.hiccups.finish();
        let Some(probe) = &self.probe else { return };
        let sampled = Some(self.sampled_peak_kib.load(Ordering::Relaxed)).filter(|&k| k > 0);
        let hwm = probe.peak_rss_kib().filter(|_| self.peak_reset);
        result.broker = BrokerUsage {
            cpu_seconds: probe
                .cpu_seconds()
                .zip(self.cpu_start)
                .map(|(end, start)| end - start),
            peak_rss_kib: sampled.max(hwm),
            disk: probe
                .disk_bytes()
                .zip(self.disk_start)
                .map(|(end, start)| DiskBytes {
                    read_bytes: end.read_bytes.saturating_sub(start.read_bytes),
                    write_bytes: end.write_bytes.saturating_sub(start.write_bytes),
                }),
        };
    }
}

/// Runs a phase; failures end up in `PhaseResult::error`, never as a panic.
pub fn run_phase(env: &PhaseEnv<'_>, spec: &PhaseSpec) -> PhaseResult {
    let mut result = PhaseResult {
        name: spec.name,
        topic: env.topic(spec),
        partitions: spec.partitions,
        value_bytes: spec.value_bytes,
        key_bytes: spec.key_bytes,
        acks: spec.acks,
        target_records_s: match spec.load() {
            Load::Rate(r) => Some(r),
            Load::Unthrottled => None,
        },
        durable: spec.durable(),
        readers: match spec.readers {
            Readers::None => 0,
            Readers::Assign => 1,
            Readers::Groups(n) => n,
        },
        ..PhaseResult::default()
    };
    if let Err(error) = run_phase_into(env, spec, &mut result) {
        result.error = Some(error);
    }
    result
}

fn run_phase_into(
    env: &PhaseEnv<'_>,
    spec: &PhaseSpec,
    result: &mut PhaseResult,
) -> Result<(), String> {
    let topic = result.topic.clone();
    if spec.creates_topic() {
        let took = env
            .admin
            .create_topic(&topic, spec.partitions, spec.topic_configs)?;
        result.topic_create_ms = Some(took.as_secs_f64() * 1000.0);
    }
    if let PhaseKind::CatchUp { cold } = spec.kind {
        return catch_up(env, spec, cold, result);
    }
    let mirror_env;
    let env = match (spec.kind, env.mirror) {
        (PhaseKind::MirrorCatchUp, Some(mirror)) => {
            // The source reads the backlog from disk, as a migration's source would.
            result.cache_dropped = Some(match env.data_dir {
                Some(dir) => {
                    drop_topic_pages(dir, &topic).map_err(|e| {
                        format!("dropping {topic}'s pages from the page cache: {e}")
                    })?;
                    true
                }
                None => false,
            });
            let env = env.on_mirror(mirror);
            let watch = UsageWatch::start(&env);
            super::mirror::catch_up(&env, mirror, spec, &topic, result)?;
            watch.finish(result);
            return Ok(());
        }
        (PhaseKind::MirrorLive { .. }, Some(mirror)) => {
            super::mirror::add_topic(env, mirror, &topic, spec.partitions)?;
            mirror_env = env.on_mirror(mirror);
            &mirror_env
        }
        (PhaseKind::MirrorCatchUp | PhaseKind::MirrorLive { .. }, None) => {
            return Err("no mirroring Ferry was started".to_string())
        }
        _ => env,
    };
    let control = Arc::new(ReaderControl::default());
    let readers = spawn_readers(env, spec, &topic, &control, true)?;
    let watch = UsageWatch::start(env);
    let produced = match produce(env, spec, &topic) {
        Ok(p) => p,
        Err(e) => {
            control.abort();
            let _ = join_readers(readers);
            return Err(e);
        }
    };
    let produced_for = Duration::from_secs_f64(produced.seconds.max(0.0));
    control.finish(
        produced.stats.acked_records.load(Ordering::Relaxed),
        DRAIN_TIMEOUT + produced_for * DRAIN_PER_PRODUCE_SECOND,
    );
    let outcomes = join_readers(readers)?;
    watch.finish(result);
    fill_produce_figures(result, &produced);
    fill_reader_figures(result, &outcomes, produced.start_us);
    Ok(())
}

/// A finished producer run.
struct Produced {
    stats: Arc<ProducerStats>,
    /// When producing started, in UNIX microseconds.
    start_us: u64,
    seconds: f64,
}

/// A bootstrap address and the client settings that go with it.
type ClientEndpoint<'a> = (&'a str, &'a [(String, String)]);

/// Where a phase's clients connect and the security settings they add: the PLAINTEXT
/// bootstrap, or W9's SASL_SSL listener.
fn endpoint<'a>(env: &'a PhaseEnv<'_>, spec: &PhaseSpec) -> Result<ClientEndpoint<'a>, String> {
    match (spec.transport, env.secure) {
        (Transport::Plaintext, _) => Ok((env.bootstrap, &[])),
        (Transport::SaslSsl, Some(secure)) => Ok((&secure.bootstrap, &secure.client_props)),
        (Transport::SaslSsl, None) => Err(
            "this phase needs the SASL_SSL listener of a Ferry the harness starts (run without \
             --bootstrap)"
                .to_string(),
        ),
    }
}

fn producer_config(env: &PhaseEnv<'_>, spec: &PhaseSpec) -> Result<ClientConfig, String> {
    let (bootstrap, props) = endpoint(env, spec)?;
    let mut config = ClientConfig::new();
    for (key, value) in props {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "ferry-bench-producer")
        .set("acks", spec.acks)
        .set("linger.ms", spec.linger_ms().to_string())
        .set("batch.size", PRODUCER_BATCH_BYTES.to_string())
        .set("compression.type", "none")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
    Ok(config)
}

fn produce(env: &PhaseEnv<'_>, spec: &PhaseSpec, topic: &str) -> Result<Produced, String> {
    let producer = Producer::new(&producer_config(env, spec)?)?;
    let stats = Arc::clone(producer.stats());
    // Learn the topic's leaders before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata for {topic}: {e}"))?;
    let mut handle = TopicHandle::new(producer.client(), topic)?;
    let mut value = vec![0u8; spec.value_bytes];
    fill_random(&mut value, 0xbe9c_4a11);
    let pool = (spec.values == Values::DistinctText).then(|| text_pool(TEXT_POOL_BYTES));
    let duration = env.duration();
    let byte_budget = match spec.kind {
        PhaseKind::Backlog {
            full_bytes,
            quick_bytes,
        } => Some(env.backlog_bytes(full_bytes, quick_bytes)),
        _ => None,
    };
    let load = spec.load();
    let duration_us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    // Fixed-rate sends are scheduled by sleeping; see `PunctualSleeps`.
    let _punctual = matches!(load, Load::Rate(_)).then(PunctualSleeps::start);
    let start_us = unix_micros();
    match (byte_budget, load) {
        (None, Load::Rate(per_s)) => {
            send_at_rate(&handle, &stats, spec, &mut value, per_s, duration, start_us);
        }
        _ => {
            if spec.key_bytes > 0 {
                return Err("unthrottled phases send unkeyed records".to_string());
            }
            let until = match byte_budget {
                Some(bytes) => Until::Bytes(bytes),
                None => Until::Micros(duration_us),
            };
            match &pool {
                Some(pool) => send_distinct(&mut handle, &stats, spec, pool, start_us, until),
                None => send_unthrottled(&mut handle, &stats, spec, &mut value, start_us, until),
            }
        }
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .map_err(|e| format!("flush: {e} (records still queued after {FLUSH_TIMEOUT:?})"))?;
    // Producing ends with the last acknowledgement (flush returns a little later).
    let last_ack_us = stats
        .acks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last_at_us;
    let seconds = seconds_between(start_us, last_ack_us.unwrap_or_else(unix_micros));
    // The last statistics window (records per batch) arrives within one interval.
    let reports = stats.statistics_reports.load(Ordering::Relaxed);
    let waited = Instant::now();
    while stats.statistics_reports.load(Ordering::Relaxed) == reports
        && waited.elapsed() < LAST_STATISTICS_WAIT
    {
        thread::sleep(Duration::from_millis(20));
    }
    Ok(Produced {
        stats,
        start_us,
        seconds,
    })
}

/// When an unthrottled producer stops.
#[derive(Clone, Copy)]
enum Until {
    /// After this many microseconds from the start.
    Micros(u64),
    /// Once this many bytes were queued (W5's backlog).
    Bytes(u64),
}

impl Until {
    /// Whether a producer `elapsed_us` into its phase, having queued `queued_bytes`, stops.
    fn reached(self, elapsed_us: u64, queued_bytes: u64) -> bool {
        match self {
            Until::Micros(duration_us) => elapsed_us >= duration_us,
            Until::Bytes(budget) => queued_bytes >= budget,
        }
    }
}

/// Sends unkeyed records as fast as librdkafka takes them: `SEND_BATCH_RECORDS` at a time
/// to one partition, moving to the next every `STICKY_RECORDS`. Failures go to `stats`.
fn send_unthrottled(
    handle: &mut TopicHandle<'_>,
    stats: &ProducerStats,
    spec: &PhaseSpec,
    value: &mut [u8],
    start_us: u64,
    until: Until,
) {
    let partitions = u64::try_from(spec.partitions.max(1)).unwrap_or(1);
    let mut sent_records = 0u64;
    let mut now_us = start_us;
    loop {
        if until.reached(
            now_us.saturating_sub(start_us),
            sent_records * spec.record_bytes() as u64,
        ) {
            break;
        }
        value[..8].copy_from_slice(&now_us.to_be_bytes());
        // Below i32::MAX: the remainder of a division by an i32 partition count.
        let partition = ((sent_records / STICKY_RECORDS) % partitions) as i32;
        let mut left = SEND_BATCH_RECORDS;
        while left > 0 {
            let (queued, error) = handle.send_copies(partition, value, left, now_us as usize);
            left -= queued.min(left);
            sent_records += queued as u64;
            match error {
                None => {}
                Some(RDKafkaErrorCode::QueueFull) => thread::sleep(QUEUE_FULL_BACKOFF),
                Some(e) => {
                    stats
                        .failed_records
                        .fetch_add(left as u64, Ordering::Relaxed);
                    stats.failures.push(format!("send: {e}"));
                    break;
                }
            }
        }
        // One clock read per batch (see `SEND_BATCH_RECORDS`), also for the deadline.
        now_us = unix_micros();
    }
}

/// Bytes of generated text distinct values are cut from (`Values::DistinctText`).
const TEXT_POOL_BYTES: usize = 8 << 20;

/// Log-like text: words from a small vocabulary with numbers, in a deterministic order, so
/// a value compresses about as well as a log line or a JSON document (zstd: about 3-4x).
fn text_pool(bytes: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "request",
        "user",
        "order",
        "status",
        "ok",
        "error",
        "timeout",
        "payment",
        "id",
        "session",
        "created",
        "updated",
        "item",
        "price",
        "quantity",
        "GET",
        "POST",
        "/api/v1",
        "service",
        "latency_ms",
        "region",
        "eu-west",
        "us-east",
        "true",
        "false",
        "null",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut pool = Vec::with_capacity(bytes + 64);
    while pool.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = WORDS[(state % WORDS.len() as u64) as usize];
        pool.extend_from_slice(word.as_bytes());
        pool.push(if state.is_multiple_of(5) { b'=' } else { b' ' });
        if state.is_multiple_of(3) {
            pool.extend_from_slice((state % 100_000).to_string().as_bytes());
            pool.push(b' ');
        }
    }
    pool.truncate(bytes);
    pool
}

/// Like [`send_unthrottled`], with a distinct value per record, cut from `pool` at an
/// offset that moves by a prime number of bytes per record (no send time is embedded:
/// such phases have no readers).
fn send_distinct(
    handle: &mut TopicHandle<'_>,
    stats: &ProducerStats,
    spec: &PhaseSpec,
    pool: &[u8],
    start_us: u64,
    until: Until,
) {
    const STRIDE_BYTES: usize = 1_009;
    let partitions = u64::try_from(spec.partitions.max(1)).unwrap_or(1);
    let span = pool.len().saturating_sub(spec.value_bytes).max(1);
    let mut sent_records = 0u64;
    let mut now_us = start_us;
    loop {
        if until.reached(
            now_us.saturating_sub(start_us),
            sent_records * spec.record_bytes() as u64,
        ) {
            break;
        }
        let partition = ((sent_records / STICKY_RECORDS) % partitions) as i32;
        let first = sent_records as usize;
        let values = (first..first + SEND_BATCH_RECORDS).map(|i| {
            let at = i.wrapping_mul(STRIDE_BYTES) % span;
            &pool[at..at + spec.value_bytes]
        });
        let (queued, error) = handle.send_each(partition, values, now_us as usize);
        sent_records += queued as u64;
        match error {
            None => {}
            Some(RDKafkaErrorCode::QueueFull) => thread::sleep(QUEUE_FULL_BACKOFF),
            Some(e) => {
                stats.failures.push(format!("send: {e}"));
                break;
            }
        }
        now_us = unix_micros();
    }
}

/// Sends one record at a time, each when it is due (`start + i / per_s`), with the due time
/// as its stamp, so a stall delays and is counted against every record due during it.
fn send_at_rate(
    handle: &TopicHandle<'_>,
    stats: &ProducerStats,
    spec: &PhaseSpec,
    value: &mut [u8],
    per_s: u64,
    duration: Duration,
    start_us: u64,
) {
    // The same moment as `start_us`, on the monotonic clock the schedule runs on.
    let start = Instant::now();
    let mut sent_records = 0u64;
    loop {
        let offset = Duration::from_nanos(
            u64::try_from(u128::from(sent_records) * 1_000_000_000 / u128::from(per_s))
                .unwrap_or(u64::MAX),
        );
        if offset >= duration {
            break;
        }
        let due = start + offset;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let due_us = start_us + u64::try_from(offset.as_micros()).unwrap_or(u64::MAX);
        value[..8].copy_from_slice(&due_us.to_be_bytes());
        let key = (sent_records % W4_DISTINCT_KEYS).to_be_bytes();
        let key = (spec.key_bytes > 0).then(|| &key[..spec.key_bytes.min(key.len())]);
        loop {
            match handle.send(value, key, due_us as usize) {
                Ok(()) => break,
                Err(RDKafkaErrorCode::QueueFull) => thread::sleep(QUEUE_FULL_BACKOFF),
                Err(e) => {
                    stats.failed_records.fetch_add(1, Ordering::Relaxed);
                    stats.failures.push(format!("send: {e}"));
                    break;
                }
            }
        }
        sent_records += 1;
    }
}

/// A started reader thread: the handle yields its outcome.
type ReaderThread = thread::JoinHandle<Result<ReaderOutcome, String>>;

/// Starts the readers and returns once all are attached and settled.
fn spawn_readers(
    env: &PhaseEnv<'_>,
    spec: &PhaseSpec,
    topic: &str,
    control: &Arc<ReaderControl>,
    measure_e2e: bool,
) -> Result<Vec<ReaderThread>, String> {
    let specs: Vec<ReaderSpec> = match spec.readers {
        Readers::None => Vec::new(),
        Readers::Assign => vec![ReaderMode::Assign {
            partitions: spec.partitions,
        }],
        Readers::Groups(n) => (0..n)
            .map(|i| ReaderMode::Group {
                group: format!("{topic}-group-{i}"),
            })
            .collect(),
    }
    .into_iter()
    .map(|mode| ReaderSpec {
        bootstrap: env
            .reader_bootstrap
            .unwrap_or(endpoint(env, spec).map_or(env.bootstrap, |(b, _)| b))
            .to_string(),
        client_props: endpoint(env, spec).map_or_else(|_| Vec::new(), |(_, p)| p.to_vec()),
        topic: topic.to_string(),
        mode,
        fetch_wait_ms: spec.fetch_wait_ms(),
        measure_e2e,
        join_timeout: GROUP_JOIN_TIMEOUT,
    })
    .collect();
    let mut handles = Vec::new();
    let mut ready = Vec::new();
    for reader in specs {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let control = Arc::clone(control);
        handles.push(thread::spawn(move || {
            let mut attached = match Reader::attach(&reader) {
                Ok(attached) => attached,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            if reader.measure_e2e {
                // Live phases only: nothing is produced yet, so nothing is lost.
                attached.settle(READER_SETTLE);
            }
            let _ = ready_tx.send(Ok(()));
            Ok(attached.read(&control, reader.measure_e2e))
        }));
        ready.push(ready_rx);
    }
    for rx in ready {
        let attached = rx
            .recv()
            .unwrap_or_else(|_| Err("a reader thread died".to_string()));
        if let Err(e) = attached {
            control.abort();
            let _ = join_readers(handles);
            return Err(e);
        }
    }
    Ok(handles)
}

fn join_readers(handles: Vec<ReaderThread>) -> Result<Vec<ReaderOutcome>, String> {
    let mut outcomes = Vec::new();
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => first_error = first_error.or(Some("a reader thread panicked".to_string())),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(outcomes),
    }
}

fn fill_produce_figures(result: &mut PhaseResult, produced: &Produced) {
    let stats = &produced.stats;
    result.produced_records = stats.acked_records.load(Ordering::Relaxed);
    result.produced_bytes = stats.acked_bytes.load(Ordering::Relaxed);
    result.failed_records = stats.failed_records.load(Ordering::Relaxed);
    result.produce_seconds = produced.seconds;
    let acks = stats.acks.lock().unwrap_or_else(|e| e.into_inner());
    result.ack = acks.latency.percentiles();
    let batches = stats.batches.load(Ordering::Relaxed);
    result.records_per_batch = (batches > 0)
        .then(|| stats.batched_records.load(Ordering::Relaxed) as f64 / batches as f64);
    for log in [&stats.failures, &stats.client_errors] {
        result.client_error_count += log.count();
        result.client_errors.extend(log.kept());
    }
}

/// Seconds from `start_us` to `end_us` (UNIX microseconds; 0 if `end_us` is earlier).
fn seconds_between(start_us: u64, end_us: u64) -> f64 {
    end_us.saturating_sub(start_us) as f64 / 1e6
}

fn fill_reader_figures(result: &mut PhaseResult, outcomes: &[ReaderOutcome], start_us: u64) {
    let mut e2e = Latency::new();
    let mut last = None;
    for outcome in outcomes {
        result.consumed_records += outcome.records;
        result.consumed_bytes += outcome.bytes;
        result.unconsumed_records += result.produced_records.saturating_sub(outcome.records);
        e2e.merge(&outcome.e2e);
        last = last.max(outcome.last_at_us);
        add_errors(result, &outcome.errors);
    }
    result.e2e = e2e.percentiles();
    result.consume_seconds = last.map_or(0.0, |l| seconds_between(start_us, l));
}

fn add_errors(result: &mut PhaseResult, log: &ErrorLog) {
    result.client_error_count += log.count();
    for e in log.kept() {
        if !result.client_errors.contains(&e) {
            result.client_errors.push(e);
        }
    }
}

/// Reads the whole topic from the start with one assigned reader.
fn catch_up(
    env: &PhaseEnv<'_>,
    spec: &PhaseSpec,
    cold: bool,
    result: &mut PhaseResult,
) -> Result<(), String> {
    let topic = result.topic.clone();
    let available = records_in_topic(env, &topic, spec.partitions)?;
    if cold {
        result.cache_dropped = Some(match env.data_dir {
            Some(dir) => {
                drop_topic_pages(dir, &topic)
                    .map_err(|e| format!("dropping {topic}'s pages from the page cache: {e}"))?;
                true
            }
            None => false,
        });
    }
    let control = Arc::new(ReaderControl::default());
    control.finish(available, CATCH_UP_TIMEOUT);
    let watch = UsageWatch::start(env);
    let start_us = unix_micros();
    let readers = spawn_readers(env, spec, &topic, &control, false)?;
    let outcomes = join_readers(readers)?;
    watch.finish(result);
    result.produced_records = available;
    fill_reader_figures(result, &outcomes, start_us);
    Ok(())
}

/// Records in the topic: the sum of its partitions' high watermarks minus log starts.
fn records_in_topic(env: &PhaseEnv<'_>, topic: &str, partitions: i32) -> Result<u64, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.bootstrap)
        .set("client.id", "ferry-bench-watermarks")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut total = 0u64;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(|e| format!("watermarks of {topic}-{p}: {e}"))?;
        total += u64::try_from(high - low).unwrap_or(0);
    }
    Ok(total)
}

/// Syncs and drops from the page cache every file of the topic's partition directories.
fn drop_topic_pages(data_dir: &Path, topic: &str) -> std::io::Result<()> {
    let prefix = format!("{topic}-");
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_partition = name
            .strip_prefix(&prefix)
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !is_partition || !entry.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            if file.file_type()?.is_file() {
                let handle = File::open(file.path())?;
                handle.sync_all()?;
                drop_page_cache(&handle)?;
            }
        }
    }
    Ok(())
}
