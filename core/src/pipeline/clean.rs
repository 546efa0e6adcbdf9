//! The cleaner of compacted topics (`cleanup.policy=compact`,
//! docs/compaction.md): every replica, leader or follower, cleans its own
//! partition logs on its own schedule, one pass over every compacted partition
//! hosted here each `cleaner_check_interval`, its reads and writes paced to
//! `cleaner_io_bytes_per_sec`. A pass ([`crate::compaction::clean_log`]) runs on
//! the blocking pool; the node waits for it when it stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::compaction::{CleanLimits, CleanPolicy, Pass, clean_log};
use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};
use crate::metadata::TopicKind;
use crate::node::{Node, NodeConfig};

/// Whether a topic with `configs` is compacted (`cleanup.policy` includes
/// `compact`).
pub fn is_compacted(configs: &BTreeMap<String, String>) -> bool {
    configs
        .get("cleanup.policy")
        .is_some_and(|p| p.split(',').any(|s| s.trim() == "compact"))
}

/// What cleaning a topic with `configs` asks at `now_ms`, under the broker
/// defaults in `cfg`; `None` for a topic that is not compacted.
pub fn topic_compaction(
    configs: &BTreeMap<String, String>,
    cfg: &NodeConfig,
    now_ms: i64,
) -> Option<CleanPolicy> {
    if !is_compacted(configs) {
        return None;
    }
    let ms = |k: &str, default: Duration| {
        configs
            .get(k)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or_else(|| i64::try_from(default.as_millis()).unwrap_or(i64::MAX))
    };
    let ratio = configs
        .get("min.cleanable.dirty.ratio")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(cfg.min_cleanable_dirty_ratio);
    Some(CleanPolicy {
        tombstones_before: now_ms.saturating_sub(ms("delete.retention.ms", cfg.delete_retention)),
        lag_before: match ms("min.compaction.lag.ms", cfg.min_compaction_lag) {
            0 => i64::MAX,
            lag => now_ms.saturating_sub(lag),
        },
        min_dirty_ratio: ratio,
    })
}

/// What the cleaner keeps between passes: where each log's dirty section
/// starts (in memory: after a restart the first pass maps whole logs).
#[derive(Debug, Default)]
pub(crate) struct Cleaner {
    first_dirty: Mutex<HashMap<GroupId, Offset>>,
    /// Set when the node stops: a pass in progress gives up at its next read.
    stop: Arc<AtomicBool>,
    /// Held by a pass while it runs; the node takes it to wait for the pass.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Cleaner {
    /// Stops the pass in progress, if any, and waits until it has ended.
    pub(crate) async fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.running.lock().await;
    }
}

/// What a round of passes did, summed over partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanRound {
    /// Partitions whose pass rewrote something.
    pub partitions_cleaned: usize,
    /// Units (segments) rewritten.
    pub units_rewritten: usize,
    /// Records removed.
    pub records_removed: u64,
    /// Bytes of the rewritten units before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

/// Paces a round's reads and writes to a rate, and stops it when asked.
struct Pacer {
    rate: Option<u64>,
    since: Instant,
    bytes: u64,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    fn pace(&mut self, bytes: u64) -> Result<()> {
        self.bytes += bytes;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Error::Shutdown);
            }
            let Some(rate) = self.rate else {
                return Ok(());
            };
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            let ahead = due.saturating_sub(self.since.elapsed());
            if ahead.is_zero() {
                return Ok(());
            }
            std::thread::sleep(ahead.min(Duration::from_millis(100)));
        }
    }
}

