//! The mirror's operations as Ferry's admin API answers them (`ferry mirror` sends
//! them): `create_link`, `delete_link`, `add`, `pause`, `resume`, `remove`, `status` and
//! `promote`. Each request is a JSON object with an `op`; each answer is a JSON object,
//! with `error` (a kind) and `message` (what to do) when the operation did not happen.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::source;
use super::store::{self, LinkRecord, TopicRecord, TopicState};
use super::{read_only_reason, Mirror};
use crate::broker::admin_api::{error_answer, AdminService};

/// How long `promote` waits at most for the mirror to reach the source's end.
const PROMOTE_WAIT_DEFAULT_MS: u64 = 30_000;
/// How long the source's end must stay put for `promote` to believe writes stopped.
const PROMOTE_QUIET_MS: u64 = 2_000;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    CreateLink {
        link: String,
        source: String,
        #[serde(default)]
        source_config: BTreeMap<String, String>,
        #[serde(default)]
        max_bytes_per_second: Option<u64>,
    },
    DeleteLink {
        link: String,
    },
    Add {
        link: String,
        #[serde(default)]
        topics: Vec<String>,
        #[serde(default)]
        topic_regex: Option<String>,
        #[serde(default)]
        groups: Vec<String>,
        #[serde(default)]
        group_regex: Option<String>,
        #[serde(default)]
        sync_acls: bool,
    },
    Pause {
        link: String,
        topic: String,
    },
    Resume {
        link: String,
        topic: String,
    },
    Remove {
        link: String,
        topic: String,
    },
    Status {
        #[serde(default)]
        link: Option<String>,
    },
    Promote {
        link: String,
        topic: String,
        #[serde(default)]
        force: bool,
        /// The producers-first order: groups still consuming on the source stay there.
        #[serde(default)]
        keep_groups_on_source: bool,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
}

/// Which of promotion's checks run, and how long it waits for the mirror to catch up.
struct PromoteChecks {
    force: bool,
    keep_groups_on_source: bool,
    wait: Duration,
}

/// What `add` asks for.
struct Wanted {
    topics: Vec<String>,
    topic_regex: Option<String>,
    groups: Vec<String>,
    group_regex: Option<String>,
    sync_acls: bool,
}

