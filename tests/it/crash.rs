//! Crash safety: kill -9 the broker while several producers send with acks=all, restart,
//! and check that every acknowledged record is there, in order, in a log without gaps.
//! In durable mode also with the segments cut back as far as a power loss could cut them:
//! the journal must put back every acknowledged record.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::records::{assert_dense_and_ordered, read_all, Acked, RecordData};
use crate::support::Broker;

const PRODUCERS: usize = 4;
const PARTITIONS: i32 = 4;

/// How much to produce before the crash.
#[derive(Clone, Copy)]
struct Load {
    /// Bytes added to each record's value.
    value_padding_bytes: usize,
    /// Acknowledged records before the kill.
    records_before_kill: usize,
}

const SMALL: Load = Load {
    value_padding_bytes: 0,
    records_before_kill: 20_000,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    kill_9_while_producing(&[], SMALL, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_in_durable_mode() {
    kill_9_while_producing(&["--durable"], SMALL, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_journal_restores_acknowledged_records_lost_from_segments() {
    let (_, log) =
        kill_9_while_producing(&["--durable"], SMALL, lose_what_the_journal_covers).await;
    assert_replayed_records(&log);
}

/// Enough data for several journal files (1 MiB each here): files are retired once their
/// partitions' segments are fsynced and taken into use again, and a crash after that
/// still restores everything from what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_journal_rotates_recycles_and_still_restores() {
    let load = Load {
        value_padding_bytes: 300,
        records_before_kill: 20_000,
    };
    let args = [
        "--durable",
        "--override",
        "ferry.journal.file.bytes=1048576",
    ];
    let (before, after) = kill_9_while_producing(&args, load, lose_what_the_journal_covers).await;
    let retired = before
        .iter()
        .filter(|l| l.contains("retiring a journal file"))
        .count();
    assert!(retired >= 3, "{retired} journal files retired");
    assert!(
        before
            .iter()
            .any(|l| l.contains("reusing a retired journal file")),
        "retired files are taken into use again"
    );
    assert_replayed_records(&after);
}

fn assert_replayed_records(log: &[String]) {
    let replayed = log
        .iter()
        .find(|l| l.contains("replayed the journal"))
        .expect("the restart replays the journal");
    assert!(!replayed.contains(" records=0"), "{replayed}");
}

/// The most a power loss could take from durable partitions: for each partition, every
/// segment byte from the first offset the surviving journal files hold for it (below it the
/// broker fsynced the segments before deleting older journal files). The recovery points
/// are forgotten too, so recovery scans every segment.
fn lose_what_the_journal_covers(data_dir: &Path) {
    let earliest = earliest_journaled_offsets(&data_dir.join("journal"));
    assert!(
        !earliest.is_empty(),
        "durable appends went through the journal"
    );
    for (partition, offset) in earliest {
        truncate_log_at(&data_dir.join(format!("crash-{partition}")), offset);
    }
    match std::fs::remove_file(data_dir.join("recovery-point-offset-checkpoint")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing the recovery points: {e}"),
    }
}

/// Reads the journal files (format in `src/storage/journal.rs`): the first batch base
/// offset of each partition. A file's entries end at a zero length or at an entry of
/// another sequence (what a recycled file held before).
fn earliest_journaled_offsets(dir: &Path) -> BTreeMap<i32, i64> {
    let mut earliest = BTreeMap::new();
    for path in sorted_files(dir, "journal") {
        let sequence: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut position = 0;
        while position + 44 <= bytes.len() {
            let length = be_u32(&bytes[position..]) as usize;
            if length == 0 || be_u64(&bytes[position + 8..]) != sequence {
                break;
            }
            let partition = be_u32(&bytes[position + 32..]) as i32;
            let base = be_u64(&bytes[position + 36..]) as i64;
            earliest.entry(partition).or_insert(base);
            position += 8 + length;
        }
    }
    earliest
}

/// Cuts a partition's log just before the batch at `offset`: the segment holding it is
/// truncated there and later segments are removed.
fn truncate_log_at(dir: &Path, offset: i64) {
    for path in sorted_files(dir, "log") {
        let base: i64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        if base > offset {
            std::fs::remove_file(&path).unwrap();
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut position = 0;
        while position + 12 <= bytes.len() {
            let batch_base = be_u64(&bytes[position..]) as i64;
            if batch_base >= offset {
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(position as u64).unwrap();
                break;
            }
            position += 12 + be_u32(&bytes[position + 8..]) as usize;
        }
    }
}

fn sorted_files(dir: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().unwrap())
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().unwrap())
}

/// Produces from several producers, kills the broker, lets `after_crash` change the data
/// directory, restarts and checks every acknowledged record. Returns the first broker's
/// log and the restarted one's.
async fn kill_9_while_producing(
    extra_args: &[&str],
    load: Load,
    after_crash: impl FnOnce(&Path),
) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--override", "log.segment.bytes=262144"];
    args.extend_from_slice(extra_args);
    let broker = Broker::start(dir.path(), &args);
    let topic = "crash";
    broker.create_topic(topic, PARTITIONS, &[]).await;
    let acked = Arc::new(Mutex::new(Acked::new()));
    let mut tasks = Vec::new();
    for producer_index in 0..PRODUCERS {
        let producer: FutureProducer = broker
            .client_config()
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "5000")
            .set("enable.idempotence", "false")
            .create()
            .unwrap();
        let acked = Arc::clone(&acked);
        tasks.push(tokio::spawn(async move {
            let stream = format!("p{producer_index}");
            for seq in 0u64.. {
                let padding = "x".repeat(load.value_padding_bytes);
                let value = format!("{stream}:{seq:08}:payload{padding}");
                let key = format!("{stream}-{}", seq % 13);
                let record = FutureRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .timestamp(1_000_000 + seq as i64);
                match producer
                    .send(record, Timeout::After(Duration::from_secs(5)))
                    .await
                {
                    Ok(delivery) => {
                        let data = RecordData {
                            key: Some(key.into_bytes()),
                            value: Some(value.into_bytes()),
                            headers: Vec::new(),
                            timestamp: 1_000_000 + seq as i64,
                        };
                        acked
                            .lock()
                            .unwrap()
                            .insert((delivery.partition, delivery.offset), data);
                    }
                    Err(_) => return, // the broker is gone
                }
            }
        }));
    }
    // Let the producers get going (and roll some segments), then crash the broker.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if acked.lock().unwrap().len() > load.records_before_kill {
            break;
        }
    }
    let before = broker.drain_log();
    broker.kill9();
    for task in tasks {
        let _ = task.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > load.records_before_kill);
    after_crash(dir.path());
    let broker = Broker::start(dir.path(), &[]);
    let log = broker.drain_log();
    assert!(
        log.iter().any(|l| l.contains("recovered log")),
        "an unclean restart runs recovery"
    );
    // Read everything the restarted broker has; acknowledged records must all be there.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &(partition, offset) in acked.keys() {
        let end = ends.entry(partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    let read = read_all(&broker, topic, &ends);
    for (position, record) in &acked {
        assert_eq!(
            read.get(position),
            Some(record),
            "acknowledged record lost at {position:?}"
        );
    }
    assert_dense_and_ordered(&read);
    (before, log)
}
