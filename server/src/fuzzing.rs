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

impl KafkaHarness {
    /// Starts the node and waits until it leads its metadata group.
    ///
    /// # Errors
    /// When the node cannot start.
    pub fn new() -> anyhow::Result<KafkaHarness> {
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
                auto_create: true,
                default_partitions: 2,
                default_replication: 1,
                max_request_bytes: 1 << 20,
                max_connections: 1,
                max_partitions_per_topic: 1000,
                max_auto_create_per_request: 16,
                connections_max_idle: Duration::from_secs(600),
                request_read_timeout: Duration::from_secs(30),
                stats: crate::kafka::ListenerStats::default(),
            })
        })?;
        Ok(KafkaHarness { rt, ctx })
    }

    /// Handles `frame` (a request without its size prefix) as a connection would.
    /// Errors close the connection and are fine; a panic is the bug a fuzzer looks for.
    pub fn request(&self, frame: &[u8]) {
        let frame = Bytes::copy_from_slice(frame);
        let _ = self.rt.block_on(async {
            tokio::time::timeout(REQUEST_BUDGET, handle_frame(frame, &self.ctx)).await
        });
    }
}
