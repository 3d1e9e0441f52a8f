//! The mirror against a source that misbehaves, through a proxy in front of a source Ferry
//! that rewrites what the source answers: Metadata points at the proxy (so the mirror
//! stays behind it), and Fetch answers are turned into NOT_LEADER_OR_FOLLOWER (a
//! leadership change), get a flipped byte (a corrupt batch) or a base offset that lies.
//! The mirror rides out the first and stops the topic with a reason on the others, never
//! writing anything wrong: what it holds always verifies equal to the source.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use proto_kafka::messages::{ApiKey, FetchResponse, MetadataResponse, ResponseHeader};
use proto_kafka::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::Broker;

/// What the proxy does to Fetch answers that carry records.
#[derive(Clone, Copy, Debug)]
enum Mischief {
    /// The first `n` become NOT_LEADER_OR_FOLLOWER without records.
    NotLeader(usize),
    /// The `n`-th (from 1) gets one byte of its records flipped.
    Corrupt(usize),
    /// The `n`-th (from 1) has its first batch's base offset lowered by 5.
    LowerBaseOffset(usize),
    /// From the `n`-th on (from 1), the first batch's CRC field differs: the source's
    /// batches are not the ones it served before (truncated and rewritten, as after an
    /// unclean leader election).
    RewrittenFrom(usize),
    /// The `n`-th (from 1) is cut off after half its bytes and the connection goes
    /// silent (it stays open, nothing more comes).
    StallOnce(usize),
}

struct Proxy {
    address: String,
    fetches_with_records: Arc<AtomicUsize>,
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<BytesMut> {
    let size = stream.read_i32().await?;
    let mut frame = BytesMut::zeroed(usize::try_from(size).unwrap_or(0));
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    stream.write_i32(frame.len() as i32).await?;
    stream.write_all(frame).await
}

impl Proxy {
    async fn start(upstream: String, mischief: Mischief) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let counter = Arc::new(AtomicUsize::new(0));
        let (own, count) = (address.clone(), Arc::clone(&counter));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(relay(
                    client,
                    server,
                    own.clone(),
                    mischief,
                    Arc::clone(&count),
                ));
            }
        });
        Proxy {
            address,
            fetches_with_records: counter,
        }
    }
}

/// Forwards one connection, one request at a time (the mirror's client does not pipeline).
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    own: String,
    mischief: Mischief,
    count: Arc<AtomicUsize>,
) {
    loop {
        let Ok(request) = read_frame(&mut client).await else {
            return;
        };
        let (key, version) = (
            i16::from_be_bytes([request[0], request[1]]),
            i16::from_be_bytes([request[2], request[3]]),
        );
        if write_frame(&mut server, &request).await.is_err() {
            return;
        }
        let Ok(response) = read_frame(&mut server).await else {
            return;
        };
        let seen = count.load(Ordering::SeqCst);
        let response = rewrite(response.freeze(), key, version, &own, mischief, &count);
        let stall_now = matches!(mischief, Mischief::StallOnce(at)
            if seen < at && count.load(Ordering::SeqCst) >= at);
        if stall_now {
            let half = response.len() / 2;
            let _ = client.write_i32(response.len() as i32).await;
            let _ = client.write_all(&response[..half]).await;
            // Silent, but open, until the mirror gives up on it.
            let mut sink = [0u8; 1];
            let _ = client.read(&mut sink).await;
            return;
        }
        if write_frame(&mut client, &response).await.is_err() {
            return;
        }
    }
}

