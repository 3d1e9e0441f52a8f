//! Committed offsets: OffsetCommit validation (Kafka's `ClassicGroup.validateOffsetCommit`),
//! OffsetFetch, OffsetDelete, and expiry of the offsets of groups that stayed empty past
//! `offsets.retention.minutes` (KIP-211).
//!
//! Rules worth knowing:
//! * Commits with generation -1 and no member id are accepted from outside the group
//!   protocol only while the group is Empty (simple consumers, admin resets); they create the
//!   group if needed.
//! * During PreparingRebalance a member of the current generation may still commit: a
//!   cooperative consumer keeps processing the partitions it keeps (KIP-429). During
//!   CompletingRebalance commits get REBALANCE_IN_PROGRESS and are retried.
//! * A commit is answered only after its records are appended (and, in durable mode,
//!   fsynced); offsets become visible to OffsetFetch when appended.

use tracing::{info, warn};

use super::records::{self, OffsetValue};
use super::state::{Group, GroupState};
use super::types::*;
use super::GroupCoordinator;

impl GroupCoordinator {
    /// Handles OffsetCommit. `partition_exists` tells whether a topic partition exists.
    pub fn commit_offsets(
        &self,
        request: CommitRequest,
        partition_exists: &dyn Fn(&str, i32) -> bool,
        now_ms: i64,
    ) -> Result<CommitOutcome, GroupError> {
        let mut inner = self.lock();
        self.check_available(&inner, &request.group_id)?;
        let outside_protocol = request.generation_id < 0 && request.member_id.is_empty();
        if !inner.groups.contains_key(&request.group_id) {
            if !outside_protocol {
                return Err(if request.unknown_group_is_not_found {
                    GroupError::GroupIdNotFound
                } else {
                    GroupError::IllegalGeneration
                });
            }
            inner.groups.insert(
                request.group_id.clone(),
                Group::new(&request.group_id, now_ms),
            );
        }
        let group = inner
            .groups
            .get_mut(&request.group_id)
            .expect("inserted above");
        validate_commit(group, &request)?;
        let mut results = Vec::with_capacity(request.offsets.len());
        let mut records_to_write = Vec::new();
        let mut accepted = Vec::new();
        for commit in &request.offsets {
            let metadata = commit.metadata.clone().unwrap_or_default();
            let error = if !partition_exists(&commit.topic, commit.partition) {
                Some(GroupError::UnknownTopicOrPartition)
            } else if metadata.len() > self.config.offset_metadata_max_bytes {
                Some(GroupError::OffsetMetadataTooLarge)
            } else {
                let value = OffsetValue {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata,
                    commit_timestamp: now_ms,
                };
                let key = records::offset_key(&request.group_id, &commit.topic, commit.partition);
                records_to_write.push((key, Some(records::offset_value(&value))));
                accepted.push(((commit.topic.clone(), commit.partition), value));
                None
            };
            results.push((commit.topic.clone(), commit.partition, error));
        }
        if records_to_write.is_empty() {
            return Ok(CommitOutcome {
                results,
                durable: None,
            });
        }
        let durable = match self.persist(&request.group_id, &records_to_write) {
            Ok(durable) => durable,
            Err(err) => {
                for result in &mut results {
                    result.2 = result.2.or(Some(err));
                }
                return Ok(CommitOutcome {
                    results,
                    durable: None,
                });
            }
        };
        let group = inner.groups.get_mut(&request.group_id).expect("present");
        group.offsets.extend(accepted);
        Ok(CommitOutcome {
            results,
            durable: Some(durable),
        })
    }

