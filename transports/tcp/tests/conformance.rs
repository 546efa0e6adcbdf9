//! The transport conformance suite for the TCP transport.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_conformance::transport::TransportHarness;
use weir_core::{Inbound, NodeId};
use weir_transport_tcp::{Config, Identity, TcpTransport};

struct Tcp;

impl TransportHarness for Tcp {
    type T = TcpTransport;

    fn start(
        &self,
        id: NodeId,
        listener: tokio::net::TcpListener,
        peers: BTreeMap<NodeId, String>,
        cluster: &str,
        max_frame: usize,
        queue: usize,
    ) -> anyhow::Result<Arc<TcpTransport>> {
        let config = Config {
            max_frame_bytes: max_frame,
            queue_batches: queue,
            max_backoff_ms: 100,
        };
        Ok(TcpTransport::start(
            listener,
            Identity {
                node: id,
                cluster_id: cluster.into(),
                peers,
            },
            config,
        )?)
    }

    fn register(&self, t: &TcpTransport, inbound: Arc<dyn Inbound>) {
        t.register(inbound);
    }

    fn stop(&self, t: &TcpTransport) {
        t.shutdown();
    }

    fn queued(&self, t: &TcpTransport, peer: NodeId) -> Option<usize> {
        Some(t.queued(peer))
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

weir_conformance::transport_suite!(Tcp);
