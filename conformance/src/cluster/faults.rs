//! Faults over a whole cluster: power loss (and its negative control) and the
//! randomized churn scenario.

use super::*;

/// A power loss under acknowledged writes, judged by the fault tests' history checker:
/// 3 nodes, a topic of 2 partitions with 3 replicas; `values` writes (acks=all) are
/// recorded, then every node stops at once and restarts from what its engine holds
/// as durable, and a drain reads every partition back from its leader.
///
/// A correct engine gives a valid report. An engine whose sync does nothing (see
/// [`NoSyncMemoryEngines`]) loses acknowledged writes here, which is how the
/// checker is shown to catch a node that acknowledges data its disk does not hold.
///
/// # Errors
/// When the cluster cannot be started or produced to before the power loss.
pub async fn power_loss_history<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
    values: u64,
) -> anyhow::Result<crate::history::Report> {
    use crate::history::{History, Read, Write, WriteOutcome as W};
    let mut c = Cluster::start(h, net, 3, 11).await?;
    c.create_topic(1, "pl", 2, 3).await?;
    let mut history = History {
        drain: 1,
        ..History::default()
    };
    for v in 0..values {
        let p = (v % 2) as i32;
        let outcome = match c.produce("pl", p, &produced_batch(1, 0, v, 30), WAIT).await {
            Ok(a) => W::Ok {
                partition: p,
                offset: a.base_offset,
            },
            Err(_) => W::TimedOut,
        };
        history.writes.push(Write { value: v, outcome });
    }
    for id in c.running() {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.restart(id).await?;
    }
    // The drain: whatever the cluster serves once it is back. A topic that did not
    // survive drains nothing.
    let known = c
        .wait_for(WAIT, "the topic after the power loss", |c| {
            c.group("pl", 1).is_ok()
        })
        .await
        .is_ok();
    if known {
        for p in 0..2 {
            let g = c.group("pl", p)?;
            c.leader(g).await?;
            let log = c.converged_log(g, &[1, 2, 3]).await?;
            for b in &log {
                let h = BatchHeader::parse(b)?;
                history.reads.push(Read {
                    consumer: history.drain,
                    partition: p,
                    offset: h.base_offset,
                    value: value_of(b)?,
                });
            }
        }
    }
    c.shutdown().await;
    Ok(crate::history::check(&history))
}

/// Memory engines whose sync does nothing, as on a disk with its write cache on and
/// no barriers: a restart (power loss) keeps nothing written since the engine was
/// created. **Negative controls only.**
#[derive(Default)]
pub struct NoSyncMemoryEngines;

impl ClusterHarness for NoSyncMemoryEngines {
    type Guard = parking_lot::Mutex<Arc<weir_core::memory::MemoryEngine>>;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        Ok(create_memory(
            weir_core::memory::MemoryEngine::unsafe_without_sync(),
        ))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        _engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        Ok(restart_memory(guard))
    }
}

/// Seeded churn under continuous produce: leader transfers, isolations, message loss
/// and restarts. At the end all replicas hold byte-identical logs and every
/// acknowledged batch is there exactly once, at the offset it was acknowledged with.
pub async fn cluster_randomized_churn<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let report = churn(h, net, 3, 0xC0FFEE, Budget::Steps(40)).await?;
    eprintln!("{report}");
    Ok(Outcome::Passed)
}

/// How long a churn run goes on.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// A fixed number of fault steps (deterministic choice of faults).
    Steps(usize),
    /// Fault steps until this much time has passed.
    Time(Duration),
}

/// What a churn run saw. A run that returns a report passed every check: no
/// acknowledged batch lost or moved, no value stored twice, replicas identical.
#[derive(Clone, Debug, Default)]
pub struct ChurnReport {
    /// The seed, to reproduce the fault sequence.
    pub seed: u64,
    /// Fault steps taken.
    pub steps: usize,
    /// Batches acknowledged (acks=all) and verified at their offsets at the end.
    pub acknowledged: usize,
    /// Produce attempts that failed or timed out (allowed under faults).
    pub failed_attempts: usize,
    /// Leader transfers requested.
    pub transfers: usize,
    /// Node restarts.
    pub restarts: usize,
    /// Isolations of a node.
    pub isolations: usize,
    /// Elections won, from the final terms of the partition groups.
    pub leader_terms: u64,
    /// Acknowledged batches missing or at another offset (always 0 in a report).
    pub lost: usize,
    /// Replicas whose logs differ (always 0 in a report).
    pub divergent: usize,
}

