//! Consumer-group coordination over the wire: FindCoordinator (creating
//! `__consumer_offsets` on first use), OffsetCommit and OffsetFetch in their
//! versions, the internal topic hidden and protected.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod inproc;

use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_server::kafka::Context;

use inproc::{broker, call};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn find(ctx: &Context, version: i16, key: &str, key_type: i8) -> FindCoordinatorResponse {
    let mut req = FindCoordinatorRequest::default().with_key_type(key_type);
    req = if version >= 4 {
        req.with_coordinator_keys(vec![s(key)])
    } else {
        req.with_key(s(key))
    };
    let ResponseKind::FindCoordinator(r) = call(
        ctx,
        ApiKey::FindCoordinator,
        version,
        RequestKind::FindCoordinator(req),
    )
    .await
    else {
        panic!("not a FindCoordinator response");
    };
    r
}

/// FindCoordinator until it names a node (the internal topic is created on the
/// first call); returns the error codes seen before.
async fn coordinator(ctx: &Context, group: &str) -> Vec<i16> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = find(ctx, 3, group, 0).await;
        if r.error_code == 0 {
            assert_eq!(r.node_id.0, 1);
            assert!(r.port > 0 && !r.host.is_empty(), "{r:?}");
            return seen;
        }
        seen.push(r.error_code);
        assert!(tokio::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn commit(
    ctx: &Context,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(i32, i64, &str)],
) -> Vec<i16> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(p, o, m)| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(-1)
                                .with_committed_metadata(Some(s(m)))
                        })
                        .collect(),
                ),
        ]);
    let ResponseKind::OffsetCommit(r) =
        call(ctx, ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req)).await
    else {
        panic!("not an OffsetCommit response");
    };
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// OffsetFetch v7 of partitions 0..3 of "t": (code, [(offset, metadata)]).
async fn fetch_v7(ctx: &Context, group: &str) -> (i16, Vec<(i64, String)>) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1, 2]),
        ]));
    let ResponseKind::OffsetFetch(r) =
        call(ctx, ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(req)).await
    else {
        panic!("not an OffsetFetch response");
    };
    let got = r.topics.first().map_or(Vec::new(), |t| {
        t.partitions
            .iter()
            .map(|p| {
                (
                    p.committed_offset,
                    p.metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    });
    (r.error_code, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_and_fetched_through_the_coordinator() {
    let b = broker(|n| n.group_partitions = 4, |_| {}).await;
    let ctx = &b.ctx;
    let before = coordinator(ctx, "g1").await;
    assert!(
        before.iter().all(|&c| c == 15),
        "COORDINATOR_NOT_AVAILABLE while the topic is created: {before:?}"
    );
    // Batched keys (v4), and transactions are not coordinated.
    let r = find(ctx, 4, "g1", 0).await;
    assert_eq!(r.coordinators[0].error_code, 0);
    assert_eq!(r.coordinators[0].node_id.0, 1);
    assert_eq!(find(ctx, 4, "tx", 1).await.coordinators[0].error_code, 15);
    assert_eq!(find(ctx, 3, "", 0).await.error_code, 24, "INVALID_GROUP_ID");

    // A client that assigns its partitions commits with generation -1.
    assert_eq!(
        commit(ctx, "g1", -1, "", &[(0, 10, "a"), (1, 20, "")]).await,
        [0, 0]
    );
    assert_eq!(commit(ctx, "g1", -1, "", &[(0, 11, "b")]).await, [0]);
    let big = "x".repeat(5000);
    assert_eq!(commit(ctx, "g1", -1, "", &[(2, 1, &big)]).await, [12]);
    // g1 has no generation: a commit that names one is from an older one
    // (ILLEGAL_GENERATION, as Kafka answers).
    assert_eq!(commit(ctx, "g1", 3, "m-1", &[(2, 1, "")]).await, [22]);
    let (code, got) = fetch_v7(ctx, "g1").await;
    assert_eq!(code, 0);
    assert_eq!(
        got,
        [(11, "b".into()), (20, String::new()), (-1, String::new())]
    );
    let (code, got) = fetch_v7(ctx, "unknown").await;
    assert_eq!((code, got.len()), (0, 3));
    assert!(got.iter().all(|(o, _)| *o == -1));

    // v8: several groups at once, and every committed partition (topics null).
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g1")))
            .with_topics(None),
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("other")))
            .with_topics(None),
    ]);
    let ResponseKind::OffsetFetch(r) =
        call(ctx, ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(req)).await
    else {
        panic!("not an OffsetFetch response");
    };
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].error_code, 0);
    let offsets: Vec<(i32, i64)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(offsets, [(0, 11), (1, 20)]);
    assert!(r.groups[1].topics.is_empty());

    // Administration: listed and described (Empty: committed offsets only),
    // one partition's offset deleted, then the group.
    let ResponseKind::ListGroups(l) = call(
        ctx,
        ApiKey::ListGroups,
        4,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    )
    .await
    else {
        panic!("not a ListGroups response");
    };
    let listed: Vec<(String, String)> = l
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
        .collect();
    assert_eq!(listed, [("g1".to_string(), "Empty".to_string())]);
    let ResponseKind::DescribeGroups(d) = call(
        ctx,
        ApiKey::DescribeGroups,
        5,
        RequestKind::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("g1")), GroupId(s("nope"))]),
        ),
    )
    .await
    else {
        panic!("not a DescribeGroups response");
    };
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert_eq!(d.groups[1].group_state.as_str(), "Dead");
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(1),
                ]),
        ]);
    let ResponseKind::OffsetDelete(o) =
        call(ctx, ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(req)).await
    else {
        panic!("not an OffsetDelete response");
    };
    assert_eq!(o.error_code, 0);
    assert_eq!(o.topics[0].partitions[0].error_code, 0);
    let (_, got) = fetch_v7(ctx, "g1").await;
    assert_eq!(got[1].0, -1, "partition 1's offset is gone");
    assert_eq!(got[0].0, 11, "partition 0's stays");
    let delete = |g: &str| {
        RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(g))]),
        )
    };
    let ResponseKind::DeleteGroups(del) = call(ctx, ApiKey::DeleteGroups, 2, delete("g1")).await
    else {
        panic!("not a DeleteGroups response");
    };
    assert_eq!(del.results[0].error_code, 0);
    let ResponseKind::DeleteGroups(del) = call(ctx, ApiKey::DeleteGroups, 2, delete("g1")).await
    else {
        panic!("not a DeleteGroups response");
    };
    assert_eq!(del.results[0].error_code, 69, "GROUP_ID_NOT_FOUND");
    let (_, got) = fetch_v7(ctx, "g1").await;
    assert!(
        got.iter().all(|(o, _)| *o == -1),
        "offsets went with the group"
    );
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_topic_is_hidden_and_protected() {
    let b = broker(|n| n.group_partitions = 2, |_| {}).await;
    let ctx = &b.ctx;
    coordinator(ctx, "g").await;
    let ResponseKind::Metadata(all) = call(
        ctx,
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    )
    .await
    else {
        panic!("not a Metadata response");
    };
    assert!(
        all.topics.iter().all(|t| t
            .name
            .as_ref()
            .is_none_or(|n| n.as_str() != "__consumer_offsets")),
        "listed: {:?}",
        all.topics
    );
    let named = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(s("__consumer_offsets")))),
    ]));
    let ResponseKind::Metadata(one) =
        call(ctx, ApiKey::Metadata, 12, RequestKind::Metadata(named)).await
    else {
        panic!("not a Metadata response");
    };
    assert_eq!(one.topics[0].error_code, 0);
    assert!(one.topics[0].is_internal);
    assert_eq!(one.topics[0].partitions.len(), 2);

    let err = ctx
        .node
        .delete_topic("__consumer_offsets", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, weir_core::Error::InvalidTopic(_)), "{err}");
    let err = ctx
        .node
        .create_topic(
            "__transaction_state",
            1,
            1,
            Default::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, weir_core::Error::InvalidTopic(_)), "{err}");
    let batch = weir_core::batch::BatchBuilder::new(0)
        .record(None, Some(b"x"))
        .build();
    let mut credit = ctx.node.reserve_produce(batch.len()).await;
    let err = ctx
        .node
        .propose(
            "__consumer_offsets",
            0,
            &batch,
            weir_core::Acks::All,
            &mut credit,
        )
        .unwrap_err();
    assert!(matches!(err, weir_core::Error::InvalidTopic(_)), "{err}");
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}

