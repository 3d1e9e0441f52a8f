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
    let producer: FutureProducer = broker
        .client_config()
        .set("message.send.max.retries", "0")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let value = vec![b'x'; 10_000];
    let mut acked = Acked::new();
    let mut refusal = None;
    for i in 0..400 {
        let record = FutureRecord::<(), _>::to(topic)
            .payload(&value)
            .timestamp(1_000 + i);
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(delivery) => {
                let data = RecordData {
                    key: None,
                    value: Some(value.clone()),
                    headers: Vec::new(),
                    timestamp: 1_000 + i,
                };
                acked.insert((delivery.partition, delivery.offset), data);
            }
            Err((err, _)) => {
                refusal = Some(err);
                break;
            }
        }
    }
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
