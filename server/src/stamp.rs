//! Whose data directory this is: the node id and cluster id written into it at the
//! first start (`weir.id`), checked at every start after. A node started on
//! another node's directory would recover that node's Raft state and advertise the
//! other node's address to every client; one started on another cluster's
//! directory would join with that cluster's data. Both are refused before the
//! engine opens anything.
//!
//! The stamp also records, once it is so, that the engine holds durable Raft
//! state. An engine that opens empty in such a directory lost its files (deleted,
//! a volume not mounted): starting it would bootstrap a blank node, so it is
//! refused ([`check_engine`]).

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The stamp file's name, in the data directory.
pub const FILE: &str = "weir.id";

/// What the stamp records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// The node whose directory this is.
    pub node_id: u64,
    /// The cluster it belongs to.
    pub cluster_id: String,
    /// The engine has held durable Raft state in this directory.
    #[serde(default)]
    pub holds_raft_state: bool,
}

/// Checks `dir`'s stamp against this node, or writes it (durably) when the
/// directory has none yet (a new directory, or one from a weir without stamps);
/// returns it.
///
/// # Errors
/// A directory of another node or cluster (the message names both and what to
/// do), a stamp that cannot be read or parsed, or one that cannot be written.
pub fn check_or_write(dir: &Path, node_id: u64, cluster_id: &str) -> anyhow::Result<Stamp> {
    let path = dir.join(FILE);
    let ours = Stamp {
        node_id,
        cluster_id: cluster_id.to_string(),
        holds_raft_state: false,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found: Stamp = toml::from_str(&text).with_context(|| {
                format!(
                    "corrupt data: {} cannot be read as a weir stamp",
                    path.display()
                )
            })?;
            anyhow::ensure!(
                found.cluster_id == ours.cluster_id,
                "data directory {} belongs to cluster {:?}, and this node is configured for cluster {:?}: start it with cluster_id = {:?}, or give it a data directory of its own",
                dir.display(),
                found.cluster_id,
                ours.cluster_id,
                found.cluster_id
            );
            anyhow::ensure!(
                found.node_id == ours.node_id,
                "data directory {} belongs to node {}, and this node is configured as node {}: start node {} on it, or give node {} a data directory of its own",
                dir.display(),
                found.node_id,
                ours.node_id,
                found.node_id,
                ours.node_id
            );
            Ok(found)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data directory {}", dir.display()))?;
            write(dir, &ours)?;
            tracing::info!(dir = %dir.display(), node_id, cluster_id, "stamped the data directory");
            Ok(ours)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `stamp` into `dir` durably (a temporary file, synced, renamed).
fn write(dir: &Path, stamp: &Stamp) -> anyhow::Result<()> {
    let path = dir.join(FILE);
    let text = toml::to_string(stamp).context("encoding the data directory stamp")?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Refuses an engine that opened empty in a directory whose stamp says it held
/// this node's Raft state: its files are gone.
///
/// # Errors
/// That refusal (`corrupt data: …`, saying what to do), or the engine's error
/// listing its groups.
pub fn check_engine(
    dir: &Path,
    stamp: &Stamp,
    engine: &dyn weir_core::Engine,
) -> anyhow::Result<()> {
    if stamp.holds_raft_state && engine.raft_groups()?.is_empty() {
        anyhow::bail!(
            "corrupt data: data directory {} held node {}'s Raft log ({} says so), but the {} engine opened empty: its files are missing (deleted, or a volume not mounted). Restore them; or, to start this node empty (a replica catches up from its peers; a single node's data is gone), delete {}",
            dir.display(),
            stamp.node_id,
            FILE,
            engine.name(),
            dir.join(FILE).display()
        );
    }
    Ok(())
}

/// Records in the stamp that the engine holds durable Raft state, once it does:
/// when group 0 exists, after a sync.
///
/// # Errors
/// When the engine cannot sync or the stamp cannot be written.
pub fn mark_holding(
    dir: &Path,
    stamp: &Stamp,
    engine: &dyn weir_core::Engine,
) -> anyhow::Result<bool> {
    if !engine
        .raft_groups()?
        .contains(&weir_core::GroupId::METADATA)
    {
        return Ok(false);
    }
    engine.raft_sync()?;
    write(
        dir,
        &Stamp {
            holds_raft_state: true,
            ..stamp.clone()
        },
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_node_and_cluster() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        check_or_write(dir.path(), 1, "weir").expect("stamped");
        check_or_write(dir.path(), 1, "weir").expect("the same node");
        let e = check_or_write(dir.path(), 2, "weir").expect_err("another node");
        assert!(e.to_string().contains("belongs to node 1"), "{e}");
        let e = check_or_write(dir.path(), 1, "prod").expect_err("another cluster");
        assert!(e.to_string().contains("belongs to cluster \"weir\""), "{e}");
        std::fs::write(dir.path().join(FILE), "garbage = [").expect("write");
        let e = check_or_write(dir.path(), 1, "weir").expect_err("garbage");
        assert!(e.to_string().starts_with("corrupt data:"), "{e}");
    }
}
