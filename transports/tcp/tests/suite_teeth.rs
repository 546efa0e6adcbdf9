//! The transport suite's cases catch what they exist for: each is run against a
//! deliberately broken variant of the TCP transport and must fail.
//!
//! * `NoQueueLength` reports every queue as empty, so a dead peer's queue looks
//!   bounded whatever it holds;
//! * `PanicsOnGarbage` puts a proxy in front of the transport whose connection task
//!   panics on bytes that are not a weir handshake (as a buggy frame reader
//!   would); the transport keeps working, so only a case that notices panics in
//!   transport tasks fails;
//! * `DeliversGarbage` delivers a message for each garbage connection after it has
//!   read all of it: a case that looks before the transport has read anything sees
//!   nothing delivered.
//!
//! One test runs them in turn: the suite counts panics process-wide, so a
//! deliberate panic must not overlap another case.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use weir_conformance::transport::{self, Limits, TransportHarness};
use weir_core::eraftpb::Message;
use weir_core::transport::Identity;
use weir_core::{GroupId, GroupMessage, Inbound, NodeId, PeerTransport, Transport};
use weir_transport_tcp::{Config, TcpTransport};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    NoQueueLength,
    PanicsOnGarbage,
    DeliversGarbage,
}

struct Broken {
    inner: Arc<TcpTransport>,
    fault: Fault,
    inbound: Arc<Mutex<Option<Arc<dyn Inbound>>>>,
    proxy: Option<tokio::task::AbortHandle>,
    addr: std::net::SocketAddr,
}

impl Transport for Broken {
    fn send(&self, to: NodeId, msgs: Vec<GroupMessage>) {
        self.inner.send(to, msgs);
    }
}

impl PeerTransport for Broken {
    fn register(&self, inbound: Arc<dyn Inbound>) {
        *self.inbound.lock() = Some(inbound.clone());
        PeerTransport::register(self.inner.as_ref(), inbound);
    }
    fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }
    fn shutdown(&self) {
        if let Some(p) = &self.proxy {
            p.abort();
        }
        PeerTransport::shutdown(self.inner.as_ref());
    }
    fn queued(&self, peer: NodeId) -> usize {
        match self.fault {
            Fault::NoQueueLength => 0,
            _ => PeerTransport::queued(self.inner.as_ref(), peer),
        }
    }
    fn add_peer(&self, peer: NodeId, addr: &str) {
        PeerTransport::add_peer(self.inner.as_ref(), peer, addr);
    }
}

struct Harness(Fault);

fn config(lim: Limits) -> Config {
    Config {
        max_frame_bytes: lim.max_frame_bytes,
        queue_batches: lim.queue_batches,
        max_backoff_ms: 100,
    }
}

impl TransportHarness for Harness {
    type T = Broken;

    fn open(&self, l: TcpListener, id: Identity, lim: Limits) -> anyhow::Result<Arc<Broken>> {
        let fault = self.0;
        let inbound = Arc::new(Mutex::new(None::<Arc<dyn Inbound>>));
        if fault == Fault::NoQueueLength {
            let addr = l.local_addr()?;
            let inner = TcpTransport::start(l, id, config(lim))?;
            return Ok(Arc::new(Broken {
                inner,
                fault,
                inbound,
                proxy: None,
                addr,
            }));
        }
        // The real transport listens behind a proxy that owns the public address.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let behind = std_listener.local_addr()?;
        let inner = TcpTransport::start(TcpListener::from_std(std_listener)?, id, config(lim))?;
        let addr = l.local_addr()?;
        let seen = inbound.clone();
        let proxy = tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                let seen = seen.clone();
                tokio::spawn(proxy_one(conn, behind, fault, seen));
            }
        });
        Ok(Arc::new(Broken {
            inner,
            fault,
            inbound,
            proxy: Some(proxy.abort_handle()),
            addr,
        }))
    }

    fn oversized_frame(&self, from: NodeId, cluster: &str, len: usize) -> Vec<u8> {
        weir_transport_tcp::handshake_then_oversized_frame(from, cluster, len)
    }
}

/// Passes a weir connection through; mishandles anything else per `fault`.
async fn proxy_one(
    mut conn: TcpStream,
    behind: std::net::SocketAddr,
    fault: Fault,
    inbound: Arc<Mutex<Option<Arc<dyn Inbound>>>>,
) {
    let mut magic = [0u8; 4];
    if conn.read_exact(&mut magic).await.is_err() {
        return;
    }
    if &magic == b"WEIR" {
        let Ok(mut up) = TcpStream::connect(behind).await else {
            return;
        };
        if up.write_all(&magic).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
        }
        return;
    }
    match fault {
        Fault::PanicsOnGarbage => panic!("deliberately broken transport: garbage frame {magic:?}"),
        Fault::DeliversGarbage => {
            // Read everything, then deliver a message made of nothing, then close.
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink).await;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let got = inbound.lock().clone();
            if let Some(i) = got {
                let msg = GroupMessage {
                    group: GroupId::METADATA,
                    msg: Message::default(),
                };
                i.deliver(1, vec![msg]);
            }
        }
        Fault::NoQueueLength => {}
    }
}

fn run_case<F, Fut>(fault: Fault, case: F) -> weir_conformance::CaseResult
where
    F: FnOnce(Arc<Harness>) -> Fut,
    Fut: std::future::Future<Output = weir_conformance::CaseResult>,
{
    weir_conformance::cluster::block_on(case(Arc::new(Harness(fault))))
}

#[test]
fn the_transport_cases_fail_against_deliberately_broken_transports() {
    let r = run_case(
        Fault::NoQueueLength,
        transport::transport_dead_peer_queue_is_bounded,
    );
    let e = r.expect_err("a transport reporting no queue length passed the bounded-queue case");
    assert!(format!("{e:#}").contains("queue"), "{e:#}");

    let r = run_case(
        Fault::PanicsOnGarbage,
        transport::transport_rejects_oversized_and_garbage_frames,
    );
    let e = r.expect_err("a transport task that panics on garbage passed the bad-frames case");
    assert!(format!("{e:#}").contains("panic"), "{e:#}");

    let r = run_case(
        Fault::DeliversGarbage,
        transport::transport_rejects_oversized_and_garbage_frames,
    );
    let e = r.expect_err("a transport delivering garbage passed the bad-frames case");
    assert!(format!("{e:#}").contains("delivered"), "{e:#}");
}
