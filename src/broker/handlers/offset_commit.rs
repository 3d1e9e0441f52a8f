//! OffsetCommit (key 8), v2-9: validated by the group coordinator, answered once the offsets
//! are written to `__consumer_offsets` (and fsynced in durable mode).

use std::sync::Arc;

use proto_kafka::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use proto_kafka::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::topic_name;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker};
use crate::coordinator::group::{CommitRequest, OffsetToCommit};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: OffsetCommitRequest,
) -> Handled<OffsetCommitResponse> {
    let commit = CommitRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: request.generation_id_or_member_epoch,
        unknown_group_is_not_found: ctx.api_version >= 9,
        offsets: request
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| OffsetToCommit {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
            })
            .collect(),
    };
    let topics = &broker.topics;
    let exists = |topic: &str, partition: i32| topics.partition(topic, partition).is_some();
    let (results, durable) = match broker.groups.commit_offsets(commit, &exists, now_ms()) {
        Ok(outcome) => {
            let results: Vec<(String, i32, i16)> = outcome
                .results
                .into_iter()
                .map(|(t, p, e)| (t, p, error_code::from_group_result(e)))
                .collect();
            (results, outcome.durable)
        }
        Err(err) => {
            let error = error_code::from_group(err);
            let all = request
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| (t.name.0.to_string(), p.partition_index, error))
                })
                .collect();
            (all, None)
        }
    };
    match durable {
        None => Handled::Now(encode(results)),
        Some(durable) => Handled::Later(Box::pin(async move {
            let failed = durable.await.is_err();
            let results = results
                .into_iter()
                .map(|(t, p, e)| {
                    (
                        t,
                        p,
                        if failed && e == 0 {
                            code(KafkaError::CoordinatorNotAvailable)
                        } else {
                            e
                        },
                    )
                })
                .collect();
            encode(results)
        })),
    }
}

fn encode(results: Vec<(String, i32, i16)>) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, error) in results {
        let entry = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(error);
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(existing) => existing.partitions.push(entry),
            None => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}
