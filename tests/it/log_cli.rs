//! `ferry log dump` and `ferry log verify` on a data directory a real broker wrote: the
//! records librdkafka produced are in the dump, a healthy directory verifies, and a
//! corrupted copy fails verification naming the damaged file.

use std::path::Path;
use std::process::Command;

use rdkafka::producer::FutureProducer;

use crate::records::{produce_all, test_record};
use crate::support::Broker;

fn ferry_log(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("log")
        .args(args)
        .output()
        .expect("run ferry log");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_shows_what_was_produced_and_verify_catches_damage() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--override", "offsets.topic.num.partitions=2"],
    );
    broker.create_topic("dumped", 1, &[]).await;
    let producer: FutureProducer = broker.client_config().create().unwrap();
    let records: Vec<_> = (0..20).map(|i| test_record("dumped", i, 1_000)).collect();
    produce_all(&producer, "dumped", &records).await;
    drop(producer);
    assert!(broker.stop().success());
    let segment = dir.path().join("dumped-0/00000000000000000000.log");
    let segment_arg = segment.to_str().unwrap();

    let (ok, json, err) = ferry_log(&["dump", segment_arg, "--values", "--output", "json"]);
    assert!(ok, "{err}");
    assert!(json.contains(r#""crc_valid":"yes""#), "{json}");
    assert!(json.contains(r#""key":"key-7""#), "{json}");
    assert!(json.contains("dumped:00000019"), "{json}");
    assert!(json.contains(r#""stopped":null"#), "{json}");
    let (ok, table, _) = ferry_log(&["dump", segment_arg]);
    assert!(
        ok && table.contains("BASE-OFFSET") && !table.contains("dumped:0000"),
        "{table}"
    );

    let (ok, out, err) = ferry_log(&["verify", dir.path().to_str().unwrap(), "--output", "json"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(r#""batches":"#), "{out}");

    // A copy with one flipped byte in the middle of the segment fails, naming the file.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let damaged = copy.path().join("dumped-0/00000000000000000000.log");
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let (ok, _, err) = ferry_log(&["verify", copy.path().to_str().unwrap()]);
    assert!(
        !ok && err.contains("dumped-0/00000000000000000000.log"),
        "{err}"
    );
    let (ok, table, _) = ferry_log(&["dump", damaged.to_str().unwrap()]);
    assert!(
        ok && table.contains(" no "),
        "the bad batch is marked: {table}"
    );
}
