//! The consumer protocol's server-side assignors (KIP-848): `uniform` (sticky
//! and balanced across every subscribed partition) and `range` (contiguous
//! ranges per topic). Both are deterministic functions of their input, so a new
//! coordinator computes the same target from the same group.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A topic id (KIP-516), as Metadata reports it.
pub type TopicId = [u8; 16];

/// Partitions by topic id.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// The assignors weir offers, by the names clients ask for
/// (`group.remote.assignor`).
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// A server-side assignor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignor {
    /// Balanced across all partitions a member may take, moving as few as it
    /// can (Kafka's `uniform`).
    Uniform,
    /// For each topic, its members (by id) take contiguous ranges, the first
    /// ones one more (Kafka's `range`).
    Range,
}

impl Assignor {
    /// The assignor named `name`, if weir has it.
    pub fn named(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }
}

/// A member as an assignor sees it.
#[derive(Clone, Debug)]
pub struct Subscriber<'a> {
    /// The member id.
    pub id: &'a str,
    /// The existing topics it subscribes to.
    pub topics: BTreeSet<TopicId>,
    /// Its previous target (kept where balance allows, by `uniform`).
    pub previous: Option<&'a Assignment>,
}

/// Each member's target assignment. `partitions` gives every subscribed
/// topic's partition count.
pub fn assign(
    assignor: Assignor,
    members: &[Subscriber<'_>],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.id.to_string(), Assignment::new()))
        .collect();
    match assignor {
        Assignor::Range => range(members, partitions, &mut out),
        Assignor::Uniform => uniform(members, partitions, &mut out),
    }
    for a in out.values_mut() {
        a.retain(|_, ps| !ps.is_empty());
    }
    out
}

fn range(
    members: &[Subscriber<'_>],
    partitions: &BTreeMap<TopicId, i32>,
    out: &mut BTreeMap<String, Assignment>,
) {
    for (topic, &n) in partitions {
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.id)
            .collect();
        if subs.is_empty() {
            continue;
        }
        subs.sort_unstable();
        let n = n.max(0);
        let k = i32::try_from(subs.len()).unwrap_or(i32::MAX);
        let (each, extra) = (n / k, n % k);
        let mut next = 0;
        for (i, id) in subs.into_iter().enumerate() {
            let take = each + i32::from(i32::try_from(i).unwrap_or(i32::MAX) < extra);
            if let Some(a) = out.get_mut(id) {
                a.entry(*topic).or_default().extend(next..next + take);
            }
            next += take;
        }
    }
}

fn uniform(
    members: &[Subscriber<'_>],
    partitions: &BTreeMap<TopicId, i32>,
    out: &mut BTreeMap<String, Assignment>,
) {
    let eligible = |topic: &TopicId| -> Vec<&str> {
        members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.id)
            .collect()
    };
    let mut count: BTreeMap<&str, usize> = members.iter().map(|m| (m.id, 0)).collect();
    let mut taken: BTreeSet<(TopicId, i32)> = BTreeSet::new();
    // 1. Everyone keeps what it had that it may still have.
    for m in members {
        for (topic, ps) in m.previous.into_iter().flatten() {
            let n = partitions.get(topic).copied().unwrap_or(0);
            if !m.topics.contains(topic) {
                continue;
            }
            for &p in ps {
                if p < n && taken.insert((*topic, p)) {
                    out.entry(m.id.to_string())
                        .or_default()
                        .entry(*topic)
                        .or_default()
                        .insert(p);
                    *count.entry(m.id).or_default() += 1;
                }
            }
        }
    }
    // 2. The rest go to the least loaded member that may take each.
    for (topic, &n) in partitions {
        let subs = eligible(topic);
        for p in 0..n.max(0) {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let Some(&to) = subs.iter().min_by_key(|id| (count[*id], **id)) else {
                break;
            };
            taken.insert((*topic, p));
            out.entry(to.to_string())
                .or_default()
                .entry(*topic)
                .or_default()
                .insert(p);
            *count.entry(to).or_default() += 1;
        }
    }
    // 3. Balance: move a partition from a member to one holding two fewer that may
    // take it, until none can move. Each move lowers the sum of squared counts, so
    // this ends.
    loop {
        let mut order: Vec<&str> = count.keys().copied().collect();
        order.sort_by_key(|id| (std::cmp::Reverse(count[id]), *id));
        let mut moved = None;
        'find: for from in order {
            let Some(held) = out.get(from) else { continue };
            for (topic, ps) in held {
                let to = eligible(topic)
                    .into_iter()
                    .filter(|id| count[id] + 1 < count[from])
                    .min_by_key(|id| (count[id], *id));
                if let (Some(to), Some(&p)) = (to, ps.iter().next_back()) {
                    moved = Some((from, to, *topic, p));
                    break 'find;
                }
            }
        }
        let Some((from, to, topic, p)) = moved else {
            break;
        };
        if let Some(ps) = out.get_mut(from).and_then(|a| a.get_mut(&topic)) {
            ps.remove(&p);
        }
        out.entry(to.to_string())
            .or_default()
            .entry(topic)
            .or_default()
            .insert(p);
        *count.entry(from).or_default() -= 1;
        *count.entry(to).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: TopicId = [1; 16];
    const T2: TopicId = [2; 16];

    fn sub<'a>(
        id: &'a str,
        topics: &[TopicId],
        previous: Option<&'a Assignment>,
    ) -> Subscriber<'a> {
        Subscriber {
            id,
            topics: topics.iter().copied().collect(),
            previous,
        }
    }

    fn sizes(a: &BTreeMap<String, Assignment>) -> Vec<usize> {
        a.values()
            .map(|x| x.values().map(BTreeSet::len).sum())
            .collect()
    }

    fn all(a: &BTreeMap<String, Assignment>) -> Vec<(TopicId, i32)> {
        let mut v: Vec<_> = a
            .values()
            .flat_map(|x| x.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn range_gives_contiguous_ranges_the_first_members_one_more() {
        let parts = BTreeMap::from([(T1, 7)]);
        let ms = [
            sub("b", &[T1], None),
            sub("a", &[T1], None),
            sub("c", &[T1], None),
        ];
        let a = assign(Assignor::Range, &ms, &parts);
        assert_eq!(a["a"][&T1], BTreeSet::from([0, 1, 2]));
        assert_eq!(a["b"][&T1], BTreeSet::from([3, 4]));
        assert_eq!(a["c"][&T1], BTreeSet::from([5, 6]));
    }

    #[test]
    fn uniform_balances_and_keeps_what_it_can() {
        let parts = BTreeMap::from([(T1, 12)]);
        let three = [
            sub("a", &[T1], None),
            sub("b", &[T1], None),
            sub("c", &[T1], None),
        ];
        let first = assign(Assignor::Uniform, &three, &parts);
        assert_eq!(sizes(&first), vec![4, 4, 4]);
        assert_eq!(all(&first).len(), 12);
        // A fourth member takes one from each; nobody else loses anything more.
        let four = [
            sub("a", &[T1], first.get("a")),
            sub("b", &[T1], first.get("b")),
            sub("c", &[T1], first.get("c")),
            sub("d", &[T1], None),
        ];
        let second = assign(Assignor::Uniform, &four, &parts);
        assert_eq!(sizes(&second), vec![3, 3, 3, 3]);
        assert_eq!(all(&second).len(), 12);
        for id in ["a", "b", "c"] {
            assert!(
                second[id][&T1].is_subset(&first[id][&T1]),
                "{id} kept its own"
            );
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let parts = BTreeMap::from([(T1, 4), (T2, 2)]);
        let ms = [sub("a", &[T1, T2], None), sub("b", &[T2], None)];
        let a = assign(Assignor::Uniform, &ms, &parts);
        assert_eq!(all(&a).len(), 6);
        assert!(!a["b"].contains_key(&T1), "b does not subscribe to T1");
        assert_eq!(a["b"][&T2].len(), 2, "b takes what it may");
        // A topic nobody subscribes to is not assigned.
        let only = [sub("a", &[T2], None)];
        assert_eq!(all(&assign(Assignor::Uniform, &only, &parts)).len(), 2);
    }
}
