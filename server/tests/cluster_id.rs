//! The cluster id clients are told is the configured `cluster_id` (Metadata v2+
//! and DescribeCluster), not one fixed name for every weir cluster: clients and
//! tools that span clusters (MirrorMaker, Connect, monitoring) tell clusters apart
//! by it.

#![allow(clippy::unwrap_used)]

mod inproc;

use kafka_protocol::messages::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_told_the_configured_cluster_id() {
    let b = inproc::broker(|_| {}, |c| c.cluster_id = "blue-7".into()).await;
    for version in [2, 12] {
        let req = MetadataRequest::default().with_topics(Some(Vec::new()));
        let ResponseKind::Metadata(r) = inproc::call(
            &b.ctx,
            ApiKey::Metadata,
            version,
            RequestKind::Metadata(req),
        )
        .await
        else {
            panic!("not a Metadata response");
        };
        assert_eq!(
            r.cluster_id.as_deref(),
            Some("blue-7"),
            "Metadata v{version}"
        );
    }
    let ResponseKind::DescribeCluster(r) = inproc::call(
        &b.ctx,
        ApiKey::DescribeCluster,
        0,
        RequestKind::DescribeCluster(DescribeClusterRequest::default()),
    )
    .await
    else {
        panic!("not a DescribeCluster response");
    };
    assert_eq!((r.error_code, r.cluster_id.as_str()), (0, "blue-7"));
}
