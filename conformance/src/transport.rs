//! The transport conformance suite (DESIGN.md §5).
//!
//! Every case starts fresh transports on 127.0.0.1 and checks one promise: order per
//! peer, many groups over one connection, frames up to the limit, bad frames
//! rejected without a panic, reconnection after a peer restarts, other clusters
//! refused, unreachable peers reported, bounded queues for dead peers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use parking_lot::Mutex;
use weir_core::eraftpb::{Entry, Message, MessageType};
use weir_core::transport::Identity;
use weir_core::{GroupId, GroupMessage, Inbound, NodeId, PeerTransport, Transport};

use crate::{CaseResult, Outcome, ensure, ensure_eq};

/// The bounds a case starts a transport with.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest frame sent or accepted.
    pub max_frame_bytes: usize,
    /// Batches queued per peer before new ones are dropped.
    pub queue_batches: usize,
}

/// How the suite starts one transport (registering, stopping and queue lengths go
/// through [`PeerTransport`]).
pub trait TransportHarness: Send + Sync + 'static {
    /// The transport under test.
    type T: PeerTransport;

    /// Starts the transport on `listener` as `identity`, within `limits` (and with
    /// reconnection backoff short enough for tests).
    ///
    /// # Errors
    /// When it cannot start.
    fn open(
        &self,
        listener: tokio::net::TcpListener,
        identity: Identity,
        limits: Limits,
    ) -> anyhow::Result<Arc<Self::T>>;

    /// Starts the transport of node `id` on `listener`, knowing its peers'
    /// addresses, in cluster `cluster`, with a frame limit and a per-peer queue bound.
    ///
    /// # Errors
    /// When it cannot start.
    fn start(
        &self,
        id: NodeId,
        listener: tokio::net::TcpListener,
        peers: BTreeMap<NodeId, String>,
        cluster: &str,
        max_frame: usize,
        queue: usize,
    ) -> anyhow::Result<Arc<Self::T>> {
        let identity = Identity {
            node: id,
            cluster_id: cluster.into(),
            peers,
        };
        let limits = Limits {
            max_frame_bytes: max_frame,
            queue_batches: queue,
        };
        self.open(listener, identity, limits)
    }

    /// Bytes that, sent on a fresh connection, present node `from` of `cluster` and
    /// then a frame declaring `len` bytes — for the over-limit case.
    fn oversized_frame(&self, from: NodeId, cluster: &str, len: usize) -> Vec<u8>;
}

/// One trial per case named, each on its own tokio runtime.
macro_rules! transport_trials {
    ($h:ident; $($case:ident),* $(,)?) => {
        vec![$({
            let h = $h.clone();
            crate::suite::trial(stringify!($case), Ok(()), move || {
                crate::cluster::block_on($case(h))
            })
        }),*]
    };
}

/// Every case of the transport suite as a trial.
pub fn trials<H: TransportHarness>(harness: H) -> Vec<crate::suite::Trial> {
    let h = Arc::new(harness);
    transport_trials!(h;
        transport_ordered_delivery,
        transport_burst_arrives_complete,
        transport_many_groups_one_connection,
        transport_message_at_frame_limit,
        transport_rejects_oversized_and_garbage_frames,
        transport_reconnects_after_peer_restart,
        transport_refuses_other_clusters,
        transport_reports_unreachable_peers,
        transport_dead_peer_queue_is_bounded,
        transport_peer_added_later_is_reached,
    )
}

/// Runs the transport suite as a test binary's `main` (its target has
/// `harness = false`).
pub fn run<H: TransportHarness>(harness: H) -> ! {
    crate::suite::run(trials(harness))
}

/// Records what a transport delivers.
#[derive(Default)]
pub struct Recorder {
    received: Mutex<Vec<(NodeId, GroupMessage)>>,
    unreachable: Mutex<Vec<NodeId>>,
}

impl Inbound for Recorder {
    fn deliver(&self, from: NodeId, msgs: Vec<GroupMessage>) {
        self.received
            .lock()
            .extend(msgs.into_iter().map(|m| (from, m)));
    }

    fn unreachable(&self, peer: NodeId) {
        self.unreachable.lock().push(peer);
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.received.lock().len()
    }
}

fn msg(group: u64, seq: u64, payload: usize) -> GroupMessage {
    let mut m = Message {
        msg_type: MessageType::MsgAppend,
        to: 2,
        from: 1,
        index: seq,
        ..Message::default()
    };
    if payload > 0 {
        m.entries = vec![Entry {
            index: seq,
            data: Bytes::from(vec![7u8; payload]),
            ..Entry::default()
        }]
        .into();
    }
    GroupMessage {
        group: GroupId(group),
        msg: m,
    }
}

