//! The Kafka listener: a connection limit, and a shutdown that answers what is in
//! flight and waits for every connection before it returns.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use kafka_protocol::messages::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use weir_core::batch::BatchBuilder;
use weir_server::client::Client;
use weir_server::kafka::frame_codec;

mod inproc;

use inproc::{broker, request, until};

fn api_versions_frame(correlation_id: i32) -> Bytes {
    let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
    request(ApiKey::ApiVersions, 3, correlation_id, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_requests_and_waits_for_connections() {
    let b = broker(|_| {}, |_| {}).await;
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
    let b = broker(|_| {}, |c| c.max_connections = 1).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_stalled_frames_are_closed() {
    let b = broker(
        |_| {},
        |c| {
            c.connections_max_idle = Duration::from_millis(300);
            c.request_read_timeout = Duration::from_millis(200);
        },
    )
    .await;
    // Served, then idle: closed by the broker (the read ends), not kept forever.
    let mut idle = Framed::new(
        TcpStream::connect(b.addr).await.unwrap(),
        frame_codec(1 << 20),
    );
    idle.send(api_versions_frame(1)).await.unwrap();
    assert!(idle.next().await.unwrap().is_ok());
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.next()).await;
    assert!(matches!(closed, Ok(None)), "an idle connection stayed open");

    // A frame that never completes: its size says 100 bytes, 3 arrive.
    let mut stalled = TcpStream::connect(b.addr).await.unwrap();
    stalled.write_all(&[0, 0, 0, 100, 0, 18, 0]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
        .await
        .expect("the broker closed a stalled frame's connection");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let ctx = b.ctx.clone();
    until("no connection is left", || ctx.stats.connections() == 0).await;
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_limit_are_closed_at_once() {
    let b = broker(|_| {}, |c| c.max_connections_per_ip = 1).await;
    let mut first = Framed::new(
        TcpStream::connect(b.addr).await.unwrap(),
        frame_codec(1 << 20),
    );
    first.send(api_versions_frame(1)).await.unwrap();
    assert!(first.next().await.unwrap().is_ok());

    // A second connection from 127.0.0.1 is closed without an answer…
    let mut second = Framed::new(
        TcpStream::connect(b.addr).await.unwrap(),
        frame_codec(1 << 20),
    );
    let _ = second.send(api_versions_frame(2)).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), second.next())
        .await
        .expect("the second connection was closed, not left waiting");
    assert!(!matches!(answer, Some(Ok(_))), "{answer:?}");

    // …while the first is still served, and a new one is once the first closes.
    first.send(api_versions_frame(3)).await.unwrap();
    assert!(first.next().await.unwrap().is_ok());
    drop(first);
    let ctx = b.ctx.clone();
    until("the first connection is gone", || {
        ctx.stats.connections() == 0
    })
    .await;
    let mut third = Framed::new(
        TcpStream::connect(b.addr).await.unwrap(),
        frame_codec(1 << 20),
    );
    third.send(api_versions_frame(4)).await.unwrap();
    assert!(third.next().await.unwrap().is_ok());
    drop(third);
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_request_bytes_stay_within_the_node_wide_budget() {
    const BUDGET: usize = 200 << 10;
    let b = broker(
        |_| {},
        |c| c.request_memory = weir_server::kafka::RequestMemory::new(BUDGET),
    )
    .await;
    let mut client = Client::new(&b.addr.to_string());
    let small = Bytes::from(BatchBuilder::new(0).record(None, Some(b"v")).build());
    client.produce("t", 0, small).await.unwrap();

    // 8 connections each pipeline 6 produce requests of ~60 KiB, all written at
    // once: 2.9 MiB of frames, 14 times the budget.
    let value = vec![7u8; 60 << 10];
    let batch = Bytes::from(BatchBuilder::new(0).record(None, Some(&value)).build());
    let mut conns = Vec::new();
    for c in 0..8 {
        let batch = batch.clone();
        conns.push(tokio::spawn(async move {
            let mut conn = Framed::new(
                TcpStream::connect(b.addr).await.unwrap(),
                frame_codec(1 << 20),
            );
            for i in 0..6 {
                let req = ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![
                        produce_request::TopicProduceData::default()
                            .with_name(TopicName(
                                kafka_protocol::protocol::StrBytes::from_static_str("t"),
                            ))
                            .with_partition_data(vec![
                                produce_request::PartitionProduceData::default()
                                    .with_index(0)
                                    .with_records(Some(batch.clone())),
                            ]),
                    ]);
                conn.feed(request(
                    ApiKey::Produce,
                    8,
                    c * 10 + i,
                    RequestKind::Produce(req),
                ))
                .await
                .unwrap();
            }
            futures_util::SinkExt::<Bytes>::flush(&mut conn)
                .await
                .unwrap();
            let mut answered = 0;
            while answered < 6 {
                let frame = tokio::time::timeout(Duration::from_secs(30), conn.next())
                    .await
                    .expect("answered in time")
                    .unwrap()
                    .unwrap();
                assert_eq!(&frame[..4], &(c * 10 + answered).to_be_bytes());
                answered += 1;
            }
            answered
        }));
    }
    for c in conns {
        // Every request is answered: the budget slows readers down, it refuses nothing.
        assert_eq!(c.await.unwrap(), 6);
    }
    let memory = &b.ctx.request_memory;
    assert!(
        memory.peak() <= BUDGET,
        "{} request bytes were buffered at once, over the budget of {BUDGET}",
        memory.peak()
    );
    assert!(memory.peak() >= 60 << 10, "peak {}", memory.peak());
    assert_eq!(memory.buffered(), 0);
    let end = client.list_offset("t", 0, -1).await.unwrap();
    assert_eq!(end, 1 + 8 * 6);
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}
