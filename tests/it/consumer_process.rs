//! Consumers as separate processes, so that a test can kill one with SIGKILL like a crash.
//! The child is this test binary re-run with `FERRY_TEST_CONSUMER` set, which turns the
//! otherwise empty test `consumer_process::child` into an rdkafka group consumer that
//! reports every assignment, revocation and processed record on stdout:
//!
//! ```text
//! assigned topic:0,topic:2
//! revoked topic:2
//! processed <partition> <offset> <value>
//! ```
//!
//! It stores each offset after processing and lets librdkafka commit stored offsets (also
//! when partitions are revoked and on close), so only a crash can make a record be
//! processed twice. Closing its stdin closes the consumer cleanly.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, TopicPartitionList};

const ENV: &str = "FERRY_TEST_CONSUMER";

/// What a consumer process should do.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub assignor: String,
    pub instance_id: Option<String>,
    pub session_timeout_ms: u32,
}

impl ConsumerSpec {
    fn encode(&self) -> String {
        [
            self.bootstrap.as_str(),
            &self.topic,
            &self.group,
            &self.assignor,
            self.instance_id.as_deref().unwrap_or(""),
            &self.session_timeout_ms.to_string(),
        ]
        .join("|")
    }

    fn decode(text: &str) -> ConsumerSpec {
        let parts: Vec<&str> = text.split('|').collect();
        ConsumerSpec {
            bootstrap: parts[0].into(),
            topic: parts[1].into(),
            group: parts[2].into(),
            assignor: parts[3].into(),
            instance_id: Some(parts[4].to_string()).filter(|s| !s.is_empty()),
            session_timeout_ms: parts[5].parse().unwrap(),
        }
    }
}

/// One line a consumer process printed, tagged with the process label and arrival time.
#[derive(Debug, Clone)]
pub struct Event {
    pub label: String,
    pub line: String,
    pub at: Instant,
}

/// A running consumer process.
pub struct ConsumerProcess {
    pub label: String,
    child: Child,
}

impl ConsumerProcess {
    /// Starts a consumer; its stdout lines arrive on `events`.
    pub fn start(
        label: &str,
        spec: &ConsumerSpec,
        events: &mpsc::Sender<Event>,
    ) -> ConsumerProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "consumer_process::child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, spec.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn consumer process");
        forward_lines(child.stdout.take().unwrap(), label, "", events);
        // A panic in the child shows up in the test's failure message as "stderr ..." lines.
        forward_lines(child.stderr.take().unwrap(), label, "stderr ", events);
        ConsumerProcess {
            label: label.to_string(),
            child,
        }
    }

    /// Closes the consumer cleanly (LeaveGroup, final commit) and waits for it.
    pub fn close(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("consumer {} did not close within 30 s", self.label);
    }

    /// Kills the process with SIGKILL: no LeaveGroup, no final commit.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

/// Sends every line of `stream` to `events` as `prefix` + line, tagged with `label`.
fn forward_lines(
    stream: impl std::io::Read + Send + 'static,
    label: &str,
    prefix: &'static str,
    events: &mpsc::Sender<Event>,
) {
    let (events, label) = (events.clone(), label.to_string());
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let event = Event {
                label: label.clone(),
                line: format!("{prefix}{line}"),
                at: Instant::now(),
            };
            if events.send(event).is_err() {
                break;
            }
        }
    });
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reporting;

impl ClientContext for Reporting {}

fn describe(list: &TopicPartitionList) -> String {
    list.elements()
        .iter()
        .map(|e| format!("{}:{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

impl ConsumerContext for Reporting {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(err) = result {
            say(&format!("error commit of {}: {err}", describe(offsets)));
        }
    }
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => say(&format!("revoked {}", describe(list))),
            Rebalance::Error(err) => say(&format!("error rebalance: {err}")),
            Rebalance::Assign(_) => {}
        }
    }
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            say(&format!("assigned {}", describe(list)));
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child's body; a no-op in the normal test run.
#[test]
fn child() {
    let Ok(encoded) = std::env::var(ENV) else {
        return;
    };
    // The test harness has printed "test consumer_process::child ... " without a newline.
    say("");
    let spec = ConsumerSpec::decode(&encoded);
    let mut config = rdkafka::config::ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.bootstrap)
        .set("group.id", &spec.group)
        .set("partition.assignment.strategy", &spec.assignor)
        .set("session.timeout.ms", spec.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "50");
    if let Some(instance) = &spec.instance_id {
        config.set("group.instance.id", instance);
    }
    let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting).unwrap();
    consumer.subscribe(&[&spec.topic]).unwrap();
    // Stdin closing is the signal to close cleanly.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        let _ = stop_tx.send(());
    });
    while stop_rx.try_recv().is_err() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let value =
                    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                say(&format!(
                    "processed {} {} {value}",
                    message.partition(),
                    message.offset()
                ));
                // A failed store means the record may be processed again: the test's
                // failure message shows why.
                if let Err(err) = consumer.store_offset_from_message(&message) {
                    say(&format!("error store_offset: {err}"));
                }
            }
            Some(Err(err)) => say(&format!("error {err}")),
            None => {}
        }
    }
    consumer.unsubscribe();
    // Serve the revocation (and its commit) before leaving.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    drop(consumer);
    say("closed");
}
