//! Accepting Kafka connections (the shape of mini-redis's `server.rs`).
//!
//! * A semaphore of [`Context::max_connections`] permits: a connection holds one for
//!   its lifetime, and the listener waits for a free permit before accepting more.
//! * At most [`Context::max_connections_per_ip`] connections from one client
//!   address; one more is closed at once (as Kafka's `max.connections.per.ip`).
//! * Accepting backs off exponentially (10 ms doubling to 1 s) while it fails, e.g.
//!   when the process is out of file descriptors, and never gives up.
//! * Shutdown stops accepting, tells every connection to stop reading requests,
//!   lets each answer what it has in flight, and returns once every connection task
//!   has finished.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Context;
use super::connection::{Session, serve_connection};

/// First pause after a failed accept; doubled on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts Kafka connections until `shutdown` resolves, then waits until every
/// connection has answered its in-flight requests and closed.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(ctx.max_connections.max(1)));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, permit) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &limit) => match accepted {
                Some(a) => a,
                None => break,
            },
        };
        let peer = match stream.peer_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "a Kafka connection closed before it was served");
                continue;
            }
        };
        // Over the per-address limit: closed at once, as Kafka does.
        let Some(per_ip) = PerIp::enter(&per_ip, peer.ip(), ctx.max_connections_per_ip) else {
            tracing::warn!(%peer, limit = ctx.max_connections_per_ip, "refused a Kafka connection: max_connections_per_ip reached");
            continue;
        };
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tracker.spawn(async move {
            let _ = stream.set_nodelay(true);
            if let Err(e) = serve_connection(stream, Session::new(peer), &ctx, stop).await {
                tracing::debug!(%peer, error = %format!("{e:#}"), "Kafka connection closed");
            }
            drop((permit, per_ip));
        });
    }
    stop.cancel();
    tracker.close();
    let open = tracker.len();
    if open > 0 {
        tracing::info!(
            connections = open,
            "waiting for Kafka connections to finish"
        );
    }
    tracker.wait().await;
}

/// Waits for a connection permit, then accepts one connection, backing off while
/// accepting fails. `None` only if the semaphore was closed (it never is).
async fn accept(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> Option<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let permit = limit.clone().acquire_owned().await.ok()?;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return Some((stream, permit)),
            Err(e) => {
                tracing::warn!(error = %e, pause = ?backoff, "accepting a Kafka connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection counted against its client address; uncounted when dropped.
struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    /// Counts a connection from `ip`, or `None` when `ip` already has `limit`.
    fn enter(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limit: usize,
    ) -> Option<PerIp> {
        let mut c = counts.lock();
        let n = c.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PerIp {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}
