//! Recovery from a damaged last segment: a torn tail or flipped bytes are cut off at the
//! last valid batch, the rest is served, and new records continue right after it.

use std::path::{Path, PathBuf};

use rdkafka::producer::FutureProducer;

use crate::records::{end_offsets, produce_all, read_all, test_record, Acked};
use crate::support::Broker;

async fn produce_batches(broker: &Broker, topic: &str, batches: u64) -> Acked {
    // One record per batch (linger 0, one at a time) so that damage hits exactly one batch.
    let producer: FutureProducer = broker
        .client_config()
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let mut acked = Acked::new();
    for seq in 0..batches {
        acked.extend(produce_all(&producer, topic, &[test_record(topic, seq, 1_000)]).await);
    }
    acked
}

fn last_segment(dir: &Path, topic: &str) -> PathBuf {
    let partition_dir = dir.join(format!("{topic}-0"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&partition_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

fn drop_last(acked: &Acked) -> Acked {
    let mut kept = acked.clone();
    kept.pop_last();
    kept
}

async fn check_recovers(damage: impl FnOnce(&Path), clean_stop: bool) {
    let dir = tempfile::tempdir().unwrap();
    let topic = "damaged";
    let broker = Broker::start(dir.path(), &[]);
    broker.create_topic(topic, 1, &[]).await;
    let acked = produce_batches(&broker, topic, 50).await;
    if clean_stop {
        assert!(broker.stop().success());
    } else {
        broker.kill9();
    }
    damage(&last_segment(dir.path(), topic));
    let broker = Broker::start(dir.path(), &[]);
    let survivors = drop_last(&acked);
    let read = read_all(&broker, topic, &end_offsets(&survivors));
    assert!(
        read == survivors,
        "every batch before the damaged one is served intact"
    );
    // The log continues at the first offset after the surviving batches.
    let more = produce_batches(&broker, topic, 1).await;
    let (&(_, offset), _) = more.iter().next().unwrap();
    assert_eq!(offset, survivors.len() as i64);
}

fn truncate_mid_batch(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len - 10).unwrap();
}

fn flip_byte_in_last_batch(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_after_a_crash_is_truncated() {
    check_recovers(truncate_mid_batch, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_last_batch_after_a_crash_is_truncated() {
    check_recovers(flip_byte_in_last_batch, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_after_a_clean_shutdown_is_detected() {
    check_recovers(truncate_mid_batch, true).await;
}
