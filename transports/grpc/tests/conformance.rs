//! The transport conformance suite for the grpc transport.

use std::sync::Arc;

use tokio::net::TcpListener;
use weir_conformance::transport::{Limits, TransportHarness};
use weir_core::NodeId;
use weir_core::transport::Identity;
use weir_transport_grpc::{Config, GrpcTransport};

struct Grpc;

impl TransportHarness for Grpc {
    type T = GrpcTransport;

    fn open(
        &self,
        l: TcpListener,
        id: Identity,
        lim: Limits,
    ) -> anyhow::Result<Arc<GrpcTransport>> {
        let (max_frame_bytes, queue_batches) = (lim.max_frame_bytes, lim.queue_batches);
        let c = Config {
            max_frame_bytes,
            queue_batches,
            max_backoff_ms: 100,
        };
        Ok(GrpcTransport::start(l, id, c)?)
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

fn main() {
    weir_conformance::transport::run(Grpc)
}
