//! weir-transport-tcp: Raft messages between weir nodes over plain TCP.
//!
//! # Wire format
//!
//! A connection starts with a handshake from the connecting side:
//! `"WEIR" | protocol version u16 | cluster id length u16 | cluster id | node id u64`
//! (big-endian). The accepting side closes connections with another magic,
//! version or cluster id. Then frames follow, one way (each direction of a pair of
//! nodes has its own connection):
//!
//! ```text
//! length u32 | CRC-32C of the payload u32 | payload
//! payload = count u32, then per message: group u64 | length u32 | eraftpb.Message
//! ```
//!
//! A frame over `max_frame_bytes`, a CRC mismatch or an undecodable message closes
//! the connection with an error log (never a panic); the peer reconnects.
//!
//! # Sending
//!
//! Each peer has a bounded queue and a task that connects (with backoff), writes the
//! handshake, then writes frames in queue order. [`Transport::send`] never blocks:
//! when the queue is full, or the connection fails, the batch is dropped and the
//! peer reported unreachable — Raft retransmits, and memory stays bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use protobuf::Message as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use weir_core::eraftpb::Message;
use weir_core::transport::Peers;
use weir_core::{Error, GroupId, GroupMessage, Inbound, NodeId, Result, Transport};

/// The configuration name of this transport.
pub const NAME: &str = "tcp";

/// Registers this transport as [`NAME`]: it starts on the peer listener with the
/// `[transport_tcp]` section of weir's config as its [`Config`].
pub fn register(registry: &mut weir_core::Registry) {
    registry.add_transport(NAME, |listener, identity, config| {
        let c = weir_core::registry::parse_config::<Config>(&format!("transport_{NAME}"), config)?;
        let t: std::sync::Arc<dyn weir_core::PeerTransport> =
            TcpTransport::start(listener, identity, c)?;
        Ok(t)
    });
}

const MAGIC: &[u8; 4] = b"WEIR";
const VERSION: u16 = 1;

/// Tuning of the TCP transport (`[transport_tcp]` in weir's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Largest frame accepted or sent. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// Batches queued per peer before new ones are dropped. Default 1024.
    pub queue_batches: usize,
    /// Longest wait between reconnection attempts. Default 1 s.
    pub max_backoff_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_bytes: 64 << 20,
            queue_batches: 1024,
            max_backoff_ms: 1000,
        }
    }
}

pub use weir_core::transport::Identity;

struct Shared {
    peers: Peers,
    config: Config,
    /// Where senders of peers learnt later are spawned.
    runtime: tokio::runtime::Handle,
}

/// The TCP transport; see the [crate docs](crate).
pub struct TcpTransport {
    shared: Arc<Shared>,
    local: SocketAddr,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node", &self.shared.peers.id().node)
            .field("local", &self.local)
            .finish()
    }
}

impl TcpTransport {
    /// Starts accepting peers on `listener` and a sender task per peer, on the
    /// current tokio runtime. Call [`TcpTransport::register`] once the node exists.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad configuration.
    pub fn start(listener: TcpListener, id: Identity, config: Config) -> Result<Arc<TcpTransport>> {
        if config.max_frame_bytes < 1024 || config.queue_batches == 0 {
            return Err(Error::Config(
                "[transport_tcp] max_frame_bytes must be >= 1024 and queue_batches > 0".into(),
            ));
        }
        if id.cluster_id.len() > u16::MAX as usize {
            return Err(Error::Config("cluster id too long".into()));
        }
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the peer listener address", e))?;
        let (peers, queues) = Peers::new(id, config.queue_batches);
        let shared = Arc::new(Shared {
            peers,
            config,
            runtime: tokio::runtime::Handle::current(),
        });
        for queue in queues {
            spawn_sender(&shared, queue);
        }
        let sh = shared.clone();
        tokio::spawn(async move { sh.clone().peers.until_stopped(acceptor(sh, listener)).await });
        Ok(Arc::new(TcpTransport { shared, local }))
    }

    /// Where messages received from peers go. Messages arriving earlier are dropped.
    pub fn register(&self, inbound: Arc<dyn Inbound>) {
        self.shared.peers.register(inbound);
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops every task of the transport and closes its listener and connections.
    pub fn shutdown(&self) {
        self.shared.peers.shutdown();
    }

    /// Batches waiting in the queue of `peer` (bounded by `queue_batches`).
    pub fn queued(&self, peer: NodeId) -> usize {
        self.shared.peers.queued(peer)
    }
}

impl weir_core::PeerTransport for TcpTransport {
    fn register(&self, inbound: Arc<dyn Inbound>) {
        TcpTransport::register(self, inbound);
    }

    fn local_addr(&self) -> SocketAddr {
        TcpTransport::local_addr(self)
    }

    fn shutdown(&self) {
        TcpTransport::shutdown(self);
    }

    fn queued(&self, peer: NodeId) -> usize {
        TcpTransport::queued(self, peer)
    }

