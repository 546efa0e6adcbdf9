//! A node-wide "stop now" signal for errors that make going on unsafe (a failed
//! fsync, a failed write to the Raft log).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinError, JoinHandle};

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

impl Fatal {
    /// Spawns `task` (one that owns node state: a group's driver, reconcile,
    /// registration) on the current runtime so that a panic in it is fatal to the
    /// node, never a silently dead task: the panic is raised with `what` and its
    /// message (DESIGN.md §10, fail-stop). See [`Supervised`] for stopping it.
    pub(crate) fn spawn_supervised(
        &self,
        what: String,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> Supervised {
        let fatal = self.clone();
        let inner = tokio::spawn(task);
        let abort = inner.abort_handle();
        let outer = tokio::spawn(async move {
            if let Err(e) = inner.await {
                fatal.raise_panic(&what, e);
            }
        });
        Supervised { abort, outer }
    }

    /// Raises a task's panic (a cancelled task is not an error).
    fn raise_panic(&self, what: &str, e: JoinError) {
        if e.is_panic() {
            let why = panic_message(e.into_panic().as_ref());
            self.raise(format!("{what} panicked: {why}"));
        }
    }
}

/// The message a panic carried, when it is a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// A task started by [`Fatal::spawn_supervised`]. Awaiting it waits until the task
/// has ended — after [`Supervised::abort`] too: an aborted task that is running
/// right now (on another worker, in the middle of starting a group, say) ends only
/// once that poll returns, and whoever stops the node must not go on before then.
/// Dropping it lets the task run on.
pub(crate) struct Supervised {
    abort: AbortHandle,
    outer: JoinHandle<()>,
}

impl Supervised {
    /// Asks the task to stop at its next await point; await `self` for the end.
    pub(crate) fn abort(&self) {
        self.abort.abort();
    }
}

impl Future for Supervised {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The supervisor ends only after the task did; it is never aborted itself.
        Pin::new(&mut self.outer).poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_fatal_and_names_itself() {
        let fatal = Fatal::new();
        let t = fatal.spawn_supervised("group g7".into(), async {
            panic!("storage said no");
        });
        let _ = t.await;
        let why = fatal.get().unwrap_or_default();
        assert!(
            why.contains("group g7") && why.contains("storage said no"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn aborting_the_supervisor_stops_the_task_without_a_fatal_error() {
        let fatal = Fatal::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let t = fatal.spawn_supervised("idle".into(), async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        t.abort();
        t.await;
        // The task was dropped: its end of the channel closed.
        assert!(rx.await.is_err());
        assert_eq!(fatal.get(), None);
    }

    /// Node shutdown aborts reconcile and then stops every hosted group; a reconcile
    /// that was still starting a group on another worker used to add a driver after
    /// that, which kept the Raft writer alive and hung shutdown forever (seen in
    /// `cluster_randomized_churn` on redb).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn awaiting_an_aborted_task_waits_until_its_running_poll_ends() {
        use std::sync::atomic::{AtomicU8, Ordering};
        let fatal = Fatal::new();
        let stage = Arc::new(AtomicU8::new(0));
        let s = stage.clone();
        let t = fatal.spawn_supervised("busy".into(), async move {
            s.store(1, Ordering::SeqCst);
            // Synchronous work, as when reconcile starts groups.
            std::thread::sleep(std::time::Duration::from_millis(300));
            s.store(2, Ordering::SeqCst);
            tokio::task::yield_now().await;
            s.store(3, Ordering::SeqCst);
        });
        while stage.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        t.abort();
        t.await;
        // The poll under way finished before the await returned, and the task was
        // stopped at its next await point.
        assert_eq!(stage.load(Ordering::SeqCst), 2);
        assert_eq!(fatal.get(), None);
    }
}
