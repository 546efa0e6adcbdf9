//! Idempotent producers: InitProducerId (v0–v5; transactions are not
//! coordinated yet) gives a cluster-unique producer id, or the next epoch of
//! the one the producer has (KIP-360); DescribeProducers (v0) lists the
//! producers a partition's leader holds state for.

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

/// DescribeProducers: per partition, the idempotent producers its leader holds
/// state for. A partition this node does not lead answers
/// NOT_LEADER_OR_FOLLOWER (the admin client sends to the leader); there are no
/// transactions, so every producer's coordinator epoch and transaction start
/// offset are -1.
pub fn describe_producers(
    req: DescribeProducersRequest,
    ctx: &Context,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| describe_partition(ctx, t.name.as_str(), p))
                .collect();
            describe_producers_response::TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn describe_partition(
    ctx: &Context,
    topic: &str,
    partition: i32,
) -> describe_producers_response::PartitionResponse {
    let out =
        describe_producers_response::PartitionResponse::default().with_partition_index(partition);
    match ctx.node.describe_producers(topic, partition) {
        Ok(producers) => out.with_active_producers(
            producers
                .into_iter()
                .map(|p| {
                    describe_producers_response::ProducerState::default()
                        .with_producer_id(ProducerId(p.producer_id))
                        .with_producer_epoch(i32::from(p.epoch))
                        .with_last_sequence(p.last_sequence)
                        .with_last_timestamp(p.last_timestamp)
                        .with_coordinator_epoch(-1)
                        .with_current_txn_start_offset(-1)
                })
                .collect(),
        ),
        Err(e) => out
            .with_error_code(error_code(&e))
            .with_error_message(Some(e.to_string().into())),
    }
}
