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
use weir_core::{Inbound, NodeId, PeerTransport, Transport};

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

impl Endpoint {
    /// The endpoint of a started network transport.
    pub fn peer<T: PeerTransport>(t: Arc<T>) -> Endpoint {
        let (reg, stop) = (t.clone(), t.clone());
        Endpoint {
            transport: t,
            register: Box::new(move |inbound| reg.register(inbound)),
            stop: Box::new(move || stop.shutdown()),
        }
    }
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

/// A port on 127.0.0.1 that is free now and that a restarted node can bind again:
/// see [`stable_port`].
fn free_port() -> u16 {
    stable_port()
}

/// A free port on 127.0.0.1 below Linux's ephemeral range (32768–60999 by default).
///
/// Tests restart nodes on the ports they had. A port from the ephemeral range (what
/// binding port 0 returns) can meanwhile be taken by any outgoing connection as its
/// source port, and the restart then fails to bind — seen under CI load. Ports below
/// the range are never handed out that way.
///
/// Ports already handed out by this process are never handed out again (tests run
/// in parallel and bind their ports later).
pub fn stable_port() -> u16 {
    use rand::Rng as _;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        let Ok(mut given) = GIVEN.lock() else { break };
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
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
        // The previous incarnation's listener closes asynchronously: retry for a while
        // (a loaded machine can take seconds).
        let mut bound = None;
        for _ in 0..1000 {
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
