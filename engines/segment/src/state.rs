//! State checkpoints: one file per group, `states/<group>.state`, replaced by
//! writing a temporary file, syncing it, renaming it over the old one and syncing
//! the directory. A crash leaves the old file or the new one, whole; a temporary
//! file left behind is deleted at open.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use weir_core::GroupId;

use crate::durability::{Durability, sync_dir};
use crate::error::{IoContext, SegError, full_or_io};

const SUFFIX: &str = ".state";
const TMP_SUFFIX: &str = ".state.tmp";

/// The engine's checkpoint directory.
#[derive(Debug)]
pub(crate) struct StateFiles {
    dir: PathBuf,
}

impl StateFiles {
    /// Opens (creating) `root/states`, deleting temporary files a crash left.
    pub(crate) fn open(root: &Path) -> Result<StateFiles, SegError> {
        let dir = root.join("states");
        fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        for entry in fs::read_dir(&dir).ctx(|| format!("listing {}", dir.display()))? {
            let path = entry.ctx(|| format!("listing {}", dir.display()))?.path();
            if path.to_string_lossy().ends_with(TMP_SUFFIX) {
                fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(StateFiles { dir })
    }

    fn path(&self, g: GroupId, suffix: &str) -> PathBuf {
        self.dir.join(format!("{:020}{suffix}", g.0))
    }

    /// Replaces `g`'s checkpoint; durable on return. A full disk leaves the old
    /// one and answers [`SegError::Full`].
    pub(crate) fn put(&self, g: GroupId, blob: &[u8], d: &Durability) -> Result<(), SegError> {
        let tmp = self.path(g, TMP_SUFFIX);
        let what = || format!("writing {}", tmp.display());
        let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(blob).map(|()| f));
        let f = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(full_or_io(what(), e));
            }
        };
        d.sync_file(&f, what)?;
        let path = self.path(g, SUFFIX);
        fs::rename(&tmp, &path).ctx(|| format!("renaming {} into place", tmp.display()))?;
        sync_dir(&self.dir)
    }

    /// `g`'s checkpoint, if any.
    pub(crate) fn get(&self, g: GroupId) -> Result<Option<Bytes>, SegError> {
        let path = self.path(g, SUFFIX);
        match fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SegError::Io(format!("reading {}", path.display()), e)),
        }
    }

    /// Removes `g`'s checkpoint; durable on return.
    pub(crate) fn remove(&self, g: GroupId) -> Result<(), SegError> {
        let path = self.path(g, SUFFIX);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SegError::Io(format!("removing {}", path.display()), e)),
        }
    }
}
