//! InitProducerId (key 22), v0-5: a fresh producer id for idempotent producers; for
//! transactional ids, the id's bumped epoch (fencing older instances and aborting their open
//! transaction). v3+ may name the producer's current id and epoch (KIP-360 recovery).

use std::sync::Arc;

use proto_kafka::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::await_durable;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> Handled<InitProducerIdResponse> {
    let transactional_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
    let expected = (ctx.api_version >= 3 && request.producer_id.0 >= 0)
        .then_some((request.producer_id.0, request.producer_epoch));
    let result = broker.txns.init_producer_id(
        transactional_id.as_deref(),
        request.transaction_timeout_ms,
        expected,
        now_ms(),
    );
    let fenced_known = ctx.api_version >= 4;
    match result {
        Err(err) => Handled::Now(
            InitProducerIdResponse::default()
                .with_error_code(error_code::from_txn(err, fenced_known))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        Ok((producer_id, epoch, waits)) => Handled::Later(Box::pin(async move {
            let mut response = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch);
            if !await_durable(waits).await {
                response = InitProducerIdResponse::default()
                    .with_error_code(code(KafkaError::CoordinatorNotAvailable))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            }
            response
        })),
    }
}
