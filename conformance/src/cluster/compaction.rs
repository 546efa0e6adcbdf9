//! Compacted topics across replicas (docs/compaction.md): every replica cleans
//! its own log, and every replica serves the latest record of every key at
//! its offset — including one that rejoined by a snapshot of a cleaned log,
//! gaps and all.

use weir_core::batch::{BatchBuilder, now_ms};

use super::*;

const KEYS: u64 = 25;

/// The latest (offset, tombstone) of every key in a log, from its records.
fn latest_by_key(log: &[Vec<u8>]) -> anyhow::Result<BTreeMap<Vec<u8>, (i64, bool)>> {
    let mut latest = BTreeMap::new();
    let mut prev = -1;
    for b in log {
        for r in batch::decode_records(b)? {
            ensure!(r.offset > prev, "offset {} after {prev}", r.offset);
            prev = r.offset;
            let key = r.key.context("a record without a key")?.to_vec();
            latest.insert(key, (r.offset, r.value.is_none()));
        }
    }
    Ok(latest)
}

/// Checks `node`'s log of `g` against the latest record of every key
/// produced (`want`): each key's last record is the latest produced, or the
/// key is gone because its latest record is an old tombstone. Returns the
/// records left.
fn check_replica(
    c: &Cluster<impl ClusterHarness, impl NetHarness>,
    node: NodeId,
    g: GroupId,
    want: &BTreeMap<Vec<u8>, (i64, bool)>,
) -> anyhow::Result<usize> {
    let log = read_all(c.engine(node).as_ref(), g)?;
    let records: usize = log
        .iter()
        .map(|b| BatchHeader::parse(b).map(|h| h.record_count.max(0) as usize))
        .sum::<weir_core::Result<usize>>()?;
    let got = latest_by_key(&log)?;
    for (k, (o, tombstone)) in want {
        match got.get(k) {
            Some((go, _)) => ensure_eq!(go, o, "node {node}: the last record of key {k:?}"),
            None => ensure!(
                *tombstone,
                "node {node}: key {k:?} is gone, its latest record (offset {o}) is not a tombstone"
            ),
        }
    }
    ensure!(
        got.keys().all(|k| want.contains_key(k)),
        "node {node}: a key nobody produced"
    );
    Ok(records)
}

/// A compacted topic written while a follower is down: the running replicas
/// clean their logs to about one record per key; the follower rejoins (by a
/// snapshot of a cleaned log where the engine installs them) and serves the
/// same latest records; fetches from the start step over the gaps; records
/// without a key are refused.
pub async fn cluster_compacted_topic_keeps_the_latest_per_key<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 31).await?;
    let configs = BTreeMap::from(
        [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "65536"),
            ("min.cleanable.dirty.ratio", "0"),
            ("delete.retention.ms", "60000"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    c.node(1).create_topic("c", 1, 3, configs, WAIT).await?;
    let g = c.group("c", 0)?;
    let leader = c.leader(g).await?;
    let follower = c.follower_of(leader)?;
    let left_at = c.engine(follower).raft_last_index(g)?;
    c.stop(follower).await;
    // 1,000 records of 600 bytes over 25 keys (more than twice the fixture's
    // raft_log_max_bytes), then tombstones ten minutes old for keys 0..4.
    let now = now_ms();
    let mut want = BTreeMap::new();
    for v in 0..1000u64 {
        let key = (v % KEYS).to_be_bytes();
        let b = BatchBuilder::new(now)
            .record(Some(&key), Some(&[v as u8; 600]))
            .build();
        let a = c.produce("c", 0, &b, WAIT).await?;
        want.insert(key.to_vec(), (a.base_offset, false));
    }
    for k in 0..4u64 {
        let key = k.to_be_bytes();
        let b = BatchBuilder::new(now - 600_000)
            .record(Some(&key), None)
            .build();
        let a = c.produce("c", 0, &b, WAIT).await?;
        want.insert(key.to_vec(), (a.base_offset, true));
    }
    let end = 1004;
    let running = c.running();
    c.wait_for(WAIT, "the running replicas to apply every record", |c| {
        running
            .iter()
            .all(|&r| c.engine(r).log_state(g).is_ok_and(|s| s.next_offset == end))
    })
    .await?;
    let mut removed = 0;
    for &r in &running {
        // What the engine lets the cleaner rewrite (not the segment being
        // written; in a unified log, not what Raft entries still refer to,
        // up to raft_log_max_bytes with a replica down) ends here.
        let bound = c.engine(r).log_clean_units(g)?.last().map_or(0, |u| u.next);
        ensure!(bound > 0, "node {r} has nothing to clean");
        removed += c.node(r).clean_compacted().await?.records_removed;
        check_replica(&c, r, g, &want)?;
        let mut below = std::collections::HashSet::new();
        for b in read_all(c.engine(r).as_ref(), g)? {
            for rec in batch::decode_records(&b)? {
                if rec.offset < bound {
                    let key = rec.key.context("a record without a key")?;
                    ensure!(
                        below.insert(key.to_vec()),
                        "node {r}: key {key:?} twice below the cleaned point {bound}"
                    );
                }
            }
        }
        let st = c.engine(r).log_state(g)?;
        ensure_eq!(
            (st.start_offset, st.next_offset),
            (0, end),
            "node {r}'s log bounds"
        );
    }
    ensure!(removed > 0, "the replicas removed nothing");
    // Fetches from the start (and from inside a gap) step over what went.
    let f = c
        .node(leader)
        .fetch("c", 0, 1, 1 << 20, Duration::ZERO, 1)
        .await?;
    let first = batch::iter_batches(&f.records)
        .next()
        .context("a fetch from offset 1 returned nothing")??
        .0;
    ensure!(
        first.last_offset() >= 1,
        "the first batch fetched ends at {}",
        first.last_offset()
    );
    // The follower comes back, by a snapshot of the cleaned log if the
    // leader compacted its Raft log past it.
    c.restart(follower).await?;
    c.wait_for(WAIT, "the follower to catch up", |c| {
        c.engine(follower)
            .log_state(g)
            .is_ok_and(|s| s.next_offset == end)
    })
    .await?;
    check_replica(&c, follower, g, &want)?;
    if c.engine(follower).capabilities().snapshot_install {
        let first = c.engine(follower).raft_first_index(g)?;
        ensure!(
            first > left_at + 1,
            "the follower's Raft log starts at {first}: it did not install a snapshot"
        );
    }
    // A record without a key has no place in a compacted topic.
    let keyless = BatchBuilder::new(now).record(None, Some(b"v")).build();
    let leader = c.leader(g).await?;
    let r = c
        .node(leader)
        .produce("c", 0, &keyless, Acks::All, WAIT)
        .await;
    ensure!(
        matches!(r, Err(Error::Invalid(_))),
        "a keyless record was answered {r:?}"
    );
    let b = BatchBuilder::new(now)
        .record(Some(&1u64.to_be_bytes()), Some(b"after"))
        .build();
    ensure_eq!(
        c.produce("c", 0, &b, WAIT).await?.base_offset,
        end,
        "the next offset"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}
