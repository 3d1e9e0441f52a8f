//! One classic group's state: members, generation, chosen protocol and committed offsets,
//! with the rules that do not need the rest of the coordinator (protocol selection, who
//! has rejoined, fencing of static members).
//!
//! States (Kafka's `ClassicGroupState`) and their predecessors:
//! Empty <- PreparingRebalance; PreparingRebalance <- Stable, CompletingRebalance, Empty;
//! CompletingRebalance <- PreparingRebalance; Stable <- CompletingRebalance; Dead <- any.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::records::{GroupValue, MemberValue, OffsetValue};
use super::types::{GroupError, JoinResponse, JoinedMember, SyncResponse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A group member.
#[derive(Debug)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// `(name, metadata)` in order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// The parked JoinGroup of this member, during PreparingRebalance.
    pub awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    /// The parked SyncGroup of this member, during CompletingRebalance.
    pub awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    /// When the member is considered dead without a heartbeat.
    pub heartbeat_deadline_ms: i64,
    pub supports_skip_assignment: bool,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether the member's protocols are exactly these (same names, order and metadata).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }

    /// Pushes the session deadline out from `now_ms`.
    pub fn touch(&mut self, now_ms: i64) {
        self.heartbeat_deadline_ms = now_ms + i64::from(self.session_timeout_ms);
    }

    pub fn to_value(&self, protocol: Option<&str>) -> MemberValue {
        MemberValue {
            member_id: self.member_id.clone(),
            group_instance_id: self.group_instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            session_timeout_ms: self.session_timeout_ms,
            subscription: protocol
                .map(|p| self.metadata_for(p).to_vec())
                .unwrap_or_default(),
            assignment: self.assignment.to_vec(),
        }
    }
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// When the group entered its current state (KIP-211 retention counts from Empty).
    pub state_since_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    /// Members in join order (the order decides a new leader).
    pub members: Vec<Member>,
    /// Static members: group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// KIP-394 member ids handed out but not yet used to join: id -> deadline.
    pub pending_members: HashMap<String, i64>,
    /// PreparingRebalance: when the join phase ends at the latest.
    pub join_deadline_ms: i64,
    /// Initial rebalance of an empty group: the deadline cannot move past this.
    pub initial_join_limit_ms: Option<i64>,
    /// CompletingRebalance: members must SyncGroup before this.
    pub sync_deadline_ms: i64,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets committed in transactions not yet completed, by producer id.
    pub pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), OffsetValue>>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: Vec::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline_ms: 0,
            initial_join_limit_ms: None,
            sync_deadline_ms: 0,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
        }
    }

    /// A group with nothing left to remember (no members, offsets or pending work).
    pub fn is_forgettable(&self) -> bool {
        self.members.is_empty()
            && self.offsets.is_empty()
            && self.pending_txn_offsets.is_empty()
            && self.pending_members.is_empty()
    }

    /// Whether a transaction has uncommitted offsets for this partition.
    pub fn has_pending_offset(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending_txn_offsets
            .values()
            .any(|p| p.contains_key(&key))
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.member_id == member_id)
    }

    pub fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.member_id == member_id)
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.member(member_id).is_some()
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Removes a member and its static mapping; returns it.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let index = self.members.iter().position(|m| m.member_id == member_id)?;
        let member = self.members.remove(index);
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.first().map(|m| m.member_id.clone());
        }
        Some(member)
    }

    /// KIP-345 fencing: a request naming a static instance must come from the member id
    /// currently holding that instance.
    pub fn check_static(&self, member_id: &str, instance: Option<&str>) -> Result<(), GroupError> {
        match instance.and_then(|i| self.static_members.get(i)) {
            Some(holder) if holder != member_id => Err(GroupError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect()
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty request; otherwise
    /// the type must match and at least one protocol must be shared with every member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred protocol among
    /// those all members support; the most votes win (ties go to the earliest in the first
    /// member's preference order).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for member in &self.members {
            let choice = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n));
            if let Some((name, _)) = choice {
                if let Some(entry) = votes.iter_mut().find(|(c, _)| c == name) {
                    entry.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, v)| *v).max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(c, _)| c)
    }

    /// Largest rebalance timeout among members (the join phase's length).
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// All members have rejoined and no KIP-394 member id is outstanding.
    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some())
    }

    /// The JoinGroup answer for `member_id` in the current generation.
    pub fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResponse {
        let protocol = self.protocol_name.clone();
        let is_leader = self.is_leader(member_id);
        let members = if is_leader {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: protocol,
            leader_id: self.leader_id.clone().unwrap_or_default(),
            skip_assignment,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// The record persisted for this group.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol_name.as_deref();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp: self.state_since_ms,
            members: self.members.iter().map(|m| m.to_value(protocol)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::new()))
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            heartbeat_deadline_ms: 0,
            supports_skip_assignment: false,
        }
    }

    #[test]
    fn protocol_selection_votes_among_shared_protocols() {
        let mut group = Group::new("g", 0);
        group.protocol_type = Some("consumer".into());
        group.members.push(member("a", &["roundrobin", "range"]));
        group.members.push(member("b", &["range", "roundrobin"]));
        group.members.push(member("c", &["range", "sticky"]));
        assert_eq!(group.select_protocol().as_deref(), Some("range"));
        let shared = [("range".to_string(), Bytes::new())];
        let unshared = [("sticky".to_string(), Bytes::new())];
        assert!(group.supports_protocols("consumer", &shared));
        assert!(!group.supports_protocols("consumer", &unshared));
        assert!(!group.supports_protocols("connect", &shared));
    }

    #[test]
    fn ties_follow_the_first_members_preference() {
        let mut group = Group::new("g", 0);
        group.members.push(member("a", &["roundrobin", "range"]));
        group.members.push(member("b", &["range", "roundrobin"]));
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
    }

    #[test]
    fn removing_the_leader_hands_leadership_to_the_next_member() {
        let mut group = Group::new("g", 0);
        group.members.push(member("a", &["range"]));
        group.members.push(member("b", &["range"]));
        group.leader_id = Some("a".into());
        group.remove_member("a");
        assert_eq!(group.leader_id.as_deref(), Some("b"));
    }

    #[test]
    fn static_fencing() {
        let mut group = Group::new("g", 0);
        group.static_members.insert("inst".into(), "m1".into());
        assert_eq!(group.check_static("m1", Some("inst")), Ok(()));
        assert_eq!(
            group.check_static("m2", Some("inst")),
            Err(GroupError::FencedInstanceId)
        );
        assert_eq!(group.check_static("m2", None), Ok(()));
    }
}