    /// Handles OffsetFetch for one group: the requested partitions (or, with `None`, every
    /// committed one). Partitions without a committed offset report -1.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<FetchedOffset> {
        let inner = self.lock();
        let group = inner.groups.get(group_id);
        let fetched = |topic: &str, partition: i32| {
            let value = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
            FetchedOffset {
                topic: topic.to_string(),
                partition,
                offset: value.map_or(-1, |v| v.offset),
                leader_epoch: value.map_or(-1, |v| v.leader_epoch),
                metadata: value.map(|v| v.metadata.clone()).unwrap_or_default(),
                unstable: group.is_some_and(|g| g.has_pending_offset(topic, partition)),
            }
        };
        match partitions {
            Some(wanted) => wanted
                .iter()
                .flat_map(|(topic, ps)| ps.iter().map(move |p| (topic, *p)))
                .map(|(topic, p)| fetched(topic, p))
                .collect(),
            None => group
                .map(|g| g.offsets.keys().map(|(t, p)| fetched(t, *p)).collect())
                .unwrap_or_default(),
        }
    }

    /// Handles TxnOffsetCommit: writes the offsets as part of the producer's transaction;
    /// they become visible when its COMMIT marker reaches `__consumer_offsets`
    /// ([`Self::complete_transaction`]) and are dropped on ABORT.
    pub fn commit_txn_offsets(
        &self,
        request: TxnCommitRequest,
        partition_exists: &dyn Fn(&str, i32) -> bool,
        now_ms: i64,
    ) -> Result<CommitOutcome, GroupError> {
        let mut inner = self.lock();
        self.check_available(&inner, &request.group_id)?;
        let group = inner
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(&request.group_id, now_ms));
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        // KIP-447: a member-aware producer is fenced like a consumer would be.
        if request.generation_id >= 0 || !request.member_id.is_empty() {
            group.check_static(&request.member_id, request.group_instance_id.as_deref())?;
            if !group.has_member(&request.member_id) {
                return Err(GroupError::UnknownMemberId);
            }
            if request.generation_id != group.generation_id {
                return Err(GroupError::IllegalGeneration);
            }
        }
        let mut results = Vec::with_capacity(request.offsets.len());
        let mut records_to_write = Vec::new();
        let mut accepted = Vec::new();
        for commit in &request.offsets {
            let metadata = commit.metadata.clone().unwrap_or_default();
            let error = if !partition_exists(&commit.topic, commit.partition) {
                Some(GroupError::UnknownTopicOrPartition)
            } else if metadata.len() > self.config.offset_metadata_max_bytes {
                Some(GroupError::OffsetMetadataTooLarge)
            } else {
                let value = OffsetValue {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata,
                    commit_timestamp: now_ms,
                };
                let key = records::offset_key(&request.group_id, &commit.topic, commit.partition);
                records_to_write.push((key, Some(records::offset_value(&value))));
                accepted.push(((commit.topic.clone(), commit.partition), value));
                None
            };
            results.push((commit.topic.clone(), commit.partition, error));
        }
        if records_to_write.is_empty() {
            return Ok(CommitOutcome {
                results,
                durable: None,
            });
        }
        let transaction = Some((request.producer_id, request.producer_epoch));
        let durable = self.persist_in(&request.group_id, &records_to_write, transaction)?;
        let group = inner.groups.get_mut(&request.group_id).expect("present");
        group
            .pending_txn_offsets
            .entry(request.producer_id)
            .or_default()
            .extend(accepted);
        Ok(CommitOutcome {
            results,
            durable: Some(durable),
        })
    }

    /// Applies (COMMIT) or drops (ABORT) the pending transactional offsets of a producer
    /// in the groups stored in `__consumer_offsets` partition `offsets_partition`, after the
    /// transaction coordinator wrote the marker there.
    pub fn complete_transaction(&self, offsets_partition: usize, producer_id: i64, commit: bool) {
        let partitions = self.log.partitions();
        let mut inner = self.lock();
        for group in inner.groups.values_mut() {
            if records::partition_for(&group.id, partitions) != offsets_partition {
                continue;
            }
            if let Some(pending) = group.pending_txn_offsets.remove(&producer_id) {
                if commit {
                    group.offsets.extend(pending);
                }
            }
        }
    }

    /// Handles OffsetDelete: removes committed offsets of partitions the group does not
    /// consume. Per partition, `None` or the error.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed_topics: &dyn Fn(&[u8]) -> Option<Vec<String>>,
    ) -> Result<Vec<Option<GroupError>>, GroupError> {
        let mut inner = self.lock();
        self.check_available(&inner, group_id)?;
        let group = inner
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        if group.state == GroupState::Dead {
            return Err(GroupError::GroupIdNotFound);
        }
        let subscribed: Vec<String> = if group.members.is_empty() {
            Vec::new()
        } else if group.protocol_type.as_deref() == Some("consumer") {
            let protocol = group.protocol_name.clone().unwrap_or_default();
            group
                .members
                .iter()
                .filter_map(|m| subscribed_topics(&m.metadata_for(&protocol)))
                .flatten()
                .collect()
        } else {
            return Err(GroupError::NonEmptyGroup);
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                results.push(Some(GroupError::GroupSubscribedToTopic));
                continue;
            }
            if group.offsets.remove(&(topic.clone(), *partition)).is_some() {
                tombstones.push((records::offset_key(group_id, topic, *partition), None));
            }
            results.push(None);
        }
        if !tombstones.is_empty() {
            let group_id = group.id.clone();
            drop(inner);
            self.persist(&group_id, &tombstones).map(drop)?;
        }
        Ok(results)
    }

    /// Forgets every group's committed offsets of a deleted topic (Kafka's
    /// `onPartitionsDeleted`), so that a topic created again under the same name starts
    /// without them; a group left with no offsets and no members is deleted with them.
    pub fn remove_topic_offsets(&self, topic: &str, now_ms: i64) {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .groups
            .iter()
            .filter(|(_, g)| g.offsets.keys().any(|(t, _)| t == topic))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if self.check_available(&inner, &id).is_err() {
                continue;
            }
            let Some(group) = inner.groups.get_mut(&id) else {
                continue;
            };
            let removed: Vec<(String, i32)> = group
                .offsets
                .keys()
                .filter(|(t, _)| t == topic)
                .cloned()
                .collect();
            let mut tombstones: Vec<KeyValue> = removed
                .iter()
                .map(|(t, p)| (records::offset_key(&id, t, *p), None))
                .collect();
            for key in &removed {
                group.offsets.remove(key);
            }
            let forgettable = group.state == GroupState::Empty
                && group.offsets.is_empty()
                && group.members.is_empty();
            if forgettable {
                tombstones.push((records::group_key(&id), None));
                group.transition(GroupState::Dead, now_ms);
                inner.groups.remove(&id);
            }
            if let Err(err) = self.persist(&id, &tombstones) {
                warn!(group = ?id, topic, "removing a deleted topic's offsets failed: {err}");
            }
        }
    }

    /// Expires offsets: for a group with a protocol, all of them once it has been Empty for
    /// the retention time; for a group committing from outside the protocol, each offset
    /// once it is older than the retention time. A group left without offsets or members
    /// is deleted.
    pub(super) fn expire_offsets(&self, group: &mut Group, now_ms: i64) {
        if group.state != GroupState::Empty {
            return;
        }
        let retention = self.config.offsets_retention_ms;
        let expired: Vec<(String, i32)> = if group.protocol_type.is_some() {
            if now_ms.saturating_sub(group.state_since_ms) < retention {
                return;
            }
            group.offsets.keys().cloned().collect()
        } else {
            group
                .offsets
                .iter()
                .filter(|(_, v)| now_ms.saturating_sub(v.commit_timestamp) >= retention)
                .map(|(k, _)| k.clone())
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let mut tombstones: Vec<KeyValue> = expired
            .iter()
            .map(|(topic, partition)| (records::offset_key(&group.id, topic, *partition), None))
            .collect();
        for key in &expired {
            group.offsets.remove(key);
        }
        if group.offsets.is_empty() && group.members.is_empty() {
            tombstones.push((records::group_key(&group.id), None));
            group.transition(GroupState::Dead, now_ms);
        }
        info!(group = ?group.id, offsets = expired.len(), "expired committed offsets");
        let _ = self.persist(&group.id, &tombstones);
    }
}

/// Kafka's commit validation for classic groups.
fn validate_commit(group: &Group, request: &CommitRequest) -> Result<(), GroupError> {
    if group.state == GroupState::Dead {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    let outside_protocol = request.generation_id < 0 && request.member_id.is_empty();
    if outside_protocol && group.state == GroupState::Empty {
        return Ok(());
    }
    if request.generation_id >= 0
        || !request.member_id.is_empty()
        || request.group_instance_id.is_some()
    {
        group.check_static(&request.member_id, request.group_instance_id.as_deref())?;
        if !group.has_member(&request.member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if request.generation_id != group.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
    } else {
        // A commit from outside the group protocol (an admin client) while the group has
        // members: only members may commit (Kafka's ClassicGroup.validateOffsetCommit).
        return Err(GroupError::UnknownMemberId);
    }
    if group.state == GroupState::CompletingRebalance {
        return Err(GroupError::RebalanceInProgress);
    }
    Ok(())
}
