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
    let baseline_kib = broker.status_kib("VmRSS");
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
    let after_kib = broker.status_kib("VmRSS");
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

/// Raises this process's open-file limit to its hard limit (the broker, started after,
/// inherits it) and returns it.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Makes closing `socket` reset the connection (SO_LINGER 0), so that 20,000 closes in a
/// few seconds do not leave 20,000 local ports in TIME_WAIT.
fn close_without_time_wait(socket: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open (borrowed) and the option value is a valid `linger`.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// ApiVersions v0: the smallest request every client sends first.
fn api_versions_frame() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&5i16.to_be_bytes());
    body.extend_from_slice(b"churn");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Opening and closing 20,000 connections (in rounds of up to 2,000 open at once, each
/// asking ApiVersions, so each has its buffers) leaves the broker's memory near where it
/// started: closed connections give their memory back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_connections_give_their_memory_back() {
    const TOTAL: usize = 20_000;
    let limit = raise_open_file_limit();
    let at_once = 2_000.min(limit.saturating_sub(600) as usize).max(100);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let frame = api_versions_frame();
    let round = |count: usize| {
        let mut open = Vec::with_capacity(count);
        for _ in 0..count {
            let mut socket = TcpStream::connect(&broker.bootstrap).unwrap();
            socket.write_all(&frame).unwrap();
            open.push(socket);
        }
        for socket in &mut open {
            let mut size = [0u8; 4];
            std::io::Read::read_exact(socket, &mut size).unwrap();
            let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
            std::io::Read::read_exact(socket, &mut body).unwrap();
            close_without_time_wait(socket);
        }
    };
    // Warm up (the runtime's own buffers), then take the baseline once memory was released.
    round(100);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let baseline_kib = broker.status_kib("VmRSS");
    let mut done = 0;
    let mut open_kib = 0;
    while done < TOTAL {
        let count = at_once.min(TOTAL - done);
        round(count);
        open_kib = open_kib.max(broker.status_kib("VmRSS"));
        done += count;
    }
    let peak_kib = broker.status_kib("VmHWM");
    // Closed connections' memory is released within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after_kib = broker.status_kib("VmRSS");
    while after_kib > baseline_kib + 32 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after_kib = broker.status_kib("VmRSS");
    }
    eprintln!(
        "{TOTAL} connections, {at_once} at a time: RSS {baseline_kib} KiB before, up to \
         {open_kib} KiB with a round open (peak {peak_kib} KiB), {after_kib} KiB after"
    );
    assert!(
        after_kib <= baseline_kib + 32 * 1024,
        "RSS stayed at {after_kib} KiB after closing (baseline {baseline_kib} KiB)"
    );
    assert!(broker.stop().success());
}
