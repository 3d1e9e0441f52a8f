//! An independent client: kafka-python (installed by `pip install -r tests/requirements.txt`)
//! creates a topic, produces, consumes through a group, commits and reads offsets back.

use std::path::PathBuf;
use std::process::Command;

use crate::support::Broker;

#[test]
fn kafka_python_produces_consumes_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--override", "group.initial.rebalance.delay.ms=0"],
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/kafka_python_client.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([
            &broker.bootstrap,
            "kafka-python-topic",
            "kafka-python-group",
        ])
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
