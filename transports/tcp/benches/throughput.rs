//! Raft-message throughput between two nodes over loopback: the TCP transport next
//! to a plain TCP stream measured in the same run.
//!
//! ```text
//! cargo bench -p weir-transport-tcp --bench throughput
//! ```
//!
//! Method: node 1 sends `N` batches of one `MsgAppend` carrying an entry of `SIZE`
//! bytes to node 2 (the queue is large enough that nothing is dropped); the clock
//! stops when node 2 has received them all. The baseline is the loopback's best: the
//! same number of bytes written in 1 MiB writes on one tokio `TcpStream`, stopped
//! when the reader has read them all. Best of three, for 64 KiB and 4 KiB messages.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_core::eraftpb::{Entry, Message, MessageType};
use weir_core::{GroupId, GroupMessage, Inbound, NodeId, Transport};
use weir_transport_tcp::{Config, Identity, TcpTransport};

struct Counter(AtomicU64, AtomicU64);

impl Inbound for Counter {
    fn deliver(&self, _from: NodeId, msgs: Vec<GroupMessage>) {
        let bytes: usize = msgs
            .iter()
            .map(|m| m.msg.entries.iter().map(|e| e.data.len()).sum::<usize>())
            .sum();
        self.0.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        self.1.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn unreachable(&self, _peer: NodeId) {}
}

async fn transport(n: u64, size: usize) -> Duration {
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (aa, ab) = (
        la.local_addr().unwrap().to_string(),
        lb.local_addr().unwrap().to_string(),
    );
    let config = Config {
        queue_batches: n as usize + 16,
        ..Config::default()
    };
    let a = TcpTransport::start(
        la,
        Identity {
            node: 1,
            cluster_id: "b".into(),
            peers: BTreeMap::from([(2, ab)]),
        },
        config.clone(),
    )
    .unwrap();
    let b = TcpTransport::start(
        lb,
        Identity {
            node: 2,
            cluster_id: "b".into(),
            peers: BTreeMap::from([(1, aa)]),
        },
        config,
    )
    .unwrap();
    let counter = Arc::new(Counter(AtomicU64::new(0), AtomicU64::new(0)));
    b.register(counter.clone());
    a.register(Arc::new(Counter(AtomicU64::new(0), AtomicU64::new(0))));
    let data = Bytes::from(vec![42u8; size]);
    let msg = |i: u64| GroupMessage {
        group: GroupId(1),
        msg: Message {
            msg_type: MessageType::MsgAppend,
            to: 2,
            from: 1,
            index: i,
            entries: vec![Entry {
                index: i,
                term: 1,
                data: data.clone(),
                ..Entry::default()
            }]
            .into(),
            ..Message::default()
        },
    };
    // Warm the connection up.
    a.send(2, vec![msg(0)]);
    while counter.0.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    for i in 1..=n {
        a.send(2, vec![msg(i)]);
    }
    while counter.0.load(Ordering::Relaxed) < n + 1 {
        tokio::task::yield_now().await;
    }
    let d = start.elapsed();
    a.shutdown();
    b.shutdown();
    d
}

async fn plain(n: u64, size: usize) -> Duration {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let total = n * size as u64;
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        while got < total {
            let k = s.read(&mut buf).await.unwrap();
            assert!(k > 0);
            got += k as u64;
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    // The stream's best: the same bytes in 1 MiB writes.
    let chunk = (1usize << 20).max(size);
    let buf = vec![42u8; chunk];
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let k = left.min(chunk as u64) as usize;
        s.write_all(&buf[..k]).await.unwrap();
        left -= k as u64;
    }
    reader.await.unwrap();
    start.elapsed()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| message | plain TCP MB/s | tcp transport MB/s | msgs/s | ratio |");
    println!("|---|---|---|---|---|");
    for (label, size, n) in [("64 KiB", 64 << 10, 20_000u64), ("4 KiB", 4 << 10, 100_000)] {
        let n = if quick { 100 } else { n };
        let (mut p, mut t) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            p = p.min(rt.block_on(plain(n, size)));
            t = t.min(rt.block_on(transport(n, size)));
        }
        let mb = |d: Duration| (n * size as u64) as f64 / d.as_secs_f64() / 1e6;
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.2} |",
            mb(p),
            mb(t),
            n as f64 / t.as_secs_f64(),
            mb(t) / mb(p)
        );
    }
}
