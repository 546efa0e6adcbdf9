//! Produce: every partition's batch is proposed when the request is read; the
//! response waits for each proposal's outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::*;
use weir_core::{Acks, Appended, Error, ProduceCredit, ProduceTicket};

use super::{auto_create, host_port, str_bytes, topic_name};
use crate::kafka::Context;
use crate::kafka::errors::error_code;

/// Validates and proposes every partition's batch now (in request order, so one
/// connection's batches reach each partition in the order it sent them), each
/// with its share of `credit`, and returns the rest of the handling: await each
/// proposal, then answer (`None` for acks=0).
pub fn start(
    req: ProduceRequest,
    version: i16,
    ctx: &Context,
    mut credit: ProduceCredit,
) -> impl Future<Output = Option<ProduceResponse>> + Send + '_ {
    let acks = if req.acks == 0 { Acks::None } else { Acks::All };
    let timeout = Duration::from_millis(req.timeout_ms.max(1) as u64);
    let mut slots: Vec<(String, i32, weir_core::Result<ProduceTicket>)> = Vec::new();
    let mut budget = ctx.max_auto_create_per_request;
    for t in &req.topic_data {
        let name = t.name.0.to_string();
        if ctx.auto_create
            && !ctx.node.metadata().topics.contains_key(&name)
            && weir_core::validate_topic_name(&name).is_ok()
        {
            auto_create(ctx, &name, &mut budget);
        }
        for p in &t.partition_data {
            let records = p.records.as_deref().unwrap_or_default();
            let ticket = ctx.node.propose(&name, p.index, records, acks, &mut credit);
            slots.push((name.clone(), p.index, ticket));
        }
    }
    async move {
        let waits = slots.into_iter().map(|(name, index, ticket)| async move {
            let r = match ticket {
                Ok(t) => {
                    let stamped = t.log_append_time();
                    t.wait(timeout).await.map(|a| a.map(|a| (a, stamped)))
                }
                Err(e) => Err(e),
            };
            (name, index, r)
        });
        let results = futures_util::future::join_all(waits).await;
        (acks != Acks::None).then(|| answer(results, version, ctx))
    }
}

/// A partition's outcome: its offsets and the time a LogAppendTime topic
/// stamped (for acks=all), or the error.
type Outcome = weir_core::Result<Option<(Appended, Option<i64>)>>;

/// The response for each partition's outcome, grouped by topic.
fn answer(results: Vec<(String, i32, Outcome)>, version: i16, ctx: &Context) -> ProduceResponse {
    let meta = ctx.node.metadata();
    let mut endpoints: BTreeMap<u64, produce_response::NodeEndpoint> = BTreeMap::new();
    let mut by_topic: BTreeMap<String, Vec<produce_response::PartitionProduceResponse>> =
        BTreeMap::new();
    for (name, index, r) in results {
        let mut pr = produce_response::PartitionProduceResponse::default()
            .with_index(index)
            .with_log_append_time_ms(-1);
        match r {
            Ok(Some((a, stamped))) => {
                pr = pr
                    .with_base_offset(a.base_offset)
                    .with_log_append_time_ms(stamped.unwrap_or(-1));
            }
            Ok(None) => {}
            Err(e) => {
                if let (Error::NotLeader { hint: Some(h), .. }, true) = (&e, version >= 10) {
                    pr = pr.with_current_leader(
                        produce_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(h.node as i32))
                            .with_leader_epoch(h.term as i32),
                    );
                    if let Some(b) = meta.brokers.get(&h.node) {
                        let (host, port) = host_port(&b.kafka_addr);
                        endpoints.insert(
                            h.node,
                            produce_response::NodeEndpoint::default()
                                .with_node_id(BrokerId(h.node as i32))
                                .with_host(str_bytes(&host))
                                .with_port(port),
                        );
                    }
                }
                pr = pr.with_error_code(error_code(&e)).with_base_offset(-1);
                if version >= 8 {
                    pr = pr.with_error_message(Some(str_bytes(&e.to_string())));
                }
            }
        }
        by_topic.entry(name).or_default().push(pr);
    }
    let responses = by_topic
        .into_iter()
        .map(|(name, parts)| {
            produce_response::TopicProduceResponse::default()
                .with_name(topic_name(&name))
                .with_partition_responses(parts)
        })
        .collect();
    ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(endpoints.into_values().collect())
}