    fn add_peer(&self, peer: NodeId, addr: &str) {
        if let Some(queue) = self.shared.peers.add_peer(peer, addr) {
            spawn_sender(&self.shared, queue);
        }
    }
}

/// Starts the task that sends a peer's queue, until the transport stops.
fn spawn_sender(shared: &Arc<Shared>, (peer, addr, rx): weir_core::transport::PeerQueue) {
    let sh = shared.clone();
    shared.runtime.spawn(async move {
        sh.clone()
            .peers
            .until_stopped(sender(sh, peer, addr, rx))
            .await
    });
}

impl Transport for TcpTransport {
    fn send(&self, to: NodeId, msgs: Vec<GroupMessage>) {
        self.shared.peers.send(to, msgs);
    }
}

/// Encodes a batch as one frame, serialising each message straight into it.
///
/// # Errors
/// [`Error::Invalid`] when the frame would exceed `max`.
pub fn encode_frame(msgs: &[GroupMessage], max: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    encode_frame_into(&mut buf, msgs, max)?;
    Ok(buf)
}

/// Appends one frame to `out`; on error `out` is left as it was.
///
/// # Errors
/// [`Error::Invalid`] when the frame would exceed `max`.
pub fn encode_frame_into(out: &mut Vec<u8>, msgs: &[GroupMessage], max: usize) -> Result<()> {
    let size: usize = msgs
        .iter()
        .map(|m| 12 + m.msg.compute_size() as usize)
        .sum::<usize>()
        + 4;
    if size > max {
        return Err(Error::Invalid(format!(
            "frame of {size} bytes exceeds max_frame_bytes {max}"
        )));
    }
    let start = out.len();
    out.reserve(8 + size);
    let buf = out;
    buf.extend_from_slice(&(size as u32).to_be_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(msgs.len() as u32).to_be_bytes());
    for m in msgs {
        buf.extend_from_slice(&m.group.0.to_be_bytes());
        // compute_size above cached the sizes that write_to_vec relies on.
        buf.extend_from_slice(&m.msg.get_cached_size().to_be_bytes());
        if let Err(e) = m.msg.write_to_vec(buf) {
            buf.truncate(start);
            return Err(Error::Invalid(format!("encoding a Raft message: {e}")));
        }
    }
    if buf.len() != start + 8 + size {
        buf.truncate(start);
        return Err(Error::Invalid(
            "Raft message size changed while encoding".into(),
        ));
    }
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Decodes a frame's payload (after the length and CRC were checked). Entry data
/// shares `payload`'s memory: nothing is copied.
///
/// # Errors
/// [`Error::Corrupt`] describing what is wrong.
pub fn decode_payload(payload: &Bytes) -> Result<Vec<GroupMessage>> {
    let bad = |why: &str| Error::Corrupt(format!("bad transport frame: {why}"));
    let mut p = payload.clone();
    if p.remaining() < 4 {
        return Err(bad("no message count"));
    }
    let n = p.get_u32() as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        if p.remaining() < 12 {
            return Err(bad("truncated message header"));
        }
        let group = GroupId(p.get_u64());
        let len = p.get_u32() as usize;
        if p.remaining() < len {
            return Err(bad("truncated message"));
        }
        let one = p.split_to(len);
        let msg = Message::parse_from_carllerche_bytes(&one).map_err(|e| bad(&e.to_string()))?;
        out.push(GroupMessage { group, msg });
    }
    if p.has_remaining() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// Checks a frame's payload against the CRC from its header, then decodes it.
///
/// # Errors
/// [`Error::Corrupt`] when the CRC does not match or the payload is malformed.
pub fn decode_checked(crc: u32, payload: &Bytes) -> Result<Vec<GroupMessage>> {
    if crc32c::crc32c(payload) != crc {
        return Err(Error::Corrupt("transport frame fails its CRC".into()));
    }
    decode_payload(payload)
}

/// Decodes back-to-back frames (length, CRC, payload) from `buf`, as the receiving
/// side of a connection does after the handshake; the fuzz target's entry point.
///
/// # Errors
/// [`Error::Corrupt`] for a frame over `max`, a truncated frame, a CRC mismatch or a
/// malformed payload.
pub fn decode_frames(buf: &Bytes, max: usize) -> Result<Vec<GroupMessage>> {
    let mut b = buf.clone();
    let mut out = Vec::new();
    while b.has_remaining() {
        if b.remaining() < 8 {
            return Err(Error::Corrupt("truncated frame header".into()));
        }
        let len = b.get_u32() as usize;
        let crc = b.get_u32();
        if len > max {
            return Err(Error::Corrupt(format!(
                "frame of {len} bytes exceeds max_frame_bytes {max}"
            )));
        }
        if b.remaining() < len {
            return Err(Error::Corrupt("truncated frame".into()));
        }
        out.extend(decode_checked(crc, &b.split_to(len))?);
    }
    Ok(out)
}

fn handshake(id: &Identity) -> Vec<u8> {
    hello(id.node, &id.cluster_id)
}

fn hello(node: NodeId, cluster_id: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + cluster_id.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_be_bytes());
    h.extend_from_slice(&(cluster_id.len() as u16).to_be_bytes());
    h.extend_from_slice(cluster_id.as_bytes());
    h.extend_from_slice(&node.to_be_bytes());
    h
}

/// For tests of bad input (the transport suite's over-limit case): the bytes a
/// peer `from` of `cluster_id` sends to open a connection, then the header of a
/// frame that declares `len` bytes (CRC 0), then 1 KiB of it.
pub fn handshake_then_oversized_frame(from: NodeId, cluster_id: &str, len: usize) -> Vec<u8> {
    let mut b = hello(from, cluster_id);
    b.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&[0u8; 1024]);
    b
}

