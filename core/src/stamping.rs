//! The leader's view of a data partition's uncommitted tail (docs/write-path.md):
//! the offset after the last batch in its own log, which it stamps on each batch
//! it proposes, and the idempotent batches it has appended but not applied, which
//! a produce is checked against before it becomes an entry.
//!
//! Every replica stores a stamped entry at the offsets it carries: apply checks
//! that they continue the partition log and copies nothing else into them. Only
//! the leader decides, and it decides before proposing, so a duplicate or an out
//! of order batch never becomes an entry.
//!
//! Entries written before stamping existed (tag [`TAG_PRODUCE`]) still take their
//! offsets at apply, where a duplicate can be refused; while one of them is in the
//! leader's tail, the offsets after it are not known, so the leader proposes
//! unstamped entries too until every such entry is applied.
//!
//! [`TAG_PRODUCE`]: crate::entry::TAG_PRODUCE

use std::collections::{BTreeMap, BTreeSet, HashMap};

use raft::eraftpb::Entry;

use crate::batch::BatchHeader;
use crate::engine::Appended;
use crate::entry::{PartitionEntry, TAG_PRODUCE_STAMPED, decode_partition};
use crate::error::{Error, Result};
use crate::ids::GroupId;
use crate::producers::{CachedBatch, ProducerStates, Verdict};

/// Where a proposal would go: the leader's term, the index its entry would
/// take, and the last applied index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProposeAt {
    pub(crate) term: u64,
    pub(crate) index: u64,
    pub(crate) applied: u64,
}

/// What the leader does with a produce, decided before proposing.
#[derive(Debug)]
pub(crate) enum Stamp {
    /// Propose it (stamped, or as it is while unstamped entries are in flight).
    Propose,
    /// It repeats a batch already applied: answer these offsets.
    Applied(Appended),
    /// It repeats a batch still in flight, entry `index` of `term`: answer these
    /// offsets once that entry is applied.
    InFlight {
        index: u64,
        term: u64,
        offsets: Appended,
    },
    /// Refuse it (a sequence gap, an old epoch, an undecodable entry).
    Refuse(Error),
}

/// A stamped batch appended by the leader and not applied yet.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// Its entry's term.
    term: u64,
    /// Its record count.
    records: i64,
    /// For an idempotent producer's batch: the producer, its epoch and the
    /// batch as its state remembers it.
    producer: Option<(i64, i16, CachedBatch)>,
}

/// The leader's view in one term. The offset it stamps next is the
/// partition's next offset as applied plus the records of the stamped batches
/// in flight, so that it follows the partition log whatever happens to entries
/// it did not propose.
#[derive(Debug)]
pub(crate) struct LeaderView {
    group: GroupId,
    term: u64,
    /// The partition's next offset as applied.
    applied_next: i64,
    /// Stamped batches in flight, by index.
    in_flight: BTreeMap<u64, InFlight>,
    /// Their records.
    in_flight_records: i64,
    /// The indexes of the idempotent ones, by producer.
    by_producer: HashMap<i64, BTreeSet<u64>>,
    /// The last index of an unstamped produce entry not yet applied (0: none).
    unstamped_through: u64,
    /// The last index of the leader's log accounted for.
    seen: u64,
}

/// Entries of the leader's log from an index on.
pub(crate) type EntriesFrom<'a> = &'a dyn Fn(u64) -> Vec<Entry>;

impl LeaderView {
    /// The view of a leader in `term`, the partition's next offset being
    /// `applied_next` after the applied index `applied`. The entries after it
    /// are read at the first [`LeaderView::stamp`].
    pub(crate) fn new(group: GroupId, term: u64, applied_next: i64, applied: u64) -> LeaderView {
        LeaderView {
            group,
            term,
            applied_next,
            in_flight: BTreeMap::new(),
            in_flight_records: 0,
            by_producer: HashMap::new(),
            unstamped_through: 0,
            seen: applied,
        }
    }

    /// The offset the next stamped batch takes.
    fn next_offset(&self) -> i64 {
        self.applied_next + self.in_flight_records
    }

