//! Consumer-group offsets across a link, copied verbatim (offsets are identical on both
//! sides, so nothing is translated):
//!
//! * While a group has no members on Ferry, its source commits on the link's topics are
//!   copied to Ferry, never moving an offset backwards and never past what the mirror
//!   holds (a consumer started on Ferry must find its position in the log, not beyond it).
//!   The copy is an admin commit (generation -1, no member), which Ferry's coordinator
//!   refuses for a group with members, so the check and the write cannot race.
//! * Once the group has members on Ferry, copying stops by itself (and, because offsets
//!   never move backwards, stays stopped for what Ferry's consumers committed); while the
//!   topic is still mirrored and the group has no members on the source, the group's
//!   Ferry commits that are ahead of the source are written back to the source the same
//!   way (which the source accepts only while the group has no members there), so moving
//!   the consumers back is exact too.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, info};

use super::status::{GroupOffset, GroupStatus};
use super::store::{LinkRecord, TopicState};
use super::Mirror;
use crate::broker::now_ms;
use crate::client::Cluster;
use crate::coordinator::group::{CommitRequest, GroupError, OffsetToCommit};

/// Syncs every group of the link once; problems are recorded in the status.
pub async fn sync(mirror: &Mirror, link: &str, record: &LinkRecord, cluster: &mut Cluster) {
    let groups = match groups_to_sync(record, cluster).await {
        Ok(groups) => groups,
        Err(err) => {
            mirror.with_status(link, |s| {
                s.error = Some(format!("listing the source's groups failed: {err}"))
            });
            return;
        }
    };
    for (group, source_state) in groups {
        let status = sync_group(mirror, record, cluster, &group, &source_state).await;
        mirror.with_status(link, |s| {
            s.groups.insert(group.clone(), status);
        });
    }
}

/// The link's groups that have members on the source and offsets committed there for
/// `topic` (promotion refuses while there are any, unless told they stay).
pub async fn active_on_source(
    record: &LinkRecord,
    cluster: &mut Cluster,
    topic: &str,
) -> Result<Vec<String>, crate::client::ClientError> {
    let mut active = Vec::new();
    for (group, state) in groups_to_sync(record, cluster).await? {
        if matches!(state.as_str(), "" | "Empty" | "Dead") {
            continue;
        }
        let offsets = crate::admin::groups::committed_offsets(cluster, &group).await?;
        if offsets.keys().any(|(t, _)| t == topic) {
            active.push(group);
        }
    }
    Ok(active)
}

/// The groups the link syncs, with their state on the source ("" if not listed there).
async fn groups_to_sync(
    record: &LinkRecord,
    cluster: &mut Cluster,
) -> Result<BTreeMap<String, String>, crate::client::ClientError> {
    let mut out = BTreeMap::new();
    if record.groups.is_empty() && record.group_regex.is_none() {
        return Ok(out);
    }
    let listed = crate::admin::groups::list(cluster).await?;
    let pattern = record
        .group_regex
        .as_deref()
        .and_then(|re| regex::Regex::new(&format!("^(?:{re})$")).ok());
    for summary in &listed {
        if record.groups.contains(&summary.group)
            || pattern.as_ref().is_some_and(|p| p.is_match(&summary.group))
        {
            out.insert(summary.group.clone(), summary.state.clone());
        }
    }
    for group in &record.groups {
        out.entry(group.clone()).or_default();
    }
    Ok(out)
}

async fn sync_group(
    mirror: &Mirror,
    record: &LinkRecord,
    cluster: &mut Cluster,
    group: &str,
    source_state: &str,
) -> GroupStatus {
    let topics: BTreeSet<&String> = record
        .topics
        .iter()
        .filter(|(_, t)| !matches!(t.state, TopicState::Failed { .. }))
        .map(|(name, _)| name)
        .collect();
    let source_offsets = match crate::admin::groups::committed_offsets(cluster, group).await {
        Ok(offsets) => offsets,
        Err(err) => {
            return GroupStatus {
                error: Some(format!("reading its offsets on the source failed: {err}")),
                ..GroupStatus::default()
            }
        }
    };
    let coordinator = &mirror.broker.groups;
    let ferry_offsets: BTreeMap<(String, i32), i64> = coordinator
        .fetch_offsets(group, None)
        .into_iter()
        .filter(|f| f.offset >= 0)
        .map(|f| ((f.topic, f.partition), f.offset))
        .collect();
    let ferry_members = coordinator
        .describe(&[group.to_string()])
        .first()
        .map_or(0, |d| d.members.len());
    let source_active = !matches!(source_state, "" | "Empty" | "Dead");
    let mut status = GroupStatus {
        active_on: match (ferry_members > 0, source_active) {
            (true, _) => "ferry",
            (false, true) => "source",
            (false, false) => "none",
        }
        .to_string(),
        ..GroupStatus::default()
    };
    let mut to_ferry = Vec::new();
    let mut to_source = BTreeMap::new();
    let keys: BTreeSet<&(String, i32)> =
        source_offsets.keys().chain(ferry_offsets.keys()).collect();
    for key in keys {
        if !topics.contains(&key.0) {
            continue;
        }
        let source_offset = source_offsets.get(key).copied().unwrap_or(-1);
        let ferry_offset = ferry_offsets.get(key).copied().unwrap_or(-1);
        status.offsets.push(GroupOffset {
            topic: key.0.clone(),
            partition: key.1,
            source_offset,
            ferry_offset,
        });
        let mirrored_end = mirror
            .broker
            .topics
            .partition(&key.0, key.1)
            .map_or(-1, |p| p.log_end_offset());
        if ferry_members == 0 && source_offset > ferry_offset && source_offset <= mirrored_end {
            to_ferry.push(OffsetToCommit {
                topic: key.0.clone(),
                partition: key.1,
                offset: source_offset,
                leader_epoch: -1,
                metadata: None,
            });
        }
        let still_mirrored = record
            .topics
            .get(&key.0)
            .is_some_and(|t| t.state != TopicState::Promoted);
        if !source_active && still_mirrored && ferry_offset > source_offset {
            to_source.insert(key.clone(), ferry_offset);
        }
    }
    if !to_ferry.is_empty() {
        let count = to_ferry.len();
        let request = CommitRequest {
            group_id: group.to_string(),
            member_id: String::new(),
            group_instance_id: None,
            generation_id: -1,
            unknown_group_is_not_found: false,
            offsets: to_ferry,
        };
        let topics = &mirror.broker.topics;
        let exists = |t: &str, p: i32| topics.partition(t, p).is_some();
        match coordinator.commit_offsets(request, &exists, now_ms()) {
            Ok(_) => debug!(group, count, "copied source offsets to Ferry"),
            Err(GroupError::UnknownMemberId) => {} // members joined meanwhile
            Err(err) => status.error = Some(format!("committing on Ferry failed: {err:?}")),
        }
    }
    if !to_source.is_empty() {
        match crate::admin::groups::commit(cluster, group, &to_source).await {
            Ok(()) => info!(
                group,
                partitions = to_source.len(),
                "wrote Ferry's offsets back to the source"
            ),
            Err(err) => {
                status.error = Some(format!(
                    "writing Ferry's offsets back to the source failed (is the group still \
                     running there?): {err}"
                ))
            }
        }
    }
    status
}
