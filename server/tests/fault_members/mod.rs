//! The fault run's membership faults (issue 22): nodes join the running
//! cluster (`weir serve --join`), joined nodes are removed again (their
//! replicas drained to other nodes first, as `weir cluster remove-node`
//! does), and partitions of the test topic move to other replica sets
//! (AlterPartitionReassignments) — all while the other faults kill, pause and
//! cut nodes off. A change that cannot finish under the faults is fine (it is
//! counted); what it must never do is lose or alter acknowledged data, which
//! the history checker judges.
//!
//! The nodes that formed the cluster stay members; at most [`MAX_JOINED`]
//! joined nodes are members at a time, and a removed node's id is never used
//! again (a fresh slot joins instead). Links to joined nodes are not proxied:
//! network partitions cut only the links between the first nodes, so a joined
//! node can act as a bridge between the sides.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use weir_server::client::Client;
use weir_server::membership::ask_members;

use crate::common::Cluster;

/// Joined nodes that are members at most at a time.
const MAX_JOINED: usize = 2;

/// How long one removal may take before it is given up (and counted).
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(90);

/// The membership faults' state: who is a member, what is under way, and
/// how each change ended.
#[derive(Default)]
pub(crate) struct Members {
    /// Slots (0-based) of joined nodes that have not been removed.
    joined: Vec<usize>,
    /// The joined node being removed, and the task removing it.
    removing: Option<(usize, tokio::task::JoinHandle<Result<(), String>>)>,
    /// How changes ended, by kind ("removal finished", "reassignment refused", …).
    pub(crate) outcomes: BTreeMap<&'static str, usize>,
}

impl Members {
    /// The slots whose nodes are members and may be (re)started: every node
    /// that formed the cluster and every joined one, except the one being
    /// removed (it stays down once killed: removing a dead node is a case too).
    pub(crate) fn restartable(&self, c: &Cluster) -> Vec<usize> {
        let removing = self.removing.as_ref().map(|(s, _)| *s);
        (0..c.static_nodes)
            .chain(self.joined.iter().copied())
            .filter(|s| Some(*s) != removing)
            .collect()
    }

    /// Members that are running: the victims of kills and pauses.
    pub(crate) fn running(&self, c: &Cluster) -> Vec<usize> {
        (0..c.static_nodes)
            .chain(self.joined.iter().copied())
            .filter(|&s| c.is_up(s))
            .collect()
    }

    /// How many brokers metadata lists once the changes under way are over.
    pub(crate) fn brokers(&self, c: &Cluster) -> usize {
        c.static_nodes + self.joined.len()
    }

    /// Starts a fresh node that joins the cluster, unless enough have.
    pub(crate) fn add(&mut self, c: &mut Cluster) -> bool {
        if self.joined.len() >= MAX_JOINED {
            return false;
        }
        let slot = c.add_spare();
        c.launch(slot);
        self.joined.push(slot);
        true
    }

    /// Starts removing a joined node that the metadata group counts as a
    /// voter (drain, then removal), unless one is being removed already.
    pub(crate) fn start_removal(
        &mut self,
        rt: &tokio::runtime::Runtime,
        c: &Cluster,
        rng: &mut StdRng,
    ) -> bool {
        if self.removing.is_some() {
            return false;
        }
        let voters = metadata_voters(c);
        let candidates: Vec<usize> = self
            .joined
            .iter()
            .copied()
            .filter(|s| voters.contains(&(*s as u64 + 1)))
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let slot = candidates[rng.gen_range(0..candidates.len())];
        let admins: Vec<String> = (0..c.static_nodes)
            .map(|i| format!("127.0.0.1:{}", c.admin[i]))
            .collect();
        let task = rt.spawn(remove(admins, slot as u64 + 1));
        self.removing = Some((slot, task));
        true
    }

    /// Looks at the removal under way: once it is over, a removed node is
    /// stopped for good; one whose removal failed stays a member.
    pub(crate) fn poll(&mut self, rt: &tokio::runtime::Runtime, c: &mut Cluster, wait: bool) {
        let Some((slot, task)) = self.removing.take() else {
            return;
        };
        if !wait && !task.is_finished() {
            self.removing = Some((slot, task));
            return;
        }
        match rt.block_on(task) {
            Ok(Ok(())) => {
                *self.outcomes.entry("removal finished").or_default() += 1;
                if c.is_up(slot) {
                    c.kill9(slot);
                }
                self.joined.retain(|s| *s != slot);
            }
            Ok(Err(e)) => {
                eprintln!("fault run: removing node {} failed: {e}", slot + 1);
                *self.outcomes.entry("removal given up").or_default() += 1;
                if !c.is_up(slot) {
                    c.launch(slot);
                }
            }
            Err(e) => panic!("the removal task failed: {e}"),
        }
    }

    /// Asks to move one partition of `topic` (of `partitions`) to three
    /// members, picked at random.
    pub(crate) fn reassign(
        &mut self,
        rt: &tokio::runtime::Runtime,
        c: &Cluster,
        rng: &mut StdRng,
        topic: &str,
        partitions: i32,
    ) {
        let mut nodes = self.restartable(c);
        if nodes.len() < 3 {
            return;
        }
        for i in (1..nodes.len()).rev() {
            nodes.swap(i, rng.gen_range(0..=i));
        }
        let target: Vec<i32> = nodes[..3].iter().map(|s| *s as i32 + 1).collect();
        let partition = rng.gen_range(0..partitions);
        let bootstrap = c.all();
        let asked = rt.block_on(async {
            let mut client = Client::new(&bootstrap);
            tokio::time::timeout(
                Duration::from_secs(10),
                client.reassign(topic, partition, Some(target)),
            )
            .await
        });
        let outcome = match asked {
            Ok(Ok(())) => "reassignment recorded",
            Ok(Err(_)) => "reassignment refused",
            Err(_) => "reassignment timed out",
        };
        *self.outcomes.entry(outcome).or_default() += 1;
    }
}

/// The metadata group's voters as the first running node that answers
/// `/v1/cluster` reports them.
fn metadata_voters(c: &Cluster) -> Vec<u64> {
    for i in (0..c.static_nodes).filter(|&i| c.is_up(i)) {
        let (status, body) = c.admin_get(i, "/v1/cluster");
        if status != 200 {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            return v["metadata"]["voters"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default();
        }
    }
    Vec::new()
}

/// Drains node `id` and removes it (the steps of `weir cluster remove-node`),
/// asking again through faults until [`REMOVAL_TIMEOUT`].
async fn remove(admins: Vec<String>, id: u64) -> Result<(), String> {
    let deadline = Instant::now() + REMOVAL_TIMEOUT;
    let drain = format!("/v1/nodes/{id}/drain");
    let mut last = String::new();
    while Instant::now() < deadline {
        match ask_members(&admins, "POST", &drain, "").await {
            Ok(body) => {
                let held = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["held"].as_u64());
                if let Some(held @ 1..) = held {
                    last = format!("node {id} still holds replicas of {held} partitions");
                }
                if held == Some(0) {
                    match ask_members(&admins, "DELETE", &format!("/v1/nodes/{id}"), "").await {
                        Ok(_) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    }
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("not removed in {REMOVAL_TIMEOUT:?}: {last}"))
}
