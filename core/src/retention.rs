//! Retention: how far a partition log's start offset may move by time and by size
//! ([`PartitionStore::log_retention_point`]), computed the same way by every
//! engine over the units of storage it can release (segments, or single batches).
//!
//! Kafka's rules, which weir follows:
//!
//! * **time** (`retention.ms`): a unit whose records are all older than the cutoff
//!   (its largest timestamp is below `now - retention.ms`) has expired, and so has
//!   every unit before it; the first unit that has not expired stops the walk.
//!   A unit without timestamps (largest timestamp -1, records of pre-0.10 clients)
//!   never expires by time.
//! * **size** (`retention.bytes`): the oldest units go while what remains still
//!   holds at least `retention.bytes`, so a log keeps between `retention.bytes` and
//!   `retention.bytes` plus one unit. The unit being written (a segment engine's
//!   active segment) never goes by size.
//!
//! The leader computes the point and proposes it through Raft; every replica
//! raises its start offset to it when it applies the command, so the log start
//! moves identically everywhere whatever each replica's units are.

use crate::engine::{LogState, PartitionStore};
use crate::error::Result;
use crate::ids::{GroupId, Offset};

/// What a topic keeps ([`PartitionStore::log_retention_point`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Records whose timestamp is below this (ms since the epoch) have expired;
    /// `None` keeps records whatever their age.
    pub expired_before: Option<i64>,
    /// The log keeps at least this many bytes and drops its oldest units beyond
    /// them; `None` keeps any size.
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Whether neither limit is set (nothing ever expires).
    pub fn is_unlimited(&self) -> bool {
        self.expired_before.is_none() && self.max_bytes.is_none()
    }
}

/// How a partition's log is cut into units, from its topic's configs
/// (`segment.bytes`, `segment.ms`): engines that keep segments roll them by it
/// ([`PartitionStore::log_configure`]); `None` keeps the engine's own setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogShape {
    /// A new segment starts when a batch no longer fits in this many bytes.
    pub segment_bytes: Option<u64>,
    /// …or when the segment being written took its first batch this long ago
    /// (so that time-based retention can release it).
    pub segment_ms: Option<u64>,
}

impl LogShape {
    /// The shape a topic's configs ask for, `segment.ms` defaulting to
    /// `default_segment_ms` (values that do not parse are left to the engine;
    /// configs are validated when they are set).
    pub fn of(
        configs: &std::collections::BTreeMap<String, String>,
        default_segment_ms: Option<u64>,
    ) -> LogShape {
        let num = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<u64>().ok());
        LogShape {
            segment_bytes: num("segment.bytes"),
            segment_ms: num("segment.ms").or(default_segment_ms),
        }
    }
}

/// A unit of storage an engine releases whole, as [`retention_point`] walks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogUnit {
    /// The offset after the unit's last record.
    pub next_offset: Offset,
    /// The bytes it takes.
    pub bytes: u64,
    /// The largest timestamp of its records (-1 when unknown).
    pub max_timestamp: i64,
    /// Whether size retention may release it (not the unit being written).
    pub sealed: bool,
}

/// The start offset retention allows over `units` (oldest first, each ending
/// after the previous one; the first may begin before `state.start_offset`),
/// never below `state.start_offset` nor above `state.next_offset`.
pub fn retention_point(
    state: &LogState,
    units: impl IntoIterator<Item = LogUnit>,
    r: Retention,
) -> Offset {
    let units: Vec<LogUnit> = units
        .into_iter()
        .filter(|u| u.next_offset > state.start_offset)
        .collect();
    let mut point = state.start_offset;
    if let Some(cutoff) = r.expired_before {
        for u in &units {
            if u.max_timestamp < 0 || u.max_timestamp >= cutoff {
                break;
            }
            point = point.max(u.next_offset);
        }
    }
    if let Some(keep) = r.max_bytes {
        let mut total: u64 = units.iter().map(|u| u.bytes).sum();
        for u in units.iter().take_while(|u| u.sealed) {
            if total.saturating_sub(u.bytes) < keep || total < u.bytes {
                break;
            }
            total -= u.bytes;
            point = point.max(u.next_offset);
        }
    }
    point.clamp(
        state.start_offset,
        state.next_offset.max(state.start_offset),
    )
}

