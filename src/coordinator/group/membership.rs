//! Heartbeat, LeaveGroup and the timers: session expiry, the end of join and sync phases,
//! unused KIP-394 member ids, and periodic offset expiry.

use tracing::info;

use super::state::{Group, GroupState};
use super::types::*;
use super::GroupCoordinator;

impl GroupCoordinator {
    /// Handles Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let mut inner = self.lock();
        self.check_available(&inner, group_id)?;
        let group = inner
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.check_static(member_id, group_instance_id)?;
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let state = group.state;
        let current_generation = group.generation_id;
        let member = group
            .member_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        match state {
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                member.touch(now_ms);
                Err(GroupError::RebalanceInProgress)
            }
            _ if generation_id != current_generation => Err(GroupError::IllegalGeneration),
            _ => {
                member.touch(now_ms);
                Ok(())
            }
        }
    }

    /// Handles LeaveGroup: per member, `None` on success or the error.
    pub fn leave(
        &self,
        group_id: &str,
        leaving: &[LeavingMember],
        now_ms: i64,
    ) -> Result<Vec<Option<GroupError>>, GroupError> {
        let mut inner = self.lock();
        self.check_available(&inner, group_id)?;
        let group = inner
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed_any = false;
        for member in leaving {
            let result = remove_leaving_member(group, member);
            removed_any |= result.is_none();
            results.push(result);
        }
        if removed_any {
            self.member_left(group, now_ms, "members left the group");
        }
        Ok(results)
    }

    /// Reacts to members having gone: a stable group rebalances, a joining group may now
    /// be complete.
    fn member_left(&self, group: &mut Group, now_ms: i64, reason: &str) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group, now_ms, reason)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(group, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Advances every timer to `now_ms`; the broker calls this every 100 ms.
    pub fn tick(&self, now_ms: i64) {
        let mut inner = self.lock();
        for group in inner.groups.values_mut() {
            self.expire_pending_members(group, now_ms);
            self.expire_sessions(group, now_ms);
            if group.state == GroupState::PreparingRebalance && now_ms >= group.join_deadline_ms {
                self.complete_join(group, now_ms);
            }
            if group.state == GroupState::CompletingRebalance && now_ms >= group.sync_deadline_ms {
                self.expire_sync(group, now_ms);
            }
        }
        let due = now_ms - inner.last_retention_check_ms
            >= self.config.offsets_retention_check_interval_ms;
        if due {
            inner.last_retention_check_ms = now_ms;
            for group in inner.groups.values_mut() {
                self.expire_offsets(group, now_ms);
            }
        }
        inner.groups.retain(|_, g| {
            let forgotten =
                g.state == GroupState::Empty && g.is_forgettable() && g.generation_id == 0;
            g.state != GroupState::Dead && !forgotten
        });
    }

    fn expire_pending_members(&self, group: &mut Group, now_ms: i64) {
        let before = group.pending_members.len();
        group
            .pending_members
            .retain(|_, deadline| *deadline > now_ms);
        if group.pending_members.len() != before {
            self.maybe_complete_join(group, now_ms);
        }
    }

    /// Removes members whose session expired. Members with a parked JoinGroup or SyncGroup
    /// are waiting on the coordinator, not silent, and are kept.
    fn expire_sessions(&self, group: &mut Group, now_ms: i64) {
        let expired: Vec<String> = group
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .filter(|m| m.heartbeat_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for member_id in &expired {
            info!(group = ?group.id, member = ?member_id, "member's session expired, removing it");
            group.remove_member(member_id);
        }
        self.member_left(group, now_ms, "session timeout");
    }

    /// The sync phase ran out: members that never sent SyncGroup are removed and the
    /// group rebalances.
    fn expire_sync(&self, group: &mut Group, now_ms: i64) {
        let silent: Vec<String> = group
            .members
            .iter()
            .filter(|m| m.awaiting_sync.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in &silent {
            info!(group = ?group.id, member = ?member_id, "member did not sync in time, removing it");
            group.remove_member(member_id);
        }
        if group.members.is_empty() {
            group.generation_id += 1;
            group.transition(GroupState::Empty, now_ms);
            let _ = self.persist_group(group);
        } else {
            self.prepare_rebalance(group, now_ms, "sync phase timed out");
        }
    }
}

/// Removes one leaving member; `None` on success.
fn remove_leaving_member(group: &mut Group, leaving: &LeavingMember) -> Option<GroupError> {
    let instance = leaving.group_instance_id.as_deref();
    let member_id = if leaving.member_id.is_empty() {
        // Admin removal of a static member by instance id only.
        match instance.and_then(|i| group.static_members.get(i)) {
            Some(id) => id.clone(),
            None => return Some(GroupError::UnknownMemberId),
        }
    } else {
        leaving.member_id.clone()
    };
    if let Err(err) = group.check_static(&member_id, instance) {
        return Some(err);
    }
    if group.pending_members.remove(&member_id).is_some() {
        return None;
    }
    let Some(member) = group.remove_member(&member_id) else {
        return Some(GroupError::UnknownMemberId);
    };
    if let Some(join) = member.awaiting_join {
        let _ = join.send(JoinResponse::error(GroupError::UnknownMemberId, &member_id));
    }
    if let Some(sync) = member.awaiting_sync {
        let _ = sync.send(SyncResponse::error(GroupError::UnknownMemberId));
    }
    info!(group = ?group.id, member = ?member_id, "member left the group");
    None
}
