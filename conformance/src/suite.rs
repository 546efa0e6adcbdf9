//! Running a suite as a test binary (the OpenDAL behaviour-test pattern, with
//! libtest-mimic): one trial per case, named after it, marked *ignored* — never
//! passed — when the plug-in does not declare what the case needs.
//!
//! A plug-in's test file sets `harness = false` for its target in `Cargo.toml` and
//! calls a suite's `run` from `main`, e.g. [`crate::engine::run`]. The binary takes
//! the arguments `cargo test` passes (filters, `--exact`, `--nocapture`,
//! `--test-threads`, `--ignored`, `--list`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub use libtest_mimic::Trial;

use crate::{CaseResult, Outcome};

/// A trial that runs `case`, or is ignored (with `why` shown as its kind) when it
/// does not apply.
pub fn trial(
    name: &'static str,
    applies: Result<(), &'static str>,
    case: impl FnOnce() -> CaseResult + Send + 'static,
) -> Trial {
    let t = Trial::test(name, move || verdict(case()));
    match applies {
        Ok(()) => t,
        Err(why) => t.with_ignored_flag(true).with_kind(why),
    }
}

/// A case's result as a trial's verdict.
fn verdict(r: CaseResult) -> Result<(), libtest_mimic::Failed> {
    match r {
        Ok(Outcome::Passed) => Ok(()),
        Ok(Outcome::NotApplicable(why)) => Err(format!(
            "the case does not apply ({why}), although the plug-in's capabilities say it does"
        )
        .into()),
        Err(e) => Err(format!("{e:#}").into()),
    }
}

/// Runs `trials` as the test binary's main: parses the command line as `cargo test`
/// passes it, runs what it selects and exits with the verdict.
pub fn run(trials: Vec<Trial>) -> ! {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit()
}

/// Panics anywhere in this process so far. The first call installs a panic hook
/// that counts every panic (then prints it as before), so that a case can notice a
/// panic in a task it never joins, such as a transport's connection task: compare
/// the count before and after. Process-wide, so a case that reads it is only exact
/// while no other trial panics at the same time (a panicking trial fails anyway).
pub fn panics_so_far() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            COUNT.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    COUNT.load(Ordering::SeqCst)
}
