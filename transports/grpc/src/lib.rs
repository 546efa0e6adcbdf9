//! weir-transport-grpc: Raft messages between weir nodes over gRPC (tonic).
//!
//! Each node serves the `weir.peer.v1.Peer` service; to send, it opens one
//! bidirectional `Stream` call per peer and writes `Batch`es of (group, message
//! bytes) in order (raft 0.7's messages are rust-protobuf types, so they travel as
//! bytes inside the prost messages). The caller's node id, cluster id and protocol
//! version travel as request metadata; the server refuses mismatches. Messages over
//! the size limit are rejected by tonic with an error that ends the call (never a
//! panic). [`Transport::send`] never blocks: each peer has a bounded queue, and a
//! full queue or a broken call drops the batch and reports the peer unreachable.

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod pb {
    tonic::include_proto!("weir.peer.v1");
}

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use weir_core::eraftpb::Message;
pub use weir_core::transport::Identity;
use weir_core::transport::Peers;
use weir_core::{Error, GroupId, GroupMessage, Inbound, NodeId, Result, Transport};

/// The configuration name of this transport.
pub const NAME: &str = "grpc";

/// Registers this transport as [`NAME`]: it starts on the peer listener with the
/// `[transport_grpc]` section of weir's config as its [`Config`].
pub fn register(registry: &mut weir_core::Registry) {
    registry.add_transport(NAME, |listener, identity, config| {
        let c = weir_core::registry::parse_config::<Config>(&format!("transport_{NAME}"), config)?;
        let t: std::sync::Arc<dyn weir_core::PeerTransport> =
            GrpcTransport::start(listener, identity, c)?;
        Ok(t)
    });
}

const VERSION: &str = "1";
/// HTTP/2 flow-control window: HTTP/2's default of 64 KiB would cost a round trip
/// per 64 KiB message.
const WINDOW: u32 = 16 << 20;
/// Largest HTTP/2 frame either side accepts: HTTP/2's default of 16 KiB would split
/// a 64 KiB entry into four frames.
const MAX_H2_FRAME: u32 = 1 << 20;
/// Queued batches are merged into one gRPC message up to about this size.
const COALESCE_BYTES: usize = 1 << 20;

/// Tuning of the gRPC transport (`[transport_grpc]` in weir's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Largest gRPC message (one batch) sent or accepted. Default 64 MiB.
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

struct Shared {
    peers: Peers,
    config: Config,
    /// Where senders of peers learnt later are spawned.
    runtime: tokio::runtime::Handle,
}

/// The gRPC transport; see the [crate docs](crate).
pub struct GrpcTransport {
    shared: Arc<Shared>,
    local: SocketAddr,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("node", &self.shared.peers.id().node)
            .field("local", &self.local)
            .finish()
    }
}

impl GrpcTransport {
    /// Serves peers on `listener` and starts a sender task per peer, on the current
    /// tokio runtime. Call [`GrpcTransport::register`] once the node exists.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad configuration.
    pub fn start(
        listener: tokio::net::TcpListener,
        id: Identity,
        config: Config,
    ) -> Result<Arc<GrpcTransport>> {
        if config.max_frame_bytes < 1024 || config.queue_batches == 0 {
            return Err(Error::Config(
                "[transport_grpc] max_frame_bytes must be >= 1024 and queue_batches > 0".into(),
            ));
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
        let service = pb::peer_server::PeerServer::new(Service {
            shared: shared.clone(),
        })
        .max_decoding_message_size(shared.config.max_frame_bytes)
        .max_encoding_message_size(shared.config.max_frame_bytes);
        let sh = shared.clone();
        tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .initial_stream_window_size(WINDOW)
                .initial_connection_window_size(WINDOW * 2)
                .max_frame_size(MAX_H2_FRAME)
                .tcp_nodelay(true)
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), sh.peers.stopped())
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the gRPC peer server stopped");
            }
        });
        for queue in queues {
            spawn_sender(&shared, queue);
        }
        Ok(Arc::new(GrpcTransport { shared, local }))
    }

    /// Where messages received from peers go. Messages arriving earlier are dropped.
    pub fn register(&self, inbound: Arc<dyn Inbound>) {
        self.shared.peers.register(inbound);
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the server and every sender.
    pub fn shutdown(&self) {
        self.shared.peers.shutdown();
    }

    /// Batches waiting in the queue of `peer` (bounded by `queue_batches`).
    pub fn queued(&self, peer: NodeId) -> usize {
        self.shared.peers.queued(peer)
    }
}

