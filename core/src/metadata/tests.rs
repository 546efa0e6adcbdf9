//! Replica assignment: even spread over brokers and racks.

use super::*;

fn with_brokers(racks: &[(NodeId, Option<&str>)]) -> Metadata {
    let mut m = Metadata::default();
    for (id, rack) in racks {
        m.brokers.insert(
            *id,
            Broker {
                id: *id,
                kafka_addr: format!("127.0.0.1:{}", 9090 + id),
            },
        );
        if let Some(r) = rack {
            m.racks.insert(*id, (*r).to_string());
        }
    }
    m
}

fn leaders(assignment: &[Vec<NodeId>]) -> BTreeMap<NodeId, usize> {
    let mut led = BTreeMap::new();
    for r in assignment {
        *led.entry(r[0]).or_default() += 1;
    }
    led
}

#[test]
fn replicas_and_preferred_leaders_spread_evenly() {
    let m = with_brokers(&[(1, None), (2, None), (3, None)]);
    let a = m.assign("t", 30, 3).expect("assign");
    assert!(leaders(&a).values().all(|&n| n == 10), "{:?}", leaders(&a));
    assert!(a.iter().all(|r| {
        let mut s = r.clone();
        s.sort_unstable();
        s == [1, 2, 3]
    }));
}

#[test]
fn replicas_spread_over_racks() {
    // Racks listed in an order unlike the ids, two brokers each.
    let m = with_brokers(&[
        (1, Some("a")),
        (2, Some("b")),
        (3, Some("c")),
        (4, Some("a")),
        (5, Some("b")),
        (6, Some("c")),
    ]);
    let a = m.assign("events", 12, 3).expect("assign");
    for r in &a {
        let racks: std::collections::BTreeSet<&str> =
            r.iter().map(|n| m.racks[n].as_str()).collect();
        assert_eq!(racks.len(), 3, "replicas {r:?} share a rack");
    }
    assert!(leaders(&a).values().all(|&n| n == 2), "{:?}", leaders(&a));
    // Two racks, replication 2: every partition in both.
    let m = with_brokers(&[
        (1, Some("x")),
        (2, Some("x")),
        (3, Some("y")),
        (4, Some("y")),
    ]);
    for r in m.assign("t", 8, 2).expect("assign") {
        assert_ne!(m.racks[&r[0]], m.racks[&r[1]], "replicas {r:?}");
    }
}

#[test]
fn only_the_recorded_leader_reports_the_isr() {
    let mut m = with_brokers(&[(1, None), (2, None), (3, None)]);
    m.apply(MetaCommand::CreateTopic {
        name: "t".into(),
        replicas: vec![vec![1, 2, 3]],
        configs: BTreeMap::new(),
        kind: TopicKind::Data,
    });
    let g = m.topics["t"].partitions[0].group;
    m.apply(MetaCommand::LeaderChanged {
        group: g,
        node: 2,
        term: 5,
    });
    let report = |node, term, isr: Vec<NodeId>| MetaCommand::IsrChanged {
        node,
        changes: vec![(g, term, isr)],
    };
    m.apply(report(2, 5, vec![2, 1]));
    assert_eq!(m.isr.get(&g), Some(&vec![1, 2]), "the leader's report");
    m.apply(report(1, 4, vec![1]));
    assert_eq!(
        m.isr.get(&g),
        Some(&vec![1, 2]),
        "a deposed leader's report is ignored"
    );
    assert_eq!(m.recorded_isr(&m.topics["t"].partitions[0]), vec![1, 2]);
    m.apply(report(2, 5, vec![3, 1, 2]));
    assert!(m.isr.is_empty(), "every replica in sync: nothing kept");
    assert_eq!(
        m.recorded_isr(&m.topics["t"].partitions[0]),
        vec![1, 2, 3],
        "nothing recorded: every replica"
    );
    m.apply(report(2, 5, vec![2]));
    m.apply(MetaCommand::DeleteTopic { name: "t".into() });
    assert!(m.isr.is_empty(), "forgotten with the topic");
}
