//! Keys and values as stored: big-endian keys (group, index or offset), values
//! sealed with a CRC-32C.

use super::*;

/// The bytes that make up the key of `(group, n)`.
pub fn key(group: GroupId, n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The key of a per-group record.
pub fn group_key(group: GroupId) -> [u8; 8] {
    group.0.to_be_bytes()
}

pub(crate) fn key_n(k: &[u8]) -> Result<u64> {
    k.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt(format!("key of {} bytes, want 16", k.len())))
}

pub(crate) fn key_group(k: &[u8]) -> Result<GroupId> {
    k.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(|b| GroupId(u64::from_be_bytes(b)))
        .ok_or_else(|| Error::Corrupt(format!("key of {} bytes, want at least 8", k.len())))
}

/// `crc ‖ body`: values carry their own CRC-32C so that a store's silent corruption
/// is reported as [`Error::Corrupt`], never served.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    v.extend_from_slice(body);
    v
}

pub(crate) fn unseal<'a>(what: &str, v: &'a [u8]) -> Result<&'a [u8]> {
    let (crc, body) = v
        .split_first_chunk::<4>()
        .ok_or_else(|| Error::Corrupt(format!("{what}: value of {} bytes", v.len())))?;
    if u32::from_le_bytes(*crc) != crc32c::crc32c(body) {
        return Err(Error::Corrupt(format!("{what}: checksum mismatch")));
    }
    Ok(body)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

pub(crate) fn encode_entry(e: &Entry) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(8 + e.compute_size() as usize);
    body.extend_from_slice(&e.term.to_le_bytes());
    e.write_to_vec(&mut body)
        .map_err(|err| Error::Invalid(format!("entry {}: {err}", e.index)))?;
    Ok(seal(&body))
}

pub(crate) fn entry_term(v: &[u8]) -> Result<u64> {
    let body = unseal("raft entry", v)?;
    if body.len() < 8 {
        return Err(Error::Corrupt("raft entry shorter than its term".into()));
    }
    Ok(u64_at(body, 0))
}

pub(crate) fn decode_entry(v: &[u8]) -> Result<Entry> {
    let body = unseal("raft entry", v)?;
    let proto = body
        .get(8..)
        .ok_or_else(|| Error::Corrupt("raft entry shorter than its term".into()))?;
    Entry::parse_from_bytes(proto).map_err(|e| Error::Corrupt(format!("raft entry: {e}")))
}

/// The cached Raft bounds and state of one group.
#[derive(Clone, Debug, Default)]
pub(crate) struct RaftMeta {
    pub(crate) snap_index: u64,
    pub(crate) snap_term: u64,
    pub(crate) last_index: u64,
    pub(crate) hard_state: HardState,
    pub(crate) conf_state: ConfState,
}

impl RaftMeta {
    pub(crate) fn bounds(&self) -> LogBounds {
        LogBounds {
            snap_index: self.snap_index,
            snap_term: self.snap_term,
            last_index: self.last_index,
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let hs = self
            .hard_state
            .write_to_bytes()
            .map_err(|e| Error::Invalid(format!("hard state: {e}")))?;
        let cs = self
            .conf_state
            .write_to_bytes()
            .map_err(|e| Error::Invalid(format!("conf state: {e}")))?;
        let mut body = Vec::with_capacity(20 + hs.len() + cs.len());
        body.extend_from_slice(&self.snap_index.to_le_bytes());
        body.extend_from_slice(&self.snap_term.to_le_bytes());
        body.extend_from_slice(&(hs.len() as u32).to_le_bytes());
        body.extend_from_slice(&hs);
        body.extend_from_slice(&cs);
        Ok(seal(&body))
    }

    /// Decodes a stored record; `last_index` is filled in by the caller.
    pub(crate) fn decode(v: &[u8]) -> Result<RaftMeta> {
        let body = unseal("raft meta", v)?;
        let bad = || Error::Corrupt("raft meta truncated".into());
        let hs_len = body
            .get(16..20)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(bad)? as usize;
        let hs = body.get(20..20 + hs_len).ok_or_else(bad)?;
        let cs = body.get(20 + hs_len..).ok_or_else(bad)?;
        Ok(RaftMeta {
            snap_index: u64_at(body, 0),
            snap_term: u64_at(body, 8),
            last_index: 0,
            hard_state: HardState::parse_from_bytes(hs)
                .map_err(|e| Error::Corrupt(format!("hard state: {e}")))?,
            conf_state: ConfState::parse_from_bytes(cs)
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
        })
    }
}

/// The bit of a batch key's group that names a log's second key space: a
/// partition log lives in one space and a staged log in the other, and an
/// install switches them (see [`StagingStore`](weir_core::StagingStore)).
pub(crate) const SPACE_BIT: u64 = 1 << 63;
/// The bit of a log-meta key's group that names its staged log's record.
pub(crate) const STAGED_BIT: u64 = 1 << 62;

/// A log's state and the key space its batches are in (0 or [`SPACE_BIT`]):
/// 24 bytes in space 0 (as before staging existed), else 32.
pub(crate) fn encode_log_state(s: &LogState, space: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(&s.start_offset.to_le_bytes());
    body.extend_from_slice(&s.next_offset.to_le_bytes());
    body.extend_from_slice(&s.applied_index.to_le_bytes());
    if space != 0 {
        body.extend_from_slice(&space.to_le_bytes());
    }
    seal(&body)
}

pub(crate) fn decode_log_state(v: &[u8]) -> Result<(LogState, u64)> {
    let body = unseal("partition meta", v)?;
    if body.len() != 24 && body.len() != 32 {
        return Err(Error::Corrupt(format!(
            "partition meta of {} bytes",
            body.len()
        )));
    }
    let space = if body.len() == 32 {
        u64_at(body, 24)
    } else {
        0
    };
    if space != 0 && space != SPACE_BIT {
        return Err(Error::Corrupt(format!(
            "partition meta names key space {space:#x}"
        )));
    }
    Ok((
        LogState {
            start_offset: u64_at(body, 0) as i64,
            next_offset: u64_at(body, 8) as i64,
            applied_index: u64_at(body, 16),
        },
        space,
    ))
}

/// The key of a batch: offsets are never negative in a log.
pub(crate) fn batch_key(group: GroupId, offset: Offset) -> [u8; 16] {
    key(group, offset.max(0) as u64)
}
