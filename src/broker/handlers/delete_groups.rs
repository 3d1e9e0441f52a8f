//! DeleteGroups (key 42), v0-2: only empty groups; their offsets go with them.

use std::sync::Arc;

use proto_kafka::messages::delete_groups_response::DeletableGroupResult;
use proto_kafka::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code;
use crate::broker::{now_ms, Broker};

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DeleteGroupsRequest,
) -> Handled<DeleteGroupsResponse> {
    let ids: Vec<String> = request
        .groups_names
        .iter()
        .map(|g| g.0.to_string())
        .collect();
    let results = broker
        .groups
        .delete_groups(&ids, now_ms())
        .into_iter()
        .zip(&request.groups_names)
        .map(|(result, id)| {
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(error_code::from_group_result(result))
        })
        .collect();
    Handled::Now(DeleteGroupsResponse::default().with_results(results))
}