/// An operation that did not happen: (kind, message).
type Refusal = (&'static str, String);

fn refused(kind: &'static str, message: impl Into<String>) -> Refusal {
    (kind, message.into())
}

/// The admin service the broker calls: the mirror, held weakly so the broker and the
/// mirror do not keep each other alive.
pub struct MirrorAdmin(pub std::sync::Weak<Mirror>);

impl AdminService for MirrorAdmin {
    fn handle(
        &self,
        request: Value,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Value> + Send>> {
        let mirror = self.0.upgrade();
        Box::pin(async move {
            let Some(mirror) = mirror else {
                return error_answer("unavailable", "the mirror service is shutting down");
            };
            let request: Request = match serde_json::from_value(request) {
                Ok(request) => request,
                Err(err) => return error_answer("invalid_request", err.to_string()),
            };
            info!(%peer, "mirror admin request: {request:?}");
            match mirror.execute(request).await {
                Ok(value) => value,
                Err((kind, message)) => error_answer(kind, message),
            }
        })
    }
}

impl Mirror {
    async fn execute(self: &Arc<Self>, request: Request) -> Result<Value, Refusal> {
        match request {
            Request::CreateLink {
                link,
                source,
                source_config,
                max_bytes_per_second,
            } => {
                self.create_link(link, source, source_config, max_bytes_per_second)
                    .await
            }
            Request::DeleteLink { link } => self.delete_link(&link),
            Request::Add {
                link,
                topics,
                topic_regex,
                groups,
                group_regex,
                sync_acls,
            } => {
                let wanted = Wanted {
                    topics,
                    topic_regex,
                    groups,
                    group_regex,
                    sync_acls,
                };
                self.add(&link, wanted).await
            }
            Request::Pause { link, topic } => self.set_state(&link, &topic, TopicState::Paused),
            Request::Resume { link, topic } => self.set_state(&link, &topic, TopicState::Mirroring),
            Request::Remove { link, topic } => self.remove(&link, &topic),
            Request::Status { link } => self.status_json(link.as_deref()),
            Request::Promote {
                link,
                topic,
                force,
                keep_groups_on_source,
                timeout_ms,
            } => {
                let checks = PromoteChecks {
                    force,
                    keep_groups_on_source,
                    wait: Duration::from_millis(timeout_ms.unwrap_or(PROMOTE_WAIT_DEFAULT_MS)),
                };
                self.promote(&link, &topic, checks).await
            }
        }
    }

    async fn create_link(
        self: &Arc<Self>,
        link: String,
        source: String,
        source_config: BTreeMap<String, String>,
        max_bytes_per_second: Option<u64>,
    ) -> Result<Value, Refusal> {
        crate::broker::topics::validate_name(&link)
            .map_err(|e| refused("invalid_request", format!("link name: {e}")))?;
        source::check_client_config(&source_config).map_err(|m| refused("invalid_config", m))?;
        if max_bytes_per_second == Some(0) {
            return Err(refused(
                "invalid_config",
                "--max-bytes-per-second must be at least 1 (leave it out for no limit)",
            ));
        }
        if let Some(existing) = self.link(&link) {
            if existing.source != source {
                return Err(refused(
                    "already_exists",
                    format!("link {link} exists with source {}", existing.source),
                ));
            }
            // The same source: its client properties and limit are updated in place, and
            // the link reconnects with them.
            self.update(|state| {
                let entry = state.links.get_mut(&link).ok_or("the link was deleted")?;
                entry.source_config = source_config.clone();
                entry.max_bytes_per_second = max_bytes_per_second;
                Ok(())
            })
            .map_err(|m| refused("refused", m))?;
            self.spawn_link(&link);
            return Ok(json!({ "link": link, "created": false }));
        }
        source::connect(&source, &source_config)
            .await
            .map_err(|e| {
                refused(
                    "source_unreachable",
                    format!("cannot reach the source {source}: {e}"),
                )
            })?;
        let record = LinkRecord {
            name: link.clone(),
            source: source.clone(),
            source_config,
            max_bytes_per_second,
            topics: BTreeMap::new(),
            groups: Vec::new(),
            group_regex: None,
            sync_acls: false,
        };
        self.update(|state| {
            if state.links.len() >= store::MAX_LINKS {
                return Err(format!("at most {} links", store::MAX_LINKS));
            }
            state.links.insert(link.clone(), record);
            Ok(())
        })
        .map_err(|m| refused("refused", m))?;
        self.log_created(&link, &source);
        self.spawn_link(&link);
        Ok(json!({ "link": link, "created": true }))
    }

    fn delete_link(&self, link: &str) -> Result<Value, Refusal> {
        let record = self.existing(link)?;
        if let Some(topic) = record
            .topics
            .iter()
            .find(|(_, t)| t.state.is_read_only())
            .map(|(name, _)| name)
        {
            return Err(refused(
                "refused",
                format!("link {link} still mirrors {topic}: promote or remove its topics first"),
            ));
        }
        self.update(|state| {
            state.links.remove(link);
            Ok(())
        })
        .map_err(|m| refused("refused", m))?;
        self.stop_link(link);
        Ok(json!({ "link": link, "deleted": true }))
    }

    fn existing(&self, link: &str) -> Result<LinkRecord, Refusal> {
        self.link(link).ok_or_else(|| {
            refused(
                "unknown_link",
                format!("no link named {link} (see `ferry mirror status`)"),
            )
        })
    }

    async fn add(self: &Arc<Self>, link: &str, wanted: Wanted) -> Result<Value, Refusal> {
        let Wanted {
            mut topics,
            topic_regex,
            groups,
            group_regex,
            sync_acls,
        } = wanted;
        let record = self.existing(link)?;
        let anchored = |re: &str| {
            regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                refused(
                    "invalid_request",
                    format!("bad regular expression {re}: {e}"),
                )
            })
        };
        if let Some(re) = &group_regex {
            anchored(re)?;
        }
        if let Some(re) = &topic_regex {
            let pattern = anchored(re)?;
            let mut cluster = source::connect(&record.source, &record.source_config)
                .await
                .map_err(|e| refused("source_unreachable", e.to_string()))?;
            let names = source::all_topic_names(&mut cluster)
                .await
                .map_err(|e| refused("source_unreachable", e.to_string()))?;
            topics.extend(names.into_iter().filter(|n| pattern.is_match(n)));
        }
        let topics: BTreeSet<String> = topics.into_iter().collect();
        for topic in &topics {
            crate::broker::topics::validate_name(topic)
                .map_err(|e| refused("invalid_request", e.to_string()))?;
            if crate::broker::topics::INTERNAL_TOPICS.contains(&topic.as_str()) {
                return Err(refused(
                    "invalid_request",
                    format!("{topic} is an internal topic"),
                ));
            }
        }
        let added = self
            .update(|state| {
                for topic in &topics {
                    if let Some(owner) = state.owner_of(topic) {
                        if owner.name != link {
                            return Err(format!(
                                "{topic} is already mirrored by link {}",
                                owner.name
                            ));
                        }
                        continue;
                    }
                    if self.broker.topics.get(topic).is_some() {
                        return Err(format!(
                            "topic {topic} already exists on Ferry; a mirror topic is created by \
                             the mirror (delete it first with `ferry topics delete {topic}`)"
                        ));
                    }
                }
                let entry = state.links.get_mut(link).ok_or("the link was deleted")?;
                let mut added = Vec::new();
                for topic in &topics {
                    if !entry.topics.contains_key(topic) {
                        entry.topics.insert(
                            topic.clone(),
                            TopicRecord {
                                state: TopicState::Mirroring,
                                source_topic_id: None,
                            },
                        );
                        added.push(topic.clone());
                    }
                }
                for group in &groups {
                    if !entry.groups.contains(group) {
                        entry.groups.push(group.clone());
                    }
                }
                if group_regex.is_some() {
                    entry.group_regex = group_regex.clone();
                }
                entry.sync_acls |= sync_acls;
                Ok(added)
            })
            .map_err(|m| refused("refused", m))?;
        for topic in &added {
            self.broker
                .topics
                .read_only
                .set(topic, read_only_reason(link, topic));
        }
        self.mark_changed(link);
        Ok(json!({ "link": link, "added_topics": added, "groups": groups }))
    }

    fn set_state(&self, link: &str, topic: &str, to: TopicState) -> Result<Value, Refusal> {
        self.existing(link)?;
        self.update(|state| {
            let entry = state
                .links
                .get_mut(link)
                .and_then(|l| l.topics.get_mut(topic))
                .ok_or_else(|| format!("link {link} does not mirror {topic}"))?;
            if entry.state == TopicState::Promoted {
                return Err(format!("{topic} was promoted; it is no longer mirrored"));
            }
            entry.state = to.clone();
            Ok(())
        })
        .map_err(|m| refused("refused", m))?;
        self.mark_changed(link);
        Ok(json!({ "link": link, "topic": topic, "state": to.name() }))
    }

    /// Stops mirroring a topic and forgets it; the topic stays, writable, as it is.
    fn remove(&self, link: &str, topic: &str) -> Result<Value, Refusal> {
        self.existing(link)?;
        self.update(|state| {
            state
                .links
                .get_mut(link)
                .and_then(|l| l.topics.remove(topic))
                .map(|_| ())
                .ok_or_else(|| format!("link {link} does not mirror {topic}"))
        })
        .map_err(|m| refused("refused", m))?;
        self.broker.topics.read_only.clear(topic);
        self.with_status(link, |s| {
            s.partitions.remove(topic);
        });
        self.mark_changed(link);
        Ok(json!({ "link": link, "topic": topic, "removed": true }))
    }

    fn status_json(&self, only: Option<&str>) -> Result<Value, Refusal> {
        if let Some(link) = only {
            self.existing(link)?;
        }
        let state = self.lock_state().clone();
        let mut links = Vec::new();
        for (name, record) in &state.links {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let status = self.with_status(name, |s| s.clone());
            let topics: Vec<Value> = record
                .topics
                .iter()
                .map(|(topic, t)| {
                    let partitions = status.partitions.get(topic).cloned().unwrap_or_default();
                    let partitions: Vec<Value> = partitions
                        .iter()
                        .map(|(index, p)| {
                            let mut value = serde_json::to_value(p).unwrap_or(Value::Null);
                            value["partition"] = json!(index);
                            value
                        })
                        .collect();
                    json!({
                        "topic": topic,
                        "state": t.state.name(),
                        "reason": match &t.state { TopicState::Failed { reason } => Some(reason.clone()), _ => None },
                        "recovery": recovery_for(name, topic, &t.state),
                        "partitions": partitions,
                    })
                })
                .collect();
            links.push(json!({
                "link": name,
                "source": record.source,
                "max_bytes_per_second": record.max_bytes_per_second,
                "error": status.error,
                "groups_configured": record.groups,
                "group_regex": record.group_regex,
                "topics": topics,
                "groups": status.groups,
                "source_acls": match &status.source_acls {
                    Some(Ok(acls)) => json!({ "entries": acls }),
                    Some(Err(why)) => json!({ "unavailable": why }),
                    None => Value::Null,
                },
                "acl_sync": record.sync_acls.then_some(
                    "pending: Ferry has no ACLs yet; the source's ACLs are copied once it has an authorizer"
                ),
            }));
        }
        Ok(json!({ "links": links }))
    }

    /// The producer cutover of one topic (see docs/migration.md).
    async fn promote(
        self: &Arc<Self>,
        link: &str,
        topic: &str,
        checks: PromoteChecks,
    ) -> Result<Value, Refusal> {
        let PromoteChecks {
            force,
            keep_groups_on_source,
            wait,
        } = checks;
        let record = self.existing(link)?;
        let state = record
            .topics
            .get(topic)
            .map(|t| t.state.clone())
            .ok_or_else(|| refused("refused", format!("link {link} does not mirror {topic}")))?;
        match &state {
            TopicState::Promoted => {
                return Ok(
                    json!({ "link": link, "topic": topic, "promoted": true, "already": true }),
                )
            }
            TopicState::Failed { reason } if !force => {
                return Err(refused("refused", format!("{topic} failed: {reason}; fix that, or promote with --force to keep what was mirrored")));
            }
            _ => {}
        }
        if !force && !keep_groups_on_source {
            self.check_groups_moved(&record, topic).await?;
        }
        if !force {
            self.check_caught_up(&record, topic, wait).await?;
        }
        let mut cluster = source::connect(&record.source, &record.source_config)
            .await
            .ok();
        if let Some(cluster) = cluster.as_mut() {
            super::groups::sync(self, link, &record, cluster).await;
        }
        self.update(|state| {
            let entry = state
                .links
                .get_mut(link)
                .and_then(|l| l.topics.get_mut(topic))
                .ok_or_else(|| format!("link {link} no longer mirrors {topic}"))?;
            entry.state = TopicState::Promoted;
            Ok(())
        })
        .map_err(|m| refused("refused", m))?;
        self.broker.topics.read_only.clear(topic);
        self.mark_changed(link);
        info!(
            link,
            topic, force, "mirror topic promoted: it takes writes now"
        );
        Ok(json!({ "link": link, "topic": topic, "promoted": true, "already": false }))
    }

    /// Promotion's precondition in the consumers-first order: no synced group still
    /// consumes the topic on the source.
    async fn check_groups_moved(&self, record: &LinkRecord, topic: &str) -> Result<(), Refusal> {
        let unreachable = |e: crate::client::ClientError| {
            refused(
                "source_unreachable",
                format!("cannot check the source's groups: {e} (promote with --force to skip the checks)"),
            )
        };
        let mut cluster = source::connect(&record.source, &record.source_config)
            .await
            .map_err(unreachable)?;
        let active = super::groups::active_on_source(record, &mut cluster, topic)
            .await
            .map_err(unreachable)?;
        if active.is_empty() {
            return Ok(());
        }
        Err(refused(
            "source_groups_active",
            format!(
                "groups {} still consume {topic} on the source: move them to Ferry first \
                 (consumers first), or promote with --keep-groups-on-source if they stay there \
                 until they drained it (producers first)",
                active.join(", ")
            ),
        ))
    }

    /// Promotion's preconditions: the source's end stays put for `PROMOTE_QUIET_MS` and
    /// every partition of the mirror reaches it within `wait`; no transaction is open.
    async fn check_caught_up(
        &self,
        record: &LinkRecord,
        topic: &str,
        wait: Duration,
    ) -> Result<(), Refusal> {
        let unreachable = |e: crate::client::ClientError| {
            refused(
                "source_unreachable",
                format!("cannot check the source: {e} (promote with --force to skip the checks)"),
            )
        };
        let mut cluster = source::connect(&record.source, &record.source_config)
            .await
            .map_err(unreachable)?;
        let described = source::topics(&mut cluster, &[topic.to_string()])
            .await
            .map_err(unreachable)?;
        let partitions: BTreeSet<(String, i32)> = described
            .iter()
            .flat_map(|t| t.leaders.keys().map(|p| (t.name.clone(), *p)))
            .collect();
        let first = source::offsets(&mut cluster, &partitions, -1)
            .await
            .map_err(unreachable)?;
        tokio::time::sleep(Duration::from_millis(PROMOTE_QUIET_MS)).await;
        let second = source::offsets(&mut cluster, &partitions, -1)
            .await
            .map_err(unreachable)?;
        if first != second {
            let moved: Vec<String> = second
                .iter()
                .filter(|(k, v)| first.get(*k) != Some(*v))
                .map(|((_, p), v)| {
                    format!(
                        "partition {p} end {} -> {v}",
                        first.get(&(topic.to_string(), *p)).copied().unwrap_or(-1)
                    )
                })
                .collect();
            return Err(refused(
                "source_still_growing",
                format!("the source topic {topic} still receives writes ({}); stop its producers on the source first", moved.join(", ")),
            ));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let behind: Vec<String> = second
                .iter()
                .filter_map(|((t, p), end)| {
                    let mirrored = self
                        .broker
                        .topics
                        .partition(t, *p)
                        .map_or(-1, |x| x.log_end_offset());
                    (mirrored < *end).then(|| format!("partition {p} at {mirrored} of {end}"))
                })
                .collect();
            if behind.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(refused(
                    "not_caught_up",
                    format!("the mirror of {topic} has not reached the source's end ({}); try again when `ferry mirror status` shows no lag", behind.join(", ")),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let open: Vec<String> = second
            .keys()
            .filter_map(|(t, p)| {
                let partition = self.broker.topics.partition(t, *p)?;
                (partition.last_stable_offset() < partition.high_watermark()).then(|| {
                    format!(
                        "partition {p} from offset {}",
                        partition.last_stable_offset()
                    )
                })
            })
            .collect();
        if !open.is_empty() {
            return Err(refused(
                "open_transactions",
                format!("transactions are still open on {topic} ({}); let their producers finish or abort them on the source, or promote with --force", open.join(", ")),
            ));
        }
        Ok(())
    }
}

/// The command that gets a topic going again, for `status`.
fn recovery_for(link: &str, topic: &str, state: &TopicState) -> Option<String> {
    match state {
        TopicState::Failed { .. } => Some(format!(
            "after fixing the cause: `ferry mirror resume {link} --topic {topic}`; to start the \
             topic over: `ferry mirror remove {link} --topic {topic}`, `ferry topics delete {topic}`, \
             `ferry mirror add {link} --topics {topic}`"
        )),
        TopicState::Paused => Some(format!("`ferry mirror resume {link} --topic {topic}`")),
        _ => None,
    }
}
