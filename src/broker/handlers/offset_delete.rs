//! OffsetDelete (key 47), v0: deletes committed offsets of partitions the group does not
//! subscribe to.

use std::sync::Arc;

use proto_kafka::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use proto_kafka::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code;
use crate::broker::Broker;
use crate::coordinator::group::consumer_protocol;

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: OffsetDeleteRequest,
) -> Handled<OffsetDeleteResponse> {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
    match broker.groups.delete_offsets(
        request.group_id.0.as_str(),
        &partitions,
        &consumer_protocol::subscribed_topics,
    ) {
        Err(err) => response.error_code = error_code::from_group(err),
        Ok(results) => {
            let mut results = results.into_iter();
            response.topics = request
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let error = results.next().flatten();
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error_code::from_group_result(error))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
        }
    }
    Handled::Now(response)
}
