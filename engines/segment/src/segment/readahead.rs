//! How much a log file's map reads: no more than it is asked for.

use super::*;

impl Mapped {
    /// A log file's map reads no more than it is asked to: a fault reads its own
    /// page (`MADV_RANDOM`), and reads ask for the ranges they are about to
    /// copy ([`Mapped::will_need`]). The kernel's read-around would otherwise
    /// read up to `read_ahead_kb` on each side of a fault — into the
    /// preallocated hole past the last batch too, whose pages it allocates and
    /// zeroes: 4–8 MiB per partition on a restart (2.5 GB with 1,000
    /// partitions), most of the time a restart took.
    pub(super) fn without_readahead(mut self) -> Self {
        self.no_readahead();
        self
    }

    pub(super) fn no_readahead(&mut self) {
        if let Err(e) = self.map.advise(memmap2::Advice::Random) {
            tracing::debug!(path = %self.path.display(), error = %e, "madvise(MADV_RANDOM) failed");
        }
    }

    /// Starts reading `from..to` of the file into the page cache (best effort).
    pub(super) fn will_need(&self, from: u64, to: u64) {
        let to = to.min(self.map.len() as u64);
        if from < to {
            let _ = self.map.advise_range(
                memmap2::Advice::WillNeed,
                from as usize,
                (to - from) as usize,
            );
        }
    }
}
