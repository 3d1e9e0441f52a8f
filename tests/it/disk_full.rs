//! A full disk: writes beyond the broker's file size limit (RLIMIT_FSIZE, which fails them
//! as ENOSPC would) are refused with KAFKA_STORAGE_ERROR and a log line; nothing
//! acknowledged is lost, the broker stays up, and once there is room again, producing
//! works without a restart.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::records::{end_offsets, read_all, Acked, RecordData};
use crate::support::Broker;

const FILE_SIZE_LIMIT_BYTES: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_limited(dir.path(), &[], Some(FILE_SIZE_LIMIT_BYTES));
    let topic = "full";
    broker.create_topic(topic, 1, &[]).await;
    let producer = producer_without_retries(&broker);
    let value = vec![b'x'; 10_000];
    let mut acked = Acked::new();
    let refusal = produce_until_refused(&producer, topic, &value, 400, &mut acked).await;
    match refusal {
        Some(KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError)) => {}
        other => panic!("expected KAFKA_STORAGE_ERROR once the disk is full, got {other:?}"),
    }
    assert!(acked.len() > 50, "some records fit before the disk filled");
    assert!(broker.is_running());
    let log = broker.drain_log();
    assert!(
        log.iter()
            .any(|l| l.contains("append failed") && l.contains("File too large")),
        "{log:?}"
    );
    // Everything acknowledged is intact.
    assert!(read_all(&broker, topic, &end_offsets(&acked)) == acked);
    // Room again: the next record lands right after the last acknowledged one.
    broker.lift_file_size_limit();
    let record = FutureRecord::<(), _>::to(topic)
        .payload(&value)
        .timestamp(5_000);
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(delivery.offset, acked.len() as i64);
}

/// A size-limited tmpfs mounted on a temporary directory for the test's lifetime: a disk
/// that really fills up (ENOSPC for every write that needs a new block, small files
/// included), unlike a file size limit. Needs the privilege to mount (CI runs as root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_bytes: u64) -> Option<SmallDisk> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let fstype = CString::new("tmpfs").unwrap();
        let options = CString::new(format!("size={size_bytes}")).unwrap();
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            eprintln!(
                "cannot mount a tmpfs ({}); this test needs to run as root",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        // Whatever a partial chunk left is taken too.
        while file.write_all(&chunk[..512]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes())
            .expect("a temporary path has no NUL");
        // SAFETY: a valid NUL-terminated path; MNT_DETACH lets a broker still holding files
        // there not block the unmount.
        unsafe {
            libc::umount2(target.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// A producer that sends each record at once and reports a refusal instead of retrying.
fn producer_without_retries(broker: &Broker) -> FutureProducer {
    broker
        .client_config()
        .set("message.send.max.retries", "0")
        .set("linger.ms", "0")
        .create()
        .unwrap()
}

/// Produces single records of `value` (at most `max_records`) until the broker refuses
/// one; returns the refusal, keeping what was acknowledged in `acked`.
async fn produce_until_refused(
    producer: &FutureProducer,
    topic: &str,
    value: &[u8],
    max_records: i64,
    acked: &mut Acked,
) -> Option<KafkaError> {
    let first_timestamp = 1_000 + acked.len() as i64;
    for i in 0..max_records {
        let timestamp = first_timestamp + i;
        let record = FutureRecord::<(), _>::to(topic)
            .payload(value)
            .timestamp(timestamp);
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(delivery) => {
                let data = RecordData {
                    key: None,
                    value: Some(value.to_vec()),
                    headers: Vec::new(),
                    timestamp,
                };
                acked.insert((delivery.partition, delivery.offset), data);
            }
            Err((err, _)) => return Some(err),
        }
    }
    None
}

const INTERNAL_PARTITIONS: &[&str] = &[
    "--override",
    "offsets.topic.num.partitions=3",
    "--override",
    "transaction.state.log.num.partitions=1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_at_shutdown_and_startup_stops_and_starts_cleanly() {
    let Some(disk) = SmallDisk::mount(24 << 20) else {
        return;
    };
    let data = disk.path().join("data");
    let topic = "filled";
    let broker = Broker::start(&data, INTERNAL_PARTITIONS);
    broker.create_topic(topic, 1, &[]).await;
    let producer = producer_without_retries(&broker);
    // The disk fills up behind the broker's back; writes are refused.
    let filler = disk.fill();
    let mut acked = Acked::new();
    match produce_until_refused(&producer, topic, &[b'y'; 4_000], 100_000, &mut acked).await {
        Some(KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError)) => {}
        other => panic!("expected KAFKA_STORAGE_ERROR on a full disk, got {other:?}"),
    }
    drop(producer);

    // A stop with the disk full exits 0 and says the next start recovers.
    let (status, log) = broker.stop_with_log();
    assert!(
        status.success(),
        "stop on a full disk: {status}, log: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("the next start recovers")),
        "{log:?}"
    );

    // A start on the still-full disk serves everything acknowledged and refuses writes.
    let broker = Broker::start(&data, INTERNAL_PARTITIONS);
    assert!(read_all(&broker, topic, &end_offsets(&acked)) == acked);
    let producer = producer_without_retries(&broker);
    let mut refused = Acked::new();
    match produce_until_refused(&producer, topic, &[b'y'; 4_000], 100_000, &mut refused).await {
        Some(KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError)) => {}
        other => panic!("expected KAFKA_STORAGE_ERROR after a start on a full disk, got {other:?}"),
    }
    acked.extend(refused);

    // Room again: the next record lands right after the last acknowledged one, and a
    // clean stop and start keep everything.
    std::fs::remove_file(filler).unwrap();
    let mut more = Acked::new();
    let value = vec![b'z'; 100];
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .payload(&value)
                .timestamp(99),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(delivery.offset, acked.len() as i64);
    more.insert(
        (delivery.partition, delivery.offset),
        RecordData {
            key: None,
            value: Some(value),
            headers: Vec::new(),
            timestamp: 99,
        },
    );
    acked.extend(more);
    drop(producer);
    let (status, log) = broker.stop_with_log();
    assert!(status.success());
    assert!(
        log.iter().any(|l| l.contains("shutdown complete")),
        "{log:?}"
    );
    let broker = Broker::start(&data, INTERNAL_PARTITIONS);
    assert!(read_all(&broker, topic, &end_offsets(&acked)) == acked);
    assert!(broker.stop().success());
}
