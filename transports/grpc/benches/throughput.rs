//! Raft-message throughput over the gRPC transport next to a plain TCP stream; see
//! `weir_conformance::bench` for the method.
//!
//! ```text
//! cargo bench -p weir-transport-grpc --bench throughput
//! ```

#![allow(missing_docs)]

use weir_transport_grpc::{Config, GrpcTransport};

fn main() -> anyhow::Result<()> {
    let quick = !std::env::args().any(|a| a == "--bench");
    weir_conformance::bench::run(
        "grpc",
        &|listener, id, queue| {
            let config = Config {
                queue_batches: queue,
                ..Config::default()
            };
            let t =
                GrpcTransport::start(listener, id, config).expect("starting the gRPC transport");
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
