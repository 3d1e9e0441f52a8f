//! ListTransactions (key 66), v0-1: transactional ids filtered by state and producer id
//! (v1's duration filter keeps transactions running longer than it).

use std::sync::Arc;

use proto_kafka::messages::list_transactions_response::TransactionState;
use proto_kafka::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::{now_ms, Broker};

const STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ListTransactionsRequest,
) -> Handled<ListTransactionsResponse> {
    let states: Vec<String> = request
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unknown = states
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .map(|s| str_bytes(s))
        .collect();
    let producers: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration_ms = if ctx.api_version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let now = now_ms();
    let listed = broker
        .txns
        .list(&states, &producers)
        .into_iter()
        .filter(|t| {
            min_duration_ms < 0
                || (t.start_ms >= 0 && now.saturating_sub(t.start_ms) >= min_duration_ms)
        })
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(&t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(str_bytes(t.state))
        })
        .collect();
    Handled::Now(
        ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown)
            .with_transaction_states(listed),
    )
}
