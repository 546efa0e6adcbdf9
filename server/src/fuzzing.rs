//! Entry points for the fuzz targets in `fuzz/` and for the tests that replay their
//! corpora (`server/tests/fuzz_corpus.rs`): the same code runs under the fuzzer and
//! in CI.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_core::{Node, NodeConfig};

use crate::kafka::{Context, handle_frame};

/// A single-node broker on the memory engine, answering raw Kafka request frames.
pub struct KafkaHarness {
    rt: tokio::runtime::Runtime,
    ctx: Context,
}

impl std::fmt::Debug for KafkaHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaHarness").finish_non_exhaustive()
    }
}

/// How long one request may take before the harness moves on (a fetch may wait).
const REQUEST_BUDGET: Duration = Duration::from_millis(200);

/// Panics anywhere in the process since the harness started, spawned tasks
/// included (tokio catches those, so the request itself would not see them).
static PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts every panic, then reports it as before.
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            previous(info);
        }));
    });
}

impl KafkaHarness {
    /// Starts the node and waits until it leads its metadata group.
    ///
    /// # Errors
    /// When the node cannot start.
    pub fn new() -> anyhow::Result<KafkaHarness> {
        count_panics();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let ctx = rt.block_on(async {
            let mut cfg = NodeConfig::new(1, vec![1], "127.0.0.1:9092");
            cfg.tick = Duration::from_millis(5);
            let node = Node::start(
                cfg,
                Arc::new(weir_core::memory::MemoryEngine::new()),
                Arc::new(crate::NoPeers),
            )?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while node.metadata().brokers.is_empty() {
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "the node never registered itself"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>(Context {
                node,
                cluster_id: "weir".into(),
                auto_create: true,
                default_partitions: 2,
                default_replication: 1,
                max_request_bytes: 1 << 20,
                max_connections: 1,
                max_connections_per_ip: 1000,
                max_partitions_per_topic: 1000,
                max_auto_create_per_request: 16,
                connections_max_idle: Duration::from_secs(600),
                request_read_timeout: Duration::from_secs(30),
                stats: crate::kafka::ListenerStats::default(),
                request_memory: crate::kafka::RequestMemory::new(64 << 20),
            })
        })?;
        Ok(KafkaHarness { rt, ctx })
    }

    /// Handles `frame` (a request without its size prefix) as a connection would.
    /// Errors close the connection and are fine; a panic — in the request or in any
    /// task it started — or a node stopped by it is the bug a fuzzer looks for.
    ///
    /// # Panics
    /// When handling the request panicked anywhere or stopped the node.
    pub fn request(&self, frame: &[u8]) {
        let before = PANICS.load(std::sync::atomic::Ordering::SeqCst);
        let frame = Bytes::copy_from_slice(frame);
        let _ = self.rt.block_on(async {
            let answered =
                tokio::time::timeout(REQUEST_BUDGET, handle_frame(frame, &self.ctx)).await;
            // Let what the request spawned run a little before judging.
            tokio::task::yield_now().await;
            answered
        });
        let panics = PANICS.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert_eq!(
            panics, 0,
            "handling a request panicked in a task it started"
        );
        if let Some(why) = self.ctx.node.fatal_error() {
            panic!("a request stopped the node: {why}");
        }
    }
}
