//! The harness's producer: a librdkafka producer whose delivery reports, statistics and
//! errors are served by the harness's own event loop, which turns acknowledgements into
//! latency with one clock read and one lock per delivery event (a batch of records), not
//! per record.
//!
//! Why not `rdkafka`'s `ThreadedProducer`: its polling thread builds a `BorrowedMessage`
//! (with an `Arc` clone) and calls the context once per record, and the context then read
//! the clock, bumped two atomics and took the latency lock for every record. At 1.3 M
//! records/s a profile (`perf record -g` of the harness in a quick W1) put that thread at a
//! quarter of the harness's CPU, about half of it in this per-record work, on a machine
//! whose two cores the producer, its reader and the broker share. A delivery event holds
//! the records of one produce response, so a record's ack latency here runs from its due
//! time to when the event was served, as before (the records of one event were
//! acknowledged together).
//!
//! The client is still made by `rdkafka` (`Client::new` from the same `ClientConfig`), so
//! what reaches the broker is unchanged: the same librdkafka, configuration and batches.

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaType};

use super::clients::ErrorLog;
use super::stats::{unix_micros, Latency};

/// How long the event loop blocks waiting for an event before it checks whether to stop.
const EVENT_POLL_TIMEOUT_MS: i32 = 20;

/// Acknowledgements seen by a producer.
#[derive(Debug, Default)]
pub struct Acks {
    pub latency: Latency,
    /// When the newest acknowledgement arrived, in UNIX microseconds.
    pub last_at_us: Option<u64>,
}

/// What a producer's delivery reports, statistics and errors said. Each record's delivery
/// opaque is the microsecond (UNIX time) it was due to be sent.
#[derive(Debug, Default)]
pub struct ProducerStats {
    pub acks: Mutex<Acks>,
    pub acked_records: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub failed_records: AtomicU64,
    pub failures: ErrorLog,
    pub client_errors: ErrorLog,
    /// Sums over librdkafka's per-interval `batchcnt` windows: records and batches.
    pub batched_records: AtomicI64,
    pub batches: AtomicI64,
    pub statistics_reports: AtomicU64,
}

impl ClientContext for ProducerStats {}

