//! Deleting a topic while a consumer reads it must not stop the node (issue 14
//! item 2): the segment engine's partition files are held by readers on other
//! tasks (Fetch, ListOffsets), and a removal that meets one must defer the
//! files' deletion, never fail — a failed removal was fatal to the node and left
//! a directory behind that the next start reopened.

#![allow(clippy::unwrap_used)]

mod inproc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const ROUNDS: usize = 100;
const TOPIC: &str = "d";

/// Names in `dir/partitions`.
fn partition_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("partitions"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_topic_under_a_consumer_keeps_the_node_up_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = weir_engine_segment::SegmentEngine::open(
        dir.path(),
        weir_engine_segment::Config::default(),
    )
    .unwrap();
    let b = inproc::broker_on(Arc::new(engine), |_| {}, |_| {}).await;
    let ctx = b.ctx.clone();
    let wait = Duration::from_secs(10);
    let batch = weir_core::batch::BatchBuilder::new(0)
        .record(None, Some(&[7u8; 4096]))
        .build();

    // Two consumers read the topic without pause, whatever round it is in.
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (ctx, done, answered) = (ctx.clone(), done.clone(), answered.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if inproc::fetch_by_name(&ctx, TOPIC, 0).await.error_code == 0 {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                let _ = inproc::list_offsets(&ctx, 5, TOPIC, -1).await;
                // In process, an answer is ready at once: give the timers a turn.
                tokio::task::yield_now().await;
            }
        }));
    }

    for round in 0..ROUNDS {
        inproc::one_partition_topic(&ctx, TOPIC).await;
        for _ in 0..4 {
            ctx.node
                .produce(TOPIC, 0, &batch, weir_core::Acks::All, wait)
                .await
                .unwrap_or_else(|e| panic!("round {round}: produce: {e}"));
        }
        // Let the consumers see this round's records before it goes.
        let seen = answered.load(Ordering::Relaxed);
        inproc::until("a consumer read the topic", || {
            answered.load(Ordering::Relaxed) > seen
        })
        .await;
        let group = ctx.node.metadata().partition(TOPIC, 0).unwrap().group;
        ctx.node
            .delete_topic(TOPIC, wait)
            .await
            .unwrap_or_else(|e| panic!("round {round}: delete: {e}"));
        inproc::until("the deleted partition is no longer hosted", || {
            !ctx.node.hosted_groups().contains(&group)
        })
        .await;
        assert_eq!(
            ctx.node.fatal_error(),
            None,
            "round {round}: deleting a topic under a consumer stopped the node"
        );
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }

    // The node still serves, and only the metadata group's files are left once
    // the readers are gone: no partition directory, removed or not.
    assert_eq!(ctx.node.fatal_error(), None);
    inproc::one_partition_topic(&ctx, "after").await;
    ctx.node
        .produce("after", 0, &batch, weir_core::Acks::All, wait)
        .await
        .unwrap();
    let live = ctx.node.metadata().partition("after", 0).unwrap().group;
    let expected = vec![format!("{:020}", live.0)];
    inproc::until("no partition directory but the live one is left", || {
        partition_dirs(dir.path()) == expected
    })
    .await;
}
