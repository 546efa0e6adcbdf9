//! The transport conformance suite for the gRPC transport.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_conformance::transport::TransportHarness;
use weir_core::transport::Identity;
use weir_core::{Inbound, NodeId};
use weir_transport_grpc::{Config, GrpcTransport};

struct Grpc;

impl TransportHarness for Grpc {
    type T = GrpcTransport;

    fn start(
        &self,
        id: NodeId,
        listener: tokio::net::TcpListener,
        peers: BTreeMap<NodeId, String>,
        cluster: &str,
        max_frame: usize,
        queue: usize,
    ) -> anyhow::Result<Arc<GrpcTransport>> {
        let config = Config {
            max_frame_bytes: max_frame,
            queue_batches: queue,
            max_backoff_ms: 100,
        };
        Ok(GrpcTransport::start(
            listener,
            Identity {
                node: id,
                cluster_id: cluster.into(),
                peers,
            },
            config,
        )?)
    }

    fn register(&self, t: &GrpcTransport, inbound: Arc<dyn Inbound>) {
        t.register(inbound);
    }

    fn stop(&self, t: &GrpcTransport) {
        t.shutdown();
    }

    fn queued(&self, t: &GrpcTransport, peer: NodeId) -> Option<usize> {
        Some(t.queued(peer))
    }

    /// An HTTP/2 connection preface followed by a frame header declaring `len` bytes:
    /// the server must refuse it without harm.
    fn oversized_frame(&self, _from: NodeId, _cluster: &str, len: usize) -> Vec<u8> {
        let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let l = (len as u32).min(0x00ff_ffff).to_be_bytes();
        b.extend_from_slice(&[l[1], l[2], l[3], 0x0, 0x0, 0, 0, 0, 1]);
        b.extend_from_slice(&[0u8; 1024]);
        b
    }
}

weir_conformance::transport_suite!(Grpc);