async fn listener() -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?.to_string();
    Ok((l, a))
}

async fn wait_until(what: &str, secs: u64, cond: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Two connected nodes, 1 and 2, and what node 2 received.
struct Pair<H: TransportHarness> {
    a: Arc<H::T>,
    b: Arc<H::T>,
    rec_b: Arc<Recorder>,
}

const MAX_FRAME: usize = 1 << 20;

async fn pair<H: TransportHarness>(h: &H, queue: usize) -> anyhow::Result<Pair<H>> {
    let (la, addr_a) = listener().await?;
    let (lb, addr_b) = listener().await?;
    let a = h.start(1, la, BTreeMap::from([(2, addr_b)]), "c", MAX_FRAME, queue)?;
    let b = h.start(2, lb, BTreeMap::from([(1, addr_a)]), "c", MAX_FRAME, queue)?;
    let rec_b = Arc::new(Recorder::default());
    a.register(Arc::new(Recorder::default()));
    b.register(rec_b.clone());
    Ok(Pair { a, b, rec_b })
}

/// Sends `n` single-message batches 1 → 2, pausing now and then so that a bounded
/// queue never overflows.
async fn send_paced(t: &impl Transport, n: u64, group: impl Fn(u64) -> u64) {
    for seq in 0..n {
        t.send(2, vec![msg(group(seq), seq, 16)]);
        if seq % 32 == 31 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A peer whose address is learnt after the start (a node that joined) is
/// reached, both ways; learning it again changes nothing, and this node's
/// own id is ignored.
pub async fn transport_peer_added_later_is_reached<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let (la, addr_a) = listener().await?;
    let (lb, addr_b) = listener().await?;
    // Node 1 starts knowing nobody; node 2 knows node 1.
    let a = h.start(1, la, BTreeMap::new(), "c", MAX_FRAME, 1024)?;
    let b = h.start(
        2,
        lb,
        BTreeMap::from([(1, addr_a.clone())]),
        "c",
        MAX_FRAME,
        1024,
    )?;
    let rec_a = Arc::new(Recorder::default());
    let rec_b = Arc::new(Recorder::default());
    a.register(rec_a.clone());
    b.register(rec_b.clone());
    a.send(2, vec![msg(1, 0, 16)]);
    ensure!(
        rec_a.unreachable.lock().contains(&2),
        "a message to a peer with no address is reported unreachable"
    );
    a.add_peer(2, &addr_b);
    a.add_peer(2, "127.0.0.1:1");
    a.add_peer(1, "127.0.0.1:1");
    send_paced(a.as_ref(), 100, |_| 1).await;
    wait_until("100 messages to the added peer", 20, || {
        rec_b.count() >= 100
    })
    .await?;
    let mut back = msg(1, 7, 16);
    back.msg.to = 1;
    back.msg.from = 2;
    b.send(1, vec![back]);
    wait_until("the added peer's answer", 20, || rec_a.count() >= 1).await?;
    ensure!(
        rec_a.received.lock().iter().all(|(from, _)| *from == 2),
        "sender identity"
    );
    a.shutdown();
    b.shutdown();
    Ok(Outcome::Passed)
}

/// Messages to one peer arrive in the order they were sent (all of them, when the
/// queue never overflows).
pub async fn transport_ordered_delivery<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let p = pair(h.as_ref(), 1024).await?;
    send_paced(p.a.as_ref(), 2000, |_| 1).await;
    wait_until("2000 messages", 20, || p.rec_b.count() >= 2000).await?;
    let got: Vec<u64> = p
        .rec_b
        .received
        .lock()
        .iter()
        .map(|(_, m)| m.msg.index)
        .collect();
    ensure_eq!(got, (0..2000).collect::<Vec<u64>>(), "order of delivery");
    ensure!(
        p.rec_b.received.lock().iter().all(|(from, _)| *from == 1),
        "sender identity"
    );
    p.a.shutdown();
    p.b.shutdown();
    Ok(Outcome::Passed)
}

/// A burst that fits in the queue arrives complete and in order: a healthy
/// connection loses nothing (a transport that reconnects needlessly would).
pub async fn transport_burst_arrives_complete<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let p = pair(h.as_ref(), 20_000).await?;
    for seq in 0..10_000 {
        p.a.send(2, vec![msg(1, seq, 4096)]);
    }
    wait_until("10,000 messages", 60, || p.rec_b.count() >= 10_000).await?;
    let got: Vec<u64> = p
        .rec_b
        .received
        .lock()
        .iter()
        .map(|(_, m)| m.msg.index)
        .collect();
    ensure_eq!(
        got,
        (0..10_000).collect::<Vec<u64>>(),
        "burst delivered in order"
    );
    p.a.shutdown();
    p.b.shutdown();
    Ok(Outcome::Passed)
}

