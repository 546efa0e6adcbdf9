//! `weir recover`: offline repairs an operator asks for by name, on a stopped
//! node's data directory.

use anyhow::Context as _;
use weir_core::GroupId;
use weir_core::node::recover::{Loss, accept_loss};

use crate::config::{Config, EngineKind};
use crate::{open_engine, stamp};

/// Parses a group as the refusals name it (`g7`) or as a bare number (`7`).
///
/// # Errors
/// Anything else, with what was expected.
pub fn parse_group(s: &str) -> Result<GroupId, String> {
    s.strip_prefix('g')
        .unwrap_or(s)
        .parse()
        .map(GroupId)
        .map_err(|_| format!("{s:?} is not a group (as a refusal names it, e.g. g7)"))
}

/// Accepts the loss of each of `groups`' records that are gone from both its
/// partition log and its Raft log (see [`weir_core::node::recover`]), on the data
/// directory `config` names. Returns, per group, what was dropped (`None`: nothing
/// was missing, nothing changed).
///
/// # Errors
/// A directory of another node or cluster, one without weir data, an engine that
/// cannot open (a running node holds its lock), or a group it cannot recover.
pub fn accept_losses(
    config: &Config,
    groups: &[GroupId],
) -> anyhow::Result<Vec<(GroupId, Option<Loss>)>> {
    anyhow::ensure!(
        config.engine != EngineKind::Memory,
        "the memory engine keeps nothing to recover"
    );
    let stamp_file = config.data_dir.join(stamp::FILE);
    anyhow::ensure!(
        stamp_file.exists(),
        "{} holds no weir data directory ({} is missing)",
        config.data_dir.display(),
        stamp_file.display()
    );
    stamp::check_or_write(&config.data_dir, config.node_id, &config.cluster_id)?;
    let engine = open_engine(config).context("opening the engine (is the node stopped?)")?;
    groups
        .iter()
        .map(|&g| {
            accept_loss(engine.as_ref(), g)
                .map(|loss| (g, loss))
                .with_context(|| format!("recovering {g}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_as_refusals_name_them() {
        assert_eq!(parse_group("g7"), Ok(GroupId(7)));
        assert_eq!(parse_group("12"), Ok(GroupId(12)));
        assert!(parse_group("t-0").is_err());
        assert!(parse_group("g").is_err());
    }
}
