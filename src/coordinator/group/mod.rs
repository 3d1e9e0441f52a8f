//! Kafka's classic group coordinator: membership and rebalancing (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), committed offsets, and the admin views (DescribeGroups,
//! ListGroups, DeleteGroups, OffsetDelete).
//!
//! Design:
//! * All groups live in one map behind one mutex; every operation is short and in memory,
//!   except appends to `__consumer_offsets`, which are a single `pwrite` each.
//! * Parked JoinGroup and SyncGroup requests hold a `oneshot` sender in their member; the
//!   coordinator answers them when the join or sync phase completes or fails.
//! * Time is a parameter (`now_ms`): the broker calls [`GroupCoordinator::tick`] every
//!   100 ms to expire sessions, end join and sync phases, and expire offsets. Tests drive
//!   the clock directly.
//! * State is rebuilt at startup by replaying `__consumer_offsets` ([`GroupCoordinator::load`])
//!   in Kafka's record formats (`records.rs`).

mod admin;
pub mod consumer_protocol;
mod join;
mod membership;
mod offsets;
pub mod records;
pub mod state;
pub mod types;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{error, info, warn};
use uuid::Uuid;

use records::{GroupRecord, MemberValue};
use state::{Group, GroupState, Member};
pub use types::*;

struct Inner {
    groups: HashMap<String, Group>,
    /// `__consumer_offsets` partitions that could not be replayed at startup (their log
    /// is offline): their groups answer COORDINATOR_NOT_AVAILABLE until a restart.
    unavailable_partitions: HashSet<usize>,
    /// When offsets were last checked for expiry.
    last_retention_check_ms: i64,
}

/// The group coordinator of this broker (it coordinates every group).
pub struct GroupCoordinator {
    config: GroupConfig,
    log: Arc<dyn CoordinatorLog>,
    inner: Mutex<Inner>,
}

/// A fresh member id, as Kafka makes them: `client.id` + "-" + a UUID.
fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", Uuid::new_v4())
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, log: Arc<dyn CoordinatorLog>) -> GroupCoordinator {
        GroupCoordinator {
            config,
            log,
            inner: Mutex::new(Inner {
                groups: HashMap::new(),
                unavailable_partitions: HashSet::new(),
                last_retention_check_ms: 0,
            }),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Coordinator code does not panic on input; a poisoned lock means a bug, and
        // continuing could hand out inconsistent assignments.
        crate::sync::lock(&self.inner, "group coordinator lock")
    }

    /// COORDINATOR_NOT_AVAILABLE when `group_id` lives in a `__consumer_offsets` partition
    /// that could not be loaded (clients retry, as with a coordinator that moved).
    fn check_available(&self, inner: &Inner, group_id: &str) -> Result<(), GroupError> {
        let partition = records::partition_for(group_id, self.log.partitions());
        if inner.unavailable_partitions.contains(&partition) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        Ok(())
    }

    /// Whether this coordinator can serve `group_id` (FindCoordinator, OffsetFetch).
    pub fn is_available(&self, group_id: &str) -> bool {
        self.check_available(&self.lock(), group_id).is_ok()
    }

    /// Writes records for `group_id` to its `__consumer_offsets` partition.
    fn persist(&self, group_id: &str, records: &[KeyValue]) -> Result<DurableFuture, GroupError> {
        self.persist_in(group_id, records, None)
    }

    /// Writes records for `group_id`, transactional when `transaction` names a producer.
    fn persist_in(
        &self,
        group_id: &str,
        records: &[KeyValue],
        transaction: Option<(i64, i16)>,
    ) -> Result<DurableFuture, GroupError> {
        let partition = records::partition_for(group_id, self.log.partitions());
        self.log
            .append(partition, records, transaction)
            .map_err(|err| {
                warn!(
                    group = group_id,
                    "writing to __consumer_offsets failed: {err}"
                );
                GroupError::StorageFailure
            })
    }

    /// Persists a group's metadata (members, generation, assignment).
    fn persist_group(&self, group: &Group) -> Result<(), GroupError> {
        let value = records::group_value(&group.to_value());
        self.persist(&group.id, &[(records::group_key(&group.id), Some(value))])
            .map(drop)
    }

    /// Rebuilds all groups and offsets from `__consumer_offsets`. Offsets committed in a
    /// transaction count once its COMMIT marker is replayed; those of transactions still
    /// open stay pending until the transaction coordinator completes them. A partition
    /// that cannot be replayed makes only its own groups unavailable.
    pub fn load(&self, now_ms: i64) {
        let mut inner = self.lock();
        let mut malformed = 0usize;
        for partition in 0..self.log.partitions() {
            let mut open: HashMap<i64, Vec<GroupRecord>> = HashMap::new();
            let replayed = self.log.replay(partition, &mut |event| match event {
                LogEvent::Record {
                    key,
                    value,
                    transactional_producer,
                } => match (records::decode(key, value), transactional_producer) {
                    (Ok(Some(record)), None) => apply_record(&mut inner.groups, record, now_ms),
                    (Ok(Some(record)), Some(producer_id)) => {
                        open.entry(producer_id).or_default().push(record);
                    }
                    (Ok(None), _) => {}
                    (Err(_), _) => malformed += 1,
                },
                LogEvent::Marker {
                    producer_id,
                    commit,
                } => {
                    for record in open.remove(&producer_id).unwrap_or_default() {
                        if commit {
                            apply_record(&mut inner.groups, record, now_ms);
                        }
                    }
                }
            });
            if let Err(reason) = replayed {
                error!(
                    partition,
                    "cannot load __consumer_offsets partition {partition}; its groups are \
                     unavailable (COORDINATOR_NOT_AVAILABLE) until a restart: {reason}"
                );
                let partitions = self.log.partitions();
                inner
                    .groups
                    .retain(|id, _| records::partition_for(id, partitions) != partition);
                inner.unavailable_partitions.insert(partition);
                continue;
            }
            for (producer_id, records) in open {
                for record in records {
                    if let GroupRecord::Offset {
                        group,
                        topic,
                        partition,
                        value: Some(value),
                    } = record
                    {
                        let entry = inner
                            .groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(&group, now_ms));
                        entry
                            .pending_txn_offsets
                            .entry(producer_id)
                            .or_default()
                            .insert((topic, partition), value);
                    }
                }
            }
        }
        if malformed > 0 {
            warn!(
                records = malformed,
                "skipped malformed __consumer_offsets records"
            );
        }
        inner.groups.retain(|_, g| !g.is_forgettable());
        let members: usize = inner.groups.values().map(|g| g.members.len()).sum();
        info!(
            groups = inner.groups.len(),
            members, "loaded consumer groups"
        );
        inner.last_retention_check_ms = now_ms;
    }
}

