//! The history checker of the fault tests.
//!
//! A fault test records every client operation: each write (a unique value, and
//! whether it was acknowledged at a partition and offset, failed, or timed out)
//! and every record each consumer read, in the order it read them — including a
//! final drain that reads every partition from the start after the faults heal.
//! [`check`] reports:
//!
//! * acknowledged writes lost (absent from the drain) or moved (read at another
//!   offset than acknowledged) — must be 0;
//! * values read that nobody wrote — must be 0;
//! * one offset read with two different values — must be 0;
//! * gaps or backward steps within one consumer's reads of a partition — must be 0;
//! * timed-out or failed writes that later appeared (allowed, reported);
//! * values stored at more than one offset (duplicates, reported).

use std::collections::{BTreeMap, HashMap, HashSet};

/// How a write ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Acknowledged at this partition and offset.
    Ok {
        /// The partition.
        partition: i32,
        /// The acknowledged offset.
        offset: i64,
    },
    /// The broker answered with an error: it did not take the write (it may still
    /// appear if the error was ambiguous; reported, not counted as an anomaly).
    Failed,
    /// No answer in time: it may or may not have been taken.
    TimedOut,
}

/// One write: a unique value and its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The value (unique across the whole run).
    pub value: u64,
    /// What the client saw.
    pub outcome: WriteOutcome,
}

/// One record a consumer read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// Which consumer (a consumer reads each partition sequentially).
    pub consumer: u32,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The value.
    pub value: u64,
}

/// A recorded run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every write, in any order.
    pub writes: Vec<Write>,
    /// Every read, in the order each consumer made them (consumers interleaved).
    pub reads: Vec<Read>,
    /// The consumer id of the final drain, whose reads decide what is stored.
    pub drain: u32,
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Acknowledged values missing from the drain.
    pub lost: Vec<u64>,
    /// Acknowledged values the drain holds at another offset: (value, acked, stored).
    pub moved: Vec<(u64, i64, i64)>,
    /// Values read that no write carried: (partition, offset, value).
    pub unexpected: Vec<(i32, i64, u64)>,
    /// Offsets read with two different values: (partition, offset, first, second).
    pub inconsistent: Vec<(i32, i64, u64, u64)>,
    /// A consumer skipped offsets: (consumer, partition, previous, next).
    pub gaps: Vec<(u32, i32, i64, i64)>,
    /// A consumer went back: (consumer, partition, previous, next).
    pub backwards: Vec<(u32, i32, i64, i64)>,
    /// Timed-out or failed writes that were read anyway.
    pub unacknowledged_appeared: usize,
    /// Values stored at more than one offset.
    pub duplicates: Vec<u64>,
}

impl Report {
    /// Whether the run kept every promise (duplicates and unacknowledged writes
    /// that appeared are allowed).
    pub fn is_valid(&self) -> bool {
        self.lost.is_empty()
            && self.moved.is_empty()
            && self.unexpected.is_empty()
            && self.inconsistent.is_empty()
            && self.gaps.is_empty()
            && self.backwards.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acknowledged {}, lost {}, moved {}, unexpected {}, inconsistent {}, gaps {}, backwards {}, unacknowledged that appeared {}, duplicates {}",
            self.acknowledged,
            self.lost.len(),
            self.moved.len(),
            self.unexpected.len(),
            self.inconsistent.len(),
            self.gaps.len(),
            self.backwards.len(),
            self.unacknowledged_appeared,
            self.duplicates.len()
        )
    }
}

