//! A node-wide "stop now" signal for errors that make going on unsafe (a failed
//! fsync, a failed write to the Raft log).

use std::sync::Arc;

use tokio::sync::watch;

/// Raised once; every holder can wait for it.
#[derive(Clone, Debug)]
pub(crate) struct Fatal {
    tx: Arc<watch::Sender<Option<String>>>,
}

impl Fatal {
    pub(crate) fn new() -> Fatal {
        Fatal {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Records the first fatal error and wakes every waiter.
    pub(crate) fn raise(&self, why: String) {
        tracing::error!(error = %why, "fatal: the node must stop");
        self.tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(why);
                true
            } else {
                false
            }
        });
    }

    /// The fatal error, if one was raised.
    pub(crate) fn get(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    /// Waits until a fatal error is raised and returns it.
    pub(crate) async fn wait(&self) -> String {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "fatal signal dropped".into();
            }
        }
    }
}
