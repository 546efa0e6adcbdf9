//! The frame of a state checkpoint ([`StateStore`](crate::engine::StateStore)):
//! which applied index the state reflects, and a checksum over it all.
//!
//! ```text
//! magic "WCK1" (4) | applied index (8, big-endian) | CRC-32C of what follows it (4) | payload
//! ```
//!
//! The engine stores the frame as an opaque blob; [`decode`] refuses one that
//! fails its checks with [`Error::Corrupt`], so a damaged checkpoint is never
//! taken for state.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::ids::GroupId;

const MAGIC: &[u8; 4] = b"WCK1";
const HEADER: usize = 16;

/// A decoded checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last Raft index applied to the state.
    pub index: u64,
    /// The state machine's serialized state.
    pub payload: Bytes,
}

/// Frames `payload` as the state after applying Raft index `index`.
pub fn encode(index: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&index.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&index.to_be_bytes()), payload);
    v.extend_from_slice(&crc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Reads a frame that [`encode`] wrote for `group`.
///
/// # Errors
/// [`Error::Corrupt`] naming the group when the frame is short, of another
/// format, or fails its checksum.
pub fn decode(group: GroupId, blob: Bytes) -> Result<Checkpoint> {
    let corrupt = |why: &str| Error::Corrupt(format!("{group}: state checkpoint {why}"));
    if blob.len() < HEADER || &blob[..4] != MAGIC {
        return Err(corrupt("is not a weir checkpoint"));
    }
    let index = u64::from_be_bytes(blob[4..12].try_into().map_err(|_| corrupt("is short"))?);
    let crc = u32::from_be_bytes(blob[12..16].try_into().map_err(|_| corrupt("is short"))?);
    let payload = blob.slice(HEADER..);
    if crc32c::crc32c_append(crc32c::crc32c(&index.to_be_bytes()), &payload) != crc {
        return Err(corrupt("fails its checksum"));
    }
    Ok(Checkpoint { index, payload })
}

/// `value` encoded with postcard behind a version byte `format`: how state
/// payloads (checkpoints, snapshot data) are written, so that a reader of
/// another format refuses them instead of misreading them.
///
/// # Errors
/// Why it cannot be encoded (plain data: a bug).
pub(crate) fn to_versioned<T: serde::Serialize>(
    format: u8,
    value: &T,
) -> std::result::Result<Vec<u8>, String> {
    postcard::to_extend(value, vec![format]).map_err(|e| e.to_string())
}

/// Reads what [`to_versioned`] wrote with `format`.
///
/// # Errors
/// Why the bytes are not that: empty, another format, or undecodable.
pub(crate) fn from_versioned<T: for<'de> serde::Deserialize<'de>>(
    format: u8,
    bytes: &[u8],
) -> std::result::Result<T, String> {
    match bytes.split_first() {
        Some((&v, rest)) if v == format => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!(
            "format {v} is not known (this weir reads {format})"
        )),
        None => Err("empty".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let g = GroupId(3);
        let blob = encode(42, b"state");
        let c = decode(g, Bytes::from(blob.clone())).unwrap();
        assert_eq!((c.index, &c.payload[..]), (42, &b"state"[..]));
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert!(
                matches!(decode(g, Bytes::from(bad)), Err(Error::Corrupt(_))),
                "byte {i}"
            );
        }
        assert!(decode(g, Bytes::from_static(b"WCK1")).is_err());
        assert_eq!(decode(g, Bytes::from(encode(0, b""))).unwrap().index, 0);
    }
}