/// One connection carries many groups; each message keeps its group.
pub async fn transport_many_groups_one_connection<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let p = pair(h.as_ref(), 1024).await?;
    send_paced(p.a.as_ref(), 1000, |seq| seq % 100).await;
    wait_until("1000 messages", 20, || p.rec_b.count() >= 1000).await?;
    for (_, m) in p.rec_b.received.lock().iter() {
        ensure_eq!(
            m.group.0,
            m.msg.index % 100,
            "group of message {}",
            m.msg.index
        );
    }
    p.a.shutdown();
    p.b.shutdown();
    Ok(Outcome::Passed)
}

/// A message that fills the frame limit is delivered; one over it is not sent and
/// breaks nothing.
pub async fn transport_message_at_frame_limit<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let p = pair(h.as_ref(), 64).await?;
    p.a.send(2, vec![msg(1, 1, MAX_FRAME - 4096)]);
    wait_until("the large message", 20, || p.rec_b.count() >= 1).await?;
    p.a.send(2, vec![msg(1, 2, MAX_FRAME + 1)]);
    p.a.send(2, vec![msg(1, 3, 10)]);
    wait_until("the message after the oversized one", 20, || {
        p.rec_b
            .received
            .lock()
            .iter()
            .any(|(_, m)| m.msg.index == 3)
    })
    .await?;
    let got: Vec<u64> = p
        .rec_b
        .received
        .lock()
        .iter()
        .map(|(_, m)| m.msg.index)
        .collect();
    ensure!(!got.contains(&2), "an over-limit message was delivered");
    let big = p.rec_b.received.lock()[0].1.msg.entries[0].data.len();
    ensure_eq!(big, MAX_FRAME - 4096, "large payload intact");
    p.a.shutdown();
    p.b.shutdown();
    Ok(Outcome::Passed)
}

/// Garbage and over-limit frames close their connection, deliver nothing and panic
/// no transport task; the transport keeps working.
pub async fn transport_rejects_oversized_and_garbage_frames<H: TransportHarness>(
    h: Arc<H>,
) -> CaseResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let panics = crate::suite::panics_so_far();
    let (lb, addr_b) = listener().await?;
    let b = h.start(2, lb, BTreeMap::new(), "c", MAX_FRAME, 64)?;
    let rec = Arc::new(Recorder::default());
    b.register(rec.clone());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("4 KiB of 0xff", vec![0xff; 4096]),
        (
            "an over-limit frame",
            h.oversized_frame(1, "c", MAX_FRAME * 4),
        ),
        ("nothing", Vec::new()),
    ];
    for (what, bytes) in bad {
        let mut s = tokio::net::TcpStream::connect(&addr_b).await?;
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        // Only once the transport has read the bytes and closed the connection does
        // "nothing was delivered" say anything.
        let mut sink = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        ensure!(
            closed.is_ok(),
            "the transport kept a connection open 10 s after {what}"
        );
    }
    // A proper peer still gets through…
    let (la, _) = listener().await?;
    let a = h.start(1, la, BTreeMap::from([(2, addr_b)]), "c", MAX_FRAME, 64)?;
    a.register(Arc::new(Recorder::default()));
    send_paced(a.as_ref(), 10, |_| 1).await;
    wait_until("delivery after bad frames", 20, || rec.count() >= 10).await?;
    a.shutdown();
    b.shutdown();
    // …and it alone: the bad connections delivered nothing, even late.
    let from_bad = rec
        .received
        .lock()
        .iter()
        .filter(|(_, m)| m.group != GroupId(1))
        .count();
    ensure_eq!(from_bad, 0, "messages delivered from bad connections");
    ensure_eq!(rec.count(), 10, "messages delivered");
    let panicked = crate::suite::panics_so_far() - panics;
    ensure!(
        panicked == 0,
        "{panicked} panic(s) in transport tasks while bad frames were rejected"
    );
    Ok(Outcome::Passed)
}

