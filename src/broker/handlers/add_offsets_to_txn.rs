//! AddOffsetsToTxn (key 25), v0-4: adds the group's `__consumer_offsets` partition to the
//! transaction, so that EndTxn writes a marker there for the transactional offsets.

use std::sync::Arc;

use proto_kafka::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::await_durable;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker, OFFSETS_TOPIC};
use crate::coordinator::partition_for;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> Handled<AddOffsetsToTxnResponse> {
    let offsets_partitions = broker
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(1, |t| t.partitions.len());
    let partition = partition_for(request.group_id.0.as_str(), offsets_partitions) as i32;
    let result = broker.txns.add_partitions(
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        &[(OFFSETS_TOPIC.to_string(), partition)],
        &|_, _| true,
        now_ms(),
    );
    match result {
        Err(err) => Handled::Now(
            AddOffsetsToTxnResponse::default()
                .with_error_code(error_code::from_txn(err, ctx.api_version >= 2)),
        ),
        Ok((_, None)) => Handled::Now(AddOffsetsToTxnResponse::default()),
        Ok((_, Some(wait))) => Handled::Later(Box::pin(async move {
            let error = if await_durable(vec![wait]).await {
                0
            } else {
                code(KafkaError::CoordinatorNotAvailable)
            };
            AddOffsetsToTxnResponse::default().with_error_code(error)
        })),
    }
}
