//! The cluster suite over the TCP transport on 127.0.0.1 (memory engine), with
//! faults injected on the sending side.

use weir_conformance::cluster::MemoryEngines;
use weir_conformance::net::{Endpoint, LoopbackNet};
use weir_transport_tcp::{Config, TcpTransport};

fn net() -> impl weir_conformance::net::NetHarness {
    LoopbackNet::new(|listener, id| {
        Ok(Endpoint::peer(TcpTransport::start(
            listener,
            id,
            Config::default(),
        )?))
    })
}

weir_conformance::cluster_suite!(MemoryEngines, net());
