//! W8: a second Ferry, started by the harness, mirrors a topic of the broker under test
//! (`ferry mirror`, over the admin API like the CLI): how fast it catches up on a backlog,
//! and, in the steady phase the driver runs with producers on the source and a reader on
//! the mirror, how far it trails the source.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde_json::json;

use super::broker_process::{BrokerProcess, ProcessProbe};
use super::driver::{PhaseEnv, PhaseResult};
use super::workloads::PhaseSpec;

/// Longest a catch-up may take before the phase fails.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1_800);
/// How often the harness compares the mirror's end offsets with the source's.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The link's name on the mirroring Ferry.
const LINK: &str = "bench";

/// The mirroring Ferry.
pub struct MirrorTarget {
    pub process: BrokerProcess,
    pub probe: ProcessProbe,
}

impl MirrorTarget {
    pub fn start(data_dir: &Path, log_path: &Path) -> Result<MirrorTarget, String> {
        let process = BrokerProcess::start(data_dir, log_path, &[])?;
        let probe = ProcessProbe::new(process.pid());
        Ok(MirrorTarget { process, probe })
    }
}

fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<i64>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "ferry-bench-watermarks")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .map(|(_, high)| high)
                .map_err(|e| format!("watermarks of {topic}-{p} on {bootstrap}: {e}"))
        })
        .collect()
}

fn admin(bootstrap: &str, request: serde_json::Value) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(crate::admin::mirror::call(
            bootstrap,
            &crate::client::ClientOptions::default(),
            request,
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Mirrors `topic` (over the link `catch_up` made) and waits until the mirror serves all
/// its partitions.
pub fn add_topic(
    env: &PhaseEnv<'_>,
    mirror: &MirrorTarget,
    topic: &str,
    partitions: i32,
) -> Result<(), String> {
    let mirror_bootstrap = &mirror.process.bootstrap;
    link(env, mirror_bootstrap)?;
    admin(
        mirror_bootstrap,
        json!({ "op": "add", "link": LINK, "topics": [topic] }),
    )?;
    let started = Instant::now();
    while end_offsets(mirror_bootstrap, topic, partitions).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("the mirror did not create {topic} within 30 s"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// Creates the link to the broker under test (again: an existing one is kept).
fn link(env: &PhaseEnv<'_>, mirror_bootstrap: &str) -> Result<(), String> {
    admin(
        mirror_bootstrap,
        json!({ "op": "create_link", "link": LINK, "source": env.bootstrap }),
    )
}

/// Links the mirror to the broker under test, mirrors `topic` and waits until every
/// partition's end offset equals the source's. Consumed figures are what the mirror copied.
pub fn catch_up(
    env: &PhaseEnv<'_>,
    mirror: &MirrorTarget,
    spec: &PhaseSpec,
    topic: &str,
    result: &mut PhaseResult,
) -> Result<(), String> {
    let source_ends = end_offsets(env.bootstrap, topic, spec.partitions)?;
    let records: i64 = source_ends.iter().sum();
    let started = Instant::now();
    let mirror_bootstrap = &mirror.process.bootstrap;
    link(env, mirror_bootstrap)?;
    admin(
        mirror_bootstrap,
        json!({ "op": "add", "link": LINK, "topics": [topic] }),
    )?;
    loop {
        let mirrored = end_offsets(mirror_bootstrap, topic, spec.partitions).unwrap_or_default();
        if mirrored == source_ends {
            break;
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            return Err(format!(
                "the mirror reached {mirrored:?} of {source_ends:?} in {CATCH_UP_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let seconds = started.elapsed().as_secs_f64();
    let records = u64::try_from(records).unwrap_or(0);
    result.produced_records = records;
    result.consumed_records = records;
    result.consumed_bytes = records * spec.record_bytes() as u64;
    result.consume_seconds = seconds;
    Ok(())
}
