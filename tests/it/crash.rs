//! Crash safety: kill -9 the broker while several producers send with acks=all, restart,
//! and check that every acknowledged record is there, in order, in a log without gaps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::records::{assert_dense_and_ordered, read_all, Acked, RecordData};
use crate::support::Broker;

const PRODUCERS: usize = 4;
const PARTITIONS: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    kill_9_while_producing(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_in_durable_mode() {
    kill_9_while_producing(&["--durable"]).await;
}

async fn kill_9_while_producing(extra_args: &[&str]) {
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
                let value = format!("{stream}:{seq:08}:payload");
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
        if acked.lock().unwrap().len() > 20_000 {
            break;
        }
    }
    broker.kill9();
    for task in tasks {
        let _ = task.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20_000);
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
}
