//! librdkafka's own regression suite, as shipped in the `rdkafka-sys` crate, run against
//! Ferry: `scripts/librdkafka-suite.sh` builds it (once; later runs reuse the build) and
//! runs each subset against its own broker, in parallel, writing a pass/fail table per
//! subset to `target/librdkafka-suite/<subset>.md`.
//!
//! The brokers run with the settings the suite assumes of its test cluster (Kafka's own
//! defaults plus four partitions per auto-created topic).

use std::path::PathBuf;
use std::process::Command;

use crate::support::Broker;

/// Produce, consume, offsets, compression, headers, admin basics.
const PRODUCE_CONSUME: &[&str] = &[
    "0001", "0002", "0003", "0005", "0007", "0008", "0011", "0012", "0013", "0014", "0017", "0021",
    "0022", "0031", "0034", "0035", "0036", "0041", "0048", "0054", "0057", "0070", "0073", "0082",
];

/// Consumer groups (0113, the longest, runs as its own subset).
const GROUPS: &[&str] = &[
    "0018", "0019", "0020", "0026", "0029", "0030", "0033", "0040", "0045", "0056", "0061", "0069",
    "0093", "0099", "0102", "0118", "0130", "0132", "0137",
];

/// Idempotence and transactions.
const TRANSACTIONS: &[&str] = &["0090", "0103", "0129"];

/// Cooperative-sticky incremental rebalancing.
const COOPERATIVE: &[&str] = &["0113"];

/// Runs `tests` against a fresh broker; `extra_args` go to librdkafka's test runner
/// (`-P` turns idempotence on in every producer).
fn run_subset(name: &str, tests: &[&str], extra_args: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // The suite's cluster has three brokers: 0103 creates topics with replication factor
    // 3, which a single node serves with one replica when capped.
    let broker = Broker::start(
        dir.path(),
        &[
            "--override",
            "num.partitions=4",
            "--override",
            "ferry.replication.factor.cap=true",
        ],
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join(format!("target/librdkafka-suite/{name}.md"));
    let status = Command::new("bash")
        .arg(root.join("scripts/librdkafka-suite.sh"))
        .args([
            "--bootstrap",
            &broker.bootstrap,
            "--tests",
            &tests.join(" "),
        ])
        .arg("--out")
        .arg(&out)
        // One retry: some suite tests (0113's max.poll.interval variations) time out on
        // a loaded 2-core machine; a pass on retry is marked "PASSED (retry)" in the table.
        .args([
            "--timeout-s",
            "900",
            "--retries",
            "1",
            "--extra-args",
            extra_args,
        ])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run scripts/librdkafka-suite.sh: {e}"))?;
    let table = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("{table}");
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "librdkafka suite subset {name} failed (see {})",
            out.display()
        ))
    }
}

#[test]
fn librdkafka_suite_passes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Build once up front so the parallel runs below do not queue on the build lock with
    // their brokers idling.
    let built = Command::new("bash")
        .arg(root.join("scripts/librdkafka-suite.sh"))
        .args([
            "--build-only",
            "--bootstrap",
            "127.0.0.1:9",
            "--tests",
            "0001",
        ])
        .current_dir(&root)
        .status()
        .expect("run scripts/librdkafka-suite.sh");
    assert!(
        built.success(),
        "building librdkafka's test suite failed (needs gcc, g++, make)"
    );
    let subsets = [
        ("produce-consume", PRODUCE_CONSUME, ""),
        ("produce-consume-idempotent", PRODUCE_CONSUME, "-P"),
        ("groups", GROUPS, ""),
        ("cooperative", COOPERATIVE, ""),
        ("transactions", TRANSACTIONS, ""),
    ];
    let handles: Vec<_> = subsets
        .iter()
        .map(|(name, tests, extra)| {
            let (name, tests, extra) = (name.to_string(), tests.to_vec(), extra.to_string());
            std::thread::spawn(move || run_subset(&name, &tests, &extra))
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().expect("subset thread").err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
