//! Consumer-group operations over the wire, for `ferry groups`: list, describe (with lag),
//! delete, delete offsets and reset offsets, against any Kafka-protocol cluster.

use std::collections::{BTreeMap, BTreeSet};

use proto_kafka::messages::{
    ApiKey, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use proto_kafka::protocol::StrBytes;

use crate::client::{check, ClientError, Cluster};
use crate::coordinator::group::consumer_protocol;

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
}

/// A member as DescribeGroups shows it, with its decoded assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// One partition of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub log_end: Option<i64>,
    pub lag: Option<i64>,
    pub member_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetails {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
    pub partitions: Vec<PartitionLag>,
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Lists the groups of every broker.
pub async fn list(cluster: &mut Cluster) -> Result<Vec<GroupSummary>, ClientError> {
    let metadata = cluster.metadata(Some(Vec::new())).await?;
    let mut groups = Vec::new();
    for broker in metadata.brokers {
        let connection = cluster.broker(broker.node_id.0).await?;
        let (_, response): (i16, ListGroupsResponse) = connection
            .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
            .await?;
        check(response.error_code, || "ListGroups".to_string())?;
        groups.extend(response.groups.into_iter().map(|g| GroupSummary {
            group: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
        }));
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(groups)
}

async fn describe_raw(cluster: &mut Cluster, group: &str) -> Result<GroupDetails, ClientError> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
    let coordinator = cluster.group_coordinator(group).await?;
    let (_, response): (i16, DescribeGroupsResponse) = coordinator
        .call(ApiKey::DescribeGroups, 5, &request)
        .await?;
    let described = response
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol("DescribeGroups returned no group".into()))?;
    check(described.error_code, || {
        format!("DescribeGroups for {group}")
    })?;
    let members = described
        .members
        .into_iter()
        .map(|m| MemberSummary {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: consumer_protocol::assigned_partitions(&m.member_assignment)
                .unwrap_or_default(),
        })
        .collect();
    Ok(GroupDetails {
        group: group.to_string(),
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members,
        partitions: Vec::new(),
    })
}

