//! DescribeTransactions (key 65), v0: state, timeout, producer and partitions of
//! transactional ids.

use std::sync::Arc;

use proto_kafka::messages::describe_transactions_response::{TopicData, TransactionState};
use proto_kafka::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TransactionalId,
};

use super::{str_bytes, topic_name};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeTransactionsRequest,
) -> Handled<DescribeTransactionsResponse> {
    let ids: Vec<String> = request
        .transactional_ids
        .iter()
        .map(|t| t.0.to_string())
        .collect();
    let states = ids
        .iter()
        .zip(broker.txns.describe(&ids))
        .map(|(id, found)| {
            let entry =
                TransactionState::default().with_transactional_id(TransactionalId(str_bytes(id)));
            let Some(t) = found else {
                return entry
                    .with_error_code(code(KafkaError::TransactionalIdNotFound))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, partition) in &t.partitions {
                match topics.iter_mut().find(|d| d.topic.0.as_str() == topic) {
                    Some(existing) => existing.partitions.push(*partition),
                    None => topics.push(
                        TopicData::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(vec![*partition]),
                    ),
                }
            }
            entry
                .with_transaction_state(str_bytes(t.state))
                .with_transaction_timeout_ms(t.timeout_ms)
                .with_transaction_start_time_ms(t.start_ms)
                .with_producer_id(ProducerId(t.producer_id))
                .with_producer_epoch(t.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    Handled::Now(DescribeTransactionsResponse::default().with_transaction_states(states))
}
