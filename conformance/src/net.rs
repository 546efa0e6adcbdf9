//! Networks for the cluster suite: how each node gets a transport, and fault
//! injection that works over any transport.
//!
//! Faults are applied on the sending side by [`FaultyTransport`], a decorator around
//! the real transport: a cut link drops what its sender sends, message loss drops
//! batches at random (seeded). So the same partitions and losses hit the in-memory
//! network and real transports on 127.0.0.1 alike.

use std::sync::{Arc, OnceLock};

pub use weir_core::faults::{Faults, FaultyTransport};
use weir_core::memnet::MemNetwork;
use weir_core::{Inbound, NodeId, Transport};

/// What a node needs from the network.
pub struct Endpoint {
    /// Where the node sends.
    pub transport: Arc<dyn Transport>,
    /// Hands the node's inbound to the transport once the node exists.
    pub register: Box<dyn FnOnce(Arc<dyn Inbound>) + Send>,
    /// Stops the transport (the node is going down). Must release its listening
    /// address so that a restarted node can bind it again.
    pub stop: Box<dyn FnOnce() + Send>,
}

/// How the cluster suite connects nodes.
pub trait NetHarness: Send + Sync + 'static {
    /// A transport for node `id` of a cluster of `ids` (called again when the node
    /// restarts). Runs inside the cluster's tokio runtime.
    ///
    /// # Errors
    /// When the transport cannot start.
    fn endpoint(&self, id: NodeId, ids: &[NodeId]) -> anyhow::Result<Endpoint>;
}

/// The in-memory network.
#[derive(Default)]
pub struct MemNet {
    net: OnceLock<MemNetwork>,
}

impl NetHarness for MemNet {
    fn endpoint(&self, id: NodeId, _ids: &[NodeId]) -> anyhow::Result<Endpoint> {
        let net = self.net.get_or_init(|| MemNetwork::new(0)).clone();
        let (n1, n2) = (net.clone(), net.clone());
        Ok(Endpoint {
            transport: net.transport(id),
            register: Box::new(move |inbound| n1.register(id, inbound)),
            stop: Box::new(move || n2.unregister(id)),
        })
    }
}

/// A network of real transports on 127.0.0.1. Each node keeps the port it was
/// given first, so a restarted node binds it again; `start` turns a bound listener
/// and the node's identity into an [`Endpoint`].
pub struct LoopbackNet<F> {
    ports: OnceLock<std::collections::BTreeMap<NodeId, u16>>,
    start: F,
}

impl<F> LoopbackNet<F>
where
    F: Fn(tokio::net::TcpListener, weir_core::transport::Identity) -> anyhow::Result<Endpoint>
        + Send
        + Sync
        + 'static,
{
    /// A network whose nodes start their transport with `start`.
    pub fn new(start: F) -> Self {
        LoopbackNet {
            ports: OnceLock::new(),
            start,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl<F> NetHarness for LoopbackNet<F>
where
    F: Fn(tokio::net::TcpListener, weir_core::transport::Identity) -> anyhow::Result<Endpoint>
        + Send
        + Sync
        + 'static,
{
    fn endpoint(&self, id: NodeId, ids: &[NodeId]) -> anyhow::Result<Endpoint> {
        let ports = self
            .ports
            .get_or_init(|| ids.iter().map(|&i| (i, free_port())).collect());
        let addr = format!("127.0.0.1:{}", ports[&id]);
        // The previous incarnation's listener closes asynchronously: retry briefly.
        let mut bound = None;
        for _ in 0..200 {
            if let Ok(l) = std::net::TcpListener::bind(&addr) {
                bound = Some(l);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let listener = bound.ok_or_else(|| anyhow::anyhow!("cannot bind {addr}"))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let peers = ids
            .iter()
            .filter(|&&p| p != id)
            .map(|&p| (p, format!("127.0.0.1:{}", ports[&p])))
            .collect();
        (self.start)(
            listener,
            weir_core::transport::Identity {
                node: id,
                cluster_id: "test".into(),
                peers,
            },
        )
    }
}