fn rewrite(
    mut frame: Bytes,
    key: i16,
    version: i16,
    own: &str,
    mischief: Mischief,
    count: &AtomicUsize,
) -> Bytes {
    let Ok(api) = ApiKey::try_from(key) else {
        return frame;
    };
    if api != ApiKey::Metadata && api != ApiKey::Fetch {
        return frame;
    }
    let original = frame.clone();
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).unwrap();
    if api == ApiKey::Metadata {
        let mut response = MetadataResponse::decode(&mut frame, version).unwrap();
        let (host, port) = own.rsplit_once(':').unwrap();
        for broker in &mut response.brokers {
            broker.host = StrBytes::from_string(host.to_string());
            broker.port = port.parse().unwrap();
        }
        response.encode(&mut out, version).unwrap();
        return out.freeze();
    }
    let mut response = FetchResponse::decode(&mut frame, version).unwrap();
    let mut changed = false;
    for partition in response
        .responses
        .iter_mut()
        .flat_map(|t| &mut t.partitions)
    {
        let Some(records) = partition.records.clone().filter(|r| !r.is_empty()) else {
            continue;
        };
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        match mischief {
            Mischief::NotLeader(first) if n <= first => {
                partition.error_code = 6;
                partition.records = Some(Bytes::new());
                changed = true;
            }
            Mischief::Corrupt(at) if n == at => {
                let mut bytes = BytesMut::from(&records[..]);
                let last = bytes.len() - 1;
                bytes[last] ^= 0x5a;
                partition.records = Some(bytes.freeze());
                changed = true;
            }
            Mischief::RewrittenFrom(from) if n >= from => {
                let mut bytes = BytesMut::from(&records[..]);
                // Bytes 17..21 hold the CRC.
                bytes[17] ^= 0xff;
                partition.records = Some(bytes.freeze());
                changed = true;
            }
            Mischief::LowerBaseOffset(at) if n == at => {
                let mut bytes = BytesMut::from(&records[..]);
                let base = (&bytes[..8]).get_i64();
                (&mut bytes[..8]).put_i64(base - 5);
                partition.records = Some(bytes.freeze());
                changed = true;
            }
            _ => {}
        }
    }
    if !changed {
        return original;
    }
    response.encode(&mut out, version).unwrap();
    out.freeze()
}

