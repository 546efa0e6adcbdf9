//! Cleaned segments ([`CompactionStore`], docs/compaction.md): the cleaner
//! rewrites sealed segments; each cleaned copy is written beside its segment
//! and renamed over it under the partition's lock, only if the segment is
//! still as listed.

use std::sync::Arc;

use parking_lot::Mutex;
use weir_core::compaction::{CleanUnit, check_replacement};
use weir_core::{CompactionStore, Error, GroupId, Offset, Result};

use crate::SegmentEngine;
use crate::error::SegError;
use crate::partition::Partition;
use crate::segment::CleanedFile;

/// A segment being cleaned.
#[derive(Debug)]
pub(crate) struct Cleaning {
    unit: CleanUnit,
    /// Where the last batch added ended.
    after: Offset,
    /// The partition log it belongs to (a log installed or recreated since is
    /// another one).
    log: Arc<Mutex<Partition>>,
    file: CleanedFile,
}

impl CompactionStore for SegmentEngine {
    fn log_clean_units(&self, group: GroupId) -> Result<Vec<CleanUnit>> {
        // Batches that Raft entries still refer to stay as they are.
        let keep_from = self.wal.lock().first_placed(group).unwrap_or(Offset::MAX);
        Ok(self
            .partition(group)
            .map(|p| p.lock().clean_units(keep_from))
            .unwrap_or_default())
    }

    fn clean_begin(&self, group: GroupId, unit: &CleanUnit) -> Result<()> {
        self.durability.check()?;
        if let Some(old) = self.cleaning.lock().remove(&group) {
            old.file.discard();
        }
        let log = self
            .partition(group)
            .ok_or_else(|| Error::Invalid(format!("{group}: no partition log to clean")))?;
        let dir = log.lock().dir().to_path_buf();
        let file = CleanedFile::create(&dir, unit.base, unit.next).map_err(Error::from)?;
        self.cleaning.lock().insert(
            group,
            Cleaning {
                unit: *unit,
                after: unit.base,
                log,
                file,
            },
        );
        Ok(())
    }

    fn clean_append(&self, group: GroupId, batches: &[u8]) -> Result<()> {
        let mut cleaning = self.cleaning.lock();
        let c = cleaning
            .get_mut(&group)
            .ok_or_else(|| Error::Invalid(format!("{group}: no unit is being cleaned")))?;
        let (checked, after) = check_replacement(group, &c.unit, c.after, batches)?;
        for (_, bytes) in checked {
            let h = weir_core::batch::BatchHeader::parse(bytes)?;
            c.file.append(&h, bytes).map_err(Error::from)?;
        }
        c.after = after;
        Ok(())
    }

    fn clean_commit(&self, group: GroupId) -> Result<bool> {
        self.durability.check()?;
        let Some(c) = self.cleaning.lock().remove(&group) else {
            return Ok(false);
        };
        let current = self.partition(group);
        if !current.is_some_and(|p| Arc::ptr_eq(&p, &c.log)) {
            c.file.discard();
            return Ok(false);
        }
        // The copy is synced before the partition is locked, so that appends
        // wait only for the swap.
        let marks = c.log.lock().marks();
        if let Err(e) = c.file.finish(marks, &self.durability) {
            c.file.discard();
            return self.durability.write_result(Err::<bool, SegError>(e));
        }
        let mut p = c.log.lock();
        self.durability
            .write_result(p.replace_segment(&c.unit, c.file))
    }
}
