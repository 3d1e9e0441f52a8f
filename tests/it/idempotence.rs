//! The idempotent producer under connection drops: a proxy between librdkafka and the
//! broker cuts every connection every few hundred milliseconds, so requests are lost,
//! responses are lost, and batches are retried; the log must hold each record exactly
//! once, in order.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientContext;

use crate::records::{end_offsets, read_all};
use crate::support::Broker;

/// A TCP proxy that drops all its connections every `period`.
struct ChaosProxy {
    port: u16,
    upstream: Arc<Mutex<String>>,
    chaos: Arc<AtomicBool>,
    drops: Arc<AtomicUsize>,
}

impl ChaosProxy {
    fn start(period: Duration) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = Arc::new(Mutex::new(String::new()));
        let chaos = Arc::new(AtomicBool::new(true));
        let drops = Arc::new(AtomicUsize::new(0));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up, live_accept) = (Arc::clone(&upstream), Arc::clone(&live));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(up.lock().unwrap().as_str()) else {
                    continue;
                };
                live_accept
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        let (chaos_flag, drop_count) = (Arc::clone(&chaos), Arc::clone(&drops));
        std::thread::spawn(move || loop {
            std::thread::sleep(period);
            if chaos_flag.load(Ordering::Relaxed) {
                let streams: Vec<TcpStream> = std::mem::take(&mut *live.lock().unwrap());
                if !streams.is_empty() {
                    drop_count.fetch_add(1, Ordering::Relaxed);
                }
                for s in streams {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        });
        ChaosProxy {
            port,
            upstream,
            chaos,
            drops,
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Where each record (by sequence number) was acknowledged, or why it failed.
type Outcomes = BTreeMap<u64, Result<(i32, i64), String>>;

struct Deliveries(Mutex<Outcomes>);

impl ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, seq: Box<u64>) {
        let outcome = match result {
            Ok(m) => Ok((rdkafka::Message::partition(m), rdkafka::Message::offset(m))),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap().insert(*seq, outcome);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_dropped_connections_leave_no_duplicates_or_gaps() {
    let proxy = ChaosProxy::start(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let advertise = format!("127.0.0.1:{}", proxy.port);
    let broker = Broker::start(dir.path(), &["--advertise", &advertise]);
    *proxy.upstream.lock().unwrap() = broker.bootstrap.clone();
    let topic = "idempotent";
    broker.create_topic(topic, 3, &[]).await;
    let producer: ThreadedProducer<Deliveries> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &advertise)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "20")
        .create_with_context(Deliveries(Mutex::default()))
        .unwrap();
    const RECORDS: u64 = 20_000;
    for seq in 0..RECORDS {
        let key = format!("key-{}", seq % 11);
        let value = seq.to_string();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(seq))
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        if seq % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    proxy.chaos.store(false, Ordering::Relaxed);
    assert!(
        proxy.drops.load(Ordering::Relaxed) >= 3,
        "the proxy dropped connections"
    );
    let deliveries = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert_eq!(deliveries.len() as u64, RECORDS);
    let mut acked = BTreeMap::new();
    for (seq, outcome) in &deliveries {
        let position = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("record {seq} failed: {e}"));
        assert!(
            acked.insert(*position, *seq).is_none(),
            "two records acknowledged at {position:?}"
        );
    }
    // Everything in the log, read back directly: exactly the acknowledged records, with no
    // extra copies (a duplicate would sit at an offset nobody was acknowledged for).
    let ends = end_offsets(&acked);
    let stored = read_all(&broker, topic, &ends);
    assert_eq!(
        stored.len(),
        acked.len(),
        "the log holds exactly the acknowledged records"
    );
    let mut last_per_key: BTreeMap<String, u64> = BTreeMap::new();
    for (position, record) in &stored {
        let seq: u64 = String::from_utf8_lossy(record.value.as_deref().unwrap())
            .parse()
            .unwrap();
        assert_eq!(acked.get(position), Some(&seq), "record at {position:?}");
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap()).into_owned();
        if let Some(previous) = last_per_key.insert(key.clone(), seq) {
            assert!(seq > previous, "key {key}: {previous} then {seq}");
        }
    }
}
