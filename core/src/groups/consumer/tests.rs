use std::collections::BTreeMap;

use super::*;

const T: TopicId = [7; 16];

fn env_with<'a>(topic: &'a dyn Fn(&str) -> Option<(TopicId, i32)>) -> Env<'a> {
    Env {
        topic,
        default_assignor: Assignor::Uniform,
        max_members: 10,
    }
}

fn topics(name: &str) -> Option<(TopicId, i32)> {
    (name == "t").then_some((T, 12))
}

/// A client that heartbeats as librdkafka does: it owns what it was last given
/// (having revoked what it lost) and reports it.
#[derive(Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: BTreeSet<i32>,
}

impl Client {
    fn new(id: &str) -> Client {
        Client {
            id: id.into(),
            ..Client::default()
        }
    }

    fn beat(&mut self, g: &mut ConsumerGroup) -> Result<HeartbeatResponse> {
        let topic = topics;
        let env = env_with(&topic);
        let req = HeartbeatRequest {
            group: "g".into(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            rebalance_timeout_ms: if self.epoch == 0 { 60_000 } else { -1 },
            subscribed: (self.epoch == 0).then(|| vec!["t".to_string()]),
            owned: Some(vec![(T, self.owned.iter().copied().collect())]),
            ..HeartbeatRequest::default()
        };
        let r = g.heartbeat(&req, &env)?;
        self.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            self.owned = a.get(&T).cloned().unwrap_or_default();
        }
        Ok(r)
    }
}

/// Every partition is owned by at most one client.
fn exclusive(clients: &[&Client]) {
    let mut seen = BTreeMap::new();
    for c in clients {
        for p in &c.owned {
            assert!(
                seen.insert(*p, c.id.clone()).is_none(),
                "partition {p} owned twice"
            );
        }
    }
}

fn settle(g: &mut ConsumerGroup, clients: &mut [&mut Client]) -> Result<()> {
    for _ in 0..10 {
        for c in clients.iter_mut() {
            c.beat(g)?;
        }
        let view: Vec<&Client> = clients.iter().map(|c| &**c).collect();
        exclusive(&view);
    }
    Ok(())
}

#[test]
fn members_converge_to_a_balanced_assignment_without_sharing_a_partition() -> Result<()> {
    let mut g = ConsumerGroup::default();
    let (mut a, mut b, mut c) = (Client::new("a"), Client::new("b"), Client::new("c"));
    a.beat(&mut g)?;
    assert_eq!(a.owned.len(), 12, "the first member takes everything");
    b.beat(&mut g)?;
    assert!(b.owned.is_empty(), "b waits until a releases");
    c.beat(&mut g)?;
    settle(&mut g, &mut [&mut a, &mut b, &mut c])?;
    assert_eq!([a.owned.len(), b.owned.len(), c.owned.len()], [4, 4, 4]);
    assert_eq!(g.state_name(), "Stable");
    assert!([a.epoch, b.epoch, c.epoch].iter().all(|e| *e == g.epoch));

    // A fourth member: the others keep what they keep throughout.
    let before = [a.owned.clone(), b.owned.clone(), c.owned.clone()];
    let mut d = Client::new("d");
    d.beat(&mut g)?;
    assert_eq!(g.state_name(), "Reconciling");
    for _ in 0..10 {
        for (i, m) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
            m.beat(&mut g)?;
            assert!(
                m.owned.is_subset(&before[i]),
                "{} only loses partitions",
                m.id
            );
            assert!(m.owned.len() >= 3, "{} keeps the rest", m.id);
        }
        d.beat(&mut g)?;
        exclusive(&[&a, &b, &c, &d]);
    }
    assert_eq!(
        [a.owned.len(), b.owned.len(), c.owned.len(), d.owned.len()],
        [3, 3, 3, 3]
    );
    assert_eq!(g.state_name(), "Stable");
    Ok(())
}

