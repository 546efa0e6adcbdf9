use super::*;
use crate::error::Error;
use std::time::Duration;

const LIMITS: Limits = Limits {
    min_session: Duration::from_millis(100),
    max_session: Duration::from_secs(60),
    max_members: 3,
    initial_delay: Duration::from_millis(300),
};

fn join_req(member: &str, meta: &[u8]) -> JoinRequest {
    JoinRequest {
        group: "g".into(),
        member_id: member.into(),
        instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), meta.to_vec()),
            ("roundrobin".into(), vec![]),
        ],
        session_timeout_ms: 1000,
        rebalance_timeout_ms: 2000,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        require_known_member_id: true,
    }
}

fn code(e: Error) -> GroupError {
    match e {
        Error::Group(g) => g,
        other => panic!("not a group error: {other}"),
    }
}

/// Joins a new member through MEMBER_ID_REQUIRED; returns its id and receiver.
fn new_member(
    g: &mut ClassicGroup,
    now: Instant,
    meta: &[u8],
) -> (String, oneshot::Receiver<Result<JoinResponse>>) {
    let id = match code(g.join(join_req("", meta), now, &LIMITS).unwrap_err()) {
        GroupError::MemberIdRequired(id) => id,
        other => panic!("{other:?}"),
    };
    assert!(id.starts_with("c-"), "{id}");
    let rx = g.join(join_req(&id, meta), now, &LIMITS).unwrap();
    (id, rx)
}

fn ready<T>(mut rx: oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("answered")
}

fn pending<T>(rx: &mut oneshot::Receiver<T>) {
    assert!(matches!(
        rx.try_recv(),
        Err(oneshot::error::TryRecvError::Empty)
    ));
}

fn sync_req(member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> SyncRequest {
    SyncRequest {
        group: "g".into(),
        member_id: member.into(),
        generation,
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).to_string(), a.to_vec()))
            .collect(),
        ..SyncRequest::default()
    }
}

/// Two members join, the leader assigns, both get their assignment once the
/// generation is persisted; returns (group, leader, follower).
fn stable_pair(now: Instant) -> (ClassicGroup, String, String) {
    let mut g = ClassicGroup::new("g");
    let (a, mut ra) = new_member(&mut g, now, b"A");
    let (b, mut rb) = new_member(&mut g, now, b"B");
    // The initial delay holds the first round open for more members.
    pending(&mut ra);
    assert_eq!(g.tick(now + Duration::from_millis(100), &LIMITS), None);
    pending(&mut rb);
    g.tick(now + Duration::from_millis(300), &LIMITS);
    let (ja, jb) = (ready(ra).unwrap(), ready(rb).unwrap());
    assert_eq!((ja.generation, jb.generation), (1, 1));
    assert_eq!(ja.protocol.as_deref(), Some("range"));
    assert_eq!(ja.leader, jb.leader);
    let (leader, follower) = if ja.leader == a { (a, b) } else { (b, a) };
    let leader_answer = if ja.leader == ja.member_id { &ja } else { &jb };
    assert_eq!(
        leader_answer.members.len(),
        2,
        "the leader sees every member"
    );
    assert_eq!(g.state, State::CompletingRebalance);

    let t = now + Duration::from_millis(400);
    let (mut rf, persist) = g.sync(sync_req(&follower, 1, &[]), t).unwrap();
    assert_eq!(persist, None);
    pending(&mut rf);
    let assignments: [(&str, &[u8]); 2] = [(&leader, b"p0"), (&follower, b"p1")];
    let (rl, persist) = g.sync(sync_req(&leader, 1, &assignments), t).unwrap();
    let stored = persist.expect("the leader's sync persists the generation");
    assert_eq!(stored.generation, 1);
    assert_eq!(stored.members.len(), 2);
    pending(&mut rf);
    g.persisted(1, Ok(()));
    assert_eq!(ready(rf).unwrap().assignment, b"p1");
    assert_eq!(ready(rl).unwrap().assignment, b"p0");
    assert_eq!(g.state, State::Stable);
    (g, leader, follower)
}

#[test]
fn members_join_sync_and_get_their_assignments() {
    stable_pair(Instant::now());
}

#[test]
fn a_joining_member_rebalances_the_group() {
    let now = Instant::now();
    let (mut g, leader, follower) = stable_pair(now);
    let t = now + Duration::from_millis(500);
    assert!(g.heartbeat(&follower, None, 1, t).is_ok());
    let (c, mut rc) = new_member(&mut g, t, b"C");
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(
        code(g.heartbeat(&follower, None, 1, t).unwrap_err()),
        GroupError::RebalanceInProgress
    );
    pending(&mut rc);
    let rl = g.join(join_req(&leader, b"A"), t, &LIMITS).unwrap();
    let rf = g.join(join_req(&follower, b"B"), t, &LIMITS).unwrap();
    let answers = [ready(rl).unwrap(), ready(rf).unwrap(), ready(rc).unwrap()];
    assert!(
        answers
            .iter()
            .all(|a| a.generation == 2 && a.leader == leader)
    );
    assert_eq!(answers[2].member_id, c);
    // The old generation is fenced.
    assert_eq!(
        code(g.heartbeat(&follower, None, 1, t).unwrap_err()),
        GroupError::IllegalGeneration(1)
    );
    assert_eq!(
        code(g.sync(sync_req(&follower, 1, &[]), t).unwrap_err()),
        GroupError::IllegalGeneration(1)
    );
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let now = Instant::now();
    let (mut g, leader, follower) = stable_pair(now);
    let t = now + Duration::from_millis(500);
    let rl = g.join(join_req(&leader, b"A2"), t, &LIMITS).unwrap();
    assert_eq!(g.state, State::PreparingRebalance);
    // The follower heartbeats (kept alive) but never rejoins.
    let _ = g.heartbeat(&follower, None, 1, t + Duration::from_millis(900));
    g.tick(t + Duration::from_millis(2000), &LIMITS);
    let a = ready(rl).unwrap();
    assert_eq!((a.generation, a.members.len()), (2, 1));
    assert!(!g.members.contains_key(&follower));
}

