//! The WAL's record codec: a 17-byte header (payload length, CRC-32C, kind, group)
//! and a payload per kind (see `docs/format.md`).

use super::*;

/// Bytes of a record's header: payload length (4), CRC-32C (4), kind (1), group (8).
pub(super) const REC_HEADER: usize = 17;
/// Largest record payload accepted when reading (a Raft entry is at most a few MiB).
pub(super) const MAX_PAYLOAD: usize = 256 << 20;

pub(super) const KIND_ENTRY: u8 = 1;
pub(super) const KIND_HARD_STATE: u8 = 2;
pub(super) const KIND_CONF_STATE: u8 = 3;
pub(super) const KIND_COMPACT: u8 = 4;
pub(super) const KIND_SNAPSHOT: u8 = 5;
pub(super) const KIND_REMOVE: u8 = 6;
pub(super) const KIND_GROUP_STATE: u8 = 7;
pub(super) const KIND_SYNC_MARK: u8 = 8;
pub(super) const KIND_GROUP_STATE_V2: u8 = 9;
/// An entry whose batch is stored in the partition log (a unified log): the
/// entry's fields, the [`Placed`] description of the batch, then the entry data
/// without the batch (its tag).
pub(super) const KIND_ENTRY_PLACED: u8 = 10;
/// The group's log ends before the index that follows (8 bytes): written at open
/// for entries whose batches did not survive a crash.
pub(super) const KIND_TRUNCATE: u8 = 11;
/// Encoded size of a sync mark record.
pub(super) const SYNC_MARK_LEN: usize = REC_HEADER + 8;

/// A decoded record, as written and as replayed.
#[derive(Debug)]
pub(super) enum Record {
    Entry {
        index: u64,
        term: u64,
        /// Where the entry's batch is, for a [`KIND_ENTRY_PLACED`] record.
        placed: Option<Placed>,
    },
    HardState(HardState),
    ConfState(ConfState),
    Compact {
        index: u64,
        term: u64,
    },
    Snapshot(SnapshotMetadata),
    Remove,
    /// The log ends before `index`; the commit index is lowered to match.
    Truncate {
        index: u64,
    },
    GroupState {
        snap_index: u64,
        snap_term: u64,
        /// The last index when the file was created (absent in files written before
        /// it was recorded).
        last_index: Option<u64>,
        hard_state: HardState,
        conf_state: ConfState,
    },
    /// A sync mark: everything before the position it names was durable when it
    /// was written (read from the bytes by `synced_beyond`).
    SyncMark,
}

/// A protobuf message's bytes; a message that cannot be encoded is an error, never
/// an empty record that would read back as a default state.
pub(super) fn proto_bytes(m: &impl protobuf::Message) -> Result<Vec<u8>, SegError> {
    m.write_to_bytes().map_err(|e| {
        SegError::Encode(format!(
            "cannot encode a {} for the WAL: {e}",
            m.descriptor().name()
        ))
    })
}

pub(super) fn encode_record(out: &mut Vec<u8>, kind: u8, group: GroupId, payload: &[&[u8]]) -> u32 {
    let start = out.len();
    let len: usize = payload.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&group.0.to_le_bytes());
    for p in payload {
        out.extend_from_slice(p);
    }
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    (out.len() - start) as u32
}

pub(super) fn entry_payload_head(e: &Entry) -> Vec<u8> {
    let mut h = Vec::with_capacity(21 + e.context.len());
    h.extend_from_slice(&e.index.to_le_bytes());
    h.extend_from_slice(&e.term.to_le_bytes());
    h.push(e.entry_type.value() as u8);
    h.extend_from_slice(&(e.context.len() as u32).to_le_bytes());
    h.extend_from_slice(&e.context);
    h
}

pub(super) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks the record at the start of `buf`; returns (kind, group, payload, length).
pub(super) fn parse_record(buf: &[u8]) -> Option<(u8, GroupId, &[u8], usize)> {
    let len = u32_at(buf, 0)? as usize;
    if len > MAX_PAYLOAD || buf.len() < REC_HEADER + len {
        return None;
    }
    let crc = u32_at(buf, 4)?;
    let body = &buf[8..REC_HEADER + len];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let kind = buf[8];
    let group = GroupId(u64_at(buf, 9)?);
    Some((
        kind,
        group,
        &buf[REC_HEADER..REC_HEADER + len],
        REC_HEADER + len,
    ))
}

/// Decodes an entry record's payload: the entry (for a placed one, its data
/// without the batch) and where its batch is.
pub(super) fn decode_any_entry(kind: u8, payload: &[u8]) -> Option<(Entry, Option<Placed>)> {
    if kind != KIND_ENTRY_PLACED {
        return decode_entry(payload).map(|e| (e, None));
    }
    let ctx_len = u32_at(payload, 17)? as usize;
    let at = 21 + ctx_len;
    let placed = Placed::decode(payload.get(at..)?)?;
    let mut rest = Vec::with_capacity(payload.len() - PLACED_LEN);
    rest.extend_from_slice(&payload[..at]);
    rest.extend_from_slice(&payload[at + PLACED_LEN..]);
    Some((decode_entry(&rest)?, Some(placed)))
}

pub(super) fn decode_entry(payload: &[u8]) -> Option<Entry> {
    let index = u64_at(payload, 0)?;
    let term = u64_at(payload, 8)?;
    let ty = match *payload.get(16)? {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => return None,
    };
    let ctx_len = u32_at(payload, 17)? as usize;
    let ctx = payload.get(21..21 + ctx_len)?;
    let data = payload.get(21 + ctx_len..)?;
    Some(Entry {
        index,
        term,
        entry_type: ty,
        context: Bytes::copy_from_slice(ctx),
        data: Bytes::copy_from_slice(data),
        ..Entry::default()
    })
}

pub(super) fn decode_record(kind: u8, payload: &[u8]) -> Option<Record> {
    Some(match kind {
        KIND_ENTRY | KIND_ENTRY_PLACED => {
            let (e, placed) = decode_any_entry(kind, payload)?;
            Record::Entry {
                index: e.index,
                term: e.term,
                placed,
            }
        }
        KIND_HARD_STATE => Record::HardState(HardState::parse_from_bytes(payload).ok()?),
        KIND_CONF_STATE => Record::ConfState(ConfState::parse_from_bytes(payload).ok()?),
        KIND_COMPACT => Record::Compact {
            index: u64_at(payload, 0)?,
            term: u64_at(payload, 8)?,
        },
        KIND_SNAPSHOT => Record::Snapshot(SnapshotMetadata::parse_from_bytes(payload).ok()?),
        KIND_REMOVE => Record::Remove,
        KIND_TRUNCATE => Record::Truncate {
            index: u64_at(payload, 0)?,
        },
        KIND_SYNC_MARK => {
            u64_at(payload, 0)?;
            Record::SyncMark
        }
        KIND_GROUP_STATE | KIND_GROUP_STATE_V2 => {
            let (last_index, at) = if kind == KIND_GROUP_STATE_V2 {
                (Some(u64_at(payload, 16)?), 24)
            } else {
                (None, 16)
            };
            let hs_len = u32_at(payload, at)? as usize;
            let hs = payload.get(at + 4..at + 4 + hs_len)?;
            let cs = payload.get(at + 4 + hs_len..)?;
            Record::GroupState {
                snap_index: u64_at(payload, 0)?,
                snap_term: u64_at(payload, 8)?,
                last_index,
                hard_state: HardState::parse_from_bytes(hs).ok()?,
                conf_state: ConfState::parse_from_bytes(cs).ok()?,
            }
        }
        _ => return None,
    })
}

pub(super) fn file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}
