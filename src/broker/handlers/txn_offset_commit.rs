//! TxnOffsetCommit (key 28), v0-4: offsets committed inside a transaction, sent to the
//! group coordinator; visible once the transaction commits. v3+ carries the member id,
//! generation and instance id for fencing (KIP-447).

use std::sync::Arc;

use proto_kafka::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use proto_kafka::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{await_durable, topic_name};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker};
use crate::coordinator::group::{OffsetToCommit, TxnCommitRequest};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> Handled<TxnOffsetCommitResponse> {
    let offsets: Vec<OffsetToCommit> = request
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
        .collect();
    let commit = TxnCommitRequest {
        group_id: request.group_id.0.to_string(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        member_id: if ctx.api_version >= 3 {
            request.member_id.to_string()
        } else {
            String::new()
        },
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: if ctx.api_version >= 3 {
            request.generation_id
        } else {
            -1
        },
        offsets: offsets.clone(),
    };
    let topics = &broker.topics;
    let exists = |topic: &str, partition: i32| topics.partition(topic, partition).is_some();
    let (results, durable) = match broker.groups.commit_txn_offsets(commit, &exists, now_ms()) {
        Ok(outcome) => (
            outcome
                .results
                .into_iter()
                .map(|(t, p, e)| (t, p, error_code::from_group_result(e)))
                .collect(),
            outcome.durable,
        ),
        Err(err) => {
            let error = error_code::from_group(err);
            (
                offsets
                    .iter()
                    .map(|o| (o.topic.clone(), o.partition, error))
                    .collect::<Vec<_>>(),
                None,
            )
        }
    };
    match durable {
        None => Handled::Now(encode(results)),
        Some(wait) => Handled::Later(Box::pin(async move {
            let failed = !await_durable(vec![wait]).await;
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

fn encode(results: Vec<(String, i32, i16)>) -> TxnOffsetCommitResponse {
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, error) in results {
        let entry = TxnOffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(error);
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(existing) => existing.partitions.push(entry),
            None => topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}
