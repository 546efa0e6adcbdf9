//! The engine's settings (`[engine_segment]`) and the rule for what a damaged
//! directory lost: refused, unless the operator accepts the loss.

use serde::{Deserialize, Serialize};

use crate::error::SegError;

/// Tuning of the segment engine (`[engine_segment]` in weir's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Size a partition's segment file is preallocated to; a new segment starts when a
    /// batch no longer fits. Default 64 MiB.
    pub segment_bytes: u64,
    /// Bytes of batches between two entries of the sparse offset index. Default 4 KiB.
    pub index_interval_bytes: u64,
    /// Size after which the Raft write-ahead log starts a new file. Default 64 MiB.
    pub wal_file_bytes: u64,
    /// **Recovery only.** Open a damaged directory anyway, dropping what cannot be
    /// had (logged as errors, one line per loss): partition logs without a Raft
    /// log, and the offsets of missing first segments. Without it such a directory is refused
    /// with `corrupt data: …` naming what is missing. Default false; set it for
    /// one start and remove it.
    pub accept_data_loss: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment_bytes: 64 << 20,
            index_interval_bytes: 4096,
            wal_file_bytes: 64 << 20,
            accept_data_loss: false,
        }
    }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), SegError> {
        if self.segment_bytes < 64 << 10 || self.segment_bytes > 1 << 31 {
            return Err(SegError::Config(format!(
                "[engine_segment] segment_bytes = {} must be between 64 KiB and 2 GiB",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(SegError::Config(
                "[engine_segment] index_interval_bytes must be positive".into(),
            ));
        }
        if self.wal_file_bytes < 64 << 10 {
            return Err(SegError::Config(format!(
                "[engine_segment] wal_file_bytes = {} must be at least 64 KiB",
                self.wal_file_bytes
            )));
        }
        Ok(())
    }
}

/// Refuses what a damaged directory lost, or (with `accept_data_loss`) logs it and
/// goes on.
pub(crate) fn lost(accept: bool, what: String) -> Result<(), SegError> {
    if accept {
        tracing::error!(loss = %what, "accept_data_loss: dropped");
        Ok(())
    } else {
        Err(SegError::Corrupt(format!(
            "{what}. To start anyway and drop it, set accept_data_loss = true in [engine_segment] for one start"
        )))
    }
}
