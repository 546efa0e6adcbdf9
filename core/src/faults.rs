//! Fault injection that works over any transport: a cut link drops what its
//! sender sends, message loss drops batches at random (seeded). [`FaultyTransport`]
//! applies a shared [`Faults`] on the sending side of a real transport; the
//! in-memory network applies it too.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::ids::NodeId;
use crate::transport::{GroupMessage, Transport};

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

    /// Whether a batch from `from` to `to` gets through now (draws for loss).
    pub fn allows(&self, from: NodeId, to: NodeId) -> bool {
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
