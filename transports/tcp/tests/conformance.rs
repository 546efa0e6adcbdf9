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
        let mut b = b"WEIR".to_vec();
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&(cluster.len() as u16).to_be_bytes());
        b.extend_from_slice(cluster.as_bytes());
        b.extend_from_slice(&from.to_be_bytes());
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&[0u8; 1024]);
        b
    }
}

fn main() {
    weir_conformance::transport::run(Tcp)
}
