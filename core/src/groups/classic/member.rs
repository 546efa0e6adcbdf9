//! A member of a classic group as its coordinator keeps it, and small helpers.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{JoinResponse, SyncResponse};
use crate::error::{GroupError, Result};
use crate::groups::store::StoredMember;

pub(super) type JoinWaiter = oneshot::Sender<Result<JoinResponse>>;
pub(super) type SyncWaiter = oneshot::Sender<Result<SyncResponse>>;

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session: Duration,
    pub(crate) rebalance: Duration,
    pub(crate) protocols: Vec<(String, Vec<u8>)>,
    pub(crate) assignment: Vec<u8>,
    pub(super) join: Option<JoinWaiter>,
    pub(super) sync: Option<SyncWaiter>,
    pub(super) deadline: Instant,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub(super) fn stored(&self, protocol: &str) -> StoredMember {
        StoredMember {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: ms(self.session),
            rebalance_timeout_ms: ms(self.rebalance),
            subscription: self.metadata(protocol),
            assignment: self.assignment.clone(),
        }
    }
}

pub(super) fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

pub(super) fn duration(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn clone_error(e: &crate::error::Error) -> crate::error::Error {
    match e {
        crate::error::Error::Group(g) => g.clone().into(),
        crate::error::Error::Timeout(m) => crate::error::Error::Timeout(m.clone()),
        _ => GroupError::NotCoordinator.into(),
    }
}

/// A random version-4 UUID as text, for member ids.
pub(crate) fn uuid4() -> String {
    let b: [u8; 16] = rand::random();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-4{}-{}-{}",
        h(0..4),
        h(4..6),
        &h(6..8)[1..],
        h(8..10),
        h(10..16)
    )
}
