//! Limits on what one client request can make a node build: partitions per topic,
//! partitions in the cluster, topics auto-created by one request.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod inproc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use inproc::{broker, call};

fn creatable(name: &str, partitions: i32) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
}

async fn create(
    ctx: &weir_server::kafka::Context,
    topics: Vec<create_topics_request::CreatableTopic>,
) -> Vec<i16> {
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000);
    let ResponseKind::CreateTopics(r) =
        call(ctx, ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)).await
    else {
        panic!("not a CreateTopics response");
    };
    r.topics.iter().map(|t| t.error_code).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_per_topic_are_capped_before_anything_is_allocated() {
    let b = broker(|_| {}, |c| c.max_partitions_per_topic = 10).await;
    let codes = create(
        &b.ctx,
        vec![
            creatable("huge", i32::MAX),
            creatable("big", 11),
            creatable("ok", 10),
        ],
    )
    .await;
    let invalid = ResponseError::InvalidPartitions.code();
    assert_eq!(codes, vec![invalid, invalid, 0]);
    assert!(!b.ctx.node.metadata().topics.contains_key("big"));
    assert_eq!(b.ctx.node.metadata().topics["ok"].partitions.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_enforces_its_partition_limits_whoever_asks() {
    let b = broker(
        |n| {
            n.max_partitions_per_topic = 8;
            n.max_partitions = 12;
        },
        |_| {},
    )
    .await;
    let node = &b.ctx.node;
    let t = std::time::Duration::from_secs(10);
    let per_topic = node.create_topic("a", 9, 1, Default::default(), t).await;
    assert!(
        matches!(per_topic, Err(weir_core::Error::LimitExceeded(_))),
        "{per_topic:?}"
    );
    node.create_topic("b", 8, 1, Default::default(), t)
        .await
        .unwrap();
    // 8 exist; 5 more would make 13 > 12. The answer at the edge is POLICY_VIOLATION.
    let codes = create(&b.ctx, vec![creatable("c", 5), creatable("d", 4)]).await;
    assert_eq!(codes, vec![ResponseError::PolicyViolation.code(), 0]);
    let total: usize = node
        .metadata()
        .topics
        .values()
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(total, 12);
}

/// One Metadata request for `names`, allowing auto-creation: each topic's error code.
async fn metadata_codes(ctx: &weir_server::kafka::Context, names: &[String]) -> Vec<i16> {
    let req = MetadataRequest::default()
        .with_topics(Some(
            names
                .iter()
                .map(|n| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(r) =
        call(ctx, ApiKey::Metadata, 12, RequestKind::Metadata(req)).await
    else {
        panic!("not a Metadata response");
    };
    r.topics.iter().map(|t| t.error_code).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_metadata_request_auto_creates_a_bounded_number_of_topics() {
    let b = broker(|_| {}, |c| c.max_auto_create_per_request = 5).await;
    let names: Vec<String> = (0..50).map(|i| format!("auto-{i}")).collect();
    let codes = metadata_codes(&b.ctx, &names).await;
    let pending = codes
        .iter()
        .filter(|&&c| c == ResponseError::LeaderNotAvailable.code())
        .count();
    let refused = codes
        .iter()
        .filter(|&&c| c == ResponseError::UnknownTopicOrPartition.code())
        .count();
    assert_eq!((pending, refused), (5, 45), "{codes:?}");
    let ctx = b.ctx.clone();
    inproc::until("the five topics exist", || {
        ctx.node.metadata().topics.len() == 5
    })
    .await;
}

/// Names with Kafka's internal prefix are never auto-created as ordinary topics: a
/// client looking up `__consumer_offsets` used to create a one-partition user topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_topic_names_are_not_auto_created() {
    let b = broker(|_| {}, |_| {}).await;
    let names = [
        "__consumer_offsets",
        "__transaction_state",
        "__weir_anything",
        "ordinary",
    ]
    .map(String::from);
    let codes = metadata_codes(&b.ctx, &names).await;
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        codes,
        vec![
            unknown,
            unknown,
            unknown,
            ResponseError::LeaderNotAvailable.code()
        ],
        "{names:?}"
    );
    let ctx = b.ctx.clone();
    inproc::until("the ordinary topic exists", || {
        ctx.node.metadata().topics.contains_key("ordinary")
    })
    .await;
    let topics: Vec<String> = ctx.node.metadata().topics.keys().cloned().collect();
    assert_eq!(topics, vec!["ordinary".to_string()]);
}
