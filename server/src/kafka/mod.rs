//! The Kafka listener: connections, framing, dispatch, and one handler file per API
//! family.
//!
//! # Layout
//!
//! A request travels [`listener`] → [`connection`] → [`dispatch`] → a handler:
//!
//! * [`listener`] — accepts TCP connections under a connection limit, backs off when
//!   accepting fails, and on shutdown stops accepting and waits for every
//!   connection to finish its in-flight requests (mini-redis's `server.rs`).
//! * [`connection`] — one client connection, generic over `AsyncRead + AsyncWrite`
//!   (so TLS can wrap it): framing through [`codec`], pipelining (up to
//!   [`connection::MAX_IN_FLIGHT`] requests at once, answered in request order), and
//!   the per-connection [`Session`].
//! * [`codec`] — the one length-prefixed framing the server, the client and the
//!   tests share.
//! * [`dispatch`] — decodes a request header, checks the API version against what
//!   weir supports, runs the handler and encodes the response.
//! * [`handlers`] — the APIs by family: metadata, produce, fetch, offsets, topics,
//!   configs, groups.
//! * [`errors`] — the stable mapping from core errors to Kafka error codes.
//!
//! Every request and response goes through the `kafka-protocol` crate. A frame that
//! is too large, an unknown API key or an undecodable request closes the connection
//! with a log line; each connection runs in its own task, so one client can never
//! take the broker down.

pub mod codec;
pub mod connection;
pub mod dispatch;
pub mod errors;
pub mod handlers;
pub mod listener;

pub use codec::{FrameReader, frame_codec};
pub use connection::Session;
pub use dispatch::handle_frame;
pub use errors::error_code;
pub use listener::serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use weir_core::Node;

/// What the handlers need.
#[derive(Debug)]
pub struct Context {
    /// The node behind this broker.
    pub node: Node,
    /// The cluster id clients are told (Metadata v2+, DescribeCluster): the
    /// configured `cluster_id`.
    pub cluster_id: String,
    /// Create unknown topics on Metadata and Produce.
    pub auto_create: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: i32,
    /// Replication factor of auto-created topics (capped at the broker count).
    pub default_replication: usize,
    /// Largest request frame accepted.
    pub max_request_bytes: usize,
    /// Most client connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Most connections from one client address; one more is closed at once.
    pub max_connections_per_ip: usize,
    /// Most partitions one topic may have (CreateTopics answers INVALID_PARTITIONS
    /// beyond it; the node enforces it too).
    pub max_partitions_per_topic: i32,
    /// Most unknown topics one Metadata or Produce request may auto-create; the
    /// rest are answered UNKNOWN_TOPIC_OR_PARTITION.
    pub max_auto_create_per_request: usize,
    /// A connection with nothing in flight and no request for this long is closed.
    pub connections_max_idle: std::time::Duration,
    /// A connection whose request frame is still incomplete this long after its
    /// last complete request (or answer) is closed.
    pub request_read_timeout: std::time::Duration,
    /// What the listener is doing right now.
    pub stats: ListenerStats,
    /// The bytes of request frames buffered at once, over every connection.
    pub request_memory: RequestMemory,
}

/// A node-wide budget for buffered request frames (`max_buffered_request_bytes`):
/// a connection reserves a frame's size before reading it and keeps the
/// reservation until the request is answered. When the budget is spent, reading
/// stops and TCP pushes back on the clients until answers free room.
#[derive(Debug)]
pub struct RequestMemory {
    budget: Arc<tokio::sync::Semaphore>,
    limit: usize,
    buffered: AtomicUsize,
    peak: AtomicUsize,
}

impl RequestMemory {
    /// A budget of `limit` bytes (at least 1, at most 4 GiB - 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, u32::MAX as usize);
        RequestMemory {
            budget: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            buffered: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Waits until `bytes` fit in the budget (a frame larger than the whole budget
    /// waits for all of it) and reserves them.
    pub async fn reserve(&self, bytes: usize) -> Reservation<'_> {
        // `limit` fits in a u32 (see `new`).
        let permits = bytes.clamp(1, self.limit) as u32;
        // The semaphore is never closed, so this waits until the bytes fit.
        let permit = self.budget.clone().acquire_many_owned(permits).await.ok();
        let now = self.buffered.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Reservation {
            memory: self,
            bytes,
            _permit: permit,
        }
    }

    /// Bytes reserved right now.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Bytes of [`RequestMemory`] held by one request frame; returned when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    memory: &'a RequestMemory,
    bytes: usize,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.memory
            .buffered
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Counters the listener and its connections keep up to date.
#[derive(Debug, Default)]
pub struct ListenerStats {
    connections: AtomicUsize,
    opened: std::sync::atomic::AtomicU64,
    in_flight: AtomicUsize,
}

impl ListenerStats {
    /// Client connections accepted since the listener started.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Client connections being served.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests read and not yet answered, over every connection.
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts `counter` up now and down when the guard drops.
    fn enter(counter: &AtomicUsize) -> Entered<'_> {
        counter.fetch_add(1, Ordering::Relaxed);
        Entered(counter)
    }
}

/// Counts a connection or a request while it lives.
struct Entered<'a>(&'a AtomicUsize);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