impl weir_core::PeerTransport for GrpcTransport {
    fn register(&self, inbound: Arc<dyn Inbound>) {
        GrpcTransport::register(self, inbound);
    }

    fn local_addr(&self) -> SocketAddr {
        GrpcTransport::local_addr(self)
    }

    fn shutdown(&self) {
        GrpcTransport::shutdown(self);
    }

    fn queued(&self, peer: NodeId) -> usize {
        GrpcTransport::queued(self, peer)
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

impl Transport for GrpcTransport {
    fn send(&self, to: NodeId, msgs: Vec<GroupMessage>) {
        self.shared.peers.send(to, msgs);
    }
}

/// Appends `msgs` to `out`, encoded, and returns how many bytes they add to the
/// encoded batch; on error `out` is left as it was.
fn encode_into(out: &mut pb::Batch, msgs: &[GroupMessage]) -> Result<usize> {
    let before = out.msgs.len();
    let mut added = 0;
    for m in msgs {
        match m.msg.write_to_bytes() {
            Ok(bytes) => {
                let one = pb::RaftMsg {
                    group: m.group.0,
                    message: bytes.into(),
                };
                added += prost::encoding::message::encoded_len(1, &one);
                out.msgs.push(one);
            }
            Err(e) => {
                out.msgs.truncate(before);
                return Err(Error::Invalid(format!("encoding a Raft message: {e}")));
            }
        }
    }
    Ok(added)
}

async fn sender(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<Vec<GroupMessage>>,
) {
    let max_backoff = Duration::from_millis(shared.config.max_backoff_ms.max(10));
    let mut backoff = Duration::from_millis(10);
    let max = shared.config.max_frame_bytes;
    let mut pending: Option<Vec<GroupMessage>> = None;
    loop {
        let first = match pending.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(b) => b,
                None => return,
            },
        };
        let channel = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
            Ok(e) => {
                e.connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .initial_stream_window_size(WINDOW)
                    .initial_connection_window_size(WINDOW * 2)
                    .max_frame_size(MAX_H2_FRAME)
                    .connect()
                    .await
            }
            Err(e) => {
                tracing::error!(peer, %addr, error = %e, "bad peer address");
                return;
            }
        };
        let Ok(channel) = channel else {
            shared.peers.unreachable(peer);
            tokio::time::sleep(backoff).await;
            while rx.try_recv().is_ok() {}
            backoff = (backoff * 2).min(max_backoff);
            continue;
        };
        backoff = Duration::from_millis(10);
        let mut client = pb::peer_client::PeerClient::new(channel)
            .max_encoding_message_size(max)
            .max_decoding_message_size(max);
        let (tx, stream_rx) = mpsc::channel::<pb::Batch>(64);
        let mut req = Request::new(ReceiverStream::new(stream_rx));
        let md = req.metadata_mut();
        let node = shared.peers.id().node.to_string();
        for (k, v) in [
            ("weir-node", node.as_str()),
            ("weir-cluster", shared.peers.id().cluster_id.as_str()),
            ("weir-version", VERSION),
        ] {
            if let Ok(v) = v.parse() {
                md.insert(k, v);
            }
        }
        // The call lives until the server's (silent) response stream ends or fails;
        // the response headers arrive at once and mean nothing here.
        let mut call = tokio::spawn(async move {
            let mut acks = client.stream(req).await?.into_inner();
            while acks.message().await?.is_some() {}
            Ok::<(), Status>(())
        });
        let mut next = Some(first);
        let mut pending_in_call: Option<Vec<GroupMessage>> = None;
        let broken = loop {
            if let Some(b) = next.take() {
                // Merge what is queued behind it (order kept) into one gRPC message.
                let mut batch = pb::Batch::default();
                let mut len = 0;
                let mut more = Some(b);
                while let Some(b) = more.take() {
                    match encode_into(&mut batch, &b) {
                        Err(e) => {
                            tracing::error!(peer, error = %e, "dropping a batch of Raft messages")
                        }
                        Ok(added) if len + added <= max => len += added,
                        Ok(_) => {
                            batch.msgs.truncate(batch.msgs.len() - b.len());
                            if len == 0 {
                                tracing::error!(
                                    peer,
                                    "dropping a batch of Raft messages over max_frame_bytes"
                                );
                            } else {
                                // It may fit on its own: send it next.
                                pending_in_call = Some(b);
                                break;
                            }
                        }
                    }
                    if len < COALESCE_BYTES {
                        more = rx.try_recv().ok();
                    }
                }
                if !batch.msgs.is_empty() && tx.send(batch).await.is_err() {
                    break true;
                }
                if let Some(b) = pending_in_call.take() {
                    next = Some(b);
                    continue;
                }
            }
            tokio::select! {
                b = rx.recv() => match b {
                    Some(b) => next = Some(b),
                    None => return,
                },
                done = &mut call => {
                    if let Ok(Err(status)) = &done {
                        tracing::debug!(peer, %status, "peer stream ended");
                    }
                    break true;
                }
            }
        };
        if broken {
            shared.peers.unreachable(peer);
            tokio::time::sleep(backoff).await;
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

type AckStream =
    Pin<Box<dyn tokio_stream::Stream<Item = std::result::Result<pb::Ack, Status>> + Send>>;

#[tonic::async_trait]
impl pb::peer_server::Peer for Service {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        req: Request<Streaming<pb::Batch>>,
    ) -> std::result::Result<Response<AckStream>, Status> {
        let md = req.metadata();
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        if get("weir-version").as_deref() != Some(VERSION) {
            return Err(Status::failed_precondition(format!(
                "peer protocol version {:?}, this node speaks {VERSION}",
                get("weir-version")
            )));
        }
        if get("weir-cluster").as_deref() != Some(self.shared.peers.id().cluster_id.as_str()) {
            tracing::warn!(cluster = ?get("weir-cluster"), "refused a peer of another cluster");
            return Err(Status::permission_denied("peer belongs to another cluster"));
        }
        let from: NodeId = get("weir-node")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Status::invalid_argument("missing weir-node"))?;
        let mut stream = req.into_inner();
        let shared = self.shared.clone();
        // The response stream stays open and silent while this handler runs, and
        // ends when it stops (transport shut down, bad data): the caller sees the
        // end and reconnects — to a restarted node, say.
        let (ack_tx, ack_rx) = mpsc::channel::<std::result::Result<pb::Ack, Status>>(1);
        tokio::spawn(async move {
            let _ack_tx = ack_tx;
            loop {
                let batch = tokio::select! {
                    b = stream.message() => b,
                    () = shared.peers.stopped() => return,
                };
                match batch {
                    Ok(Some(b)) => {
                        let mut msgs = Vec::with_capacity(b.msgs.len());
                        for m in b.msgs {
                            match Message::parse_from_carllerche_bytes(&m.message) {
                                Ok(msg) => msgs.push(GroupMessage {
                                    group: GroupId(m.group),
                                    msg,
                                }),
                                Err(e) => {
                                    tracing::warn!(from, error = %e, "undecodable Raft message from peer; closing");
                                    return;
                                }
                            }
                        }
                        if let Some(i) = shared.peers.inbound() {
                            i.deliver(from, msgs);
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        tracing::warn!(from, %status, "peer stream failed");
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(ack_rx))))
    }
}
