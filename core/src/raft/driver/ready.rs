//! A Ready's handling (DESIGN.md §3 rule 2): apply the committed entries, write
//! the entries and hard state, hand the write to the writer; and waiting out a
//! full disk, when a step of it meets [`Error::StorageFull`] (issue 15 item 5).

use super::*;

/// A Ready whose handling stopped at a full disk ([`Error::StorageFull`]: the
/// engine wrote nothing of the failed step). It stays outstanding — nothing is
/// stepped, readied or acknowledged past it — and is retried, from the step that
/// failed, until space is freed.
pub(super) struct Unfinished {
    rd: raft::Ready,
    /// Committed entries not applied yet.
    committed: Vec<raft::eraftpb::Entry>,
    /// The last committed index, until the applied entries are reported.
    apply_through: Option<u64>,
    entries_written: bool,
    hard_state_written: bool,
}

impl<S: StateMachine> Driver<S> {
    /// Handles every Ready, the unfinished one first.
    pub(super) fn on_ready(&mut self) -> Result<()> {
        if let Some(u) = self.unfinished.take() {
            self.finish_ready(u)?;
        }
        while self.p.node.has_ready() {
            let mut rd = self.p.node.ready();
            if !rd.messages().is_empty() {
                self.send(rd.take_messages());
            }
            if !rd.snapshot().is_empty() {
                self.install_snapshot(rd.snapshot())?;
            }
            let committed = rd.take_committed_entries();
            let u = Unfinished {
                apply_through: committed.last().map(|e| e.index),
                committed,
                rd,
                entries_written: false,
                hard_state_written: false,
            };
            self.finish_ready(u)?;
        }
        Ok(())
    }

    /// Installs a leader's snapshot (docs/snapshots.md): the state machine takes
    /// its state and checkpoints it, then the Raft log is reset to it. Its index
    /// becomes the applied index once the Ready is persisted.
    fn install_snapshot(&mut self, snap: &raft::eraftpb::Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        self.sm.restore(meta, &snap.data)?;
        self.p.engine.raft_apply_snapshot(self.p.group, meta)?;
        self.p.node.mut_store().forget_through(u64::MAX);
        self.installed_snapshot = Some(meta.index);
        self.counters.snapshots_installed.increment(1);
        Ok(())
    }

    /// Moves the applied index to an installed snapshot's once raft-rs counts it
    /// persisted.
    pub(super) fn apply_installed_snapshot(&mut self) {
        let Some(index) = self.installed_snapshot else {
            return;
        };
        let log = &self.p.node.raft.raft_log;
        if log.persisted >= index && log.committed >= index {
            if log.applied < index {
                self.p.node.advance_apply_to(index);
            }
            self.installed_snapshot = None;
        }
    }

    /// Applies a Ready's committed entries, writes its entries and hard state and
    /// hands it to the writer. At a full disk, keeps it as `unfinished` (returning
    /// the [`Error::StorageFull`]) to be retried from the step that failed.
    fn finish_ready(&mut self, mut u: Unfinished) -> Result<()> {
        if let Err(e) = self.write_ready(&mut u) {
            if matches!(e, Error::StorageFull(_)) {
                self.unfinished = Some(u);
            }
            return Err(e);
        }
        let mut rd = u.rd;
        let req = WriteReq {
            group: self.p.group,
            number: rd.number(),
            must_sync: rd.must_sync(),
            messages: rd.take_persisted_messages(),
            reply: self.tx.clone(),
        };
        self.p.node.advance_append_async(rd);
        if !self.p.writer.submit(req) {
            return Err(Error::Shutdown);
        }
        Ok(())
    }

    /// The steps of a Ready that write, each done once.
    fn write_ready(&mut self, u: &mut Unfinished) -> Result<()> {
        self.apply(&mut u.committed)?;
        if let Some(last) = u.apply_through.take() {
            self.sm.after_apply()?;
            self.p.node.advance_apply_to(last);
            self.p.node.mut_store().forget_through(last);
        }
        if !u.entries_written {
            if !u.rd.entries().is_empty() {
                self.p.engine.raft_append(self.p.group, u.rd.entries())?;
                let bytes: usize = u.rd.entries().iter().map(|e| e.data.len()).sum();
                self.counters.append_bytes.increment(bytes as u64);
                self.p.node.mut_store().remember(u.rd.entries());
            }
            u.entries_written = true;
        }
        if !u.hard_state_written {
            if let Some(hs) = u.rd.hs() {
                self.p.engine.raft_set_hard_state(self.p.group, hs)?;
            }
            u.hard_state_written = true;
        }
        Ok(())
    }

