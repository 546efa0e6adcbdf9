//! Raft-message throughput over the TCP transport next to a plain TCP stream; see
//! `weir_conformance::bench` for the method.
//!
//! ```text
//! cargo bench -p weir-transport-tcp --bench throughput
//! ```

#![allow(missing_docs)]

use weir_transport_tcp::{Config, TcpTransport};

fn main() -> anyhow::Result<()> {
    let quick = !std::env::args().any(|a| a == "--bench");
    weir_conformance::bench::run(
        "tcp",
        &|listener, id, queue| {
            let config = Config {
                queue_batches: queue,
                ..Config::default()
            };
            let t = TcpTransport::start(listener, id, config).expect("starting the TCP transport");
            let (reg, stop) = (t.clone(), t.clone());
            (
                t,
                Box::new(move |i| reg.register(i)),
                Box::new(move || stop.shutdown()),
            )
        },
        quick,
    )
}