impl std::fmt::Display for ChurnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "churn seed {:#x}: {} steps, {} acknowledged, {} failed attempts, {} transfers, {} restarts, {} isolations, {} leader terms, lost {}, divergent {}",
            self.seed,
            self.steps,
            self.acknowledged,
            self.failed_attempts,
            self.transfers,
            self.restarts,
            self.isolations,
            self.leader_terms,
            self.lost,
            self.divergent
        )
    }
}

/// The churn scenario on `n` nodes (also run by the soak command).
///
/// # Errors
/// The first violated check: a lost or moved acknowledged batch, a duplicate,
/// diverging replicas, or a cluster that does not recover after healing.
pub async fn churn<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
    n: u64,
    seed: u64,
    budget: Budget,
) -> anyhow::Result<ChurnReport> {
    let mut c = Cluster::start(h, net, n, seed).await?;
    c.create_topic(1, "churn", 2, n.min(3) as usize).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked: [HashMap<u64, i64>; 2] = [HashMap::new(), HashMap::new()];
    let mut report = ChurnReport {
        seed,
        ..ChurnReport::default()
    };
    let mut next_value = 0u64;
    let started = tokio::time::Instant::now();
    loop {
        match budget {
            Budget::Steps(s) if report.steps >= s => break,
            Budget::Time(d) if started.elapsed() >= d => break,
            _ => {}
        }
        let step = report.steps;
        report.steps += 1;
        let p = rng.gen_range(0..2);
        let g = c.group("churn", p)?;
        match rng.gen_range(0..6) {
            0 => {
                if let Some(l) = c.running().into_iter().find(|&id| {
                    c.node(id)
                        .group_status(g)
                        .is_some_and(|s| s.role == Role::Leader)
                }) {
                    let to = c.ids[rng.gen_range(0..c.ids.len())];
                    c.node(l).transfer_leader(g, to);
                    report.transfers += 1;
                }
            }
            1 => {
                let victim = c.ids[rng.gen_range(0..c.ids.len())];
                c.net_faults.isolate(victim, &c.ids.clone());
                report.isolations += 1;
            }
            2 => c.net_faults.set_loss(rng.gen_range(0.0..0.3)),
            3 => {
                let victim = c.ids[rng.gen_range(0..c.ids.len())];
                c.restart(victim).await?;
                report.restarts += 1;
            }
            _ => {
                c.net_faults.heal();
                c.net_faults.set_loss(0.0);
            }
        }
        // Produce a few unique values; each attempt uses a fresh value, so a value
        // is stored at most once unless weir duplicates it.
        for _ in 0..3 {
            let v = next_value;
            next_value += 1;
            match c
                .produce(
                    "churn",
                    p,
                    &produced_batch(1, step as i64, v, 40),
                    Duration::from_millis(800),
                )
                .await
            {
                Ok(a) => {
                    acked[p as usize].insert(v, a.base_offset);
                }
                Err(_) => report.failed_attempts += 1,
            }
        }
    }
    c.net_faults.heal();
    c.net_faults.set_loss(0.0);
    for p in 0..2 {
        let g = c.group("churn", p)?;
        let leader = c.leader(g).await?;
        let v = next_value;
        next_value += 1;
        acked[p as usize].insert(
            v,
            c.produce("churn", p, &produced_batch(1, 0, v, 40), WAIT)
                .await?
                .base_offset,
        );
        let replicas = c.replicas("churn", p)?;
        let log = c
            .converged_log(g, &replicas)
            .await
            .with_context(|| format!("partition {p}"))?;
        check_acknowledged(&log, &acked[p as usize]).with_context(|| format!("partition {p}"))?;
        report.leader_terms += c.node(leader).group_status(g).map_or(0, |s| s.term);
    }
    report.acknowledged = acked[0].len() + acked[1].len();
    c.shutdown().await;
    Ok(report)
}
