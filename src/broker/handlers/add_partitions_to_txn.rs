//! AddPartitionsToTxn (key 24), v0-3 (the client form; v4+ is broker-to-coordinator).

use std::sync::Arc;

use proto_kafka::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use proto_kafka::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::await_durable;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> Handled<AddPartitionsToTxnResponse> {
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p)))
        .collect();
    let topics = &broker.topics;
    let exists = |topic: &str, p: i32| topics.partition(topic, p).is_some();
    let fenced_known = ctx.api_version >= 2;
    let (codes, wait) = match broker.txns.add_partitions(
        request.v3_and_below_transactional_id.0.as_str(),
        request.v3_and_below_producer_id.0,
        request.v3_and_below_producer_epoch,
        &partitions,
        &exists,
        now_ms(),
    ) {
        Ok((results, wait)) => (
            results
                .into_iter()
                .map(|e| e.map_or(0, |e| error_code::from_txn(e, fenced_known)))
                .collect(),
            wait,
        ),
        Err(err) => (
            vec![error_code::from_txn(err, fenced_known); partitions.len()],
            None,
        ),
    };
    let topic_names: Vec<_> = request
        .v3_and_below_topics
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let build = move |codes: Vec<i16>| {
        let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
        let mut codes = codes.into_iter();
        for (name, topic) in topic_names.iter().zip(&request.v3_and_below_topics) {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(name.clone())
                    .with_results_by_partition(partitions),
            );
        }
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
    };
    match wait {
        None => Handled::Now(build(codes)),
        Some(wait) => Handled::Later(Box::pin(async move {
            if await_durable(vec![wait]).await {
                build(codes)
            } else {
                let failed = codes
                    .iter()
                    .map(|_| code(KafkaError::CoordinatorNotAvailable))
                    .collect();
                build(failed)
            }
        })),
    }
}