/// Checks a history; see the [module docs](self).
pub fn check(h: &History) -> Report {
    let mut r = Report::default();
    let written: HashMap<u64, WriteOutcome> =
        h.writes.iter().map(|w| (w.value, w.outcome)).collect();
    // Every (partition, offset) → the value first read there.
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut reported_inconsistent: HashSet<(i32, i64)> = HashSet::new();
    let mut last: HashMap<(u32, i32), i64> = HashMap::new();
    let mut seen_values: HashSet<u64> = HashSet::new();
    for rd in &h.reads {
        if !written.contains_key(&rd.value) {
            r.unexpected.push((rd.partition, rd.offset, rd.value));
        }
        match at.get(&(rd.partition, rd.offset)) {
            Some(&v) if v != rd.value => {
                if reported_inconsistent.insert((rd.partition, rd.offset)) {
                    r.inconsistent.push((rd.partition, rd.offset, v, rd.value));
                }
            }
            Some(_) => {}
            None => {
                at.insert((rd.partition, rd.offset), rd.value);
            }
        }
        if let Some(&prev) = last.get(&(rd.consumer, rd.partition)) {
            if rd.offset <= prev {
                r.backwards
                    .push((rd.consumer, rd.partition, prev, rd.offset));
            } else if rd.offset > prev + 1 {
                r.gaps.push((rd.consumer, rd.partition, prev, rd.offset));
            }
        }
        last.insert((rd.consumer, rd.partition), rd.offset);
        seen_values.insert(rd.value);
    }
    // What the drain says is stored.
    let mut stored: HashMap<u64, Vec<(i32, i64)>> = HashMap::new();
    for rd in h.reads.iter().filter(|rd| rd.consumer == h.drain) {
        stored
            .entry(rd.value)
            .or_default()
            .push((rd.partition, rd.offset));
    }
    for (v, places) in &stored {
        if places.len() > 1 {
            r.duplicates.push(*v);
        }
    }
    r.duplicates.sort_unstable();
    for w in &h.writes {
        match w.outcome {
            WriteOutcome::Ok { partition, offset } => {
                r.acknowledged += 1;
                match stored.get(&w.value) {
                    None => r.lost.push(w.value),
                    Some(places) if !places.contains(&(partition, offset)) => {
                        r.moved.push((w.value, offset, places[0].1));
                    }
                    Some(_) => {}
                }
            }
            WriteOutcome::Failed | WriteOutcome::TimedOut => {
                if seen_values.contains(&w.value) {
                    r.unacknowledged_appeared += 1;
                }
            }
        }
    }
    r.lost.sort_unstable();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAIN: u32 = 99;

    fn ok(value: u64, offset: i64) -> Write {
        Write {
            value,
            outcome: WriteOutcome::Ok {
                partition: 0,
                offset,
            },
        }
    }

    fn read(consumer: u32, offset: i64, value: u64) -> Read {
        Read {
            consumer,
            partition: 0,
            offset,
            value,
        }
    }

    /// Values 0..n acknowledged at offsets 0..n, read by consumer 1 and the drain.
    fn clean(n: u64) -> History {
        History {
            writes: (0..n).map(|v| ok(v, v as i64)).collect(),
            reads: (0..n)
                .map(|v| read(1, v as i64, v))
                .chain((0..n).map(|v| read(DRAIN, v as i64, v)))
                .collect(),
            drain: DRAIN,
        }
    }

    #[test]
    fn a_clean_history_is_valid() {
        let r = check(&clean(10));
        assert!(r.is_valid(), "{r}");
        assert_eq!(r.acknowledged, 10);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let mut h = clean(10);
        h.reads
            .retain(|rd| !(rd.consumer == DRAIN && rd.value == 7));
        let r = check(&h);
        assert_eq!(r.lost, vec![7]);
        assert!(!r.is_valid());
    }

    #[test]
    fn a_moved_acknowledged_write_is_caught() {
        let mut h = clean(3);
        h.writes[2] = ok(2, 5);
        let r = check(&h);
        assert_eq!(r.moved, vec![(2, 5, 2)]);
        assert!(!r.is_valid());
    }

    #[test]
    fn a_value_nobody_wrote_is_caught() {
        let mut h = clean(3);
        h.reads.push(read(1, 3, 1234));
        let r = check(&h);
        assert_eq!(r.unexpected, vec![(0, 3, 1234)]);
        assert!(!r.is_valid());
    }

    #[test]
    fn one_offset_with_two_values_is_caught() {
        let mut h = clean(3);
        h.writes.push(Write {
            value: 50,
            outcome: WriteOutcome::TimedOut,
        });
        // Consumer 2 read offset 1 holding another (written) value.
        h.reads.push(read(2, 1, 50));
        let r = check(&h);
        assert_eq!(r.inconsistent, vec![(0, 1, 1, 50)]);
        assert!(!r.is_valid());
    }

    #[test]
    fn gaps_and_backward_steps_are_caught() {
        let mut h = clean(6);
        h.reads.retain(|rd| !(rd.consumer == 1 && rd.offset == 3));
        h.reads.push(read(1, 2, 2));
        let r = check(&h);
        assert_eq!(r.gaps, vec![(1, 0, 2, 4)]);
        assert_eq!(r.backwards, vec![(1, 0, 5, 2)]);
        assert!(!r.is_valid());
    }

    #[test]
    fn timed_out_writes_that_appear_and_duplicates_are_reported_not_failed() {
        let mut h = clean(3);
        h.writes.push(Write {
            value: 10,
            outcome: WriteOutcome::TimedOut,
        });
        h.writes.push(Write {
            value: 11,
            outcome: WriteOutcome::Failed,
        });
        h.reads.push(read(DRAIN, 3, 10));
        h.reads.push(read(DRAIN, 4, 10));
        let r = check(&h);
        assert_eq!(r.unacknowledged_appeared, 1);
        assert_eq!(r.duplicates, vec![10]);
        assert!(r.is_valid(), "{r}");
    }
}
