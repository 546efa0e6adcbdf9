//! Networks for the cluster suite: how each node gets a transport, and fault
//! injection that works over any transport.
//!
//! Faults are applied on the sending side by [`FaultyTransport`], a decorator around
//! the real transport: a cut link drops what its sender sends, message loss drops
//! batches at random (seeded). So the same partitions and losses hit the in-memory
//! network and real transports on 127.0.0.1 alike.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};
use weir_core::memnet::MemNetwork;
use weir_core::{GroupMessage, Inbound, NodeId, Transport};

/// Shared fault state of a cluster.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
}

struct FaultState {
    cut: HashSet<(NodeId, NodeId)>,
    loss: f64,
    rng: StdRng,
}

impl Faults {
    /// No faults; `seed` drives message loss.
    pub fn new(seed: u64) -> Faults {
        Faults {
            state: Arc::new(Mutex::new(FaultState {
                cut: HashSet::new(),
                loss: 0.0,
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    /// Drops everything `from` sends to `to`.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.state.lock().cut.insert((from, to));
    }

    /// Drops everything between `a` and `b`.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Cuts `id` off from all of `others`.
    pub fn isolate(&self, id: NodeId, others: &[NodeId]) {
        for &o in others {
            if o != id {
                self.partition(id, o);
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.state.lock().cut.clear();
    }

    /// Drops each batch with probability `p`.
    pub fn set_loss(&self, p: f64) {
        self.state.lock().loss = p.clamp(0.0, 1.0);
    }

    fn allows(&self, from: NodeId, to: NodeId) -> bool {
        let mut st = self.state.lock();
        if st.cut.contains(&(from, to)) {
            return false;
        }
        let loss = st.loss;
        !(loss > 0.0 && st.rng.r#gen::<f64>() < loss)
    }
}

/// A transport that applies [`Faults`] before handing batches to the real one.
pub struct FaultyTransport {
    me: NodeId,
    inner: Arc<dyn Transport>,
    faults: Faults,
}

impl FaultyTransport {
    /// Wraps `inner`, the transport of node `me`.
    pub fn new(me: NodeId, inner: Arc<dyn Transport>, faults: Faults) -> FaultyTransport {
        FaultyTransport { me, inner, faults }
    }
}

impl Transport for FaultyTransport {
    fn send(&self, to: NodeId, msgs: Vec<GroupMessage>) {
        if self.faults.allows(self.me, to) {
            self.inner.send(to, msgs);
        }
    }
}

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
