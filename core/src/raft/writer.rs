//! The node's Raft-log writer: group commit across all groups (DESIGN.md §3 rule 3).
//!
//! Group tasks write their Ready's entries and hard state to the engine themselves
//! (visible at once, not yet durable) and hand the writer a [`WriteReq`]. The writer,
//! on its own thread, drains everything queued, syncs once if any request needs it,
//! then sends each request's persisted messages and tells its group
//! `Persisted(number)`. A failed sync is fatal: it is never retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use raft::eraftpb::Message;
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::ids::{GroupId, NodeId};
use crate::raft::driver::GroupMsg;
use crate::raft::fatal::Fatal;
use crate::transport::{GroupMessage, SharedTransport};

/// One Ready's persistence request.
pub(crate) struct WriteReq {
    pub(crate) group: GroupId,
    pub(crate) number: u64,
    pub(crate) must_sync: bool,
    pub(crate) messages: Vec<Message>,
    pub(crate) reply: mpsc::UnboundedSender<GroupMsg>,
}

/// Handle to the writer thread; it stops when every handle is dropped.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: std_mpsc::Sender<WriteReq>,
}

impl Writer {
    /// Starts the writer thread; it ends once every [`Writer`] handle is dropped.
    pub(crate) fn spawn(
        engine: Arc<dyn Engine>,
        transport: SharedTransport,
        fatal: Fatal,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std_mpsc::channel::<WriteReq>();
        let thread = std::thread::Builder::new()
            .name("weir-raft-writer".into())
            .spawn(move || {
                // A panic here (in the engine's sync, say) is fatal to the node, not
                // a silently stopped writer.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&rx, engine.as_ref(), transport.as_ref(), &fatal)
                }));
                if let Err(payload) = ran {
                    let why = crate::raft::fatal::panic_message(payload.as_ref());
                    fatal.raise(format!("the Raft writer panicked: {why}"));
                }
            })?;
        Ok((Writer { tx }, thread))
    }

    /// Queues a request; false when the writer has stopped (after a fatal error).
    pub(crate) fn submit(&self, req: WriteReq) -> bool {
        self.tx.send(req).is_ok()
    }
}

fn run(
    rx: &std_mpsc::Receiver<WriteReq>,
    engine: &dyn Engine,
    transport: &dyn crate::transport::Transport,
    fatal: &Fatal,
) {
    let syncs = crate::stats::SyncMetrics::new(engine.name());
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if batch.iter().any(|r| r.must_sync) {
            let began = std::time::Instant::now();
            if let Err(e) = engine.raft_sync() {
                fatal.raise(format!("syncing the Raft log failed: {e}"));
                return;
            }
            syncs.record(began.elapsed());
        }
        let mut out: HashMap<NodeId, Vec<GroupMessage>> = HashMap::new();
        for req in batch {
            for msg in req.messages {
                out.entry(msg.to).or_default().push(GroupMessage {
                    group: req.group,
                    msg,
                });
            }
            let _ = req.reply.send(GroupMsg::Persisted(req.number));
        }
        for (to, msgs) in out {
            transport.send(to, msgs);
        }
    }
}
