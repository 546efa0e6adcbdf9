//! `weir`: the broker binary.
//!
//! This first cut only answers `--version` and `--help` and lists the engines compiled
//! in; `weir serve` arrives with the Raft and broker work.

use clap::{Parser, Subcommand};

/// weir, a Kafka-compatible message broker with pluggable storage and transports.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the storage engines and transports compiled into this binary.
    Plugins,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins => {
            println!("engines: {}", compiled_engines().join(", "));
        }
    }
}

fn compiled_engines() -> Vec<&'static str> {
    let mut v = vec![weir_core::memory::NAME];
    #[cfg(feature = "engine-segment")]
    v.push(weir_engine_segment::NAME);
    v
}
