//! An in-memory network of nodes for tests, with fault injection: message loss,
//! one-way and two-way partitions, isolation, healing (through [`Faults`]), and delay.
//!
//! Each node gets a [`MemTransport`] from [`MemNetwork::transport`] and registers its
//! [`Inbound`] with [`MemNetwork::register`]. Delivery runs on a tokio task per
//! link, so that order per (sender, receiver) pair is kept even with delays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::faults::Faults;

use crate::ids::NodeId;
use crate::transport::{GroupMessage, Inbound, Transport};

#[derive(Default)]
struct State {
    inbound: HashMap<NodeId, Arc<dyn Inbound>>,
    /// Delay added to every batch.
    delay: Duration,
    links: HashMap<(NodeId, NodeId), mpsc::UnboundedSender<Vec<GroupMessage>>>,
    /// Where link tasks run: senders include the Raft writer thread, which is not
    /// inside the runtime.
    runtime: Option<tokio::runtime::Handle>,
}

/// The network; cheap to clone (all clones share it).
#[derive(Clone)]
pub struct MemNetwork {
    state: Arc<Mutex<State>>,
    faults: Faults,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNetwork").finish_non_exhaustive()
    }
}

impl MemNetwork {
    /// A network with no faults; `seed` drives message loss.
    ///
    /// # Panics
    /// When called outside a tokio runtime (its delivery tasks run there).
    pub fn new(seed: u64) -> Self {
        let state = State {
            runtime: Some(tokio::runtime::Handle::current()),
            ..State::default()
        };
        MemNetwork {
            state: Arc::new(Mutex::new(state)),
            faults: Faults::new(seed),
        }
    }

    /// The faults applied to every send: partitions, isolation, loss.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The transport node `id` sends through.
    pub fn transport(&self, id: NodeId) -> Arc<MemTransport> {
        Arc::new(MemTransport {
            id,
            net: self.clone(),
        })
    }

    /// Makes `inbound` receive what is sent to `id` (replacing an earlier
    /// registration, as after a restart).
    pub fn register(&self, id: NodeId, inbound: Arc<dyn Inbound>) {
        let mut st = self.state.lock();
        st.inbound.insert(id, inbound);
        // Links towards a restarted node start afresh.
        st.links.retain(|&(_, to), _| to != id);
    }

    /// Stops delivering to `id` (the node is down).
    pub fn unregister(&self, id: NodeId) {
        let mut st = self.state.lock();
        st.inbound.remove(&id);
        st.links.retain(|&(from, to), _| to != id && from != id);
    }

    /// Delays every batch by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.state.lock().delay = d;
    }

    fn send(&self, from: NodeId, to: NodeId, msgs: Vec<GroupMessage>) {
        if !self.faults.allows(from, to) {
            return;
        }
        let mut st = self.state.lock();
        let Some(target) = st.inbound.get(&to).cloned() else {
            let me = st.inbound.get(&from).cloned();
            drop(st);
            if let Some(me) = me {
                me.unreachable(to);
            }
            return;
        };
        let delay = st.delay;
        let Some(runtime) = st.runtime.clone() else {
            return;
        };
        let link = st.links.entry((from, to)).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<GroupMessage>>();
            runtime.spawn(async move {
                while let Some(batch) = rx.recv().await {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    target.deliver(from, batch);
                }
            });
            tx
        });
        let _ = link.send(msgs);
    }
}

/// One node's handle on a [`MemNetwork`].
pub struct MemTransport {
    id: NodeId,
    net: MemNetwork,
}

impl std::fmt::Debug for MemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTransport")
            .field("id", &self.id)
            .finish()
    }
}

impl Transport for MemTransport {
    fn send(&self, to: NodeId, msgs: Vec<GroupMessage>) {
        self.net.send(self.id, to, msgs);
    }
}
