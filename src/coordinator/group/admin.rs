//! The operator's view of groups: DescribeGroups, ListGroups and DeleteGroups.

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
