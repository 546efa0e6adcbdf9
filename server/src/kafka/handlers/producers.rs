//! InitProducerId (v0–v5, idempotent producers; transactions are not
//! coordinated yet): a cluster-unique producer id, or the next epoch of the one
//! the producer has (KIP-360).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::Context;
use crate::kafka::errors::error_code;

/// InitProducerId.
pub async fn init_producer_id(req: InitProducerIdRequest, ctx: &Context) -> InitProducerIdResponse {
    let none = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match req.transactional_id.as_ref().map(|t| t.as_str()) {
        None => {}
        // Kafka: an empty transactional id is not a valid one.
        Some("") => return none.with_error_code(ResponseError::InvalidRequest.code()),
        // Transactions are not coordinated yet (FindCoordinator says so too).
        Some(_) => return none.with_error_code(ResponseError::CoordinatorNotAvailable.code()),
    }
    let current = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    match ctx.node.init_producer_id(current).await {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::warn!(error = %e, "InitProducerId failed");
            none.with_error_code(error_code(&e))
        }
    }
}