impl ProducerStats {
    /// Counts one delivery event's records: acknowledged ones with their latency from
    /// `due_us` to `now_us`, failed ones with their error.
    fn acknowledge(&self, now_us: u64, deliveries: impl Iterator<Item = Delivery>) {
        let mut records = 0u64;
        let mut bytes = 0u64;
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        for delivery in deliveries {
            match delivery.error {
                None => {
                    records += 1;
                    bytes += delivery.bytes;
                    acks.latency.record(now_us.saturating_sub(delivery.due_us));
                }
                Some(code) => {
                    self.failed_records.fetch_add(1, Ordering::Relaxed);
                    self.failures.push(code.to_string());
                }
            }
        }
        if records > 0 {
            acks.last_at_us = Some(now_us);
        }
        drop(acks);
        self.acked_records.fetch_add(records, Ordering::Relaxed);
        self.acked_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn statistics(&self, statistics: &str) {
        let (records, batches) = batch_counts(statistics);
        self.batched_records.fetch_add(records, Ordering::Relaxed);
        self.batches.fetch_add(batches, Ordering::Relaxed);
        self.statistics_reports.fetch_add(1, Ordering::Relaxed);
    }
}

/// One record's delivery report.
struct Delivery {
    due_us: u64,
    /// Value and key bytes.
    bytes: u64,
    error: Option<RDKafkaErrorCode>,
}

/// Sums `sum` and `cnt` of every `"batchcnt"` window in a librdkafka statistics document
/// (one per topic): records sent in batches, and batches.
pub fn batch_counts(statistics: &str) -> (i64, i64) {
    let number_after = |window: &str, key: &str| -> i64 {
        window
            .split(key)
            .nth(1)
            .map(|rest| {
                rest.trim_start_matches([':', ' '])
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '-')
                    .collect::<String>()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut records = 0;
    let mut batches = 0;
    for part in statistics.split("\"batchcnt\"").skip(1) {
        let Some(open) = part.find('{') else { continue };
        let Some(close) = part[open..].find('}') else {
            continue;
        };
        let window = &part[open..open + close];
        records += number_after(window, "\"sum\"");
        batches += number_after(window, "\"cnt\"");
    }
    (records, batches)
}

/// A librdkafka producer and the thread serving its events. Dropping it stops the thread
/// and then destroys the client.
pub struct Producer {
    client: Arc<Client<ProducerStats>>,
    stop: Arc<AtomicBool>,
    events: Option<thread::JoinHandle<()>>,
}

impl Producer {
    pub fn new(config: &ClientConfig) -> Result<Producer, String> {
        let native = config
            .create_native_config()
            .map_err(|e| format!("producer configuration: {e}"))?;
        // SAFETY: the configuration object is live and owned here until `Client::new` hands
        // it to `rd_kafka_new`; setting the event mask only stores flags in it.
        unsafe {
            rdsys::rd_kafka_conf_set_events(
                native.ptr(),
                rdsys::RD_KAFKA_EVENT_DR
                    | rdsys::RD_KAFKA_EVENT_STATS
                    | rdsys::RD_KAFKA_EVENT_ERROR,
            );
        }
        let client = Client::new(
            config,
            native,
            RDKafkaType::RD_KAFKA_PRODUCER,
            ProducerStats::default(),
        )
        .map_err(|e| format!("producer: {e}"))?;
        let client = Arc::new(client);
        let stop = Arc::new(AtomicBool::new(false));
        let events = thread::Builder::new()
            .name("producer events".into())
            .spawn({
                let client = Arc::clone(&client);
                let stop = Arc::clone(&stop);
                move || serve_events(&client, &stop)
            })
            .map_err(|e| format!("producer event thread: {e}"))?;
        Ok(Producer {
            client,
            stop,
            events: Some(events),
        })
    }

    pub fn client(&self) -> &Client<ProducerStats> {
        &self.client
    }

    pub fn stats(&self) -> &Arc<ProducerStats> {
        self.client.context()
    }

    /// Waits until every queued record was delivered or failed and its report counted.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the client is live. With delivery reports as events, librdkafka's flush
        // only waits for its message count to reach zero, which happens as the event
        // thread destroys the served reports; it never polls the queue itself.
        let code: RDKafkaErrorCode =
            unsafe { rdsys::rd_kafka_flush(self.client.native_ptr(), timeout_ms) }.into();
        match code {
            RDKafkaErrorCode::NoError => Ok(()),
            code => Err(format!("{code}")),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(events) = self.events.take() {
            // The thread only reads counters and librdkafka events; a panic there already
            // printed its message, and the client is destroyed after this either way.
            let _ = events.join();
        }
    }
}

/// The event loop: serves the client's main queue until `stop`.
fn serve_events(client: &Client<ProducerStats>, stop: &AtomicBool) {
    let stats = client.context();
    // SAFETY: the client is live while this thread runs (it holds an `Arc` of it); the queue
    // reference is released below, before the thread ends.
    let queue = unsafe { rdsys::rd_kafka_queue_get_main(client.native_ptr()) };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `queue` is a live queue reference; a null result means no event.
        let event = unsafe { rdsys::rd_kafka_queue_poll(queue, EVENT_POLL_TIMEOUT_MS) };
        if event.is_null() {
            continue;
        }
        // SAFETY: `event` is a live event until destroyed at the end of this iteration;
        // every pointer read from it is used before that.
        unsafe {
            match rdsys::rd_kafka_event_type(event) {
                rdsys::RD_KAFKA_EVENT_DR => stats.acknowledge(unix_micros(), deliveries(event)),
                rdsys::RD_KAFKA_EVENT_STATS => {
                    stats.statistics(&c_text(rdsys::rd_kafka_event_stats(event)));
                }
                rdsys::RD_KAFKA_EVENT_ERROR => {
                    let code: RDKafkaErrorCode = rdsys::rd_kafka_event_error(event).into();
                    let reason = c_text(rdsys::rd_kafka_event_error_string(event));
                    let error = KafkaError::Global(code);
                    stats
                        .client_errors
                        .push(format!("{error}: {}", reason.trim()));
                }
                // Log lines: the harness installs no logger, so they were always dropped;
                // client errors arrive as error events and delivery failures in reports.
                _ => {}
            }
            rdsys::rd_kafka_event_destroy(event);
        }
    }
    // SAFETY: releases the reference taken above, once.
    unsafe { rdsys::rd_kafka_queue_destroy(queue) };
}

/// The records of a delivery event.
///
/// # Safety
/// `event` must be a live delivery-report event, and the iterator must be used up before
/// the event is destroyed.
unsafe fn deliveries(event: *mut rdsys::rd_kafka_event_t) -> impl Iterator<Item = Delivery> {
    std::iter::from_fn(move || {
        // SAFETY: per this function's contract; librdkafka returns each record of the event
        // once and then null, and the messages live as long as the event.
        let message = unsafe { rdsys::rd_kafka_event_message_next(event).as_ref()? };
        let error = (message.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| message.err.into());
        Some(Delivery {
            // The opaque was the due time, never a pointer (see `TopicHandle::send`).
            due_us: message._private as usize as u64,
            bytes: (message.len + message.key_len) as u64,
            error,
        })
    })
}

/// A C string from librdkafka, or empty for null.
///
/// # Safety
/// `text` must be null or a NUL-terminated string that outlives the call.
unsafe fn c_text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::topic_handle::TopicHandle;
    use super::*;

    #[test]
    fn batch_counts_from_statistics() {
        let statistics = r#"{"topics":{"a":{"batchsize":{"avg":1},"batchcnt":{"min":1,"max":9,"avg":5,"sum":500,"cnt":100}},"b":{"batchcnt":{"sum":20, "cnt":2}}}}"#;
        assert_eq!(batch_counts(statistics), (520, 102));
        assert_eq!(batch_counts("{}"), (0, 0));
    }

    /// A producer whose broker address refuses connections: records stay queued until
    /// they time out (100 ms). Also used by `topic_handle`'s tests.
    pub(in crate::bench) fn unconnected_producer(max_queued_records: &str) -> Producer {
        Producer::new(
            ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("queue.buffering.max.messages", max_queued_records)
                .set("message.timeout.ms", "100")
                .set("log_level", "0"),
        )
        .unwrap()
    }

    #[test]
    fn records_that_time_out_are_counted_as_failures_by_the_event_loop() {
        let producer = unconnected_producer("100");
        let handle = TopicHandle::new(producer.client(), "bench-handle").unwrap();
        handle.send(b"value", Some(b"key"), 42).unwrap();
        handle.send(b"value", None, 7).unwrap();
        // Flushing returns once both reports were served: the records time out after
        // message.timeout.ms and their reports reach the event loop.
        producer.flush(Duration::from_secs(30)).unwrap();
        let stats = producer.stats();
        assert_eq!(stats.failed_records.load(Ordering::Relaxed), 2);
        assert_eq!(stats.acked_records.load(Ordering::Relaxed), 0);
        assert!(stats.failures.kept()[0].contains("timed out"));
    }

    #[test]
    fn acknowledgements_count_bytes_and_latency_from_the_due_time() {
        let stats = ProducerStats::default();
        let ok = |due_us, bytes| Delivery {
            due_us,
            bytes,
            error: None,
        };
        let failed = Delivery {
            due_us: 0,
            bytes: 100,
            error: Some(RDKafkaErrorCode::MessageTimedOut),
        };
        stats.acknowledge(1_000, [ok(900, 10), ok(500, 20), failed].into_iter());
        assert_eq!(stats.acked_records.load(Ordering::Relaxed), 2);
        assert_eq!(stats.acked_bytes.load(Ordering::Relaxed), 30);
        assert_eq!(stats.failed_records.load(Ordering::Relaxed), 1);
        let acks = stats.acks.lock().unwrap();
        assert_eq!(acks.last_at_us, Some(1_000));
        assert_eq!(acks.latency.count(), 2);
        assert_eq!(acks.latency.percentiles().map(|p| p.max_us), Some(500));
        drop(acks);
        // A due time after the event (the clock stepped back) counts as no latency, not as
        // a wrap-around.
        stats.acknowledge(1_000, [ok(2_000, 1)].into_iter());
        let acks = stats.acks.lock().unwrap();
        assert_eq!(acks.latency.count(), 3);
        assert_eq!(acks.latency.percentiles().map(|p| p.max_us), Some(500));
    }
}