    /// Accounts for the entries of the leader's log after the applied index
    /// `applied`, through `through`, that it has not seen: those of earlier
    /// leaders, the empty entry of its term, compaction commands, proposals
    /// forwarded by followers. (Entries up to the applied index are accounted
    /// for by [`LeaderView::applied`], and may be compacted away.)
    fn catch_up(&mut self, applied: u64, through: u64, entries: EntriesFrom<'_>) -> Result<()> {
        self.seen = self.seen.max(applied);
        if through <= self.seen {
            return Ok(());
        }
        for e in entries(self.seen + 1) {
            if e.index > through {
                break;
            }
            if !e.data.is_empty() {
                match decode_partition(&e.data) {
                    Ok(PartitionEntry::Produce(_)) => self.unstamped_through = e.index,
                    Ok(PartitionEntry::Stamped(batch)) => {
                        let h = BatchHeader::parse(batch)?;
                        self.appended(e.index, e.term, &h);
                    }
                    // Compaction commands, and entries every replica refuses.
                    _ => {}
                }
            }
            self.seen = e.index;
        }
        if self.seen < through {
            // Not readable now (it should be): the client tries again.
            tracing::warn!(
                group = %self.group, seen = self.seen, through,
                "the leader could not read its own log's tail"
            );
            return Err(Error::NotLeader {
                group: self.group,
                hint: None,
            });
        }
        Ok(())
    }

    /// The term this view is of.
    pub(crate) fn term(&self) -> u64 {
        self.term
    }

    /// Decides what to do with produce entry `data` (tag and batch) that would
    /// become entry `at.index`; stamps its offsets and leader epoch when it is
    /// to be proposed. `applied` is the partition's producer state as applied;
    /// `entries` reads the leader's log.
    pub(crate) fn stamp(
        &mut self,
        data: &mut [u8],
        at: ProposeAt,
        applied: &ProducerStates,
        dedup: bool,
        entries: EntriesFrom<'_>,
    ) -> Stamp {
        if let Err(e) = self.catch_up(at.applied, at.index - 1, entries) {
            return Stamp::Refuse(e);
        }
        match decode_partition(data) {
            Ok(PartitionEntry::Produce(_)) => {}
            // Not a produce (a command proposed as one): as it is.
            _ => {
                self.seen = at.index;
                return Stamp::Propose;
            }
        }
        if self.unstamped_through > at.applied {
            // Offsets after an unstamped entry are decided at its apply.
            self.unstamped_through = at.index;
            self.seen = at.index;
            return Stamp::Propose;
        }
        let h = match BatchHeader::parse(&data[1..]) {
            Ok(h) => h,
            Err(e) => return Stamp::Refuse(e),
        };
        if h.producer_id >= 0 && dedup {
            match self.check(&h, applied) {
                Ok(None) => {}
                Ok(Some(s)) => return s,
                Err(e) => return Stamp::Refuse(e),
            }
        }
        data[0] = TAG_PRODUCE_STAMPED;
        data[1..9].copy_from_slice(&self.next_offset().to_be_bytes());
        let epoch = i32::try_from(at.term).unwrap_or(i32::MAX);
        data[13..17].copy_from_slice(&epoch.to_be_bytes());
        self.appended(at.index, at.term, &h);
        self.seen = at.index;
        Stamp::Propose
    }