    /// Applies committed entries in order, removing each one applied; an error
    /// leaves the entry that failed and those after it in `entries`.
    fn apply(&mut self, entries: &mut Vec<raft::eraftpb::Entry>) -> Result<()> {
        for i in 0..entries.len() {
            if let Err(e) = self.apply_one(&entries[i]) {
                entries.drain(..i);
                return Err(e);
            }
        }
        entries.clear();
        Ok(())
    }

    fn apply_one(&mut self, e: &raft::eraftpb::Entry) -> Result<()> {
        let mut outcome = Some(
            if e.entry_type == EntryType::EntryNormal && !e.data.is_empty() {
                match self.sm.apply(e.index, e.term, &e.data) {
                    Ok(o) => Ok(o),
                    Err(
                        err @ (Error::Invalid(_)
                        | Error::OutOfOrderSequence(_)
                        | Error::InvalidProducerEpoch(_)),
                    ) => {
                        self.sm.skip(e.index, e.term)?;
                        Err(err)
                    }
                    Err(fatal) => return Err(fatal),
                }
            } else {
                if matches!(
                    e.entry_type,
                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                ) && !e.data.is_empty()
                {
                    self.apply_conf_change(e)?;
                }
                self.sm.skip(e.index, e.term)?;
                Ok(Applied::Command)
            },
        );
        // Everything pending at or below this index is decided now.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > e.index {
                break;
            }
            let (index, p) = entry.remove_entry();
            let decided = match outcome.take() {
                Some(o) if index == e.index && p.term == e.term => o,
                _ => {
                    let hint = self.hint();
                    p.fail(|| Error::NotLeader {
                        group: self.p.group,
                        hint,
                    });
                    continue;
                }
            };
            // Retries of this batch get its offsets when it was stored; any other
            // outcome is theirs too.
            for (r, offsets) in p.retries {
                let answer = match &decided {
                    Ok(Applied::Batch(_)) => Ok(Applied::Batch(offsets)),
                    Ok(Applied::Command) => Ok(Applied::Command),
                    Err(e) => Err(super::propose::retry_error(e, self.p.group)),
                };
                let _ = r.send(answer);
            }
            if let Some(reply) = p.reply {
                let _ = reply.send(decided);
            }
        }
        Ok(())
    }

    /// A write found the disk full: counts the group as waiting (produce on this
    /// node answers KAFKA_STORAGE_ERROR) and answers the proposals waiting here
    /// with that error at once. Their entries may still be committed later (the
    /// outcome is unknown to the client, as after a timeout).
    pub(super) fn began_waiting_for_space(&mut self, why: &str) {
        if self.stalled.is_none() {
            tracing::warn!(
                group = %self.p.group, error = %why,
                "the disk is full: this group's writes wait until space is freed"
            );
            self.stalled = Some(self.p.space.stall());
        }
        for (_, p) in std::mem::take(&mut self.pending) {
            p.fail(|| Error::StorageFull(why.to_string()));
        }
    }

    /// While a Ready waits for space: retries it, backing off up to a second;
    /// meanwhile answers proposals with [`Error::StorageFull`], drops peer
    /// messages (Raft sends them again), holds persistence acknowledgements back
    /// until the Ready is advanced, and stops when told. `Some` to stop.
    pub(super) async fn wait_for_space(&mut self) -> Option<Option<oneshot::Sender<()>>> {
        let mut backoff = Duration::from_millis(20);
        let mut persisted = Vec::new();
        let out = loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {
                    match crate::raft::blocking(|| self.handle_readies()) {
                        Turn::Go => break None,
                        Turn::Full => backoff = (backoff * 2).min(Duration::from_secs(1)),
                        Turn::Stop(stop) => break Some(stop),
                    }
                }
                m = self.rx.recv() => match m {
                    None => break Some(None),
                    Some(GroupMsg::Stop(reply)) => break Some(Some(reply)),
                    Some(GroupMsg::Persisted(number)) => persisted.push(number),
                    Some(GroupMsg::Propose { reply: Some(reply), .. }) => {
                        let _ = reply.send(Err(Error::StorageFull(
                            "this group's writes wait for free space".into(),
                        )));
                    }
                    Some(GroupMsg::Step(m)) => {
                        self.inbox.fetch_sub(peer_bytes(&m), Ordering::Relaxed);
                    }
                    Some(_) => {}
                }
            }
        };
        for number in persisted {
            self.p.node.on_persist_ready(number);
        }
        out
    }
}
