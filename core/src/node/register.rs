//! Registration: keeps this node's entries in metadata current. This loop is the one
//! path by which leadership reaches metadata: a replica that becomes leader wakes it,
//! and it also repeats announcements that were lost (e.g. while group 0 had no leader).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::Notify;

use super::Inner;
use crate::entry::encode_meta;
use crate::ids::GroupId;
use crate::metadata::MetaCommand;
use crate::raft::driver::{GroupMsg, Role};

/// Keeps this node's entries in metadata current: its broker registration (Kafka
/// address), and the leadership of every partition it leads. Runs when `announce`
/// wakes it (a replica became leader) and every three ticks; a command not yet
/// applied is proposed again once three ticks have passed since it was last sent.
pub(super) async fn register(node: Weak<Inner>, announce: Arc<Notify>) {
    // What was proposed, and when: (group, term) → last sent (group 0 stands for the
    // broker registration).
    let mut sent: HashMap<(GroupId, u64), Instant> = HashMap::new();
    loop {
        let Some(inner) = node.upgrade() else {
            return;
        };
        let pause = inner.cfg.tick * 3;
        // Only a member of the metadata group registers: a node that joins
        // waits until it is added, and one that was removed does not come back.
        let member = inner
            .groups
            .read()
            .get(&GroupId::METADATA)
            .is_some_and(|h| {
                let st = h.handle.status.borrow();
                st.voters.contains(&inner.cfg.id) || st.learners.contains(&inner.cfg.id)
            });
        if !member {
            drop(inner);
            tokio::time::sleep(pause).await;
            continue;
        }
        let meta = inner.meta.borrow().clone();
        let mut commands = Vec::new();
        let current = meta
            .brokers
            .get(&inner.cfg.id)
            .map(|b| b.kafka_addr.as_str());
        if current != Some(inner.cfg.kafka_addr.as_str())
            || meta.racks.get(&inner.cfg.id) != inner.cfg.rack.as_ref()
        {
            commands.push(MetaCommand::RegisterBroker {
                id: inner.cfg.id,
                kafka_addr: inner.cfg.kafka_addr.clone(),
                rack: inner.cfg.rack.clone(),
            });
        }
        if let Some(peer) = &inner.cfg.peer_addr
            && meta.peers.get(&inner.cfg.id) != Some(peer)
        {
            commands.push(MetaCommand::RegisterPeer {
                id: inner.cfg.id,
                peer_addr: peer.clone(),
            });
        }
        {
            let groups = inner.groups.read();
            let mut isr_changes = Vec::new();
            for (_, p) in meta.hosted_by(inner.cfg.id) {
                let Some(h) = groups.get(&p.group) else {
                    continue;
                };
                let st = h.handle.status.borrow();
                if st.role == Role::Leader && p.leader != Some((inner.cfg.id, st.term)) {
                    commands.push(MetaCommand::LeaderChanged {
                        group: p.group,
                        node: inner.cfg.id,
                        term: st.term,
                    });
                } else if st.role == Role::Leader {
                    // Recorded as the leader: keep metadata's ISR (what the
                    // other nodes answer Metadata with) true.
                    let recorded = meta.recorded_isr(p);
                    let same = recorded.len() == st.in_sync.len()
                        && recorded.iter().all(|n| st.in_sync.contains(n));
                    if !same {
                        isr_changes.push((p.group, st.term, st.in_sync.clone()));
                    }
                }
            }
            if !isr_changes.is_empty() {
                commands.push(MetaCommand::IsrChanged {
                    node: inner.cfg.id,
                    changes: isr_changes,
                });
            }
            let now = Instant::now();
            sent.retain(|_, at| now.duration_since(*at) < pause);
            if let Some(h) = groups.get(&GroupId::METADATA) {
                for cmd in commands {
                    let key = match &cmd {
                        MetaCommand::LeaderChanged { group, term, .. } => (*group, *term),
                        MetaCommand::RegisterPeer { .. } => (GroupId::METADATA, 1),
                        MetaCommand::IsrChanged { .. } => (GroupId::METADATA, 2),
                        _ => (GroupId::METADATA, 0),
                    };
                    if sent.contains_key(&key) {
                        continue;
                    }
                    sent.insert(key, now);
                    match encode_meta(&cmd) {
                        Ok(data) => {
                            let _ = h.handle.tx.send(GroupMsg::ProposeUnanswered { data });
                        }
                        Err(e) => inner.fatal.raise(format!("registering: {e}")),
                    }
                }
            }
        }
        drop(inner);
        let _ = tokio::time::timeout(pause, announce.notified()).await;
    }
}