    /// Checks an idempotent batch against the producer's applied state and its
    /// batches in flight: `None` to append it.
    fn check(&self, h: &BatchHeader, applied: &ProducerStates) -> Result<Option<Stamp>> {
        let pid = h.producer_id;
        let mut state = ProducerStates::default();
        if let Some(e) = applied.producers.get(&pid) {
            state.producers.insert(pid, e.clone());
        }
        let mine: Vec<(u64, u64, i16, CachedBatch)> = self
            .by_producer
            .get(&pid)
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let f = self.in_flight.get(i)?;
                f.producer
                    .map(|(_, epoch, batch)| (*i, f.term, epoch, batch))
            })
            .collect();
        for &(_, _, epoch, batch) in &mine {
            state.record(pid, epoch, batch);
        }
        let Verdict::Duplicate {
            base_offset,
            last_offset,
        } = state.check_batch(h)?
        else {
            return Ok(None);
        };
        let offsets = Appended {
            base_offset,
            last_offset,
        };
        let original = mine.iter().find(|m| m.3.base_offset == base_offset);
        Ok(Some(match original {
            Some(&(index, term, _, _)) => Stamp::InFlight {
                index,
                term,
                offsets,
            },
            None => Stamp::Applied(offsets),
        }))
    }

    /// Counts a stamped batch at `index` as in the log, at the view's next
    /// offset (where apply will store it: the offsets it carries are the same
    /// unless the partition log lost records, see [`PartitionMachine`]).
    ///
    /// [`PartitionMachine`]: crate::partition::PartitionMachine
    fn appended(&mut self, index: u64, term: u64, h: &BatchHeader) {
        let records = i64::from(h.record_count.max(1));
        let base_offset = self.next_offset();
        let producer = (h.producer_id >= 0).then(|| {
            self.by_producer
                .entry(h.producer_id)
                .or_default()
                .insert(index);
            let batch = CachedBatch::of(h, base_offset, base_offset + records - 1);
            (h.producer_id, h.producer_epoch, batch)
        });
        self.in_flight.insert(
            index,
            InFlight {
                term,
                records,
                producer,
            },
        );
        self.in_flight_records += records;
    }

    /// Entries through `index` are applied; the partition's next offset is
    /// `applied_next` there.
    pub(crate) fn applied(&mut self, index: u64, applied_next: i64) {
        self.applied_next = applied_next;
        while let Some(e) = self.in_flight.first_entry() {
            if *e.key() > index {
                break;
            }
            let (i, f) = e.remove_entry();
            self.forget(i, f);
        }
        if self.unstamped_through <= index {
            self.unstamped_through = 0;
        }
    }

    /// The proposal for `index` was dropped by Raft: it is not in flight.
    pub(crate) fn dropped(&mut self, index: u64) {
        if let Some(f) = self.in_flight.remove(&index) {
            self.forget(index, f);
        }
        self.seen = self.seen.min(index - 1);
    }

    /// Stops counting batch `f` at `index` (removed from `in_flight`).
    fn forget(&mut self, index: u64, f: InFlight) {
        self.in_flight_records -= f.records;
        let Some((producer_id, _, _)) = f.producer else {
            return;
        };
        if let Some(s) = self.by_producer.get_mut(&producer_id) {
            s.remove(&index);
            if s.is_empty() {
                self.by_producer.remove(&producer_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, set_producer};
    use crate::entry::{TAG_PRODUCE, encode_produce};

    fn batch(records: usize, producer: Option<(i64, i32)>) -> Vec<u8> {
        let mut b = BatchBuilder::new(0);
        for i in 0..records {
            b = b.record(None, Some(format!("v{i}").as_bytes()));
        }
        let mut b = b.build();
        if let Some((pid, seq)) = producer {
            set_producer(&mut b, pid, 0, seq);
        }
        encode_produce(&b)
    }

    fn entry(index: u64, term: u64, data: Vec<u8>) -> Entry {
        Entry {
            index,
            term,
            data: data.into(),
            ..Entry::default()
        }
    }

    fn at(index: u64, applied: u64) -> ProposeAt {
        ProposeAt {
            term: 2,
            index,
            applied,
        }
    }

    fn offset_of(data: &[u8]) -> i64 {
        BatchHeader::parse(&data[1..]).unwrap().base_offset
    }

    const NONE: EntriesFrom<'static> = &|_| Vec::new();

    #[test]
    fn batches_are_stamped_with_consecutive_offsets_and_the_leaders_term() {
        let mut v = LeaderView::new(GroupId(1), 2, 10, 4);
        let applied = ProducerStates::default();
        for (index, want) in [(5, 10), (6, 13)] {
            let mut d = batch(3, None);
            assert!(matches!(
                v.stamp(&mut d, at(index, 4), &applied, true, NONE),
                Stamp::Propose
            ));
            assert_eq!(d[0], TAG_PRODUCE_STAMPED);
            let h = BatchHeader::parse(&d[1..]).unwrap();
            assert_eq!((h.base_offset, h.leader_epoch), (want, 2));
        }
        // Raft dropped the last proposal: its offsets are given again.
        v.dropped(6);
        let mut d = batch(1, None);
        v.stamp(&mut d, at(6, 4), &applied, true, NONE);
        assert_eq!(offset_of(&d), 13);
    }

    #[test]
    fn retries_in_flight_wait_for_their_first_copy_and_gaps_are_refused() {
        let mut v = LeaderView::new(GroupId(1), 2, 0, 0);
        let mut applied = ProducerStates::default();
        let mut first = batch(3, Some((7, 0)));
        assert!(matches!(
            v.stamp(&mut first, at(1, 0), &applied, true, NONE),
            Stamp::Propose
        ));
        let want = Appended {
            base_offset: 0,
            last_offset: 2,
        };
        match v.stamp(&mut batch(3, Some((7, 0))), at(2, 0), &applied, true, NONE) {
            Stamp::InFlight {
                index: 1,
                term: 2,
                offsets,
            } => assert_eq!(offsets, want),
            other => panic!("{other:?}"),
        }
        // The next batch follows the one in flight; a gap is refused.
        assert!(matches!(
            v.stamp(&mut batch(1, Some((7, 9))), at(2, 0), &applied, true, NONE),
            Stamp::Refuse(Error::OutOfOrderSequence(_))
        ));
        let mut next = batch(1, Some((7, 3)));
        assert!(matches!(
            v.stamp(&mut next, at(2, 0), &applied, true, NONE),
            Stamp::Propose
        ));
        assert_eq!(offset_of(&next), 3);
        // Once the first is applied, a retry of it is answered at once.
        applied.record(
            7,
            0,
            CachedBatch {
                first_seq: 0,
                last_seq: 2,
                base_offset: 0,
                last_offset: 2,
                max_timestamp: 0,
            },
        );
        v.applied(1, 3);
        match v.stamp(&mut batch(3, Some((7, 0))), at(3, 1), &applied, true, NONE) {
            Stamp::Applied(offsets) => assert_eq!(offsets, want),
            other => panic!("{other:?}"),
        }
        // Without dedup (the negative control) everything is stamped.
        assert!(matches!(
            v.stamp(&mut batch(3, Some((7, 0))), at(3, 1), &applied, false, NONE),
            Stamp::Propose
        ));
    }

    #[test]
    fn an_inherited_tail_is_counted() {
        // Applied through 2 (next offset 5); the log holds a stamped batch of an
        // earlier term at 3 (2 records, producer 7), then this term's empty entry.
        let mut stamped = batch(2, Some((7, 0)));
        stamped[0] = TAG_PRODUCE_STAMPED;
        let tail = [entry(3, 1, stamped), entry(4, 2, Vec::new())];
        let entries = move |from: u64| tail.iter().filter(|e| e.index >= from).cloned().collect();
        let mut v = LeaderView::new(GroupId(1), 2, 5, 2);
        let applied = ProducerStates::default();
        // A retry of the inherited batch waits for it; the next batch follows it.
        assert!(matches!(
            v.stamp(
                &mut batch(2, Some((7, 0))),
                at(5, 2),
                &applied,
                true,
                &entries
            ),
            Stamp::InFlight {
                index: 3,
                term: 1,
                ..
            }
        ));
        let mut d = batch(1, Some((7, 2)));
        assert!(matches!(
            v.stamp(&mut d, at(5, 2), &applied, true, &entries),
            Stamp::Propose
        ));
        assert_eq!(offset_of(&d), 7);
    }

    #[test]
    fn unstamped_entries_in_flight_hold_stamping_back() {
        // Applied through 2 (next offset 5); an unstamped batch at 3, whose
        // offsets (and whether it is a duplicate) are decided at its apply.
        let tail = [entry(3, 1, batch(1, None)), entry(4, 2, Vec::new())];
        let entries = move |from: u64| tail.iter().filter(|e| e.index >= from).cloned().collect();
        let mut v = LeaderView::new(GroupId(1), 2, 5, 2);
        let applied = ProducerStates::default();
        let mut d = batch(1, None);
        assert!(matches!(
            v.stamp(&mut d, at(5, 2), &applied, true, &entries),
            Stamp::Propose
        ));
        assert_eq!(d[0], TAG_PRODUCE);
        // Once both are applied, stamping resumes at the partition's next offset.
        v.applied(5, 7);
        let mut d = batch(1, None);
        v.stamp(&mut d, at(6, 5), &applied, true, &entries);
        assert_eq!((d[0], offset_of(&d)), (TAG_PRODUCE_STAMPED, 7));
    }

    #[test]
    fn entries_compacted_away_after_they_were_applied_are_not_read() {
        // The leader stamped at 3; then entries 4..=10 (compaction commands, not
        // proposed through the view) were appended, applied and compacted away.
        let mut v = LeaderView::new(GroupId(1), 2, 0, 2);
        let applied = ProducerStates::default();
        let mut d = batch(2, None);
        v.stamp(&mut d, at(3, 2), &applied, true, NONE);
        v.applied(10, 2);
        let tail = [entry(11, 2, Vec::new())];
        // Reading below the first index fails, as a compacted log does.
        let entries = move |from: u64| {
            if from < 11 {
                Vec::new()
            } else {
                tail.iter().filter(|e| e.index >= from).cloned().collect()
            }
        };
        let mut d = batch(1, None);
        assert!(matches!(
            v.stamp(&mut d, at(12, 10), &applied, true, &entries),
            Stamp::Propose
        ));
        assert_eq!(offset_of(&d), 2);
    }
}