async fn beat(
    ctx: &Context,
    version: i16,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let ResponseKind::ConsumerGroupHeartbeat(r) = call(
        ctx,
        ApiKey::ConsumerGroupHeartbeat,
        version,
        RequestKind::ConsumerGroupHeartbeat(req),
    )
    .await
    else {
        panic!("not a ConsumerGroupHeartbeat response");
    };
    r
}

fn join(group: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
        .with_topic_partitions(Some(vec![]))
}

/// The consumer group protocol over the wire: a join, Kafka's error codes for
/// bad heartbeats (never a closed connection), ConsumerGroupDescribe, the
/// classic protocol refused for an active consumer group, and a leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_heartbeats_get_kafkas_answers() {
    let b = broker(|n| n.group_max_members = 1, |_| {}).await;
    let ctx = &b.ctx;
    ctx.node
        .create_topic("t", 3, 1, Default::default(), Duration::from_secs(10))
        .await
        .unwrap();
    coordinator(ctx, "cg").await;
    // v0: a member without an id is given one, with the whole assignment.
    let r = beat(ctx, 0, join("cg")).await;
    assert_eq!(r.error_code, 0, "{r:?}");
    let id = r.member_id.clone().unwrap();
    assert!(!id.is_empty() && r.member_epoch >= 1 && r.heartbeat_interval_ms > 0);
    let parts: usize = r
        .assignment
        .as_ref()
        .map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum())
        .unwrap_or_default();
    assert_eq!(parts, 3, "{r:?}");
    let epoch = r.member_epoch;
    let codes = [
        // An epoch the member never had: fenced.
        (
            join("cg")
                .with_member_id(id.clone())
                .with_member_epoch(epoch + 1),
            110,
        ),
        // A member the group does not know.
        (
            join("cg")
                .with_member_id(s("stranger"))
                .with_member_epoch(3),
            25,
        ),
        // An assignor weir does not have.
        (
            join("cg2")
                .with_member_id(s("m"))
                .with_server_assignor(Some(s("sticky"))),
            112,
        ),
        // Joining without a subscription; an epoch below -2.
        (
            join("cg2")
                .with_member_id(s("m"))
                .with_subscribed_topic_names(None),
            42,
        ),
        (
            join("cg").with_member_id(id.clone()).with_member_epoch(-3),
            42,
        ),
        // No group id.
        (join("").with_member_id(s("m")), 24),
        // The group is full (group_max_members = 1).
        (join("cg").with_member_id(s("second")), 81),
    ];
    for (req, code) in codes {
        let r = beat(ctx, 0, req.clone()).await;
        assert_eq!(r.error_code, code, "{req:?} -> {r:?}");
        assert!(r.error_message.is_some());
    }
    let r = beat(
        ctx,
        1,
        join("cg2")
            .with_member_id(s("m"))
            .with_subscribed_topic_regex(Some(s("t.*"))),
    )
    .await;
    assert_eq!(r.error_code, 42, "regular expressions are refused: {r:?}");
    // The member's current epoch is still fine.
    let r = beat(
        ctx,
        0,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("cg")))
            .with_member_id(id.clone())
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1),
    )
    .await;
    assert_eq!((r.error_code, r.member_epoch), (0, epoch), "{r:?}");

    let ResponseKind::ConsumerGroupDescribe(d) = call(
        ctx,
        ApiKey::ConsumerGroupDescribe,
        0,
        RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(s("cg")), GroupId(s("nobody"))]),
        ),
    )
    .await
    else {
        panic!("not a ConsumerGroupDescribe response");
    };
    let (cg, nobody) = (&d.groups[0], &d.groups[1]);
    assert_eq!(
        (cg.error_code, cg.group_state.as_str()),
        (0, "Stable"),
        "{cg:?}"
    );
    assert_eq!(cg.assignor_name.as_str(), "uniform");
    assert_eq!(cg.members.len(), 1);
    assert_eq!(
        cg.members[0].assignment.topic_partitions[0]
            .topic_name
            .as_str(),
        "t"
    );
    assert_eq!(nobody.error_code, 69, "{nobody:?}");

    // A classic member cannot join a consumer-protocol group with members.
    let ResponseKind::JoinGroup(j) = call(
        ctx,
        ApiKey::JoinGroup,
        5,
        RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("cg")))
                .with_protocol_type(s("consumer"))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(bytes::Bytes::from_static(b"\0\0")),
                ]),
        ),
    )
    .await
    else {
        panic!("not a JoinGroup response");
    };
    assert_eq!(j.error_code, 23, "{j:?}");

    // Leaving: epoch -1 back, and the group is empty.
    let r = beat(
        ctx,
        0,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("cg")))
            .with_member_id(id)
            .with_member_epoch(-1),
    )
    .await;
    assert_eq!((r.error_code, r.member_epoch), (0, -1), "{r:?}");
    let g = ctx.node.consumer_group("cg").unwrap().unwrap();
    assert_eq!(g.state_name(), "Empty");
}