/// Committed offsets of a group: (topic, partition) -> offset.
pub async fn committed_offsets(
    cluster: &mut Cluster,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(None);
    let coordinator = cluster.group_coordinator(group).await?;
    let (_, response): (i16, OffsetFetchResponse) =
        coordinator.call(ApiKey::OffsetFetch, 7, &request).await?;
    check(response.error_code, || format!("OffsetFetch for {group}"))?;
    let mut out = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.insert(
                    (topic.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// Sentinel timestamps of ListOffsets.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// ListOffsets for each partition at `timestamp` (or LATEST/EARLIEST), asked of each
/// partition's leader. Partitions without an answer are absent; offset -1 means none.
pub async fn list_offsets(
    cluster: &mut Cluster,
    partitions: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    use proto_kafka::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let topics: BTreeSet<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
    let metadata = cluster.metadata(Some(topics.into_iter().collect())).await?;
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for topic in &metadata.topics {
        let name = topic
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_default();
        for p in &topic.partitions {
            if partitions.contains(&(name.clone(), p.partition_index)) {
                by_leader
                    .entry(p.leader_id.0)
                    .or_default()
                    .entry(name.clone())
                    .or_default()
                    .push(p.partition_index);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let connection = cluster.broker(leader).await?;
        let (_, response): (i16, ListOffsetsResponse) =
            connection.call(ApiKey::ListOffsets, 7, &request).await?;
        for topic in response.topics {
            for p in topic.partitions {
                check(p.error_code, || {
                    format!(
                        "ListOffsets for {}-{}",
                        topic.name.0.as_str(),
                        p.partition_index
                    )
                })?;
                out.insert((topic.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// Describes a group with its members and, per partition, committed offset, log end
/// offset and lag (the partitions it has committed offsets for or members are assigned).
/// A group the coordinator reports as Dead with no members and no committed offsets does
/// not exist (Kafka answers DescribeGroups for any name that way): `ClientError::NotFound`.
pub async fn describe(cluster: &mut Cluster, group: &str) -> Result<GroupDetails, ClientError> {
    let mut details = describe_raw(cluster, group).await?;
    let committed = committed_offsets(cluster, group).await?;
    if details.state == "Dead" && details.members.is_empty() && committed.is_empty() {
        return Err(ClientError::NotFound(format!(
            "consumer group '{group}' does not exist"
        )));
    }
    let mut owners: BTreeMap<(String, i32), &MemberSummary> = BTreeMap::new();
    for member in &details.members {
        for (topic, partitions) in &member.assignment {
            for p in partitions {
                owners.insert((topic.clone(), *p), member);
            }
        }
    }
    let all: BTreeSet<(String, i32)> = committed
        .keys()
        .cloned()
        .chain(owners.keys().cloned())
        .collect();
    let ends = if all.is_empty() {
        BTreeMap::new()
    } else {
        list_offsets(cluster, &all, LATEST).await?
    };
    details.partitions = all
        .iter()
        .map(|key| {
            let committed = committed.get(key).copied();
            let log_end = ends.get(key).copied().filter(|o| *o >= 0);
            let owner = owners.get(key);
            PartitionLag {
                topic: key.0.clone(),
                partition: key.1,
                committed,
                log_end,
                lag: committed.zip(log_end).map(|(c, e)| (e - c).max(0)),
                member_id: owner.map(|m| m.member_id.clone()),
                host: owner.map(|m| m.host.clone()),
                client_id: owner.map(|m| m.client_id.clone()),
            }
        })
        .collect();
    Ok(details)
}

/// Deletes groups; per group, the error code (0 = deleted).
pub async fn delete(
    cluster: &mut Cluster,
    groups: &[String],
) -> Result<Vec<(String, i16)>, ClientError> {
    let mut out = Vec::new();
    for group in groups {
        let request =
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))]);
        let coordinator = cluster.group_coordinator(group).await?;
        let (_, response): (i16, DeleteGroupsResponse) =
            coordinator.call(ApiKey::DeleteGroups, 2, &request).await?;
        out.extend(
            response
                .results
                .into_iter()
                .map(|r| (r.group_id.0.to_string(), r.error_code)),
        );
    }
    Ok(out)
}

/// The partitions `specs` name for an OffsetDelete: listed ones as given, and for a bare
/// topic every partition the group has a committed offset for (which works for a topic
/// that was deleted since, the usual reason to delete offsets).
pub async fn offsets_to_delete(
    cluster: &mut Cluster,
    group: &str,
    specs: &[(String, Option<Vec<i32>>)],
) -> Result<Vec<(String, i32)>, ClientError> {
    let committed = committed_offsets(cluster, group).await?;
    let mut partitions = Vec::new();
    for (topic, listed) in specs {
        match listed {
            Some(listed) => partitions.extend(listed.iter().map(|p| (topic.clone(), *p))),
            None => {
                let before = partitions.len();
                partitions.extend(committed.keys().filter(|(t, _)| t == topic).cloned());
                if partitions.len() == before {
                    return Err(ClientError::NotFound(format!(
                        "consumer group '{group}' has no committed offsets for topic '{topic}'"
                    )));
                }
            }
        }
    }
    Ok(partitions)
}

/// Deletes a group's committed offsets for `partitions`; per partition, the error code.
pub async fn delete_offsets(
    cluster: &mut Cluster,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<Vec<(String, i32, i16)>, ClientError> {
    use proto_kafka::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in partitions {
        by_topic.entry(topic).or_default().push(*p);
    }
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    OffsetDeleteRequestPartition::default().with_partition_index(*p)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let coordinator = cluster.group_coordinator(group).await?;
    let (_, response): (i16, OffsetDeleteResponse) =
        coordinator.call(ApiKey::OffsetDelete, 0, &request).await?;
    check(response.error_code, || format!("OffsetDelete for {group}"))?;
    Ok(response
        .topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name.0.to_string();
            t.partitions
                .into_iter()
                .map(move |p| (name.clone(), p.partition_index, p.error_code))
        })
        .collect())
}

/// Which partitions a reset applies to.
#[derive(Debug, Clone)]
pub enum ResetScope {
    /// Every partition the group has committed offsets for.
    AllTopics,
    /// Topics, each with all its partitions (`None`) or listed ones.
    Topics(Vec<(String, Option<Vec<i32>>)>),
}

/// Where to move each partition.
#[derive(Debug, Clone)]
pub enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
    /// The first offset at or after this time (milliseconds since the epoch).
    Timestamp(i64),
    /// Exact offsets per partition (from a CSV file).
    Explicit(BTreeMap<(String, i32), i64>),
}

/// Computes new offsets for a group (and commits them when `execute`). Refuses while the
/// group has active members, as `kafka-consumer-groups` does. A group that does not exist
/// is created by the commit, which is how a subscription is set up at a chosen position.
pub async fn reset_offsets(
    cluster: &mut Cluster,
    group: &str,
    scope: &ResetScope,
    target: &ResetTarget,
    execute: bool,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    let details = describe_raw(cluster, group).await?;
    if !matches!(details.state.as_str(), "Empty" | "Dead") {
        return Err(ClientError::Refused(format!(
            "assignments can only be reset if the group '{group}' is inactive, but its state is {}; \
             stop its consumers first",
            details.state
        )));
    }
    let committed = committed_offsets(cluster, group).await?;
    let partitions = scope_partitions(cluster, scope, &committed).await?;
    let earliest = list_offsets(cluster, &partitions, EARLIEST).await?;
    let latest = list_offsets(cluster, &partitions, LATEST).await?;
    let by_time = match target {
        ResetTarget::Timestamp(ts) => Some(list_offsets(cluster, &partitions, *ts).await?),
        _ => None,
    };
    let mut planned = BTreeMap::new();
    for key in &partitions {
        let (low, high) = (
            earliest.get(key).copied().unwrap_or(0),
            latest.get(key).copied().unwrap_or(0),
        );
        let wanted = match target {
            ResetTarget::Earliest => low,
            ResetTarget::Latest => high,
            ResetTarget::Offset(n) => *n,
            ResetTarget::ShiftBy(n) => committed
                .get(key)
                .copied()
                .unwrap_or(low)
                .saturating_add(*n),
            ResetTarget::Timestamp(_) => {
                // No record at or after the time: the end of the log.
                let found = by_time
                    .as_ref()
                    .and_then(|m| m.get(key))
                    .copied()
                    .unwrap_or(-1);
                if found < 0 {
                    high
                } else {
                    found
                }
            }
            ResetTarget::Explicit(offsets) => match offsets.get(key) {
                Some(n) => *n,
                None => continue,
            },
        };
        planned.insert(key.clone(), wanted.clamp(low, high.max(low)));
    }
    if execute && !planned.is_empty() {
        commit(cluster, group, &planned).await?;
    }
    Ok(planned)
}

async fn scope_partitions(
    cluster: &mut Cluster,
    scope: &ResetScope,
    committed: &BTreeMap<(String, i32), i64>,
) -> Result<BTreeSet<(String, i32)>, ClientError> {
    match scope {
        ResetScope::AllTopics => Ok(committed.keys().cloned().collect()),
        ResetScope::Topics(topics) => {
            let names: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
            let metadata = cluster.metadata(Some(names)).await?;
            let mut out = BTreeSet::new();
            for (topic, listed) in topics {
                let found = metadata
                    .topics
                    .iter()
                    .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
                let Some(found) = found.filter(|t| t.error_code == 0) else {
                    return Err(ClientError::Kafka {
                        context: format!("topic {topic}"),
                        code: found.map_or(3, |t| t.error_code),
                    });
                };
                for p in &found.partitions {
                    if listed
                        .as_ref()
                        .is_none_or(|l| l.contains(&p.partition_index))
                    {
                        out.insert((topic.clone(), p.partition_index));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Commits offsets from outside the group protocol (generation -1, no member id).
pub async fn commit(
    cluster: &mut Cluster,
    group: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), ClientError> {
    use proto_kafka::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((topic, p), offset) in offsets {
        by_topic.entry(topic).or_default().push((*p, *offset));
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(
                            ps.iter()
                                .map(|(p, o)| {
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(*o)
                                        .with_committed_metadata(Some(str_bytes("")))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let coordinator = cluster.group_coordinator(group).await?;
    let (_, response): (i16, OffsetCommitResponse) =
        coordinator.call(ApiKey::OffsetCommit, 8, &request).await?;
    for topic in response.topics {
        for p in topic.partitions {
            check(p.error_code, || {
                format!(
                    "OffsetCommit for {}-{}",
                    topic.name.0.as_str(),
                    p.partition_index
                )
            })?;
        }
    }
    Ok(())
}

/// Parses `topic,partition,offset` lines (blank lines and `#` comments ignored).
pub fn parse_offsets_csv(text: &str) -> Result<BTreeMap<(String, i32), i64>, String> {
    let mut out = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [topic, partition, offset] = fields[..] else {
            return Err(format!(
                "line {}: expected topic,partition,offset",
                number + 1
            ));
        };
        let partition = partition
            .parse()
            .map_err(|_| format!("line {}: bad partition", number + 1))?;
        let offset = offset
            .parse()
            .map_err(|_| format!("line {}: bad offset", number + 1))?;
        out.insert((topic.to_string(), partition), offset);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_offsets() {
        let parsed = parse_offsets_csv("# comment\norders,0,5\n\norders, 1 ,7\n").unwrap();
        assert_eq!(parsed.get(&("orders".to_string(), 1)), Some(&7));
        assert!(parse_offsets_csv("orders,0").is_err());
        assert!(parse_offsets_csv("orders,x,1").is_err());
    }
}
