//! The cluster suite over the tcp transport on 127.0.0.1 (memory engine), with
//! faults injected on the sending side.

use weir_conformance::cluster::MemoryEngines;
use weir_conformance::net::{Endpoint, LoopbackNet};
use weir_transport_tcp::{Config, TcpTransport};

fn main() {
    let net = || {
        LoopbackNet::new(|l, id| {
            Ok(Endpoint::peer(TcpTransport::start(
                l,
                id,
                Config::default(),
            )?))
        })
    };
    weir_conformance::suite::run(weir_conformance::cluster::trials(|| MemoryEngines, net))
}