fn ferry(bootstrap: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--bootstrap", bootstrap])
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn topic_state(mirror: &Broker) -> Value {
    let (ok, out) = ferry(
        &mirror.bootstrap,
        &["mirror", "status", "east", "--output", "json"],
    );
    assert!(ok, "{out}");
    let status: Value = serde_json::from_str(&out).unwrap();
    status["links"][0]["topics"][0].clone()
}

fn end_offset(broker: &Broker, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_or(-1, |w| w.1)
}

/// Produces `batches` batches of 10 records each to partition 0.
fn produce(source: &Broker, batches: usize) {
    let producer: BaseProducer = source.client_config().create().unwrap();
    for b in 0..batches {
        for i in 0..10 {
            let value = format!("value-{b}-{i}");
            producer
                .send(BaseRecord::<(), _>::to("t").payload(&value).partition(0))
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }
}

/// Source behind a proxy with `mischief`, a mirror of topic `t` linked through it.
async fn setup(mischief: Mischief) -> (Broker, Broker, Proxy, [tempfile::TempDir; 2]) {
    setup_with(mischief, &[]).await
}

/// As `setup`, with extra `ferry mirror create` arguments.
async fn setup_with(
    mischief: Mischief,
    create_args: &[&str],
) -> (Broker, Broker, Proxy, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let source = Broker::start(dirs[0].path(), &[]);
    source.create_topic("t", 1, &[]).await;
    produce(&source, 3);
    let proxy = Proxy::start(source.bootstrap.clone(), mischief).await;
    let mirror = Broker::start(dirs[1].path(), &[]);
    let mut create = vec!["mirror", "create", "east", "--source", &proxy.address];
    create.extend_from_slice(create_args);
    let (ok, out) = ferry(&mirror.bootstrap, &create);
    assert!(ok, "{out}");
    let (ok, out) = ferry(
        &mirror.bootstrap,
        &["mirror", "add", "east", "--topics", "t"],
    );
    assert!(ok, "{out}");
    (source, mirror, proxy, dirs)
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whatever the mirror holds is the source's, batch for batch.
fn assert_prefix_verifies(mirror: &Broker) {
    let (ok, out) = ferry(&mirror.bootstrap, &["mirror", "verify", "east"]);
    assert!(ok && !out.contains("DIVERGED"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_errors_from_the_source_are_ridden_out() {
    let (source, mirror, proxy, _dirs) = setup(Mischief::NotLeader(4)).await;
    wait("the mirror to catch up", || end_offset(&mirror, "t") == 30);
    assert!(proxy.fetches_with_records.load(Ordering::SeqCst) > 4);
    produce(&source, 2);
    wait("the mirror to follow", || end_offset(&mirror, "t") == 50);
    assert_eq!(topic_state(&mirror)["state"], "mirroring");
    assert_prefix_verifies(&mirror);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_stops_the_topic_and_nothing_corrupt_is_stored() {
    let (_source, mirror, _proxy, _dirs) = setup(Mischief::Corrupt(1)).await;
    wait("the topic to fail", || {
        topic_state(&mirror)["state"] == "failed"
    });
    let reason = topic_state(&mirror)["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("failed"), "{reason}");
    assert_eq!(end_offset(&mirror, "t"), 0, "a corrupt batch was stored");
    assert_prefix_verifies(&mirror);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_lies_about_offsets_stops_the_topic() {
    let (source, mirror, _proxy, _dirs) = setup(Mischief::LowerBaseOffset(2)).await;
    // The first fetch brings all three batches; the lie comes with the next one.
    wait("the first batches", || end_offset(&mirror, "t") == 30);
    produce(&source, 1);
    wait("the topic to fail", || {
        topic_state(&mirror)["state"] == "failed"
    });
    let reason = topic_state(&mirror)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("straddles") || reason.contains("offset"),
        "{reason}"
    );
    assert_eq!(
        end_offset(&mirror, "t"),
        30,
        "a batch at a lying offset was stored"
    );
    assert_prefix_verifies(&mirror);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_goes_silent_mid_answer_is_given_up_on_and_mirroring_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let properties = dir.path().join("source.properties");
    std::fs::write(&properties, "request.timeout.ms=1500\n").unwrap();
    let (source, mirror, _proxy, _dirs) = setup_with(
        Mischief::StallOnce(1),
        &["--source-config", properties.to_str().unwrap()],
    )
    .await;
    wait("the mirror to get past the silent answer", || {
        end_offset(&mirror, "t") == 30
    });
    produce(&source, 1);
    wait("the mirror to follow", || end_offset(&mirror, "t") == 40);
    assert_eq!(topic_state(&mirror)["state"], "mirroring");
    assert_prefix_verifies(&mirror);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_copies_no_faster_than_its_limit() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let source = Broker::start(dirs[0].path(), &[]);
    source.create_topic("t", 1, &[]).await;
    let producer: BaseProducer = source.client_config().create().unwrap();
    let value = vec![b'v'; 10_000];
    for _ in 0..60 {
        producer
            .send(BaseRecord::<(), _>::to("t").payload(&value).partition(0))
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    let mirror = Broker::start(dirs[1].path(), &[]);
    let limit = 200_000u64;
    let (ok, out) = ferry(
        &mirror.bootstrap,
        &[
            "mirror",
            "create",
            "east",
            "--source",
            &source.bootstrap,
            "--max-bytes-per-second",
            &limit.to_string(),
        ],
    );
    assert!(ok, "{out}");
    let started = Instant::now();
    let (ok, out) = ferry(
        &mirror.bootstrap,
        &["mirror", "add", "east", "--topics", "t"],
    );
    assert!(ok, "{out}");
    wait("the throttled mirror to finish", || {
        end_offset(&mirror, "t") == 60
    });
    // 600 KB in 10 KB batches at 200 KB/s: fetches of at most 200 KB, each followed by
    // its second, so the last one comes about 2 s after the first.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_500),
        "600 KB copied in {took:?} at 200 KB/s"
    );
    let (ok, out) = ferry(
        &mirror.bootstrap,
        &["mirror", "status", "east", "--output", "json"],
    );
    assert!(ok);
    assert!(out.contains("\"max_bytes_per_second\":200000"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_rewritten_under_a_stopped_mirror_is_found_at_its_restart() {
    let (_source, mirror, _proxy, dirs) = setup(Mischief::RewrittenFrom(2)).await;
    wait("the mirror to catch up", || end_offset(&mirror, "t") == 30);
    // The mirror stops; meanwhile the source's batches change under the same offsets.
    mirror.kill9();
    let mirror = Broker::start(dirs[1].path(), &[]);
    wait("the divergence to be found", || {
        topic_state(&mirror)["state"] == "failed"
    });
    let reason = topic_state(&mirror)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("diverged from the source at offset 20"),
        "{reason}"
    );
    assert_eq!(
        end_offset(&mirror, "t"),
        30,
        "nothing may be written past a divergence"
    );
}
