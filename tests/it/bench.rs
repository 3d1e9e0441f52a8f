//! `ferry bench` end to end, as a user runs it: the harness starts its own Ferry, measures
//! the machine's limits, runs W3's quick phases (fixed rates, default flush and durable)
//! with librdkafka clients and writes its JSON. Only built with the `bench` feature, which
//! the test command enables.

use std::process::Command;

/// The raw value of `"key": value` on one line of the harness's JSON (one field per line).
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\": ");
    let start = json.find(&needle)? + needle.len();
    let rest = &json[start..];
    let end = rest.find([',', '\n']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

fn number(json: &str, key: &str) -> f64 {
    let raw = field(json, key).unwrap_or_else(|| panic!("no {key} in {json}"));
    raw.parse()
        .unwrap_or_else(|_| panic!("{key} is {raw}, not a number"))
}

#[test]
fn quick_latency_workload_acknowledges_and_reads_back_every_record() {
    let work_dir = tempfile::tempdir().unwrap();
    let json_path = work_dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["bench", "--quick", "--workload", "W3", "--json"])
        .arg(&json_path)
        .arg("--work-dir")
        .arg(work_dir.path())
        .output()
        .expect("run ferry bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ferry bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json = std::fs::read_to_string(&json_path).unwrap();
    for limit in [
        "disk_append_mib_s",
        "disk_read_mib_s",
        "fsync_p50_us",
        "loopback_mib_s",
    ] {
        assert!(number(&json, limit) > 0.0, "{limit} in {json}");
    }
    let phases: Vec<&str> = json.split("\"name\": ").skip(1).collect();
    let names: Vec<&str> = phases.iter().map(|p| p.lines().next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "\"1k@5000/s\",",
            "\"100b@1000/s\",",
            "\"1k@5000/s-durable\",",
            "\"100b@1000/s-durable\","
        ]
    );
    for phase in phases {
        // A fixed-rate phase sends rate x 4 s records, and each must be acknowledged and
        // read back, with latencies measured for them.
        let expected = number(phase, "target_records_s") * 4.0;
        assert_eq!(number(phase, "produced_records"), expected, "{phase}");
        assert_eq!(number(phase, "consumed_records"), expected, "{phase}");
        assert_eq!(number(phase, "failed_records"), 0.0, "{phase}");
        assert_eq!(number(phase, "unconsumed_records"), 0.0, "{phase}");
        assert_eq!(number(phase, "client_error_count"), 0.0, "{phase}");
        assert!(number(phase, "ack_p50_us") > 0.0, "{phase}");
        assert!(number(phase, "e2e_p50_us") > 0.0, "{phase}");
        assert!(number(phase, "broker_rss_mib") > 0.0, "{phase}");
        if field(phase, "durable") == Some("true") {
            // Durable mode acknowledges only after an fsync.
            assert!(number(phase, "fsyncs_s") > 0.0, "{phase}");
        }
    }
}
