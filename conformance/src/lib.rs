//! weir-conformance: the suites that hold every plug-in to the same promises.
//!
//! # Layout
//!
//! * [`engine`] — the storage-engine suite: Raft log, partition log, reopen, and the
//!   crash cases (cut, torn, garbage, bit flip) for engines that keep files.
//! * [`mod@bench`] — the transport throughput benchmark every transport runs.
//! * [`engine_bench`] — the append benchmark every engine runs.
//! * [`cluster`] — the cluster suite: in-process clusters over the in-memory network.
//! * [`history`] — the fault tests' history checker.
//! * [`crash`] — disk images and the crash points cut from them.
//! * [`kill`] — the SIGKILL case: a child process writes and is killed at random.
//! * [`net`] — networks for the cluster suite and fault injection over any transport.
//! * [`transport`] — the transport suite: order, groups, frame limits, bad frames,
//!   reconnection, cluster ids, unreachable peers, bounded queues.
//! * [`model`] — proptest model tests: random operation sequences against a model.
//! * [`suite`] — suites as test binaries: one trial per case, ignored when it does
//!   not apply.
//!
//! # Opting in
//!
//! A plug-in's test file is a test binary (`harness = false` for its target in
//! `Cargo.toml`) whose `main` hands a suite one builder; the suite generates one
//! named trial per case ([`suite`], libtest-mimic) and marks a case that needs a
//! capability the plug-in does not declare as *ignored*, never as passed:
//!
//! ```text
//! fn open(dir: &Path) -> weir_core::Result<MyEngine> { MyEngine::open(dir, Config::default()) }
//! fn main() { weir_conformance::engine::run(weir_conformance::engine::DirHarness(open)) }
//! ```
//!
//! The cluster suite takes the same `open` ([`cluster::DirEngines`]); a transport
//! implements [`transport::TransportHarness`] (start it within given limits, and the
//! bytes of an oversized frame).

pub mod bench;
pub mod cluster;
pub mod crash;
pub mod engine;
pub mod engine_bench;
pub mod history;
pub mod kill;
pub mod model;
pub mod net;
pub mod suite;
pub mod tmpfs;
pub mod transport;

/// The result of one conformance case.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The case ran and every check held.
    Passed,
    /// The engine does not declare the capability the case needs.
    NotApplicable(&'static str),
}

/// What a case returns: an outcome, or the first failed check.
pub type CaseResult = anyhow::Result<Outcome>;

/// Fails the current case with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(::anyhow::anyhow!($($fmt)+));
        }
    };
}

/// Fails the current case unless the two values are equal.
#[macro_export]
macro_rules! ensure_eq {
    ($a:expr, $b:expr, $($fmt:tt)+) => {{
        match (&$a, &$b) {
            (a, b) => {
                if a != b {
                    return Err(::anyhow::anyhow!("{}: left {:?} != right {:?}", format!($($fmt)+), a, b));
                }
            }
        }
    }};
}