impl Node {
    /// One round of cleaning: a pass over every compacted partition hosted
    /// here, paced to `cleaner_io_bytes_per_sec`. Returns what it did.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node stops meanwhile; engine errors (a
    /// partition whose pass fails is logged and skipped; the first error is
    /// returned after the others ran).
    pub async fn clean_compacted(&self) -> Result<CleanRound> {
        let (cleaner, snapshots) = self.cleaner();
        let guard = cleaner.running.clone().lock_owned().await;
        if cleaner.stop.load(Ordering::SeqCst) {
            return Err(Error::Shutdown);
        }
        let meta = self.metadata();
        let cfg = self.config();
        let now = crate::batch::now_ms();
        let work: Vec<(GroupId, CleanPolicy)> = meta
            .hosted_by(self.id())
            .filter(|(t, _)| t.kind == TopicKind::Data)
            .filter_map(|(t, p)| topic_compaction(&t.configs, cfg, now).map(|c| (p.group, c)))
            .filter(|(g, _)| self.group_status(*g).is_some())
            .collect();
        let limits = CleanLimits {
            map_bytes: cfg.cleaner_dedupe_buffer_bytes,
            max_decompressed: cfg.max_decompressed_batch_bytes,
            ..CleanLimits::default()
        };
        let mut pacer = Pacer {
            rate: cfg.cleaner_io_bytes_per_sec,
            since: Instant::now(),
            bytes: 0,
            stop: cleaner.stop.clone(),
        };
        let engine = self.engine().clone();
        tokio::task::spawn_blocking(move || {
            let _running = guard;
            let mut round = CleanRound::default();
            let mut first_error = None;
            for (group, policy) in work {
                let installs = snapshots.installs(group);
                let from = cleaner.first_dirty.lock().get(&group).copied().unwrap_or(0);
                let mut pace = |bytes: u64| {
                    if snapshots.installs(group) != installs {
                        return Err(Error::Invalid(format!(
                            "{group}: the log was installed from a snapshot during its cleaning"
                        )));
                    }
                    pacer.pace(bytes)
                };
                match clean_log(&*engine, group, &policy, from, &limits, &mut pace) {
                    Ok(pass) => {
                        if snapshots.installs(group) == installs {
                            cleaner.first_dirty.lock().insert(group, pass.first_dirty);
                        }
                        add(&mut round, group, &pass);
                    }
                    Err(Error::Shutdown) => return Err(Error::Shutdown),
                    Err(e) => {
                        tracing::warn!(%group, error = %e, "cleaning a compacted partition failed; it is tried again");
                        cleaner.first_dirty.lock().remove(&group);
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(round),
            }
        })
        .await
        .map_err(|e| Error::Invalid(format!("the cleaner's pass failed: {e}")))?
    }
}

fn add(round: &mut CleanRound, group: GroupId, pass: &Pass) {
    if pass.units_rewritten == 0 {
        return;
    }
    tracing::info!(
        %group,
        units = pass.units_rewritten,
        records_removed = pass.records_removed,
        bytes_before = pass.bytes_before,
        bytes_after = pass.bytes_after,
        "cleaned a compacted partition"
    );
    crate::stats::cleaned(
        pass.units_rewritten as u64,
        pass.records_removed,
        pass.bytes_before.saturating_sub(pass.bytes_after),
    );
    round.partitions_cleaned += 1;
    round.units_rewritten += pass.units_rewritten;
    round.records_removed += pass.records_removed;
    round.bytes_before += pass.bytes_before;
    round.bytes_after += pass.bytes_after;
}

/// Runs [`Node::clean_compacted`] every `cleaner_check_interval` while the
/// node lives.
pub(crate) async fn run_cleaner(node: crate::node::WeakNode) {
    loop {
        let Some(n) = node.upgrade() else {
            return;
        };
        let every = n.config().cleaner_check_interval;
        match n.clean_compacted().await {
            Ok(_) => {}
            Err(Error::Shutdown) => return,
            Err(e) => tracing::debug!(error = %e, "a cleaning round failed; it runs again"),
        }
        drop(n);
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn compaction_follows_the_topic_then_the_broker() {
        let cfg = NodeConfig::new(1, vec![1], "x:1");
        let now = 10_000_000_000;
        assert_eq!(topic_compaction(&configs(&[]), &cfg, now), None);
        assert_eq!(
            topic_compaction(&configs(&[("cleanup.policy", "delete")]), &cfg, now),
            None
        );
        let p = topic_compaction(&configs(&[("cleanup.policy", "compact")]), &cfg, now)
            .expect("compacted");
        assert_eq!(
            p.tombstones_before,
            now - 86_400_000,
            "a day, Kafka's default"
        );
        assert_eq!(p.lag_before, i64::MAX, "no lag by default");
        assert!((p.min_dirty_ratio - 0.5).abs() < 1e-9);
        let p = topic_compaction(
            &configs(&[
                ("cleanup.policy", "delete, compact"),
                ("delete.retention.ms", "1000"),
                ("min.compaction.lag.ms", "500"),
                ("min.cleanable.dirty.ratio", "0.1"),
            ]),
            &cfg,
            now,
        )
        .expect("compacted");
        assert_eq!((p.tombstones_before, p.lag_before), (now - 1000, now - 500));
        assert!((p.min_dirty_ratio - 0.1).abs() < 1e-9);
    }

    #[test]
    fn the_pacer_keeps_to_its_rate_and_stops() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut p = Pacer {
            rate: Some(10 << 20),
            since: Instant::now(),
            bytes: 0,
            stop: stop.clone(),
        };
        let t = Instant::now();
        for _ in 0..4 {
            p.pace(1 << 20).expect("paced");
        }
        // 4 MiB at 10 MiB/s: at least 0.4 s (a bound the rate implies, not a
        // wall-clock budget for the test).
        assert!(
            t.elapsed() >= Duration::from_millis(390),
            "{:?}",
            t.elapsed()
        );
        stop.store(true, Ordering::Relaxed);
        assert!(matches!(p.pace(1), Err(Error::Shutdown)));
    }
}
