//! The entry format: what the payload of a proposed Raft entry holds.
//!
//! The first byte is a tag naming the command; the rest is the command's argument.
//! Partition groups carry [`TAG_PRODUCE_STAMPED`] (a record batch the leader
//! stamped with its offsets), [`TAG_PRODUCE`] (a record batch whose offsets are
//! assigned at apply), [`TAG_COMPACT`] (an 8-byte big-endian Raft index) and
//! [`TAG_TRIM`] (an 8-byte big-endian offset); the metadata group carries
//! [`TAG_META`] (a JSON-encoded [`MetaCommand`]). Every replica decodes the same
//! bytes the same way, so a payload a state machine refuses is refused everywhere.

use crate::error::{Error, Result};
use crate::metadata::MetaCommand;

/// A partition group's produce command: the record batch follows.
pub const TAG_PRODUCE: u8 = 1;
/// A metadata command: its JSON encoding follows.
pub const TAG_META: u8 = 2;
/// A partition group's log compaction: every replica compacts its Raft log through
/// the index that follows (8 bytes, big-endian) once its partition log is durable there.
pub const TAG_COMPACT: u8 = 3;
/// A partition group's produce command whose batch the leader stamped with its
/// offsets and leader epoch when it proposed it (docs/write-path.md): every
/// replica stores it at those offsets. [`TAG_PRODUCE`] entries (written before
/// stamping existed, or while one is in flight) take their offsets at apply.
pub const TAG_PRODUCE_STAMPED: u8 = 5;

/// A partition group's log trim (retention, DeleteRecords): every replica raises
/// its partition log's start offset to the offset that follows (8 bytes,
/// big-endian), clamped to its end.
pub const TAG_TRIM: u8 = 6;

/// A decoded partition-group entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartitionEntry<'a> {
    /// A record batch to append at the partition's next offset.
    Produce(&'a [u8]),
    /// A record batch the leader stamped with its offsets.
    Stamped(&'a [u8]),
    /// Compact every replica's Raft log through this index.
    Compact(u64),
    /// Raise every replica's log start offset to this offset.
    Trim(i64),
}

/// Encodes a produce request's batch as a partition-group entry payload.
pub(crate) fn encode_produce(batch: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(batch.len() + 1);
    v.push(TAG_PRODUCE);
    v.extend_from_slice(batch);
    v
}

/// Encodes a compaction command: compact every replica's Raft log through `index`.
pub(crate) fn encode_compact(index: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(TAG_COMPACT);
    v.extend_from_slice(&index.to_be_bytes());
    v
}

/// Encodes a trim command: raise every replica's log start offset to `offset`.
pub(crate) fn encode_trim(offset: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(TAG_TRIM);
    v.extend_from_slice(&offset.to_be_bytes());
    v
}

/// The record batch of a [`TAG_PRODUCE_STAMPED`] entry payload (the leader already
/// gave it its offsets), for engines that store such batches once, where the
/// partition log keeps them ([`Capabilities::unified_log`]); `None` for any other
/// payload.
///
/// [`Capabilities::unified_log`]: crate::Capabilities::unified_log
pub fn stamped_batch(data: &[u8]) -> Option<&[u8]> {
    match data.split_first() {
        Some((&TAG_PRODUCE_STAMPED, batch)) => Some(batch),
        _ => None,
    }
}

/// Whether an entry payload carries a record batch that takes offsets when it is
/// applied ([`TAG_PRODUCE`] or [`TAG_PRODUCE_STAMPED`]).
pub fn carries_batch(data: &[u8]) -> bool {
    matches!(data.first(), Some(&TAG_PRODUCE | &TAG_PRODUCE_STAMPED))
}

/// Decodes a partition-group entry.
///
/// # Errors
/// [`Error::Invalid`] for a payload that is not a partition command (every replica
/// refuses it alike).
pub(crate) fn decode_partition(data: &[u8]) -> Result<PartitionEntry<'_>> {
    match data.split_first() {
        Some((&TAG_PRODUCE, batch)) => Ok(PartitionEntry::Produce(batch)),
        Some((&TAG_PRODUCE_STAMPED, batch)) => Ok(PartitionEntry::Stamped(batch)),
        Some((&TAG_COMPACT, arg)) => arg
            .try_into()
            .map(|b| PartitionEntry::Compact(u64::from_be_bytes(b)))
            .map_err(|_| Error::Invalid("a compaction entry needs an 8-byte index".into())),
        Some((&TAG_TRIM, arg)) => arg
            .try_into()
            .map(|b| PartitionEntry::Trim(i64::from_be_bytes(b)))
            .map_err(|_| Error::Invalid("a trim entry needs an 8-byte offset".into())),
        _ => Err(Error::Invalid("not a partition command".into())),
    }
}

/// Encodes a metadata command as a group-0 entry payload.
///
/// # Errors
/// [`Error::Invalid`] if the command cannot be serialised (it is plain data, so this
/// would be a bug; it is reported, never proposed as an empty entry).
pub(crate) fn encode_meta(cmd: &MetaCommand) -> Result<Vec<u8>> {
    let mut v = vec![TAG_META];
    serde_json::to_writer(&mut v, cmd)
        .map_err(|e| Error::Invalid(format!("cannot encode metadata command {cmd:?}: {e}")))?;
    Ok(v)
}

/// Decodes a group-0 entry payload.
///
/// # Errors
/// [`Error::Invalid`] for a payload that is not a metadata command.
pub(crate) fn decode_meta(data: &[u8]) -> Result<MetaCommand> {
    match data.split_first() {
        Some((&TAG_META, rest)) => serde_json::from_slice(rest)
            .map_err(|e| Error::Invalid(format!("undecodable metadata command: {e}"))),
        _ => Err(Error::Invalid("not a metadata command".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_entries_round_trip() {
        let e = encode_produce(b"batch");
        assert_eq!(
            decode_partition(&e).ok(),
            Some(PartitionEntry::Produce(b"batch"))
        );
        let e = encode_compact(42);
        assert_eq!(decode_partition(&e).ok(), Some(PartitionEntry::Compact(42)));
        assert!(decode_partition(&[TAG_COMPACT, 1, 2]).is_err());
        let e = encode_trim(1234);
        assert_eq!(decode_partition(&e).ok(), Some(PartitionEntry::Trim(1234)));
        assert!(decode_partition(&[TAG_TRIM, 1]).is_err());
        assert!(decode_partition(&[]).is_err());
        assert!(decode_partition(&[TAG_META]).is_err());
    }

    #[test]
    fn metadata_entries_round_trip() -> Result<()> {
        let cmd = MetaCommand::DeleteTopic { name: "t".into() };
        assert_eq!(decode_meta(&encode_meta(&cmd)?)?, cmd);
        assert!(decode_meta(&encode_produce(b"x")).is_err());
        Ok(())
    }
}
