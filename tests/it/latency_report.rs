//! The report an operator gets with `kill -USR1 <pid>`: the fsyncs issued and one line per
//! API with the requests answered since the previous report, and the counts start over.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::Broker;

const PRODUCES: u64 = 40;
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends SIGUSR1 and returns the report lines numbered `report`.
fn report(broker: &Broker, report: u64) -> Vec<String> {
    // SAFETY: signals the test's own child process.
    let rc = unsafe { libc::kill(broker.pid() as libc::pid_t, libc::SIGUSR1) };
    assert_eq!(rc, 0, "kill -USR1: {}", std::io::Error::last_os_error());
    let marker = format!("report={report}");
    let deadline = Instant::now() + REPORT_TIMEOUT;
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        lines.extend(
            broker
                .drain_log()
                .into_iter()
                .filter(|l| l.contains("since the previous report") && l.contains(&marker)),
        );
        // A report's lines are logged together; give the last of them a moment.
        if !lines.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            lines.extend(
                broker
                    .drain_log()
                    .into_iter()
                    .filter(|l| l.contains(&marker)),
            );
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no latency report {report} within {REPORT_TIMEOUT:?}");
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name} in {line}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reports_request_latency_per_api_since_the_previous_report() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    // Durable, so that every acknowledged produce needed an fsync.
    broker
        .create_topic("latency", 1, &[("flush.messages", "1")])
        .await;
    let first = report(&broker, 1);
    assert!(
        first.iter().any(|l| l.contains("api=CreateTopics")),
        "{first:?}"
    );

    let producer: FutureProducer = broker
        .client_config()
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for i in 0..PRODUCES {
        // One at a time: every record is its own ProduceRequest.
        producer
            .send(
                FutureRecord::<(), _>::to("latency").payload(&i.to_string()),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
    let second = report(&broker, 2);
    let produce = second
        .iter()
        .find(|l| l.contains("api=Produce"))
        .unwrap_or_else(|| panic!("no Produce line in {second:?}"));
    assert_eq!(field(produce, "requests"), PRODUCES, "{produce}");
    let (p50, p99, max) = (
        field(produce, "p50_us"),
        field(produce, "p99_us"),
        field(produce, "max_us"),
    );
    assert!(p50 > 0 && p50 <= p99 && p99 <= max, "{produce}");
    assert!(
        !second.iter().any(|l| l.contains("api=CreateTopics")),
        "counts start over"
    );
    let fsyncs = second
        .iter()
        .find(|l| l.contains("fsyncs since the previous report"))
        .unwrap_or_else(|| panic!("no fsync line in {second:?}"));
    assert!(field(fsyncs, "fsyncs") >= PRODUCES, "{fsyncs}");

    let third = report(&broker, 3);
    assert!(
        !third.iter().any(|l| l.contains("api=Produce")),
        "{third:?}"
    );
    assert_eq!(broker.stop().code(), Some(0));
}
