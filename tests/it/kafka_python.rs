//! An independent client: kafka-python (installed by `pip install -r tests/requirements.txt`)
//! creates a topic, produces, consumes through a group, commits and reads offsets back; and
//! produces idempotently and transactionally for a read_committed consumer.

use std::path::PathBuf;
use std::process::Command;

use crate::support::Broker;

fn run_script(broker: &Broker, script: &str, args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let output = Command::new("python3")
        .arg(&script)
        .arg(&broker.bootstrap)
        .args(args)
        .output()
        .expect(
            "run python3 (install the test clients with: pip install -r tests/requirements.txt)",
        );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("OK"),
        "kafka-python client failed (is kafka-python installed? pip install -r tests/requirements.txt)\n\
         stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn kafka_python_produces_consumes_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--override", "group.initial.rebalance.delay.ms=0"],
    );
    run_script(
        &broker,
        "kafka_python_client.py",
        &["kafka-python-topic", "kafka-python-group"],
    );
}

#[test]
fn kafka_python_idempotent_and_transactional_producers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    run_script(
        &broker,
        "kafka_python_transactions.py",
        &["kafka-python-txn"],
    );
}
