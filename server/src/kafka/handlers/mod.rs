//! The Kafka APIs weir answers, one file per family (like mini-redis's `cmd/`).
//! Each handler takes the decoded request, its version and the [`Context`], and
//! returns the response; none of them frames, decodes or encodes.

pub mod alter_configs;
pub mod cluster;
pub mod configs;
pub mod consumer_groups;
pub mod fetch;
pub mod group_admin;
pub mod groups;
pub mod membership;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producers;
pub mod reassign;
pub mod records;
pub mod topics;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use weir_core::Error;

use super::Context;

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Splits "host:port" (a bracketed IPv6 host loses its brackets; a missing or bad
/// port is Kafka's 9092).
pub(crate) fn host_port(addr: &str) -> (String, i32) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(9092),
        ),
        None => (addr.to_string(), 9092),
    }
}

/// Topic names with this prefix are internal (Kafka's and weir's own).
pub(crate) const INTERNAL_PREFIX: &str = "__";

/// Starts creating `name` with the defaults, without waiting, if this request's
/// auto-creation budget (`max_auto_create_per_request`, counted down in `budget`)
/// allows it and the name is not internal; false when it does not.
pub(crate) fn auto_create(ctx: &Context, name: &str, budget: &mut usize) -> bool {
    if name.starts_with(INTERNAL_PREFIX) {
        // Kafka's internal topics (__consumer_offsets, __transaction_state) and
        // weir's own are never ordinary topics made by a lookup.
        tracing::debug!(topic = %name, "not auto-creating an internal topic name");
        return false;
    }
    if *budget == 0 {
        tracing::debug!(topic = %name, "not auto-creating: max_auto_create_per_request reached");
        return false;
    }
    *budget -= 1;
    let node = ctx.node.clone();
    let name = name.to_string();
    let brokers = node.metadata().brokers.len().max(1);
    let (partitions, rf) = (ctx.default_partitions, ctx.default_replication.min(brokers));
    tokio::spawn(async move {
        match node
            .create_topic(
                &name,
                partitions,
                rf,
                BTreeMap::new(),
                Duration::from_secs(10),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(topic = %name, partitions, replication = rf, "auto-created topic")
            }
            Err(Error::AlreadyExists(_)) => {}
            Err(e) => tracing::warn!(topic = %name, error = %e, "auto-creating a topic failed"),
        }
    });
    true
}
