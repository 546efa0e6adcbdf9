//! The cluster suite over the TCP transport on 127.0.0.1 (memory engine), with
//! faults injected on the sending side.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use weir_conformance::cluster::ClusterHarness;
use weir_conformance::net::{Endpoint, NetHarness};
use weir_core::memory::MemoryEngine;
use weir_core::{Engine, NodeId};
use weir_transport_tcp::{Config, Identity, TcpTransport};

struct Memory;

impl ClusterHarness for Memory {
    type Guard = Mutex<Arc<MemoryEngine>>;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        let e = Arc::new(MemoryEngine::new());
        Ok((Mutex::new(e.clone()), e))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        _engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        let mut g = guard.lock();
        let next = Arc::new(g.restart());
        *g = next.clone();
        Ok(next)
    }
}

/// Each node listens on a port picked once; a restarted node binds it again.
#[derive(Default)]
struct Tcp {
    ports: OnceLock<BTreeMap<NodeId, u16>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl NetHarness for Tcp {
    fn endpoint(&self, id: NodeId, ids: &[NodeId]) -> anyhow::Result<Endpoint> {
        let ports = self
            .ports
            .get_or_init(|| ids.iter().map(|&i| (i, free_port())).collect());
        let addr = format!("127.0.0.1:{}", ports[&id]);
        // The previous incarnation's listener closes asynchronously: retry briefly.
        let mut listener = None;
        for _ in 0..100 {
            if let Ok(l) = std::net::TcpListener::bind(&addr) {
                listener = Some(l);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let std_listener = listener.ok_or_else(|| anyhow::anyhow!("cannot bind {addr}"))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let peers = ids
            .iter()
            .filter(|&&p| p != id)
            .map(|&p| (p, format!("127.0.0.1:{}", ports[&p])))
            .collect();
        let t = TcpTransport::start(
            listener,
            Identity {
                node: id,
                cluster_id: "test".into(),
                peers,
            },
            Config::default(),
        )?;
        let (reg, stop) = (t.clone(), t.clone());
        Ok(Endpoint {
            transport: t,
            register: Box::new(move |inbound| reg.register(inbound)),
            stop: Box::new(move || stop.shutdown()),
        })
    }
}

weir_conformance::cluster_suite!(Memory, Tcp::default());
