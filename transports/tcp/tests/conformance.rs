//! The transport conformance suite for the tcp transport.

use std::sync::Arc;

use tokio::net::TcpListener;
use weir_conformance::transport::{Limits, TransportHarness};
use weir_core::NodeId;
use weir_core::transport::Identity;
use weir_transport_tcp::{Config, TcpTransport};

struct Tcp;

impl TransportHarness for Tcp {
    type T = TcpTransport;

    fn open(&self, l: TcpListener, id: Identity, lim: Limits) -> anyhow::Result<Arc<TcpTransport>> {
        let (max_frame_bytes, queue_batches) = (lim.max_frame_bytes, lim.queue_batches);
        let c = Config {
            max_frame_bytes,
            queue_batches,
            max_backoff_ms: 100,
        };
        Ok(TcpTransport::start(l, id, c)?)
    }

    fn oversized_frame(&self, from: NodeId, cluster: &str, len: usize) -> Vec<u8> {
        weir_transport_tcp::handshake_then_oversized_frame(from, cluster, len)
    }
}

fn main() {
    weir_conformance::transport::run(Tcp)
}
