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
//!
//! # Opting in
//!
//! An engine implements [`engine::EngineHarness`] in its `tests/conformance.rs` and
//! expands [`engine_suite!`]; every case becomes its own named `#[test]`:
//!
//! ```text
//! struct Harness;
//! impl weir_conformance::engine::EngineHarness for Harness { /* create, reopen, … */ }
//! weir_conformance::engine_suite!(Harness);
//! ```
//!
//! A case that needs a capability the engine does not declare prints
//! `not applicable: …` and passes without running; it never pretends to have run.

pub mod bench;
pub mod cluster;
pub mod crash;
pub mod engine;
pub mod engine_bench;
pub mod history;
pub mod kill;
pub mod model;
pub mod net;
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

/// Runs one case and turns its result into a test verdict (panics on failure).
///
/// # Panics
/// When the case fails; the message names the case and the failed check.
pub fn run_case(name: &str, result: CaseResult) {
    match result {
        Ok(Outcome::Passed) => {}
        Ok(Outcome::NotApplicable(why)) => eprintln!("{name}: not applicable: {why}"),
        Err(e) => panic!("conformance case {name} failed: {e:#}"),
    }
}

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
