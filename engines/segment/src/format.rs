//! Byte layouts shared by the WAL files and the segment files; see `docs/format.md`.
//!
//! Every file starts with a 4 KiB header page:
//!
//! ```text
//!    0   8  magic ("WEIRWAL1" or "WEIRSEG1")
//!    8   8  file id (WAL: sequence number; segment: base offset), little-endian
//!   16   4  CRC-32C of bytes 0..16
//!   64  64  checkpoint slot A
//!  128  64  checkpoint slot B
//! ```
//!
//! A checkpoint slot is `generation u64 | six u64 fields | CRC-32C u32 of the first
//! 56 bytes`. Writers alternate slots (generation odd → A, even → B), so a torn slot
//! write leaves the other, older slot intact; readers take the valid slot with the
//! highest generation.

use crate::error::SegError;

/// Size of the header page at the start of every file.
pub(crate) const HEADER_LEN: u64 = 4096;
const SLOT_A: usize = 64;
const SLOT_LEN: usize = 64;
/// Number of u64 fields a checkpoint slot carries.
pub(crate) const SLOT_FIELDS: usize = 6;

/// The kind of file a header belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Magic {
    Wal,
    Segment,
}

impl Magic {
    fn bytes(self) -> &'static [u8; 8] {
        match self {
            Magic::Wal => b"WEIRWAL1",
            Magic::Segment => b"WEIRSEG1",
        }
    }
}

/// Encodes a fresh header page (no valid checkpoint slot).
pub(crate) fn encode_header(magic: Magic, id: u64) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(magic.bytes());
    h[8..16].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a header page and returns its file id.
pub(crate) fn decode_header(magic: Magic, page: &[u8], what: &str) -> Result<u64, SegError> {
    if page.len() < HEADER_LEN as usize {
        return Err(SegError::Corrupt(format!(
            "{what}: shorter than its header page"
        )));
    }
    let crc = u32::from_le_bytes([page[16], page[17], page[18], page[19]]);
    if &page[0..8] != magic.bytes() || crc32c::crc32c(&page[0..16]) != crc {
        return Err(SegError::Corrupt(format!(
            "{what}: bad header (magic or checksum)"
        )));
    }
    Ok(u64::from_le_bytes(page[8..16].try_into().map_err(
        |_| SegError::Corrupt(format!("{what}: bad header")),
    )?))
}

/// A decoded checkpoint slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) generation: u64,
    pub(crate) fields: [u64; SLOT_FIELDS],
}

impl Checkpoint {
    /// The byte offset of the slot this checkpoint's generation is written to.
    pub(crate) fn slot_offset(&self) -> usize {
        SLOT_A + (self.generation % 2) as usize * SLOT_LEN
    }

    /// The encoded slot.
    pub(crate) fn encode(&self) -> [u8; SLOT_LEN] {
        let mut s = [0u8; SLOT_LEN];
        s[0..8].copy_from_slice(&self.generation.to_le_bytes());
        for (i, f) in self.fields.iter().enumerate() {
            s[8 + i * 8..16 + i * 8].copy_from_slice(&f.to_le_bytes());
        }
        let crc = crc32c::crc32c(&s[0..56]);
        s[56..60].copy_from_slice(&crc.to_le_bytes());
        s
    }

    fn decode(s: &[u8]) -> Option<Checkpoint> {
        let crc = u32::from_le_bytes(s[56..60].try_into().ok()?);
        if crc32c::crc32c(&s[0..56]) != crc {
            return None;
        }
        let generation = u64::from_le_bytes(s[0..8].try_into().ok()?);
        if generation == 0 {
            return None;
        }
        let mut fields = [0u64; SLOT_FIELDS];
        for (i, f) in fields.iter_mut().enumerate() {
            *f = u64::from_le_bytes(s[8 + i * 8..16 + i * 8].try_into().ok()?);
        }
        Some(Checkpoint { generation, fields })
    }

    /// The newest valid checkpoint in a header page, if any.
    pub(crate) fn read(page: &[u8]) -> Option<Checkpoint> {
        let a = Checkpoint::decode(&page[SLOT_A..SLOT_A + SLOT_LEN]);
        let b = Checkpoint::decode(&page[SLOT_A + SLOT_LEN..SLOT_A + 2 * SLOT_LEN]);
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.generation > b.generation { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// The next checkpoint, with new fields.
    pub(crate) fn next(&self, fields: [u64; SLOT_FIELDS]) -> Checkpoint {
        Checkpoint {
            generation: self.generation + 1,
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_slots_round_trip() {
        let mut page = encode_header(Magic::Wal, 42);
        assert_eq!(decode_header(Magic::Wal, &page, "t").unwrap(), 42);
        assert!(decode_header(Magic::Segment, &page, "t").is_err());
        assert_eq!(Checkpoint::read(&page), None);
        let c1 = Checkpoint::default().next([1, 2, 3, 4, 5, 6]);
        page[c1.slot_offset()..c1.slot_offset() + 64].copy_from_slice(&c1.encode());
        let c2 = c1.next([7, 8, 9, 10, 11, 12]);
        page[c2.slot_offset()..c2.slot_offset() + 64].copy_from_slice(&c2.encode());
        assert_eq!(Checkpoint::read(&page), Some(c2));
        // A torn write of the newest slot falls back to the older one.
        page[c2.slot_offset() + 3] ^= 0xff;
        assert_eq!(Checkpoint::read(&page), Some(c1));
    }
}
