//! Which replicas are in sync, in Kafka's sense (`replica.lag.time.max.ms`): a
//! replica is in sync while the last time it had everything the leader had is
//! at most the lag limit ago — not while it is within some count of entries,
//! which could be gigabytes, nor while it is dead.
//!
//! The leader samples its last index when it grows. A replica that has matched
//! index `m` had everything the leader had up to the moment the leader's last
//! index first went past `m`: that moment is when it was last caught up (now,
//! if the leader has nothing past `m`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The leader's last index over the recent past.
#[derive(Debug, Default)]
pub(super) struct CatchUp {
    /// (when, last index from then on), oldest first, indexes increasing.
    samples: VecDeque<(Instant, u64)>,
    /// The largest index of a sample dropped for being older than the limit.
    dropped_max: u64,
}

impl CatchUp {
    /// Forgets everything (a new term: another leader's log).
    pub(super) fn reset(&mut self) {
        self.samples.clear();
        self.dropped_max = 0;
    }

    /// Notes the leader's last index at `now`, keeping what `lag_max` needs.
    pub(super) fn note(&mut self, now: Instant, last_index: u64, lag_max: Duration) {
        if self.samples.back().is_none_or(|&(_, l)| last_index > l) {
            self.samples.push_back((now, last_index));
        }
        // A sample is needed while the one after it (the end of its span) is
        // within the limit.
        while self
            .samples
            .get(1)
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > lag_max)
        {
            if let Some((_, l)) = self.samples.pop_front() {
                self.dropped_max = self.dropped_max.max(l);
            }
        }
    }

    /// Whether a replica that has matched `matched` was caught up within
    /// `lag_max` of `now`.
    pub(super) fn in_sync(&self, now: Instant, matched: u64, lag_max: Duration) -> bool {
        // The leader's log went past `matched` at a dropped sample: longer ago
        // than the limit.
        if self.dropped_max > matched {
            return false;
        }
        let first_past = self.samples.partition_point(|&(_, l)| l <= matched);
        match self.samples.get(first_past) {
            None => true,
            Some(&(since, _)) => now.saturating_duration_since(since) <= lag_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_secs(30);

    #[test]
    fn a_replica_that_keeps_up_stays_in_sync_while_one_left_behind_drops_out() {
        let t0 = Instant::now();
        let mut c = CatchUp::default();
        // The leader appends one entry per second for two minutes.
        for s in 0..120u64 {
            c.note(t0 + Duration::from_secs(s), 10 + s, LAG);
        }
        let now = t0 + Duration::from_secs(119);
        assert!(c.in_sync(now, 129, LAG), "has everything");
        assert!(c.in_sync(now, 125, LAG), "4 s behind");
        assert!(
            c.in_sync(now, 10 + 89, LAG),
            "caught up until 90 s: 29 s ago"
        );
        assert!(
            !c.in_sync(now, 10 + 80, LAG),
            "caught up until 81 s: 38 s ago"
        );
        assert!(!c.in_sync(now, 5, LAG), "behind since before every sample");
    }

    #[test]
    fn an_idle_leader_keeps_caught_up_replicas_in_sync_forever() {
        let t0 = Instant::now();
        let mut c = CatchUp::default();
        c.note(t0, 50, LAG);
        let later = t0 + Duration::from_secs(3600);
        c.note(later, 50, LAG);
        assert!(c.in_sync(later, 50, LAG));
        assert!(
            !c.in_sync(later, 49, LAG),
            "one entry short for an hour is out of sync"
        );
        assert!(c.in_sync(t0 + Duration::from_secs(20), 49, LAG));
    }

    #[test]
    fn reset_forgets_the_old_terms_log() {
        let t0 = Instant::now();
        let mut c = CatchUp::default();
        for s in 0..100u64 {
            c.note(t0 + Duration::from_secs(s), s, LAG);
        }
        c.reset();
        let now = t0 + Duration::from_secs(100);
        c.note(now, 100, LAG);
        assert!(
            c.in_sync(now, 40, LAG),
            "just became leader: no history yet"
        );
    }
}
