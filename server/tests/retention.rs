//! Retention over the Kafka APIs (issue 20 items 1 and 2): topic configs altered
//! by AlterConfigs and IncrementalAlterConfigs (validated, described with their
//! source), DeleteRecords moving the low watermark, and retention deleting
//! expired records once a topic's `retention.ms` is lowered; ListOffsets earliest
//! and Fetch below the start answer as Kafka does.

#![allow(clippy::unwrap_used)]

mod inproc;

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::batch::{BatchBuilder, now_ms};
use weir_server::kafka::Context;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn incremental(ctx: &Context, kind: i8, name: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let configs = ops
        .iter()
        .map(|(k, op, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(*op)
                .with_value(v.map(s))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configs(configs),
    ]);
    let ResponseKind::IncrementalAlterConfigs(r) = inproc::call(
        ctx,
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(req),
    )
    .await
    else {
        panic!("not an IncrementalAlterConfigs response");
    };
    r.responses[0].error_code
}

async fn alter(ctx: &Context, name: &str, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let req = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s(name))
            .with_configs(configs),
    ]);
    let ResponseKind::AlterConfigs(r) =
        inproc::call(ctx, ApiKey::AlterConfigs, 2, RequestKind::AlterConfigs(req)).await
    else {
        panic!("not an AlterConfigs response");
    };
    r.responses[0].error_code
}

/// (value, source) of a topic config as DescribeConfigs reports it.
async fn described(ctx: &Context, topic: &str, key: &str) -> (String, i8) {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(vec![s(key)])),
    ]);
    let ResponseKind::DescribeConfigs(r) = inproc::call(
        ctx,
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(req),
    )
    .await
    else {
        panic!("not a DescribeConfigs response");
    };
    let c = &r.results[0].configs[0];
    (c.value.as_ref().unwrap().to_string(), c.config_source)
}

async fn delete_records(ctx: &Context, topic: &str, offset: i64) -> (i16, i64) {
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                ]),
        ]);
    let ResponseKind::DeleteRecords(r) = inproc::call(
        ctx,
        ApiKey::DeleteRecords,
        2,
        RequestKind::DeleteRecords(req),
    )
    .await
    else {
        panic!("not a DeleteRecords response");
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

async fn earliest(ctx: &Context, topic: &str) -> i64 {
    let p = inproc::list_offsets(ctx, 7, topic, -2).await;
    assert_eq!(p.error_code, 0);
    p.offset
}

async fn fetch_error(ctx: &Context, topic: &str, offset: i64) -> i16 {
    inproc::fetch_by_name(ctx, topic, offset).await.error_code
}

fn batch(ts: i64) -> Vec<u8> {
    BatchBuilder::new(ts).record(None, Some(b"v")).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_altered_validated_and_described() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    inproc::one_partition_topic(ctx, "a").await;
    assert_eq!(
        described(ctx, "a", "retention.ms").await,
        ("604800000".to_string(), 4),
        "the broker default, STATIC_BROKER"
    );
    let ok = incremental(ctx, TOPIC, "a", &[("retention.ms", 0, Some("1000"))]).await;
    assert_eq!(ok, 0);
    assert_eq!(
        described(ctx, "a", "retention.ms").await,
        ("1000".to_string(), 1),
        "set on the topic, DYNAMIC_TOPIC"
    );
    let append = incremental(ctx, TOPIC, "a", &[("cleanup.policy", 2, Some("compact"))]).await;
    assert_eq!(append, 0);
    assert_eq!(
        described(ctx, "a", "cleanup.policy").await.0,
        "delete,compact"
    );
    let bad = incremental(ctx, TOPIC, "a", &[("retention.ms", 0, Some("soon"))]).await;
    assert_eq!(bad, ResponseError::InvalidConfig.code());
    let bad = incremental(ctx, TOPIC, "a", &[("cleanup.policy", 0, Some("shred"))]).await;
    assert_eq!(bad, ResponseError::InvalidConfig.code());
    assert_eq!(
        described(ctx, "a", "retention.ms").await.0,
        "1000",
        "unchanged"
    );
    let unknown = incremental(ctx, TOPIC, "nope", &[("retention.ms", 0, Some("1"))]).await;
    assert_eq!(unknown, ResponseError::UnknownTopicOrPartition.code());
    let broker = incremental(ctx, BROKER, "1", &[("log.retention.ms", 0, Some("1"))]).await;
    assert_eq!(broker, ResponseError::InvalidRequest.code());
    // AlterConfigs replaces the whole set: retention.ms returns to the default.
    assert_eq!(alter(ctx, "a", &[("retention.bytes", "4096")]).await, 0);
    assert_eq!(
        described(ctx, "a", "retention.bytes").await,
        ("4096".to_string(), 1)
    );
    assert_eq!(described(ctx, "a", "retention.ms").await.1, 4);
    assert_eq!(described(ctx, "a", "cleanup.policy").await.0, "delete");
    let _ = b.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_low_watermark() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    inproc::one_partition_topic(ctx, "d").await;
    for _ in 0..10 {
        assert_eq!(
            inproc::produce_batch(ctx, "d", 9, batch(now_ms())).await.0,
            0
        );
    }
    assert_eq!(delete_records(ctx, "d", 4).await, (0, 4));
    assert_eq!(earliest(ctx, "d").await, 4);
    assert_eq!(
        fetch_error(ctx, "d", 3).await,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(fetch_error(ctx, "d", 4).await, 0);
    assert_eq!(delete_records(ctx, "d", 2).await, (0, 4), "never back");
    assert_eq!(
        delete_records(ctx, "d", 11).await.0,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(
        delete_records(ctx, "nope", 1).await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        delete_records(ctx, "d", -1).await,
        (0, 10),
        "the high watermark"
    );
    let _ = b.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_retention_deletes_expired_records() {
    let b = inproc::broker(
        |cfg| cfg.retention_check_interval = Duration::from_millis(20),
        |_| {},
    )
    .await;
    let ctx = &b.ctx;
    inproc::one_partition_topic(ctx, "r").await;
    let hour_ago = now_ms() - 3_600_000;
    for _ in 0..5 {
        assert_eq!(
            inproc::produce_batch(ctx, "r", 9, batch(hour_ago)).await.0,
            0
        );
    }
    assert_eq!(
        inproc::produce_batch(ctx, "r", 9, batch(now_ms())).await.0,
        0
    );
    // A week's retention (the default) keeps them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(earliest(ctx, "r").await, 0);
    let ok = incremental(ctx, TOPIC, "r", &[("retention.ms", 0, Some("60000"))]).await;
    assert_eq!(ok, 0);
    let group = ctx.node.metadata().partition("r", 0).unwrap().group;
    inproc::until("expired records deleted", || {
        ctx.node
            .group_status(group)
            .and_then(|s| s.log)
            .is_some_and(|l| l.start_offset == 5)
    })
    .await;
    assert_eq!(earliest(ctx, "r").await, 5, "the recent record stays");
    let _ = b.stop.send(());
}
