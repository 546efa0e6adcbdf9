//! A transport throughput benchmark shared by every transport's `benches/`.
//!
//! Node 1 sends `n` batches of one `MsgAppend` carrying an entry of `size` bytes
//! to node 2 (queues large enough that nothing is dropped); the clock stops when
//! node 2 has received them all. The baseline is the loopback's best: the same
//! bytes written in 1 MiB writes on one tokio `TcpStream`, stopped when the reader
//! has read them all. Best of three, interleaved, for 64 KiB and 4 KiB messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_core::eraftpb::{Entry, Message, MessageType};
use weir_core::transport::Identity;
use weir_core::{GroupId, GroupMessage, Inbound, NodeId, Transport};

/// Counts delivered messages and wakes the waiter once `target` have arrived, so
/// that waiting costs no CPU (a spinning waiter would take a core from the transport
/// on a small machine).
#[derive(Default)]
struct Counter {
    count: AtomicU64,
    target: AtomicU64,
    reached: tokio::sync::Notify,
}

impl Counter {
    fn get(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    async fn wait_for(&self, target: u64) {
        self.target.store(target, Ordering::Release);
        while self.get() < target {
            self.reached.notified().await;
        }
    }
}

impl Inbound for Counter {
    fn deliver(&self, _from: NodeId, msgs: Vec<GroupMessage>) {
        let now = self.count.fetch_add(msgs.len() as u64, Ordering::AcqRel) + msgs.len() as u64;
        if now >= self.target.load(Ordering::Acquire) {
            // notify_one keeps a permit when nobody waits yet: no wake-up is lost.
            self.reached.notify_one();
        }
    }
    fn unreachable(&self, _peer: NodeId) {}
}

/// Starts a transport: (listener, identity, queue bound) → (transport, register, stop).
pub type Start = dyn Fn(
    tokio::net::TcpListener,
    Identity,
    usize,
) -> (
    Arc<dyn Transport>,
    Box<dyn Fn(Arc<dyn Inbound>)>,
    Box<dyn Fn()>,
);

async fn transport(start: &Start, n: u64, size: usize) -> anyhow::Result<Duration> {
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (aa, ab) = (la.local_addr()?.to_string(), lb.local_addr()?.to_string());
    let id = |node, peer, addr| Identity {
        node,
        cluster_id: "bench".into(),
        peers: BTreeMap::from([(peer, addr)]),
    };
    let (a, reg_a, stop_a) = start(la, id(1, 2, ab), n as usize + 16);
    let (_b, reg_b, stop_b) = start(lb, id(2, 1, aa), n as usize + 16);
    let counter = Arc::new(Counter::default());
    counter.target.store(u64::MAX, Ordering::Release);
    reg_b(counter.clone());
    reg_a(Arc::new(Counter::default()));
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.get() < 1 {
        anyhow::ensure!(Instant::now() < deadline, "the transport never delivered");
        a.send(2, vec![msg(0)]);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the warm-up messages drain before starting the clock.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let base = counter.get();
    let start_t = Instant::now();
    for i in 1..=n {
        a.send(2, vec![msg(i)]);
    }
    tokio::time::timeout(Duration::from_secs(120), counter.wait_for(base + n))
        .await
        .map_err(|_| anyhow::anyhow!("messages were lost"))?;
    let d = start_t.elapsed();
    stop_a();
    stop_b();
    Ok(d)
}

async fn plain(n: u64, size: usize) -> anyhow::Result<Duration> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let total = n * size as u64;
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await?;
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        while got < total {
            let k = s.read(&mut buf).await?;
            anyhow::ensure!(k > 0, "early end of stream");
            got += k as u64;
        }
        Ok::<(), anyhow::Error>(())
    });
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let chunk = (1usize << 20).max(size);
    let buf = vec![42u8; chunk];
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let k = left.min(chunk as u64) as usize;
        s.write_all(&buf[..k]).await?;
        left -= k as u64;
    }
    reader.await??;
    Ok(start.elapsed())
}

/// Runs the benchmark for one transport and prints a markdown table. With `quick`
/// (as under `cargo test --benches`) it only checks that everything runs.
///
/// # Errors
/// When a transport loses messages or fails to start.
pub fn run(name: &str, start: &Start, quick: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("| message | plain TCP MB/s | {name} MB/s | {name} msgs/s | ratio |");
    println!("|---|---|---|---|---|");
    for (label, size, n) in [("64 KiB", 64 << 10, 20_000u64), ("4 KiB", 4 << 10, 100_000)] {
        let n = if quick { 100 } else { n };
        let (mut p, mut t) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            p = p.min(rt.block_on(plain(n, size))?);
            t = t.min(rt.block_on(transport(start, n, size))?);
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
    Ok(())
}
