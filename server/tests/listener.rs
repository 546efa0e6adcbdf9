//! The Kafka listener: a connection limit, and a shutdown that answers what is in
//! flight and waits for every connection before it returns.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use weir_core::batch::BatchBuilder;
use weir_core::{Node, NodeConfig};
use weir_server::client::Client;
use weir_server::kafka::{Context, ListenerStats, frame_codec, serve};

/// A single-node broker on the memory engine, served by `serve` until `stop` fires.
struct Broker {
    addr: std::net::SocketAddr,
    ctx: Arc<Context>,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

async fn broker(max_connections: usize) -> Broker {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = NodeConfig::new(1, vec![1], addr.to_string());
    cfg.tick = Duration::from_millis(10);
    let node = Node::start(
        cfg,
        Arc::new(weir_core::memory::MemoryEngine::new()),
        Arc::new(weir_server::NoPeers),
    )
    .unwrap();
    let ctx = Arc::new(Context {
        node,
        auto_create: true,
        default_partitions: 1,
        default_replication: 1,
        max_request_bytes: 1 << 20,
        max_connections,
        stats: ListenerStats::default(),
    });
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, ctx.clone(), async move {
        let _ = rx.await;
    }));
    Broker {
        addr,
        ctx,
        stop,
        served,
    }
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn api_versions_frame(correlation_id: i32) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(3)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut buf, ApiKey::ApiVersions.request_header_version(3))
        .unwrap();
    ApiVersionsRequest::default().encode(&mut buf, 3).unwrap();
    buf.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_requests_and_waits_for_connections() {
    let b = broker(16).await;
    let bootstrap = b.addr.to_string();
    let mut client = Client::new(&bootstrap);
    let batch = Bytes::from(BatchBuilder::new(0).record(None, Some(b"v")).build());
    let end = client.produce("t", 0, batch).await.unwrap() + 1;

    // A long poll at the end of the log: it waits up to 5 s for data.
    let poll = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let r = client.fetch("t", 0, end, Duration::from_secs(5)).await;
        (r, started.elapsed())
    });
    let ctx = b.ctx.clone();
    until("the fetch is in flight", || {
        ctx.stats.requests_in_flight() == 1
    })
    .await;

    b.stop.send(()).unwrap();
    // The listener returns only once the in-flight fetch was answered and its
    // connection closed.
    b.served.await.unwrap();
    assert_eq!(b.ctx.stats.connections(), 0);
    assert_eq!(b.ctx.stats.requests_in_flight(), 0);
    let (fetched, waited) = poll.await.unwrap();
    let (records, high) = fetched.unwrap();
    assert!(records.is_empty());
    assert_eq!(high, end);
    // It was answered by its long poll running out, not cut short.
    assert!(
        waited >= Duration::from_secs(4),
        "answered after {waited:?}"
    );
    // Nothing listens any more.
    assert!(TcpStream::connect(b.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_until_one_closes() {
    let b = broker(1).await;
    let mut first = Framed::new(
        TcpStream::connect(b.addr).await.unwrap(),
        frame_codec(1 << 20),
    );
    first.send(api_versions_frame(1)).await.unwrap();
    assert!(first.next().await.unwrap().is_ok());
    assert_eq!(b.ctx.stats.connections(), 1);

    // The second connection is queued by the kernel but not served…
    let mut second = Framed::new(
        TcpStream::connect(b.addr).await.unwrap(),
        frame_codec(1 << 20),
    );
    second.send(api_versions_frame(2)).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), second.next()).await;
    assert!(early.is_err(), "a connection over the limit was served");
    assert_eq!(b.ctx.stats.connections(), 1);

    // …until the first one closes.
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), second.next())
        .await
        .expect("served once the first connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(&answer[..4], &2i32.to_be_bytes());
    drop(second);
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}
