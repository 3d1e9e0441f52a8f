//! DescribeProducers (key 61), v0: the active producers of partitions (id, epoch, last
//! sequence and timestamp, open transaction).

use std::sync::Arc;

use proto_kafka::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use proto_kafka::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeProducersRequest,
) -> Handled<DescribeProducersResponse> {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let entry = PartitionResponse::default().with_partition_index(index);
                    let Some(partition) = broker.topics.partition(topic.name.0.as_str(), index)
                    else {
                        return entry.with_error_code(code(KafkaError::UnknownTopicOrPartition));
                    };
                    let producers = partition
                        .producers()
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(i32::from(p.epoch))
                                .with_last_sequence(p.batches.back().map_or(-1, |b| b.last_seq))
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(p.coordinator_epoch)
                                .with_current_txn_start_offset(
                                    p.current_txn_first_offset.unwrap_or(-1),
                                )
                        })
                        .collect();
                    entry.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Handled::Now(DescribeProducersResponse::default().with_topics(topics))
}
