//! Connection lifecycle: a client that closes its connection while a long-poll Fetch waits
//! gets its `max.connections` slot (and the connection's memory) back at once, and a clean
//! shutdown with busy clients (a consumer group member, long polls) is prompt and quiet.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferry::client::Connection;
use proto_kafka::messages::fetch_request::{FetchPartition, FetchTopic};
use proto_kafka::messages::{ApiKey, BrokerId, FetchRequest, RequestHeader, TopicName};
use proto_kafka::protocol::{Encodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::support::Broker;

const MAX_CONNECTIONS: usize = 50;
const ROUNDS: usize = 10;

/// A Fetch frame (v12) that waits as long as a client may ask (`max_wait_ms` = i32::MAX,
/// about 24.8 days) for one byte of an empty partition.
fn endless_fetch_frame(topic: &str) -> Vec<u8> {
    let version = 12;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("long-poller")));
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(i32::MAX)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::Fetch.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Connects and completes ApiVersions, retrying until `deadline`.
async fn connect_before(bootstrap: &str, deadline: Instant) -> bool {
    loop {
        if Connection::connect(bootstrap, "newcomer").await.is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_during_a_long_poll_frees_the_slot_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let limit = format!("max.connections={MAX_CONNECTIONS}");
    let broker = Broker::start(dir.path(), &["--override", &limit]);
    broker.create_topic("quiet", 1, &[]).await;
    let frame = endless_fetch_frame("quiet");
    // Warm up (the first connections allocate the runtime's buffers), then measure.
    assert!(connect_before(&broker.bootstrap, Instant::now() + Duration::from_secs(5)).await);
    let baseline_kib = rss_kib(broker.pid());
    for round in 0..ROUNDS {
        // Fill every slot with a connection whose Fetch waits, then close them all.
        let mut pollers = Vec::new();
        while pollers.len() < MAX_CONNECTIONS {
            let mut socket = TcpStream::connect(&broker.bootstrap).unwrap();
            socket.write_all(&frame).unwrap();
            pollers.push(socket);
        }
        // Let the broker read and park every Fetch.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(pollers);
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(
            connect_before(&broker.bootstrap, deadline).await,
            "round {round}: no slot came back within a second of {MAX_CONNECTIONS} clients \
             closing their long polls"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_kib = rss_kib(broker.pid());
    eprintln!(
        "RSS {baseline_kib} KiB before and {after_kib} KiB after {} long-poll connections",
        MAX_CONNECTIONS * ROUNDS
    );
    assert!(
        after_kib < baseline_kib + 16 * 1024,
        "RSS grew from {baseline_kib} KiB to {after_kib} KiB"
    );
    let (status, log) = broker.stop_with_log();
    assert!(status.success());
    assert!(
        !log.iter().any(|l| l.contains("still busy at shutdown")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_with_busy_clients_is_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    broker.create_topic("busy", 2, &[]).await;
    // A group member (its coordinator connection, heartbeats, long-poll fetches) and a
    // raw long poll.
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "stay")
        .set("fetch.wait.max.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&["busy"]).unwrap();
    let started = Instant::now();
    while consumer.assignment().unwrap().count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no assignment");
        consumer.poll(Duration::from_millis(100));
    }
    let mut poller = TcpStream::connect(&broker.bootstrap).unwrap();
    poller.write_all(&endless_fetch_frame("busy")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    let (status, log) = broker.stop_with_log();
    let took = stopping.elapsed();
    assert!(status.success());
    assert!(
        !log.iter().any(|l| l.contains("still busy at shutdown")),
        "{log:?}"
    );
    eprintln!("clean stop with a group member and a long poll took {took:?}");
    // Generous: the drain allows pending replies one second, against the five it used
    // to wait for a parked long poll or join.
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    drop(consumer);
}
