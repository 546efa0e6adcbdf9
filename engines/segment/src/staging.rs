//! Staged logs ([`StagingStore`], docs/snapshots.md): a partition log received
//! in a snapshot is written as a partition of its own in
//! `partitions/<group>.staged/`, beside the live one, and installed by renaming
//! it over the live directory. An install marker (`<group>.install`) written
//! once the staged log is durable makes the swap atomic across a crash: opening
//! the engine finishes an install it finds marked.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use weir_core::staging::check_staged;
use weir_core::{Error, GroupId, Offset, Result, StagingStore};

use crate::SegmentEngine;
use crate::error::{IoContext, SegError};
use crate::partition::Partition;

const STAGED: &str = ".staged";
const INSTALL: &str = ".install";

pub(crate) fn staged_dir(root: &Path, g: GroupId) -> PathBuf {
    root.join("partitions").join(format!("{:020}{STAGED}", g.0))
}

fn marker(root: &Path, g: GroupId) -> PathBuf {
    root.join("partitions")
        .join(format!("{:020}{INSTALL}", g.0))
}

/// At open, for an entry of `partitions/` named `name`: finishes a marked
/// install (`Some(true)`: the entry was an install marker), names a staged log
/// to reopen (`Some(false)`), or leaves other entries to the caller (`None`).
pub(crate) fn recover_entry(
    root: &Path,
    name: &str,
) -> std::result::Result<Option<(GroupId, bool)>, SegError> {
    let parse = |stem: &str| stem.parse::<u64>().ok().map(GroupId);
    if let Some(g) = name.strip_suffix(INSTALL).and_then(parse) {
        let (staged, live) = (staged_dir(root, g), crate::partition_dir(root, g));
        if staged.exists() {
            tracing::info!(group = %g, "finishing a snapshot install a crash interrupted");
            if live.exists() {
                fs::remove_dir_all(&live).ctx(|| format!("removing {}", live.display()))?;
            }
            fs::rename(&staged, &live)
                .ctx(|| format!("renaming {} to {}", staged.display(), live.display()))?;
            weir_core::crash::crash_point("install-renamed");
        }
        let m = marker(root, g);
        fs::remove_file(&m).ctx(|| format!("removing {}", m.display()))?;
        crate::durability::sync_dir(&root.join("partitions"))?;
        return Ok(Some((g, true)));
    }
    Ok(name
        .strip_suffix(STAGED)
        .and_then(parse)
        .map(|g| (g, false)))
}

impl SegmentEngine {
    fn with_staged<T>(
        &self,
        group: GroupId,
        f: impl FnOnce(&mut Partition) -> std::result::Result<T, SegError>,
    ) -> Result<T> {
        self.durability.check()?;
        let mut staged = self.staged.lock();
        let p = staged
            .get_mut(&group)
            .ok_or_else(|| Error::Invalid(format!("{group}: no staged log")))?;
        self.durability.write_result(f(p))
    }
}

impl StagingStore for SegmentEngine {
    fn stage_begin(&self, group: GroupId, start: Offset) -> Result<()> {
        self.durability.check()?;
        self.stage_drop(group)?;
        let dir = staged_dir(&self.dir, group);
        let p = self.durability.write_result(Partition::create_at(
            &dir,
            self.shape_of(group),
            start,
            &self.durability,
        ))?;
        self.staged.lock().insert(group, p);
        Ok(())
    }

    fn stage_append(&self, group: GroupId, batches: &[u8]) -> Result<Offset> {
        let end = self
            .stage_end(group)?
            .ok_or_else(|| Error::Invalid(format!("{group}: no staged log")))?
            .1;
        let (checked, new_end) = check_staged(group, end, batches)?;
        let d = self.durability.clone();
        self.with_staged(group, |p| {
            for (_, bytes) in &checked {
                let h = weir_core::batch::BatchHeader::parse(bytes)
                    .map_err(|e| SegError::Corrupt(e.to_string()))?;
                p.append_stamped(&h, bytes, &d)?;
            }
            Ok(())
        })?;
        Ok(new_end)
    }

    fn stage_end(&self, group: GroupId) -> Result<Option<(Offset, Offset)>> {
        Ok(self.staged.lock().get(&group).map(|p| {
            let s = p.state();
            (s.start_offset, s.next_offset)
        }))
    }

    fn stage_install(&self, group: GroupId, applied_index: u64) -> Result<()> {
        let d = self.durability.clone();
        // 1. The staged log, durable, as applied through the snapshot's index.
        self.with_staged(group, |p| {
            p.mark_applied(applied_index);
            p.flush(&d)
        })?;
        // 2. The Raft entries whose batches lie in the live log go: the
        //    snapshot supersedes them, and the Raft log is reset to it next.
        let first = self.wal.lock().placed_refs(group).first().map(|&(i, _)| i);
        if let Some(index) = first {
            self.wal_write(|w| {
                w.forget_from(group, index)?;
                w.sync_now()
            })?;
        }
        // 3. The swap, marked so that a crash in it is finished at open.
        let root = self.dir.clone();
        let (m, staged, live) = (
            marker(&root, group),
            staged_dir(&root, group),
            crate::partition_dir(&root, group),
        );
        let parent = root.join("partitions");
        let Some(mut p) = self.staged.lock().remove(&group) else {
            return Err(Error::Invalid(format!("{group}: no staged log")));
        };
        let swap = || -> std::result::Result<(), SegError> {
            fs::write(&m, b"").ctx(|| format!("writing {}", m.display()))?;
            crate::durability::sync_dir(&parent)?;
            weir_core::crash::crash_point("install-marked");
            if let Some(old) = self.partitions.write().remove(&group) {
                // Readers may hold the old log: it goes when they are done.
                let moved = old
                    .lock()
                    .remove_when_dropped(&crate::trash_dir(&root, group));
                moved?;
            }
            fs::rename(&staged, &live)
                .ctx(|| format!("renaming {} to {}", staged.display(), live.display()))?;
            weir_core::crash::crash_point("install-renamed");
            fs::remove_file(&m).ctx(|| format!("removing {}", m.display()))?;
            crate::durability::sync_dir(&parent)
        };
        self.durability.write_result(swap())?;
        p.moved_to(&live);
        self.partitions
            .write()
            .insert(group, Arc::new(Mutex::new(p)));
        Ok(())
    }

    fn stage_drop(&self, group: GroupId) -> Result<()> {
        let Some(p) = self.staged.lock().remove(&group) else {
            return Ok(());
        };
        self.durability.write_result(p.remove())
    }
}