async fn sender(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<Vec<GroupMessage>>,
) {
    let max_backoff = Duration::from_millis(shared.config.max_backoff_ms.max(10));
    let mut backoff = Duration::from_millis(10);
    let mut conn: Option<TcpStream> = None;
    while let Some(batch) = rx.recv().await {
        if conn.is_none() {
            match TcpStream::connect(&addr).await {
                Ok(mut s) => {
                    let _ = s.set_nodelay(true);
                    if s.write_all(&handshake(shared.peers.id())).await.is_ok() {
                        tracing::debug!(peer, %addr, "connected to peer");
                        backoff = Duration::from_millis(10);
                        conn = Some(s);
                    }
                }
                Err(e) => tracing::debug!(peer, %addr, error = %e, "cannot reach peer"),
            }
        }
        let Some(s) = conn.as_mut() else {
            shared.peers.unreachable(peer);
            // Drop what queued up while the peer was down: Raft resends.
            tokio::time::sleep(backoff).await;
            while rx.try_recv().is_ok() {}
            backoff = (backoff * 2).min(max_backoff);
            continue;
        };
        // Coalesce what is queued (up to ~1 MiB) into one write.
        let mut out = Vec::new();
        let mut next = Some(batch);
        while let Some(b) = next.take() {
            if let Err(e) = encode_frame_into(&mut out, &b, shared.config.max_frame_bytes) {
                tracing::error!(peer, error = %e, "dropping an oversized batch of Raft messages");
            }
            if out.len() < 1 << 20 {
                next = rx.try_recv().ok();
            }
        }
        if out.is_empty() {
            continue;
        }
        if let Err(e) = s.write_all(&out).await {
            tracing::debug!(peer, error = %e, "lost the connection to peer");
            conn = None;
            shared.peers.unreachable(peer);
        }
    }
}

async fn acceptor(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let sh = shared.clone();
                    sh.peers
                        .until_stopped(async move {
                            if let Err(e) = receive(&shared, stream).await {
                                tracing::warn!(%addr, error = %e, "closed a peer connection");
                            }
                        })
                        .await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads from a peer into one buffer; frames are split off it without copying, so
/// entry data reaches the node in the memory the kernel wrote it to.
struct FrameReader {
    stream: TcpStream,
    buf: BytesMut,
}

/// Bytes read from the socket at a time (at least; a larger frame reads more).
const READ_CHUNK: usize = 1 << 20;

impl FrameReader {
    /// Reads until `n` bytes are buffered; `Ok(false)` on a clean end of stream
    /// before any of them arrived.
    async fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        while self.buf.len() < n {
            if self.buf.capacity() - self.buf.len() < READ_CHUNK.min(n - self.buf.len()) {
                self.buf.reserve(READ_CHUNK.max(n - self.buf.len()));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(true)
    }

    async fn take(&mut self, n: usize) -> std::io::Result<Bytes> {
        if !self.fill(n).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(self.buf.split_to(n).freeze())
    }
}

async fn receive(shared: &Shared, stream: TcpStream) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let mut s = FrameReader {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
    };
    let io = |e: std::io::Error| Error::io("reading from a peer", e);
    let head = s.take(8).await.map_err(io)?;
    if &head[0..4] != MAGIC {
        return Err(Error::Corrupt("not a weir peer (bad magic)".into()));
    }
    let version = u16::from_be_bytes([head[4], head[5]]);
    if version != VERSION {
        return Err(Error::Unsupported(format!(
            "peer protocol version {version}, this node speaks {VERSION}"
        )));
    }
    let cluster = s
        .take(u16::from_be_bytes([head[6], head[7]]) as usize)
        .await
        .map_err(io)?;
    if cluster != shared.peers.id().cluster_id.as_bytes() {
        return Err(Error::Config(format!(
            "peer belongs to cluster {:?}, this node to {:?}",
            String::from_utf8_lossy(&cluster),
            shared.peers.id().cluster_id
        )));
    }
    let from = s.take(8).await.map_err(io)?.get_u64();
    let max = shared.config.max_frame_bytes;
    loop {
        if !s.fill(8).await.map_err(io)? {
            return Ok(());
        }
        let mut head = s.buf.split_to(8);
        let len = head.get_u32() as usize;
        let crc = head.get_u32();
        if len > max {
            return Err(Error::Corrupt(format!(
                "frame of {len} bytes from node {from} exceeds max_frame_bytes {max}"
            )));
        }
        let payload = s.take(len).await.map_err(io)?;
        let msgs = decode_checked(crc, &payload)
            .map_err(|e| Error::Corrupt(format!("from node {from}: {e}")))?;
        if let Some(i) = shared.peers.inbound() {
            i.deliver(from, msgs);
        }
    }
}
