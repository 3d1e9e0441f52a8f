//! OffsetFetch (key 9), v1-9: one group (v1-7, all partitions with a null topic list from
//! v2) or several groups per request (v8+).

use std::sync::Arc;

use proto_kafka::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use proto_kafka::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

use super::{str_bytes, topic_name};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;
use crate::coordinator::group::FetchedOffset;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: OffsetFetchRequest,
) -> Handled<OffsetFetchResponse> {
    let version = ctx.api_version;
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = request
            .groups
            .iter()
            .map(|group| {
                let wanted: Option<Vec<(String, Vec<i32>)>> = group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let entry = OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(group.group_id.0.clone()));
                if !broker.groups.is_available(group.group_id.0.as_str()) {
                    return entry.with_error_code(code(KafkaError::CoordinatorNotAvailable));
                }
                let fetched = broker
                    .groups
                    .fetch_offsets(group.group_id.0.as_str(), wanted.as_deref());
                entry.with_topics(group_topics_v8(fetched, request.require_stable))
            })
            .collect();
    } else {
        let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        if !broker.groups.is_available(request.group_id.0.as_str()) {
            // v0-1 have no group-level error: they answer with no offsets at all.
            if version >= 2 {
                response.error_code = code(KafkaError::CoordinatorNotAvailable);
            }
            return Handled::Now(response);
        }
        let fetched = broker
            .groups
            .fetch_offsets(request.group_id.0.as_str(), wanted.as_deref());
        response.topics = group_topics(fetched, version, version >= 7 && request.require_stable);
    }
    Handled::Now(response)
}

fn group_by_topic(fetched: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut grouped: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for offset in fetched {
        match grouped.iter_mut().find(|(t, _)| *t == offset.topic) {
            Some((_, list)) => list.push(offset),
            None => grouped.push((offset.topic.clone(), vec![offset])),
        }
    }
    grouped
}

/// KIP-447: with require_stable, partitions with uncommitted transactional offsets answer
/// UNSTABLE_OFFSET_COMMIT (the consumer retries until the transaction completes).
fn stable_or_error(offset: &FetchedOffset, require_stable: bool) -> (i64, i16) {
    if require_stable && offset.unstable {
        (-1, code(KafkaError::UnstableOffsetCommit))
    } else {
        (offset.offset, 0)
    }
}

fn group_topics(
    fetched: Vec<FetchedOffset>,
    version: i16,
    require_stable: bool,
) -> Vec<OffsetFetchResponseTopic> {
    group_by_topic(fetched)
        .into_iter()
        .map(|(topic, offsets)| {
            let partitions = offsets
                .into_iter()
                .map(|o| {
                    let (offset, error) = stable_or_error(&o, require_stable);
                    let mut p = OffsetFetchResponsePartition::default()
                        .with_partition_index(o.partition)
                        .with_committed_offset(offset)
                        .with_error_code(error)
                        .with_metadata(Some(str_bytes(&o.metadata)));
                    if version >= 5 {
                        p.committed_leader_epoch = o.leader_epoch;
                    }
                    p
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(partitions)
        })
        .collect()
}

fn group_topics_v8(
    fetched: Vec<FetchedOffset>,
    require_stable: bool,
) -> Vec<OffsetFetchResponseTopics> {
    group_by_topic(fetched)
        .into_iter()
        .map(|(topic, offsets)| {
            let partitions = offsets
                .into_iter()
                .map(|o| {
                    let (offset, error) = stable_or_error(&o, require_stable);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(o.partition)
                        .with_committed_offset(offset)
                        .with_error_code(error)
                        .with_committed_leader_epoch(o.leader_epoch)
                        .with_metadata(Some(str_bytes(&o.metadata)))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(topic_name(&topic))
                .with_partitions(partitions)
        })
        .collect()
}
