//! What the harness's librdkafka clients share: the admin client that creates and deletes
//! the harness's topics, and the log of client errors. The producer is `producer.rs`, the
//! readers `reader.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// Longest the admin client waits for a topic to be created or deleted (10,000 partitions
/// can take a while on any broker).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(300);
/// How often librdkafka reports statistics (for records per batch).
pub const STATISTICS_INTERVAL_MS: u32 = 1000;
/// Distinct client error messages kept per phase (all are counted).
const KEPT_ERRORS: usize = 5;

/// Errors reported by librdkafka clients: counted, the first few kept.
#[derive(Debug, Default)]
pub struct ErrorLog {
    count: AtomicU64,
    kept: Mutex<Vec<String>>,
}

impl ErrorLog {
    pub fn push(&self, message: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_ERRORS && !kept.contains(&message) {
            kept.push(message);
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn kept(&self) -> Vec<String> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The admin client plus a small runtime to wait on its futures.
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    runtime: tokio::runtime::Runtime,
}

impl Admin {
    pub fn connect(bootstrap: &str) -> Result<Admin, String> {
        let client = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "ferry-bench-admin")
            .create()
            .map_err(|e| format!("admin client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        Ok(Admin { client, runtime })
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(ADMIN_TIMEOUT))
            .request_timeout(Some(ADMIN_TIMEOUT))
    }

    /// Creates the topic and returns how long the broker took to answer.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<Duration, String> {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let start = Instant::now();
        let results = self
            .runtime
            .block_on(self.client.create_topics(&[topic], &Admin::options()))
            .map_err(|e| format!("create topic {name}: {e}"))?;
        let elapsed = start.elapsed();
        for result in results {
            result.map_err(|(topic, code)| format!("create topic {topic}: {code}"))?;
        }
        Ok(elapsed)
    }

    pub fn delete_topics(&self, names: &[&str]) -> Result<Duration, String> {
        let start = Instant::now();
        let results = self
            .runtime
            .block_on(self.client.delete_topics(names, &Admin::options()))
            .map_err(|e| format!("delete topics {names:?}: {e}"))?;
        let elapsed = start.elapsed();
        for result in results {
            result.map_err(|(topic, code)| format!("delete topic {topic}: {code}"))?;
        }
        Ok(elapsed)
    }
}
