//! CreateTopics as clients use it (issue 16 item 3): the answer comes once every
//! partition has a leader, so that Metadata read right after shows them;
//! `validate_only` checks everything creating would and creates nothing; manual
//! replica assignments are taken when they name brokers that exist.

#![allow(clippy::unwrap_used)]

mod inproc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn creatable(name: &str, partitions: i32, rf: i16) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(topic(name))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

/// CreateTopics v7 → (error code, message) per topic.
async fn create(
    ctx: &weir_server::kafka::Context,
    topics: Vec<create_topics_request::CreatableTopic>,
    validate_only: bool,
) -> Vec<(i16, String)> {
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only);
    let ResponseKind::CreateTopics(r) =
        inproc::call(ctx, ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)).await
    else {
        panic!("not a CreateTopics response");
    };
    r.topics
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.error_message
                    .as_ref()
                    .map_or(String::new(), |m| m.to_string()),
            )
        })
        .collect()
}

/// Metadata v12 for `name`: (topic error, leader of each partition).
async fn leaders(ctx: &weir_server::kafka::Context, name: &str) -> (i16, Vec<i32>) {
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic(name))),
    ]));
    let ResponseKind::Metadata(r) =
        inproc::call(ctx, ApiKey::Metadata, 12, RequestKind::Metadata(req)).await
    else {
        panic!("not a Metadata response");
    };
    let t = &r.topics[0];
    let mut parts: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    parts.sort_unstable();
    (t.error_code, parts.into_iter().map(|(_, l)| l).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_right_after_create_topics_shows_every_leader() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    for round in 0..5 {
        let name = format!("t{round}");
        assert_eq!(
            create(&b.ctx, vec![creatable(&name, 16, 1)], false).await,
            vec![(0, String::new())]
        );
        let (err, leaders) = leaders(&b.ctx, &name).await;
        assert_eq!(err, 0, "{name}");
        assert_eq!(
            leaders,
            vec![1; 16],
            "{name}: leaders right after CreateTopics"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_checks_everything_and_creates_nothing() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    inproc::one_partition_topic(&b.ctx, "exists").await;
    let got = create(
        &b.ctx,
        vec![
            creatable("fine", 3, 1),
            creatable("exists", 1, 1),
            creatable("bad/name", 1, 1),
            creatable("too-many", 100_000, 1),
            creatable("rf", 1, 3),
            creatable("cfg", 1, 1).with_configs(vec![
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("message.timestamp.type"))
                    .with_value(Some(StrBytes::from_static_str("WhenItArrives"))),
            ]),
        ],
        true,
    )
    .await;
    let codes: Vec<i16> = got.iter().map(|(c, _)| *c).collect();
    // TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS,
    // INVALID_REPLICATION_FACTOR, INVALID_CONFIG.
    assert_eq!(codes, vec![0, 36, 17, 37, 38, 40], "{got:?}");
    assert!(
        !b.ctx.node.metadata().topics.contains_key("fine"),
        "validate_only created the topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_replica_assignments_name_existing_brokers() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    let assigned = |name: &str, replicas: Vec<Vec<i32>>| {
        creatable(name, -1, -1).with_assignments(
            replicas
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    create_topics_request::CreatableReplicaAssignment::default()
                        .with_partition_index(i as i32)
                        .with_broker_ids(r.into_iter().map(BrokerId).collect())
                })
                .collect(),
        )
    };
    let got = create(
        &b.ctx,
        vec![
            assigned("manual", vec![vec![1], vec![1]]),
            assigned("unknown-broker", vec![vec![7]]),
            assigned("duplicate", vec![vec![1, 1]]),
            assigned("empty", vec![vec![]]),
            // Both counts and assignments: Kafka refuses that too.
            creatable("both", 2, 1).with_assignments(vec![
                create_topics_request::CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(1)]),
            ]),
        ],
        false,
    )
    .await;
    let codes: Vec<i16> = got.iter().map(|(c, _)| *c).collect();
    // INVALID_REPLICA_ASSIGNMENT for every bad one; INVALID_REQUEST for both.
    assert_eq!(codes, vec![0, 39, 39, 39, 42], "{got:?}");
    let (err, leaders) = leaders(&b.ctx, "manual").await;
    assert_eq!((err, leaders), (0, vec![1, 1]));
}
