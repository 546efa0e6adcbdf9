//! The fault run's consumer group: members of group `fg` (the consumer group
//! protocol, `weir_server::client::member`) read topic `f` along with the
//! producers through every fault, committing what they read; a sampler reads
//! the group's committed offsets all along. Checked after the run:
//! - **at least once**: every acknowledged record was read by a member, or lies
//!   at or after the group's final committed offset of its partition (a
//!   commit never claims records nobody read);
//! - **commits never go backwards**: each partition's committed offset, as
//!   sampled, never decreases, and a member that takes over a partition starts
//!   at or after every commit of it acknowledged before (a lost commit would
//!   send it back).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use weir_core::batch::{decode_records, iter_batches};
use weir_server::client::Client;
use weir_server::client::member::{GroupMember, Reset};

/// The group's id.
pub(crate) const GROUP: &str = "fg";

/// What the group's members read and what the sampler saw committed.
#[derive(Debug, Default)]
pub(crate) struct GroupLog {
    /// Values read by any member.
    pub(crate) read: HashSet<u64>,
    /// The committed offsets by partition, in the order they were sampled.
    pub(crate) committed: BTreeMap<i32, Vec<i64>>,
    /// Commits the members made.
    pub(crate) commits: u64,
    /// Acknowledged commits: when, partition, offset.
    pub(crate) acked: Vec<(Instant, i32, i64)>,
    /// Where members started partitions they were given: when, partition,
    /// offset.
    pub(crate) starts: Vec<(Instant, i32, i64)>,
}

/// One member: joins, consumes what it is assigned, commits every 500 ms; a
/// call that fails or hangs (a node killed or paused) is dropped and the
/// member carries on with a new connection. Leaves when `stop` is set.
pub(crate) async fn member(bootstrap: String, stop: Arc<AtomicBool>, log: Arc<Mutex<GroupLog>>) {
    let mut c = Client::new(&bootstrap);
    let mut m: Option<GroupMember> = None;
    let mut last_commit = Instant::now();
    // The partitions whose start was recorded.
    let mut known: Vec<(String, i32)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let step = async {
            if m.is_none() {
                m = Some(c.join(GROUP, &["f"], Reset::Earliest).await?);
                known.clear();
            }
            let Some(mm) = m.as_mut() else {
                return anyhow::Ok(());
            };
            mm.heartbeat_if_due(&mut c).await?;
            // Where each partition it was given (by the join or a heartbeat)
            // starts.
            let now = Instant::now();
            {
                let mut l = log.lock();
                for ((_, p), o) in mm.assignment().iter().filter(|(k, _)| !known.contains(k)) {
                    l.starts.push((now, *p, *o));
                }
            }
            known = mm.assignment().keys().cloned().collect();
            let owned: Vec<((String, i32), i64)> = mm
                .assignment()
                .iter()
                .map(|(k, o)| (k.clone(), *o))
                .collect();
            for ((t, p), at) in owned {
                let (data, _) = c.fetch(&t, p, at, Duration::ZERO).await?;
                for b in iter_batches(&data) {
                    let (_, bytes) = b?;
                    for r in decode_records(bytes)? {
                        if r.offset < at {
                            continue;
                        }
                        let v = u64::from_be_bytes(
                            r.value.unwrap_or_default().try_into().unwrap_or([0; 8]),
                        );
                        log.lock().read.insert(v);
                        mm.advance(&t, p, r.offset + 1);
                    }
                }
            }
            if last_commit.elapsed() >= Duration::from_millis(500) {
                let positions: Vec<(i32, i64)> =
                    mm.assignment().iter().map(|((_, p), o)| (*p, *o)).collect();
                mm.commit(&mut c).await?;
                let now = Instant::now();
                let mut l = log.lock();
                l.commits += 1;
                l.acked
                    .extend(positions.into_iter().map(|(p, o)| (now, p, o)));
                last_commit = Instant::now();
            }
            Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(5), step).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => c = Client::new(&bootstrap),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(m) = m {
        let _ = tokio::time::timeout(Duration::from_secs(5), m.leave(&mut c)).await;
    }
}

/// Samples the group's committed offsets every 200 ms until `stop`.
pub(crate) async fn sampler(bootstrap: String, stop: Arc<AtomicBool>, log: Arc<Mutex<GroupLog>>) {
    let mut c = Client::new(&bootstrap);
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_secs(5), c.committed_offsets(GROUP)).await {
            Ok(Ok(offsets)) => {
                let mut l = log.lock();
                for (_, p, o) in offsets {
                    l.committed.entry(p).or_default().push(o);
                }
            }
            _ => c = Client::new(&bootstrap),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The anomalies of a group run: commits that went backwards, and
/// acknowledged `(partition, offset, value)`s below the final committed offset
/// of their partition that no member read.
pub(crate) fn check(
    log: &GroupLog,
    acknowledged: &[(i32, i64, u64)],
    final_committed: &BTreeMap<i32, i64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, seen) in &log.committed {
        if let Some(w) = seen.windows(2).find(|w| w[1] < w[0]) {
            out.push(format!(
                "partition {p}: committed offset went back from {} to {}",
                w[0], w[1]
            ));
        }
        if let (Some(last), Some(f)) = (seen.last(), final_committed.get(p))
            && f < last
        {
            out.push(format!(
                "partition {p}: committed offset went back from {last} to {f} at the end"
            ));
        }
    }
    for (at, p, o) in &log.starts {
        let before = log
            .acked
            .iter()
            .filter(|(t, q, _)| t < at && q == p)
            .map(|(_, _, c)| *c)
            .max();
        if let Some(c) = before
            && *o < c
        {
            out.push(format!(
                "partition {p}: a member started at {o}, below the commit of {c} acknowledged before"
            ));
        }
    }
    let unread: Vec<&(i32, i64, u64)> = acknowledged
        .iter()
        .filter(|(p, o, v)| final_committed.get(p).is_some_and(|c| o < c) && !log.read.contains(v))
        .collect();
    if !unread.is_empty() {
        out.push(format!(
            "{} acknowledged records below the committed offsets were never read by the group, e.g. {:?}",
            unread.len(),
            &unread[..unread.len().min(3)]
        ));
    }
    out
}

/// The checks catch what they exist for: a commit that goes back, and a
/// commit past records nobody read.
#[test]
fn the_group_checks_catch_backward_commits_and_unread_records() {
    let mut log = GroupLog::default();
    log.read.extend([10, 11]);
    log.committed.insert(0, vec![1, 2, 2]);
    let acked = [(0, 0, 10), (0, 1, 11), (0, 2, 12)];
    let fine = BTreeMap::from([(0, 2)]);
    assert!(check(&log, &acked, &fine).is_empty());
    let past_unread = BTreeMap::from([(0, 3)]);
    assert_eq!(check(&log, &acked, &past_unread).len(), 1);
    log.committed.insert(0, vec![1, 3, 2]);
    assert!(check(&log, &acked, &fine)[0].contains("went back"));
    log.committed.insert(0, vec![1, 2]);
    let t = Instant::now();
    log.acked.push((t, 0, 2));
    log.starts.push((t + Duration::from_millis(1), 0, 0));
    assert!(check(&log, &acked, &fine)[0].contains("below the commit"));
}
