//! JoinGroup and SyncGroup, and the rebalance that joins them: PreparingRebalance collects
//! members (with the initial delay for an empty group), completing the join picks the
//! protocol and leader and answers every parked JoinGroup, and the leader's SyncGroup
//! hands out the assignment and makes the group Stable.

use tokio::sync::oneshot;
use tracing::info;

use super::state::{Group, GroupState, Member};
use super::types::*;
use super::{new_member_id, GroupCoordinator};

impl GroupCoordinator {
    /// Handles JoinGroup.
    pub fn join(&self, request: JoinRequest, now_ms: i64) -> Reply<JoinResponse> {
        let error = |e| Reply::Now(JoinResponse::error(e, &request.member_id));
        if request.group_id.is_empty() {
            return error(GroupError::InvalidGroupId);
        }
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return error(GroupError::InvalidSessionTimeout);
        }
        let mut inner = self.lock();
        if let Err(e) = self.check_available(&inner, &request.group_id) {
            return error(e);
        }
        if !request.member_id.is_empty() && !inner.groups.contains_key(&request.group_id) {
            return error(GroupError::UnknownMemberId);
        }
        let group = inner
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(&request.group_id, now_ms));
        if group.state == GroupState::Dead {
            return error(GroupError::CoordinatorNotAvailable);
        }
        if !group.supports_protocols(&request.protocol_type, &request.protocols) {
            return error(GroupError::InconsistentGroupProtocol);
        }
        if request.member_id.is_empty() {
            self.join_unknown_member(group, request, now_ms)
        } else {
            self.join_known_member(group, request, now_ms)
        }
    }

    fn join_unknown_member(
        &self,
        group: &mut Group,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        if let Some(instance) = request.group_instance_id.clone() {
            if let Some(old_id) = group.static_members.get(&instance).cloned() {
                return self.rejoin_static_member(group, &old_id, request, now_ms);
            }
        }
        if group.members.len() + group.pending_members.len() >= self.config.max_size {
            return Reply::Now(JoinResponse::error(GroupError::GroupMaxSizeReached, ""));
        }
        let member_id = new_member_id(&request.client_id);
        if request.group_instance_id.is_none() && request.require_known_member_id {
            // KIP-394: hand out the id; the member must come back with it.
            let deadline = now_ms + i64::from(request.session_timeout_ms);
            group.pending_members.insert(member_id.clone(), deadline);
            return Reply::Now(JoinResponse::error(
                GroupError::MemberIdRequired,
                &member_id,
            ));
        }
        self.add_member_and_rebalance(group, member_id, request, now_ms)
    }

    fn join_known_member(
        &self,
        group: &mut Group,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        let member_id = request.member_id.clone();
        if group.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(group, member_id, request, now_ms);
        }
        if let Err(err) = group.check_static(&member_id, request.group_instance_id.as_deref()) {
            return Reply::Now(JoinResponse::error(err, &member_id));
        }
        let Some(member) = group.member(&member_id) else {
            return Reply::Now(JoinResponse::error(GroupError::UnknownMemberId, &member_id));
        };
        let unchanged = member.matches(&request.protocols);
        match group.state {
            GroupState::PreparingRebalance => {
                let reply = update_member(group, &request, now_ms);
                self.maybe_complete_join(group, now_ms);
                reply
            }
            GroupState::CompletingRebalance if unchanged => {
                Reply::Now(group.join_response(&member_id, false))
            }
            GroupState::Stable if unchanged && !group.is_leader(&member_id) => {
                Reply::Now(group.join_response(&member_id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let reply = update_member(group, &request, now_ms);
                self.prepare_rebalance(group, now_ms, &format!("member {member_id} rejoined"));
                reply
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResponse::error(GroupError::UnknownMemberId, &member_id))
            }
        }
    }

    fn add_member_and_rebalance(
        &self,
        group: &mut Group,
        member_id: String,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        let (sender, receiver) = oneshot::channel();
        if group.members.is_empty() {
            group.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        group.members.push(Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocol_type: request.protocol_type.clone(),
            protocols: request.protocols.clone(),
            assignment: Default::default(),
            awaiting_join: Some(sender),
            awaiting_sync: None,
            heartbeat_deadline_ms: now_ms + i64::from(request.session_timeout_ms),
            supports_skip_assignment: request.supports_skip_assignment,
        });
        if group.leader_id.is_none() {
            group.leader_id = Some(member_id.clone());
        }
        match group.state {
            GroupState::PreparingRebalance => {
                if let Some(limit) = group.initial_join_limit_ms {
                    // New members keep extending the initial delay, up to the limit.
                    let extended = now_ms + self.config.initial_rebalance_delay_ms;
                    group.join_deadline_ms = extended.min(limit).max(group.join_deadline_ms);
                }
                self.maybe_complete_join(group, now_ms);
            }
            _ => self.prepare_rebalance(group, now_ms, &format!("adding new member {member_id}")),
        }
        Reply::Wait(receiver)
    }

    /// KIP-345: a static member restarting with a new member id takes over its old
    /// membership; when that changes nothing the group does not rebalance.
    fn rejoin_static_member(
        &self,
        group: &mut Group,
        old_id: &str,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        let new_id = new_member_id(&request.client_id);
        let was_leader = group.is_leader(old_id);
        let Some(member) = group.member_mut(old_id) else {
            return Reply::Now(JoinResponse::error(GroupError::UnknownMemberId, ""));
        };
        // The old incarnation's parked requests are fenced.
        if let Some(join) = member.awaiting_join.take() {
            let _ = join.send(JoinResponse::error(GroupError::FencedInstanceId, old_id));
        }
        if let Some(sync) = member.awaiting_sync.take() {
            let _ = sync.send(SyncResponse::error(GroupError::FencedInstanceId));
        }
        // Kafka's rule: the restarted member's new metadata replaces the old, and the group
        // rebalances only if that changes the protocol the group would select (a cooperative
        // consumer's metadata always changes: it owns nothing after a restart).
        member.protocols = request.protocols.clone();
        member.member_id = new_id.clone();
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.supports_skip_assignment = request.supports_skip_assignment;
        member.touch(now_ms);
        if let Some(instance) = &request.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), new_id.clone());
        }
        if was_leader {
            group.leader_id = Some(new_id.clone());
        }
        info!(group = ?group.id, old = old_id, new = ?new_id, "static member rejoined with a new member id");
        let protocol_kept = group.select_protocol() == group.protocol_name;
        match group.state {
            GroupState::Stable if protocol_kept => {
                if let Err(err) = self.persist_group(group) {
                    return Reply::Now(JoinResponse::error(err, &new_id));
                }
                let skip = was_leader && request.supports_skip_assignment;
                let mut response = group.join_response(&new_id, skip);
                if was_leader && !skip {
                    // Answering with the old leader id keeps the restarted leader from
                    // computing an assignment that a Stable group would never broadcast.
                    response.leader_id = old_id.to_string();
                    response.members.clear();
                }
                Reply::Now(response)
            }
            _ => {
                let reply = update_member(
                    group,
                    &{
                        let mut r = request;
                        r.member_id = new_id.clone();
                        r
                    },
                    now_ms,
                );
                if group.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(
                        group,
                        now_ms,
                        "static member rejoined with new metadata",
                    );
                } else {
                    self.maybe_complete_join(group, now_ms);
                }
                reply
            }
        }
    }

    /// Starts a rebalance: answers parked syncs with REBALANCE_IN_PROGRESS and opens the
    /// join phase (with Kafka's initial delay when the group was empty).
    pub(super) fn prepare_rebalance(&self, group: &mut Group, now_ms: i64, reason: &str) {
        if group.state == GroupState::CompletingRebalance {
            for member in &mut group.members {
                member.assignment = Default::default();
                if let Some(sync) = member.awaiting_sync.take() {
                    let _ = sync.send(SyncResponse::error(GroupError::RebalanceInProgress));
                }
            }
        }
        let timeout = group.rebalance_timeout_ms();
        if group.state == GroupState::Empty && self.config.initial_rebalance_delay_ms > 0 {
            let delay = self.config.initial_rebalance_delay_ms.min(timeout);
            group.join_deadline_ms = now_ms + delay;
            group.initial_join_limit_ms = Some(now_ms + timeout);
        } else {
            group.join_deadline_ms = now_ms + timeout;
            group.initial_join_limit_ms = None;
        }
        info!(
            group = ?group.id, from = group.state.name(), generation = group.generation_id,
            "preparing to rebalance: {reason}"
        );
        group.transition(GroupState::PreparingRebalance, now_ms);
        self.maybe_complete_join(group, now_ms);
    }

    /// Completes the join phase early when every member has rejoined (never during the
    /// initial delay, which always runs to its deadline).
    pub(super) fn maybe_complete_join(&self, group: &mut Group, now_ms: i64) {
        if group.state == GroupState::PreparingRebalance
            && group.initial_join_limit_ms.is_none()
            && group.all_members_joined()
        {
            self.complete_join(group, now_ms);
        }
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, starts the next
    /// generation and answers every parked JoinGroup.
    pub(super) fn complete_join(&self, group: &mut Group, now_ms: i64) {
        let missing: Vec<String> = group
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none() && !m.is_static())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in &missing {
            info!(group = ?group.id, member = ?member_id, "removing member that did not rejoin in time");
            group.remove_member(member_id);
        }
        group.initial_join_limit_ms = None;
        group.generation_id += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            group.leader_id = None;
            group.transition(GroupState::Empty, now_ms);
            info!(group = ?group.id, generation = group.generation_id, "group is now empty");
            let _ = self.persist_group(group);
            return;
        }
        let leader_rejoined = group
            .leader_id
            .as_deref()
            .and_then(|l| group.member(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_rejoined {
            let first_joined = group.members.iter().find(|m| m.awaiting_join.is_some());
            let leader = first_joined
                .or(group.members.first())
                .map(|m| m.member_id.clone());
            group.leader_id = leader;
        }
        group.protocol_name = group.select_protocol();
        group.transition(GroupState::CompletingRebalance, now_ms);
        group.sync_deadline_ms = now_ms + group.rebalance_timeout_ms();
        info!(
            group = ?group.id, generation = group.generation_id, members = group.members.len(),
            protocol = ?group.protocol_name, leader = ?group.leader_id, "join phase complete"
        );
        let responses: Vec<(String, JoinResponse)> = group
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_some())
            .map(|m| {
                (
                    m.member_id.clone(),
                    group.join_response(&m.member_id, false),
                )
            })
            .collect();
        for (member_id, response) in responses {
            let member = group
                .member_mut(&member_id)
                .expect("collected from the member list");
            member.touch(now_ms);
            if let Some(sender) = member.awaiting_join.take() {
                let _ = sender.send(response);
            }
        }
    }

    /// Handles SyncGroup.
    pub fn sync(&self, request: SyncRequest, now_ms: i64) -> Reply<SyncResponse> {
        let error = |e| Reply::Now(SyncResponse::error(e));
        let mut inner = self.lock();
        if let Err(e) = self.check_available(&inner, &request.group_id) {
            return error(e);
        }
        let Some(group) = inner.groups.get_mut(&request.group_id) else {
            return error(GroupError::UnknownMemberId);
        };
        if let Err(err) =
            group.check_static(&request.member_id, request.group_instance_id.as_deref())
        {
            return error(err);
        }
        if !group.has_member(&request.member_id) {
            return error(GroupError::UnknownMemberId);
        }
        if request.generation_id != group.generation_id {
            return error(GroupError::IllegalGeneration);
        }
        let type_mismatch = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_mismatch = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
        if type_mismatch || name_mismatch {
            return error(GroupError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty => error(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => error(GroupError::RebalanceInProgress),
            GroupState::Dead => error(GroupError::CoordinatorNotAvailable),
            GroupState::Stable => {
                let member = group.member_mut(&request.member_id).expect("checked above");
                member.touch(now_ms);
                Reply::Now(SyncResponse {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment: group
                        .member(&request.member_id)
                        .expect("checked")
                        .assignment
                        .clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                let member = group.member_mut(&request.member_id).expect("checked above");
                member.awaiting_sync = Some(sender);
                member.touch(now_ms);
                if group.is_leader(&request.member_id) {
                    self.apply_assignment(group, request.assignments, now_ms);
                }
                Reply::Wait(receiver)
            }
        }
    }

    /// The leader's SyncGroup: store the assignment, answer parked syncs, become Stable.
    fn apply_assignment(
        &self,
        group: &mut Group,
        assignments: Vec<(String, bytes::Bytes)>,
        now_ms: i64,
    ) {
        for member in &mut group.members {
            member.assignment = assignments
                .iter()
                .find(|(id, _)| *id == member.member_id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
        }
        if let Err(err) = self.persist_group(group) {
            for member in &mut group.members {
                if let Some(sync) = member.awaiting_sync.take() {
                    let _ = sync.send(SyncResponse::error(err));
                }
            }
            self.prepare_rebalance(group, now_ms, "storing the group failed");
            return;
        }
        group.transition(GroupState::Stable, now_ms);
        let (protocol_type, protocol_name) =
            (group.protocol_type.clone(), group.protocol_name.clone());
        for member in &mut group.members {
            if let Some(sync) = member.awaiting_sync.take() {
                let _ = sync.send(SyncResponse {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
            }
        }
        info!(group = ?group.id, generation = group.generation_id, "group is stable");
    }
}

/// Updates a known member's protocols and timeouts and parks its JoinGroup.
fn update_member(group: &mut Group, request: &JoinRequest, now_ms: i64) -> Reply<JoinResponse> {
    let (sender, receiver) = oneshot::channel();
    let member = group
        .member_mut(&request.member_id)
        .expect("callers checked membership");
    member.protocols = request.protocols.clone();
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.supports_skip_assignment = request.supports_skip_assignment;
    member.touch(now_ms);
    // A newer JoinGroup replaces a parked one; the older request is answered as retriable.
    if let Some(old) = member.awaiting_join.replace(sender) {
        let _ = old.send(JoinResponse::error(
            GroupError::RebalanceInProgress,
            &request.member_id,
        ));
    }
    Reply::Wait(receiver)
}
