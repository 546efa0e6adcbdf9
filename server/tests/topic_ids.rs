//! Topic ids (issue 16 item 7, KIP-516): every topic gets a UUID at creation,
//! Metadata reports it (and looks topics up by it), Fetch v13+ and DeleteTopics
//! v6 name topics by it, and an id no topic has is UNKNOWN_TOPIC_ID (100).

#![allow(clippy::unwrap_used)]

mod inproc;

use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;
use weir_server::kafka::Context;

const UNKNOWN_TOPIC_ID: i16 = 100;

/// Metadata v12 for one topic, by name or by id: (error, name, id).
async fn metadata(ctx: &Context, name: Option<&str>, id: Uuid) -> (i16, Option<String>, Uuid) {
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default()
            .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
            .with_topic_id(id),
    ]));
    let ResponseKind::Metadata(r) =
        inproc::call(ctx, ApiKey::Metadata, 12, RequestKind::Metadata(req)).await
    else {
        panic!("not a Metadata response");
    };
    let t = &r.topics[0];
    (
        t.error_code,
        t.name.as_ref().map(|n| n.0.to_string()),
        t.topic_id,
    )
}

/// Fetch (v13 or later) of partition 0 of topic `id` from offset 0: (error,
/// the echoed id, batches).
async fn fetch(ctx: &Context, version: i16, id: Uuid) -> (i16, Uuid, usize) {
    let t = inproc::fetch(
        ctx,
        version,
        fetch_request::FetchTopic::default().with_topic_id(id),
        0,
    )
    .await;
    let p = &t.partitions[0];
    let batches = p
        .records
        .as_ref()
        .map_or(0, |b| weir_core::batch::iter_batches(b).count());
    (p.error_code, t.topic_id, batches)
}

async fn delete_by_id(ctx: &Context, id: Uuid) -> i16 {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_topic_id(id),
        ]);
    let ResponseKind::DeleteTopics(r) =
        inproc::call(ctx, ApiKey::DeleteTopics, 6, RequestKind::DeleteTopics(req)).await
    else {
        panic!("not a DeleteTopics response");
    };
    r.responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_named_by_id() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    inproc::one_partition_topic(ctx, "i").await;
    let batch = weir_core::batch::BatchBuilder::new(0)
        .record(None, Some(b"v"))
        .build();
    ctx.node
        .produce(
            "i",
            0,
            &batch,
            weir_core::Acks::All,
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let (err, _, id) = metadata(ctx, Some("i"), Uuid::nil()).await;
    assert_eq!(err, 0);
    assert!(!id.is_nil(), "Metadata v12 reports the topic's id");
    assert_eq!(metadata(ctx, Some("i"), Uuid::nil()).await.2, id, "stable");
    // Looked up by id.
    assert_eq!(
        metadata(ctx, None, id).await,
        (0, Some("i".to_string()), id)
    );
    let unknown = Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
    assert_eq!(metadata(ctx, None, unknown).await.0, UNKNOWN_TOPIC_ID);

    // Fetch by id, at the first and the last version served.
    for version in [13, 16] {
        assert_eq!(
            fetch(ctx, version, id).await,
            (0, id, 1),
            "Fetch v{version}"
        );
        assert_eq!(
            fetch(ctx, version, unknown).await,
            (UNKNOWN_TOPIC_ID, unknown, 0),
            "Fetch v{version} of an unknown id"
        );
    }

    // DeleteTopics by id; a topic created again under the name gets a new id.
    assert_eq!(delete_by_id(ctx, unknown).await, UNKNOWN_TOPIC_ID);
    assert_eq!(delete_by_id(ctx, id).await, 0);
    assert!(!ctx.node.metadata().topics.contains_key("i"));
    inproc::one_partition_topic(ctx, "i").await;
    let again = metadata(ctx, Some("i"), Uuid::nil()).await.2;
    assert!(!again.is_nil() && again != id, "{again} vs {id}");
    assert_eq!(
        fetch(ctx, 13, id).await.0,
        UNKNOWN_TOPIC_ID,
        "the old id is gone"
    );
}