#[test]
fn leaving_and_expiring_members_rebalance_then_empty_the_group() {
    let now = Instant::now();
    let (mut g, leader, follower) = stable_pair(now);
    let t = now + Duration::from_millis(500);
    assert_eq!(g.leave(&follower, None, t, &LIMITS).unwrap(), None);
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(
        code(g.leave(&follower, None, t, &LIMITS).unwrap_err()),
        GroupError::UnknownMemberId(follower.clone())
    );
    // The leader never rejoins and its session runs out: the group empties and
    // that is persisted.
    let persist = g.tick(t + Duration::from_secs(3), &LIMITS);
    assert_eq!(g.state, State::Empty);
    let stored = persist.expect("an empty generation to store");
    assert!(stored.members.is_empty());
    assert!(g.members.is_empty());
    assert_eq!(
        code(
            g.heartbeat(&leader, None, stored.generation, t)
                .unwrap_err()
        ),
        GroupError::UnknownMemberId(leader.clone())
    );
}

#[test]
fn a_stable_groups_sessions_expire_without_heartbeats() {
    let now = Instant::now();
    let (mut g, leader, follower) = stable_pair(now);
    let t = now + Duration::from_millis(1200);
    assert!(g.heartbeat(&leader, None, 1, t).is_ok());
    g.tick(now + Duration::from_millis(1500), &LIMITS);
    assert!(!g.members.contains_key(&follower), "no heartbeat: expired");
    assert!(g.members.contains_key(&leader));
    assert_eq!(g.state, State::PreparingRebalance);
}

#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g");
    let mut req = join_req("", b"S");
    req.instance_id = Some("i-1".into());
    let rx = g.join(req.clone(), now, &LIMITS).unwrap();
    g.tick(now + Duration::from_millis(300), &LIMITS);
    let first = ready(rx).unwrap();
    let (rs, persist) = g
        .sync(
            sync_req(&first.member_id, 1, &[(&first.member_id, b"all")]),
            now,
        )
        .unwrap();
    assert!(persist.is_some());
    g.persisted(1, Ok(()));
    ready(rs).unwrap();
    // The same instance comes back with no member id: same generation, new id,
    // its assignment kept; the old id is fenced.
    let rx = g
        .join(req, now + Duration::from_millis(500), &LIMITS)
        .unwrap();
    let again = ready(rx).unwrap();
    assert_eq!(again.generation, 1);
    assert_ne!(again.member_id, first.member_id);
    assert_eq!(g.state, State::Stable);
    let (rs, _) = g
        .sync(
            sync_req(&again.member_id, 1, &[]),
            now + Duration::from_millis(500),
        )
        .unwrap();
    assert_eq!(ready(rs).unwrap().assignment, b"all");
    assert_eq!(
        code(
            g.heartbeat(&first.member_id, Some("i-1"), 1, now)
                .unwrap_err()
        ),
        GroupError::FencedInstanceId("i-1".into())
    );
}

#[test]
fn bad_joins_get_kafkas_errors() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g");
    let mut short = join_req("", b"");
    short.session_timeout_ms = 10;
    assert_eq!(
        code(g.join(short, now, &LIMITS).unwrap_err()),
        GroupError::InvalidSessionTimeout(10)
    );
    let mut none = join_req("", b"");
    none.protocols.clear();
    assert_eq!(
        code(g.join(none, now, &LIMITS).unwrap_err()),
        GroupError::InconsistentProtocol
    );
    assert_eq!(
        code(g.join(join_req("nobody", b""), now, &LIMITS).unwrap_err()),
        GroupError::UnknownMemberId("nobody".into())
    );
    let (_a, _ra) = new_member(&mut g, now, b"A");
    let mut other = join_req("", b"");
    other.protocols = vec![("sticky".into(), vec![])];
    assert_eq!(
        code(g.join(other, now, &LIMITS).unwrap_err()),
        GroupError::InconsistentProtocol
    );
    let (_b, _rb) = new_member(&mut g, now, b"B");
    let (_c, _rc) = new_member(&mut g, now, b"C");
    assert_eq!(
        code(g.join(join_req("", b"D"), now, &LIMITS).unwrap_err()),
        GroupError::MaxSizeReached(3)
    );
}

#[test]
fn a_failed_persist_answers_the_waiting_syncs() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g");
    let (a, ra) = new_member(&mut g, now, b"A");
    g.tick(now + Duration::from_millis(300), &LIMITS);
    ready(ra).unwrap();
    let (rs, persist) = g.sync(sync_req(&a, 1, &[(&a, b"x")]), now).unwrap();
    assert!(persist.is_some());
    g.persisted(1, Err(GroupError::NotCoordinator.into()));
    assert_eq!(code(ready(rs).unwrap_err()), GroupError::NotCoordinator);
}

#[test]
fn a_restored_group_takes_its_members_heartbeats() {
    let now = Instant::now();
    let (g, leader, follower) = stable_pair(now);
    let mut restored = ClassicGroup::restore("g", &g.settled(), now);
    assert_eq!(restored.state, State::Stable);
    assert!(restored.heartbeat(&follower, None, 1, now).is_ok());
    let (rs, _) = restored.sync(sync_req(&leader, 1, &[]), now).unwrap();
    assert_eq!(ready(rs).unwrap().assignment, b"p0");
}
