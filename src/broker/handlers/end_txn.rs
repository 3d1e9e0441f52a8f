//! EndTxn (key 26), v0-4: commits or aborts; answered once the markers are written (and,
//! in durable mode, fsynced).

use std::sync::Arc;

use proto_kafka::messages::{EndTxnRequest, EndTxnResponse};

use super::await_durable;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker};

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: EndTxnRequest,
) -> Handled<EndTxnResponse> {
    let result = broker.txns.end_txn(
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
        now_ms(),
    );
    match result {
        Err(err) => Handled::Now(
            EndTxnResponse::default()
                .with_error_code(error_code::from_txn(err, ctx.api_version >= 2)),
        ),
        Ok(waits) => Handled::Later(Box::pin(async move {
            let error = if await_durable(waits).await {
                0
            } else {
                code(KafkaError::CoordinatorNotAvailable)
            };
            EndTxnResponse::default().with_error_code(error)
        })),
    }
}
