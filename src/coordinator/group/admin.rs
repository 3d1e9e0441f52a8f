//! The operator's view of groups: DescribeGroups, ListGroups, DeleteGroups, and the
//! committed offsets the metrics endpoint exports.

use tracing::info;

use super::records;
use super::state::GroupState;
use super::types::*;
use super::GroupCoordinator;

impl GroupCoordinator {
    /// Describes groups; an unknown group is reported as Dead with no members, as in Kafka.
    pub fn describe(&self, group_ids: &[String]) -> Vec<GroupDescription> {
        let inner = self.lock();
        group_ids
            .iter()
            .map(|id| match inner.groups.get(id) {
                None => GroupDescription {
                    group_id: id.clone(),
                    state: GroupState::Dead.name(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                },
                Some(group) => {
                    let stable = group.state == GroupState::Stable;
                    let protocol = group.protocol_name.clone().unwrap_or_default();
                    let members = group
                        .members
                        .iter()
                        .map(|m| MemberDescription {
                            member_id: m.member_id.clone(),
                            group_instance_id: m.group_instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: if stable {
                                m.metadata_for(&protocol)
                            } else {
                                Default::default()
                            },
                            assignment: if stable {
                                m.assignment.clone()
                            } else {
                                Default::default()
                            },
                        })
                        .collect();
                    GroupDescription {
                        group_id: id.clone(),
                        state: group.state.name(),
                        protocol_type: group.protocol_type.clone().unwrap_or_default(),
                        protocol: if stable { protocol } else { String::new() },
                        members,
                    }
                }
            })
            .collect()
    }

    /// Lists groups, optionally only those in the given states (ListGroups v4+).
    pub fn list(&self, states: &[String]) -> Vec<GroupListing> {
        let inner = self.lock();
        let mut listing: Vec<GroupListing> = inner
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect();
        listing.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listing
    }

    /// The committed offsets of the first `max_groups` groups that have any, by group id (so
    /// the same groups are chosen from one scrape to the next). Offsets pending in open
    /// transactions are not included. The lock is held for a copy of those groups' offsets.
    pub fn committed_offsets(&self, max_groups: usize) -> CommittedOffsets {
        let inner = self.lock();
        let mut ids: Vec<&String> = inner
            .groups
            .iter()
            .filter(|(_, g)| !g.offsets.is_empty())
            .map(|(id, _)| id)
            .collect();
        let groups_left_out = ids.len().saturating_sub(max_groups);
        if groups_left_out > 0 {
            ids.select_nth_unstable(max_groups);
            ids.truncate(max_groups);
        }
        ids.sort_unstable();
        let groups = ids
            .into_iter()
            .filter_map(|id| inner.groups.get(id))
            .map(|group| GroupOffsets {
                group_id: group.id.clone(),
                offsets: group
                    .offsets
                    .iter()
                    .map(|((topic, partition), value)| (topic.clone(), *partition, value.offset))
                    .collect(),
            })
            .collect();
        CommittedOffsets {
            groups,
            groups_left_out,
        }
    }

    /// Deletes empty groups with their offsets. Per group, `None` or the error.
    pub fn delete_groups(&self, group_ids: &[String], now_ms: i64) -> Vec<Option<GroupError>> {
        let mut inner = self.lock();
        group_ids
            .iter()
            .map(|id| {
                if let Err(e) = self.check_available(&inner, id) {
                    return Some(e);
                }
                let Some(group) = inner.groups.get_mut(id) else {
                    return Some(GroupError::GroupIdNotFound);
                };
                match group.state {
                    GroupState::Dead => return Some(GroupError::GroupIdNotFound),
                    GroupState::Empty => {}
                    _ => return Some(GroupError::NonEmptyGroup),
                }
                let mut tombstones: Vec<KeyValue> = group
                    .offsets
                    .keys()
                    .map(|(topic, partition)| (records::offset_key(id, topic, *partition), None))
                    .collect();
                tombstones.push((records::group_key(id), None));
                if let Err(err) = self.persist(id, &tombstones) {
                    return Some(err);
                }
                group.transition(GroupState::Dead, now_ms);
                inner.groups.remove(id);
                info!(group = ?id, "deleted group");
                None
            })
            .collect()
    }
}