/// Applies one replayed record to the group map.
fn apply_record(groups: &mut HashMap<String, Group>, record: GroupRecord, now_ms: i64) {
    match record {
        GroupRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            let entry = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now_ms));
            match value {
                Some(value) => {
                    entry.offsets.insert((topic, partition), value);
                }
                None => {
                    entry.offsets.remove(&(topic, partition));
                }
            }
        }
        GroupRecord::Group { group, value } => {
            let entry = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now_ms));
            let offsets = std::mem::take(&mut entry.offsets);
            *entry = Group::new(&group, now_ms);
            entry.offsets = offsets;
            let Some(value) = value else { return };
            entry.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
            entry.protocol_name = value.protocol;
            entry.generation_id = value.generation;
            entry.leader_id = value.leader;
            if value.current_state_timestamp >= 0 {
                entry.state_since_ms = value.current_state_timestamp;
            }
            let protocol = entry.protocol_name.clone().unwrap_or_default();
            let protocol_type = entry.protocol_type.clone().unwrap_or_default();
            for m in value.members {
                if let Some(instance) = &m.group_instance_id {
                    entry
                        .static_members
                        .insert(instance.clone(), m.member_id.clone());
                }
                entry
                    .members
                    .push(restored_member(m, &protocol, &protocol_type, now_ms));
            }
            let state = if entry.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
            entry.state = state;
        }
    }
}

fn restored_member(m: MemberValue, protocol: &str, protocol_type: &str, now_ms: i64) -> Member {
    Member {
        member_id: m.member_id,
        group_instance_id: m.group_instance_id,
        client_id: m.client_id,
        client_host: m.client_host,
        session_timeout_ms: m.session_timeout_ms,
        rebalance_timeout_ms: m.rebalance_timeout_ms,
        protocol_type: protocol_type.to_string(),
        protocols: vec![(protocol.to_string(), m.subscription.into())],
        assignment: m.assignment.into(),
        awaiting_join: None,
        awaiting_sync: None,
        heartbeat_deadline_ms: now_ms + i64::from(m.session_timeout_ms),
        supports_skip_assignment: false,
    }
}

#[cfg(test)]
mod tests;
