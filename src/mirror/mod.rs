//! Migration from a running Kafka cluster: links to source clusters, mirror topics that
//! hold the source's batches at the source's offsets, consumer-group offsets carried over
//! verbatim, and promotion of a topic to an ordinary writable one. The control plane is
//! Ferry's admin API on the Kafka port (`protocol::ferry_admin`), answered by
//! [`Mirror::handle`]; `ferry mirror` is its client. docs/migration.md has the design and
//! the cutover runbook.
//!
//! Ownership: this module owns `mirror-links.json` (`store`), the link loops (`link`),
//! group sync (`groups`) and the live figures (`status`). It depends on the broker (topic
//! registry, partitions' verbatim appends, the group coordinator), the client and the
//! admin helpers; nothing below it knows it exists: the broker sees only the read-only
//! marks it sets and the admin service it installs.

pub mod groups;
pub mod link;
pub mod metrics;
pub mod ops;
pub mod source;
pub mod status;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use tracing::{error, info};

use crate::broker::Broker;
use status::{LinkStatus, PartitionStatus};
use store::{LinkRecord, MirrorState, StoreError, TopicState};

/// A running link loop.
struct LinkTask {
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    changed: Arc<AtomicBool>,
}

/// The mirror service.
pub struct Mirror {
    broker: Arc<Broker>,
    data_dir: PathBuf,
    state: Mutex<MirrorState>,
    status: Mutex<HashMap<String, LinkStatus>>,
    tasks: Mutex<HashMap<String, LinkTask>>,
    runtime: tokio::runtime::Handle,
}

/// The message producers get for a topic `link` mirrors.
pub fn read_only_reason(link: &str, topic: &str) -> String {
    format!(
        "topic {topic} is a mirror of link {link} and takes no writes until promoted \
         (`ferry mirror promote {link} --topic {topic}`)"
    )
}

impl Mirror {
    /// Loads the links, marks their unpromoted topics read-only (before the broker
    /// serves anyone) and installs the admin service. Link loops start with [`Self::start`].
    pub fn open(broker: Arc<Broker>) -> Result<Arc<Mirror>, StoreError> {
        let data_dir = broker.config.data_dir.clone();
        let state = store::load(&data_dir)?;
        for link in state.links.values() {
            for (topic, record) in &link.topics {
                if record.state.is_read_only() {
                    broker
                        .topics
                        .read_only
                        .set(topic, read_only_reason(&link.name, topic));
                }
            }
        }
        let mirror = Arc::new(Mirror {
            broker: Arc::clone(&broker),
            data_dir,
            state: Mutex::new(state),
            status: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        });
        let service: Arc<dyn crate::broker::admin_api::AdminService> =
            Arc::new(ops::MirrorAdmin(Arc::downgrade(&mirror)));
        let _ = broker.admin_service.set(service);
        Ok(mirror)
    }

    /// Starts every stored link's loop.
    pub fn start(self: &Arc<Self>) {
        let names: Vec<String> = self.lock_state().links.keys().cloned().collect();
        for name in names {
            self.spawn_link(&name);
        }
    }

    /// Stops every link loop (shutdown).
    pub fn stop(&self) {
        for (_, task) in crate::sync::lock(&self.tasks, "mirror tasks").drain() {
            let _ = task.stop.send(true);
        }
    }

    fn spawn_link(self: &Arc<Self>, name: &str) {
        let (stop, stopped) = watch::channel(false);
        let task = LinkTask {
            stop,
            wake: Arc::new(Notify::new()),
            changed: Arc::new(AtomicBool::new(true)),
        };
        if let Some(old) =
            crate::sync::lock(&self.tasks, "mirror tasks").insert(name.to_string(), task)
        {
            let _ = old.stop.send(true);
        }
        self.runtime
            .spawn(link::run(Arc::clone(self), name.to_string(), stopped));
    }

    fn stop_link(&self, name: &str) {
        if let Some(task) = crate::sync::lock(&self.tasks, "mirror tasks").remove(name) {
            let _ = task.stop.send(true);
        }
        crate::sync::lock(&self.status, "mirror status").remove(name);
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, MirrorState> {
        crate::sync::lock(&self.state, "mirror state")
    }

    /// A copy of a link's stored record.
    pub fn link(&self, name: &str) -> Option<LinkRecord> {
        self.lock_state().links.get(name).cloned()
    }

    /// Changes the stored state and saves it; the change is undone if saving fails.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut MirrorState) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut state = self.lock_state();
        let mut next = state.clone();
        let value = change(&mut next)?;
        store::save(&self.data_dir, &next).map_err(|e| e.to_string())?;
        *state = next;
        Ok(value)
    }

    /// Tells a link's loop to refresh now.
    pub fn mark_changed(&self, link: &str) {
        if let Some(task) = crate::sync::lock(&self.tasks, "mirror tasks").get(link) {
            task.changed.store(true, Ordering::Release);
            task.wake.notify_one();
        }
    }

    fn take_changed(&self, link: &str) -> bool {
        crate::sync::lock(&self.tasks, "mirror tasks")
            .get(link)
            .is_some_and(|t| t.changed.swap(false, Ordering::AcqRel))
    }

    fn wake_handle(&self, link: &str) -> Arc<Notify> {
        crate::sync::lock(&self.tasks, "mirror tasks")
            .get(link)
            .map_or_else(|| Arc::new(Notify::new()), |t| Arc::clone(&t.wake))
    }

    pub fn with_status<T>(&self, link: &str, f: impl FnOnce(&mut LinkStatus) -> T) -> T {
        let mut status = crate::sync::lock(&self.status, "mirror status");
        f(status.entry(link.to_string()).or_default())
    }

    fn with_partition_status(
        &self,
        link: &str,
        key: &(String, i32),
        f: impl FnOnce(&mut PartitionStatus),
    ) {
        self.with_status(link, |s| {
            f(s.partitions
                .entry(key.0.clone())
                .or_default()
                .entry(key.1)
                .or_default())
        })
    }

    fn set_source_topic_id(&self, link: &str, topic: &str, id: &str) {
        let result = self.update(|state| {
            if let Some(t) = state
                .links
                .get_mut(link)
                .and_then(|l| l.topics.get_mut(topic))
            {
                t.source_topic_id = Some(id.to_string());
            }
            Ok(())
        });
        if let Err(err) = result {
            error!(link, topic, "recording the source topic id failed: {err}");
        }
    }

    /// Stops mirroring a topic on a problem the operator must look at; it stays read-only.
    pub fn fail_topic(&self, link: &str, topic: &str, reason: String) {
        error!(link, topic, "mirroring stopped: {reason}");
        let result = self.update(|state| {
            if let Some(t) = state
                .links
                .get_mut(link)
                .and_then(|l| l.topics.get_mut(topic))
            {
                t.state = TopicState::Failed { reason };
            }
            Ok(())
        });
        if let Err(err) = result {
            error!(link, topic, "recording the failure failed: {err}");
        }
    }

    /// The state of `topic` in `link`.
    pub fn topic_state(&self, link: &str, topic: &str) -> Option<TopicState> {
        self.lock_state()
            .links
            .get(link)
            .and_then(|l| l.topics.get(topic))
            .map(|t| t.state.clone())
    }

    fn log_created(&self, link: &str, source: &str) {
        info!(link, source, "mirror link created");
    }
}