#[test]
fn a_leaving_member_s_partitions_go_to_the_others() -> Result<()> {
    let mut g = ConsumerGroup::default();
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    a.beat(&mut g)?;
    b.beat(&mut g)?;
    settle(&mut g, &mut [&mut a, &mut b])?;
    assert_eq!(b.owned.len(), 6);
    b.epoch = -1;
    let r = b.beat(&mut g)?;
    assert_eq!(r.member_epoch, -1);
    a.beat(&mut g)?;
    assert_eq!(a.owned.len(), 12);
    Ok(())
}

#[test]
fn epochs_are_checked_as_kafka_does() -> Result<()> {
    let mut g = ConsumerGroup::default();
    let mut a = Client::new("a");
    a.beat(&mut g)?;
    let current = a.epoch;
    a.epoch = current + 1;
    let e = a.beat(&mut g).err().map(|e| e.to_string());
    assert!(
        e.is_some_and(|e| e.contains("fenced")),
        "a newer epoch is fenced"
    );
    a.epoch = current;
    a.beat(&mut g)?;
    let mut stranger = Client::new("x");
    stranger.epoch = 3;
    assert!(matches!(
        stranger.beat(&mut g),
        Err(crate::Error::Group(GroupError::UnknownMemberId(_)))
    ));
    let topic = topics;
    let env = env_with(&topic);
    let bad = HeartbeatRequest {
        group: "g".into(),
        member_id: "y".into(),
        rebalance_timeout_ms: 1000,
        subscribed: Some(vec!["t".into()]),
        assignor: Some("sticky".into()),
        ..HeartbeatRequest::default()
    };
    assert!(matches!(
        g.heartbeat(&bad, &env),
        Err(crate::Error::Group(GroupError::UnsupportedAssignor(_)))
    ));
    let no_subscription = HeartbeatRequest {
        assignor: None,
        subscribed: None,
        ..bad
    };
    assert!(matches!(
        g.heartbeat(&no_subscription, &env),
        Err(crate::Error::Group(GroupError::InvalidRequest(_)))
    ));
    Ok(())
}

#[test]
fn a_static_member_that_returns_keeps_its_partitions_without_a_rebalance() -> Result<()> {
    let topic = topics;
    let env = env_with(&topic);
    let join = |id: &str| HeartbeatRequest {
        group: "g".into(),
        member_id: id.into(),
        instance_id: Some("i1".into()),
        rebalance_timeout_ms: 1000,
        subscribed: Some(vec!["t".into()]),
        owned: Some(vec![]),
        ..HeartbeatRequest::default()
    };
    let mut g = ConsumerGroup::default();
    let first = g.heartbeat(&join("m1"), &env)?;
    let epoch = g.epoch;
    // Another process with the same instance while the first is still there.
    assert!(matches!(
        g.heartbeat(&join("m2"), &env),
        Err(crate::Error::Group(GroupError::UnreleasedInstanceId(_)))
    ));
    let leave = HeartbeatRequest {
        member_epoch: -2,
        ..join("m1")
    };
    assert_eq!(g.heartbeat(&leave, &env)?.member_epoch, -2);
    let back = g.heartbeat(&join("m2"), &env)?;
    assert_eq!(back.member_epoch, first.member_epoch);
    assert_eq!(back.assignment, first.assignment);
    assert_eq!(g.epoch, epoch, "no new group epoch");
    assert!(g.members.contains_key("m2") && !g.members.contains_key("m1"));
    Ok(())
}

#[test]
fn a_new_topic_partition_count_starts_a_new_epoch() -> Result<()> {
    let mut g = ConsumerGroup::default();
    let mut a = Client::new("a");
    a.beat(&mut g)?;
    let epoch = g.epoch;
    let grown = |n: &str| (n == "t").then_some((T, 16));
    let env = env_with(&grown);
    g.refresh(&env);
    assert_eq!(g.epoch, epoch + 1);
    assert_eq!(g.target["a"][&T].len(), 16);
    Ok(())
}
