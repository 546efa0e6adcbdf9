//! The cluster suite over the in-memory engine and the in-memory network, and the
//! power-loss scenario with its negative control.

use std::sync::Arc;

use weir_conformance::cluster::{self, MemoryEngines, NoSyncMemoryEngines, power_loss_history};
use weir_conformance::net::MemNet;
use weir_conformance::suite::Trial;
use weir_conformance::{CaseResult, Outcome, ensure};

/// A power loss under acknowledged writes loses nothing: the history checker's
/// report is valid.
fn power_loss_keeps_acknowledged_writes() -> CaseResult {
    let h = Arc::new(MemoryEngines);
    let r = cluster::block_on(power_loss_history(h, Arc::new(MemNet::default()), 40))?;
    ensure!(r.acknowledged == 40 && r.is_valid(), "{r}");
    Ok(Outcome::Passed)
}

/// Negative control: the same power loss with fsync turned off (engines whose sync
/// does nothing) must make the checker report lost acknowledged writes.
fn power_loss_with_fsync_off_is_caught_by_the_checker() -> CaseResult {
    let h = Arc::new(NoSyncMemoryEngines);
    let r = cluster::block_on(power_loss_history(h, Arc::new(MemNet::default()), 40))?;
    ensure!(r.acknowledged == 40, "{r}");
    ensure!(
        !r.is_valid() && !r.lost.is_empty(),
        "the checker missed lost writes: {r}"
    );
    Ok(Outcome::Passed)
}

fn main() {
    // RUST_LOG=... shows the nodes' logs (e.g. RUST_LOG=info,raft=warn).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut trials: Vec<Trial> = cluster::trials(|| MemoryEngines, MemNet::default);
    for (name, case) in [
        (
            "power_loss_keeps_acknowledged_writes",
            power_loss_keeps_acknowledged_writes as fn() -> CaseResult,
        ),
        (
            "power_loss_with_fsync_off_is_caught_by_the_checker",
            power_loss_with_fsync_off_is_caught_by_the_checker,
        ),
    ] {
        trials.push(weir_conformance::suite::trial(name, Ok(()), case));
    }
    weir_conformance::suite::run(trials)
}