/// [`retention_point`] with every batch a unit, read through
/// [`PartitionStore::log_read`]: what an engine offers without a cheaper way.
///
/// # Errors
/// Those of reading the log.
pub fn retention_point_by_reading(
    engine: &(impl PartitionStore + ?Sized),
    group: GroupId,
    r: Retention,
) -> Result<Offset> {
    let state = engine.log_state(group)?;
    if r.is_unlimited() || state.start_offset >= state.next_offset {
        return Ok(state.start_offset);
    }
    let mut units = Vec::new();
    let mut at = state.start_offset;
    while at < state.next_offset {
        let bytes = engine.log_read(group, at, 1 << 20)?;
        if bytes.is_empty() {
            break;
        }
        for b in crate::batch::iter_batches(&bytes) {
            let (h, one) = b?;
            at = h.last_offset() + 1;
            units.push(LogUnit {
                next_offset: at,
                bytes: one.len() as u64,
                max_timestamp: h.max_timestamp,
                sealed: true,
            });
        }
    }
    Ok(retention_point(&state, units, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(next_offset: Offset, bytes: u64, max_timestamp: i64) -> LogUnit {
        LogUnit {
            next_offset,
            bytes,
            max_timestamp,
            sealed: true,
        }
    }

    fn state(start: Offset, next: Offset) -> LogState {
        LogState {
            start_offset: start,
            next_offset: next,
            applied_index: 1,
        }
    }

    #[test]
    fn time_stops_at_the_first_unexpired_unit() {
        let units = [unit(10, 100, 5), unit(20, 100, 50), unit(30, 100, 7)];
        let r = |before| Retention {
            expired_before: Some(before),
            max_bytes: None,
        };
        assert_eq!(retention_point(&state(0, 30), units, r(6)), 10);
        assert_eq!(retention_point(&state(0, 30), units, r(5)), 0);
        // The third unit is older than the second, but the walk stopped there.
        assert_eq!(retention_point(&state(0, 30), units, r(40)), 10);
        assert_eq!(retention_point(&state(0, 30), units, r(51)), 30);
        // Never below the start, never above the end.
        assert_eq!(retention_point(&state(15, 30), units, r(6)), 15);
        assert_eq!(retention_point(&state(0, 25), units, r(51)), 25);
        // Unknown timestamps never expire.
        assert_eq!(
            retention_point(&state(0, 30), [unit(10, 1, -1), unit(30, 1, 1)], r(100)),
            0
        );
    }

    #[test]
    fn size_keeps_at_least_the_limit_and_never_the_active_unit() {
        let mut units = vec![
            unit(10, 100, 1),
            unit(20, 100, 1),
            unit(30, 100, 1),
            unit(40, 100, 1),
        ];
        let r = |keep| Retention {
            expired_before: None,
            max_bytes: Some(keep),
        };
        assert_eq!(retention_point(&state(0, 40), units.clone(), r(400)), 0);
        assert_eq!(retention_point(&state(0, 40), units.clone(), r(301)), 0);
        assert_eq!(retention_point(&state(0, 40), units.clone(), r(300)), 10);
        assert_eq!(retention_point(&state(0, 40), units.clone(), r(150)), 20);
        assert_eq!(retention_point(&state(0, 40), units.clone(), r(0)), 40);
        units[3].sealed = false;
        assert_eq!(retention_point(&state(0, 40), units.clone(), r(0)), 30);
        // Units wholly below the start are gone already and not counted.
        assert_eq!(retention_point(&state(10, 40), units, r(200)), 20);
    }

    #[test]
    fn both_limits_take_the_further_point() {
        let units = [unit(10, 100, 1), unit(20, 100, 100), unit(30, 100, 100)];
        let r = Retention {
            expired_before: Some(50),
            max_bytes: Some(100),
        };
        assert_eq!(retention_point(&state(0, 30), units, r), 20);
        assert!(Retention::default().is_unlimited());
    }
}