/// After the receiving peer restarts (same address), the sender reconnects and
/// delivery resumes.
pub async fn transport_reconnects_after_peer_restart<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let (la, addr_a) = listener().await?;
    let (lb, addr_b) = listener().await?;
    let a = h.start(
        1,
        la,
        BTreeMap::from([(2, addr_b.clone())]),
        "c",
        MAX_FRAME,
        64,
    )?;
    a.register(Arc::new(Recorder::default()));
    let b = h.start(
        2,
        lb,
        BTreeMap::from([(1, addr_a.clone())]),
        "c",
        MAX_FRAME,
        64,
    )?;
    let rec1 = Arc::new(Recorder::default());
    b.register(rec1.clone());
    a.send(2, vec![msg(1, 1, 10)]);
    wait_until("first delivery", 20, || rec1.count() >= 1).await?;
    b.shutdown();
    // Restart on the same address (the old listener may take a moment to close).
    let mut lb2 = None;
    for _ in 0..200 {
        if let Ok(l) = tokio::net::TcpListener::bind(&addr_b).await {
            lb2 = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b2 = h.start(
        2,
        lb2.context("rebinding the restarted peer's address")?,
        BTreeMap::from([(1, addr_a)]),
        "c",
        MAX_FRAME,
        64,
    )?;
    let rec2 = Arc::new(Recorder::default());
    b2.register(rec2.clone());
    // Raft keeps sending; so does this loop, until the new peer hears it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seq = 2;
    while rec2.count() == 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no delivery after the peer restarted"
        );
        a.send(2, vec![msg(1, seq, 10)]);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown();
    b2.shutdown();
    Ok(Outcome::Passed)
}

/// A node of another cluster is refused.
pub async fn transport_refuses_other_clusters<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let (lb, addr_b) = listener().await?;
    let b = h.start(2, lb, BTreeMap::new(), "c", MAX_FRAME, 64)?;
    let rec = Arc::new(Recorder::default());
    b.register(rec.clone());
    let (lx, _) = listener().await?;
    let x = h.start(
        1,
        lx,
        BTreeMap::from([(2, addr_b.clone())]),
        "other",
        MAX_FRAME,
        64,
    )?;
    x.register(Arc::new(Recorder::default()));
    for seq in 0..20 {
        x.send(2, vec![msg(1, seq, 10)]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (la, _) = listener().await?;
    let a = h.start(1, la, BTreeMap::from([(2, addr_b)]), "c", MAX_FRAME, 64)?;
    a.register(Arc::new(Recorder::default()));
    a.send(2, vec![msg(1, 1000, 10)]);
    wait_until("delivery from the right cluster", 20, || rec.count() >= 1).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got: Vec<u64> = rec
        .received
        .lock()
        .iter()
        .map(|(_, m)| m.msg.index)
        .collect();
    ensure_eq!(got, vec![1000], "only the right cluster's message");
    for t in [&a, &x, &b] {
        t.shutdown();
    }
    Ok(Outcome::Passed)
}

/// Sending to a peer nobody listens for is reported as unreachable.
pub async fn transport_reports_unreachable_peers<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let (dead, dead_addr) = listener().await?;
    drop(dead);
    let (la, _) = listener().await?;
    let a = h.start(1, la, BTreeMap::from([(9, dead_addr)]), "c", MAX_FRAME, 64)?;
    let rec = Arc::new(Recorder::default());
    a.register(rec.clone());
    for seq in 0..5 {
        a.send(9, vec![msg(1, seq, 10)]);
    }
    wait_until("an unreachable report", 20, || {
        rec.unreachable.lock().contains(&9)
    })
    .await?;
    a.shutdown();
    Ok(Outcome::Passed)
}

/// A dead peer's queue stays within its bound however much is sent; `send` never
/// blocks.
pub async fn transport_dead_peer_queue_is_bounded<H: TransportHarness>(h: Arc<H>) -> CaseResult {
    let (dead, dead_addr) = listener().await?;
    drop(dead);
    let (la, _) = listener().await?;
    let bound = 32;
    let a = h.start(
        1,
        la,
        BTreeMap::from([(9, dead_addr)]),
        "c",
        MAX_FRAME,
        bound,
    )?;
    a.register(Arc::new(Recorder::default()));
    let mut max_seen = 0;
    for seq in 0..100_000 {
        a.send(9, vec![msg(1, seq, 100)]);
        max_seen = max_seen.max(a.queued(9));
    }
    ensure!(
        max_seen <= bound,
        "queue grew to {max_seen} batches, bound {bound}"
    );
    // A dead peer's queue fills: a transport that never reports a queue length
    // cannot show its bound.
    ensure!(
        max_seen >= 1,
        "the queue of a dead peer never reported a batch after 100,000 sends (PeerTransport::queued)"
    );
    a.shutdown();
    Ok(Outcome::Passed)
}
