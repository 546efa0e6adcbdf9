//! Kafka RecordBatch v2 (magic 2), read in place.
//!
//! The broker stores and serves the producer's bytes unchanged. It only reads the
//! 61-byte header, checks the CRC-32C, and stamps the two fields that lie outside the
//! CRC: the base offset and the partition leader epoch. Records are never decoded on
//! the hot path.
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset
//!      8     4  batchLength            (bytes after this field)
//!     12     4  partitionLeaderEpoch
//!     16     1  magic (= 2)
//!     17     4  crc (CRC-32C of bytes 21..end, big-endian)
//!     21     2  attributes
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  records count
//!     61     …  records
//! ```

use crate::error::{Error, Result};
use crate::ids::Offset;

mod compact;
mod validate;

pub use compact::{KeyedRecord, Thinned, for_each_record, retain_records};

pub use validate::{
    find_timestamp, set_log_append_time, set_max_timestamp, validate_record_times, validate_records,
};

/// Size of the RecordBatch v2 header, before the first record.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s count starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// The decoded header of one RecordBatch v2; the records stay where they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (stamped by the broker).
    pub base_offset: Offset,
    /// Length of the batch after the `batchLength` field.
    pub batch_length: i32,
    /// The partition leader epoch (stamped by the broker).
    pub leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// The stored CRC-32C.
    pub crc: u32,
    /// Compression codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`.
    ///
    /// Checks the magic byte and that `batchLength` is large enough to hold a header;
    /// does **not** check that `buf` holds the whole batch or that the CRC matches
    /// (see [`BatchHeader::total_len`] and [`verify`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] when `buf` is shorter than a header, the magic is not 2, or
    /// the length field is impossible.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Invalid(format!(
                "record batch shorter than its {HEADER_LEN}-byte header ({} bytes)",
                buf.len()
            )));
        }
        let magic = buf[16] as i8;
        if magic != MAGIC_V2 {
            return Err(Error::Invalid(format!(
                "record batch magic {magic} is not supported (only v2)"
            )));
        }
        let batch_length = be_i32(buf, 8);
        if (batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(Error::Invalid(format!(
                "record batch length {batch_length} is smaller than a header"
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            leader_epoch: be_i32(buf, 12),
            magic,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> Offset {
        self.base_offset + self.last_offset_delta as i64
    }

    /// The compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    /// Whether this is a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Computes the CRC-32C that a batch's `crc` field must hold.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Makes `batch` (one complete batch) an idempotent producer's: producer id,
/// epoch and first sequence, with its CRC recomputed.
///
/// # Panics
/// Never for a batch of at least a header's length; shorter input is left
/// unchanged.
pub fn set_producer(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    if batch.len() < HEADER_LEN {
        return;
    }
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Checks one complete batch: header, exact length and CRC-32C.
///
/// `batch` must be exactly one batch (as delimited by its length field).
///
/// # Errors
/// [`Error::Invalid`] for a malformed header or a length mismatch, [`Error::Corrupt`]
/// when the CRC does not match.
pub fn verify(batch: &[u8]) -> Result<BatchHeader> {
    let h = BatchHeader::parse(batch)?;
    if h.total_len() != batch.len() {
        return Err(Error::Invalid(format!(
            "record batch declares {} bytes but {} were given",
            h.total_len(),
            batch.len()
        )));
    }
    let crc = compute_crc(batch);
    if crc != h.crc {
        return Err(Error::Corrupt(format!(
            "record batch CRC-32C mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    Ok(h)
}

/// Checks a batch a producer sent, beyond [`verify`]: the record count agrees with the
/// offset delta, it has at least one record, and it is not a control batch.
///
/// # Errors
/// As [`verify`], plus [`Error::Invalid`] for the extra checks.
pub fn verify_produced(batch: &[u8]) -> Result<BatchHeader> {
    let h = verify(batch)?;
    if h.record_count < 1 || h.last_offset_delta != h.record_count - 1 {
        return Err(Error::Invalid(format!(
            "record batch has {} records but lastOffsetDelta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    if h.is_control() {
        return Err(Error::Invalid(
            "producers may not send control batches".into(),
        ));
    }
    Ok(h)
}

/// Writes the broker-owned fields (base offset, leader epoch) into a batch in place.
/// Both lie outside the CRC, so the batch stays valid.
///
/// # Panics
/// When `batch` is shorter than a header; callers pass verified batches.
pub fn stamp(batch: &mut [u8], base_offset: Offset, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// The wall clock in ms since the Unix epoch, as record timestamps count time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Splits a buffer holding consecutive batches into them, checking each one.
///
/// Yields `Err` once at the first malformed or corrupt batch, then stops. A trailing
/// partial batch is an error too.
pub fn iter_batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter { buf, failed: false }
}

/// Iterator returned by [`iter_batches`].
#[derive(Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let result = BatchHeader::parse(self.buf).and_then(|h| {
            if h.total_len() > self.buf.len() {
                return Err(Error::Invalid(format!(
                    "truncated record batch: {} of {} bytes",
                    self.buf.len(),
                    h.total_len()
                )));
            }
            let (one, rest) = self.buf.split_at(h.total_len());
            let h = verify(one)?;
            self.buf = rest;
            Ok((h, one))
        });
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

#[cfg(any(test, feature = "testing"))]
mod builder;
#[cfg(any(test, feature = "testing"))]
pub use builder::{BatchBuilder, Record, decode_records};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_verify_stamp_round_trip() {
        let mut b = BatchBuilder::new(1000)
            .record(Some(b"k"), Some(b"v"))
            .record_at(1005, None, Some(b"w"), &[("h", b"x")])
            .build();
        let h = verify_produced(&b).unwrap();
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.max_timestamp, 1005);
        stamp(&mut b, 42, 7);
        let h = verify(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.leader_epoch, h.last_offset()),
            (42, 7, 43)
        );
    }

    #[test]
    fn crc_failure_is_corrupt() {
        let mut b = BatchBuilder::new(0).record(None, Some(b"abc")).build();
        let n = b.len();
        b[n - 1] ^= 1;
        assert!(matches!(verify(&b), Err(Error::Corrupt(_))));
    }

    #[test]
    fn short_and_wrong_magic_are_invalid() {
        let b = BatchBuilder::new(0).record(None, Some(b"abc")).build();
        assert!(matches!(verify(&b[..30]), Err(Error::Invalid(_))));
        let mut m = b.clone();
        m[16] = 1;
        assert!(matches!(verify(&m), Err(Error::Invalid(_))));
        let two = [b.clone(), b[..b.len() - 1].to_vec()].concat();
        let r: Vec<_> = iter_batches(&two).collect();
        assert_eq!(r.len(), 2);
        assert!(r[0].is_ok() && r[1].is_err());
    }

    #[test]
    fn records_decode_back() {
        let mut b = BatchBuilder::new(1000)
            .record(Some(b"k"), Some(b"v"))
            .record_at(1007, None, Some(b"w"), &[("h", b"x")])
            .build();
        stamp(&mut b, 10, 1);
        let r = decode_records(&b).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].offset, r[0].key.as_deref(), r[0].value.as_deref()),
            (10, Some(&b"k"[..]), Some(&b"v"[..]))
        );
        assert_eq!(
            (r[1].offset, r[1].timestamp, r[1].key.clone()),
            (11, 1007, None)
        );
        assert_eq!(r[1].headers, vec![("h".to_string(), Some(b"x".to_vec()))]);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = verify(&bytes);
            let _ = iter_batches(&bytes).count();
            let _ = decode_records(&bytes);
        }
    }
}
