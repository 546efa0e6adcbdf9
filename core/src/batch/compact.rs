//! Reading the keys of stored batches and thinning them out, for the cleaner of
//! compacted topics (`cleanup.policy=compact`, docs/compaction.md).
//!
//! A thinned batch keeps everything that places it in the log — base offset,
//! `lastOffsetDelta`, base timestamp, producer id, epoch and base sequence,
//! attributes — and the retained records byte for byte (their offset and
//! timestamp deltas included), so each keeps its offset and timestamp. Only the
//! record count, the max timestamp, the length and the CRC change; a compressed
//! batch is decompressed and compressed again with its own codec (snappy in the
//! framing it came in).

use std::io::Write as _;

use super::validate::{XERIAL_MAGIC, records_of, varint};
use super::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, compute_crc};
use crate::error::{Error, Result};
use crate::ids::Offset;

/// Attribute bit: the timestamps are the broker's append time.
const LOG_APPEND_TIME: i16 = 0x08;

/// One record of a stored batch as the cleaner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    /// The record's offset.
    pub offset: Offset,
    /// Its timestamp (ms): the record's own, or the batch's for LogAppendTime.
    pub timestamp: i64,
    /// Its key (`None`: a null key).
    pub key: Option<&'a [u8]>,
    /// Whether its value is null: a tombstone, which deletes the key.
    pub tombstone: bool,
}

/// What [`retain_records`] made of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Thinned {
    /// Every record stays: keep the batch as it is.
    Unchanged,
    /// No record stays: the batch goes (its offsets become a gap).
    Empty,
    /// Some records stay: the rewritten batch.
    Rewritten(Vec<u8>),
}

/// Calls `each` with every record of the verified, stored batch `batch` (header
/// `h`), decompressing up to `max_decompressed` bytes.
///
/// # Errors
/// [`Error::Invalid`] for malformed records or compressed data past the bound;
/// [`Error::UnsupportedCompression`] for an unknown codec.
pub fn for_each_record(
    batch: &[u8],
    h: &BatchHeader,
    max_decompressed: usize,
    each: &mut dyn FnMut(&KeyedRecord<'_>),
) -> Result<()> {
    let records = records_of(batch, h, max_decompressed)?;
    walk(&records, h, &mut |r, _| each(r))
}

/// Keeps the records of a verified, stored batch for which `keep` answers true
/// (see the module docs for what a rewritten batch keeps).
///
/// # Errors
/// As [`for_each_record`].
pub fn retain_records(
    batch: &[u8],
    h: &BatchHeader,
    max_decompressed: usize,
    keep: &mut dyn FnMut(&KeyedRecord<'_>) -> bool,
) -> Result<Thinned> {
    let records = records_of(batch, h, max_decompressed)?;
    let mut body = Vec::new();
    let (mut total, mut kept) = (0i32, 0i32);
    let mut max_ts_delta = i64::MIN;
    walk(&records, h, &mut |r, bytes| {
        total += 1;
        if keep(r) {
            kept += 1;
            body.extend_from_slice(bytes);
            max_ts_delta = max_ts_delta.max(r.timestamp - h.base_timestamp);
        }
    })?;
    if kept == total {
        return Ok(Thinned::Unchanged);
    }
    if kept == 0 {
        return Ok(Thinned::Empty);
    }
    let xerial = batch[HEADER_LEN..].starts_with(XERIAL_MAGIC);
    let body = compress(h.compression(), xerial, &body)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&body);
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| Error::Invalid("a rewritten batch is too long".into()))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    if h.attributes & LOG_APPEND_TIME == 0 {
        let max = h.base_timestamp.saturating_add(max_ts_delta);
        out[35..43].copy_from_slice(&max.to_be_bytes());
    }
    out[57..61].copy_from_slice(&kept.to_be_bytes());
    let crc = compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Thinned::Rewritten(out))
}

/// Walks the (decompressed) records of a batch: each one parsed, with its bytes
/// (length prefix included). Offset deltas must grow and stay within the
/// header's `lastOffsetDelta`; the count must match the header's.
fn walk(buf: &[u8], h: &BatchHeader, each: &mut dyn FnMut(&KeyedRecord<'_>, &[u8])) -> Result<()> {
    let invalid = |n: i32, why: &str| Error::Invalid(format!("record batch: record {n} {why}"));
    let append_time = h.attributes & LOG_APPEND_TIME != 0;
    let mut at = 0usize;
    let (mut n, mut prev) = (0i32, -1i64);
    while at < buf.len() {
        let start = at;
        let len = varint(buf, &mut at)
            .filter(|l| *l > 0)
            .ok_or_else(|| invalid(n, "has no valid length"))?;
        let end = at
            .checked_add(len as usize)
            .filter(|e| *e <= buf.len())
            .ok_or_else(|| invalid(n, "runs past the end of the batch"))?;
        let rec = &buf[..end];
        let mut f = at + 1; // attributes (one byte)
        let short = || invalid(n, "is truncated");
        let ts_delta = varint(rec, &mut f).ok_or_else(short)?;
        let delta = varint(rec, &mut f).ok_or_else(short)?;
        if delta <= prev || delta > i64::from(h.last_offset_delta) {
            return Err(invalid(n, "has an offset delta out of order"));
        }
        prev = delta;
        let key_len = varint(rec, &mut f).ok_or_else(short)?;
        let key = if key_len < 0 {
            None
        } else {
            let k = rec.get(f..f + key_len as usize).ok_or_else(short)?;
            f += key_len as usize;
            Some(k)
        };
        let value_len = varint(rec, &mut f).ok_or_else(short)?;
        let r = KeyedRecord {
            offset: h.base_offset + delta,
            timestamp: if append_time {
                h.max_timestamp
            } else {
                h.base_timestamp.saturating_add(ts_delta)
            },
            key,
            tombstone: value_len < 0,
        };
        each(&r, &buf[start..end]);
        at = end;
        n += 1;
    }
    if n != h.record_count {
        return Err(Error::Invalid(format!(
            "record batch: the header counts {} records but the batch holds {n}",
            h.record_count
        )));
    }
    Ok(())
}

/// Snappy blocks as Java's xerial stream writes them (32 KiB of input each).
const XERIAL_BLOCK: usize = 32 << 10;

/// Compresses records with `codec` (0: as they are).
fn compress(codec: u8, xerial: bool, data: &[u8]) -> Result<Vec<u8>> {
    let failed = |e: std::io::Error| Error::io("compressing a rewritten batch", e);
    match codec {
        0 => Ok(data.to_vec()),
        1 => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(data).map_err(failed)?;
            w.finish().map_err(failed)
        }
        2 if xerial => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK) {
                let block = enc
                    .compress_vec(chunk)
                    .map_err(|e| failed(std::io::Error::other(e)))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        2 => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| failed(std::io::Error::other(e))),
        3 => {
            let mut w = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .map_err(failed)?;
            w.write_all(data).map_err(failed)?;
            let (out, done) = w.finish();
            done.map_err(failed)?;
            Ok(out)
        }
        4 => zstd::stream::encode_all(data, 3).map_err(failed),
        c => Err(Error::UnsupportedCompression(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, verify};

    /// A batch of `records` (key, value) with offset base 100, compressed
    /// with `codec` (snappy in xerial framing when `xerial`).
    fn batch_of(records: &[(&[u8], Option<&[u8]>)], codec: u8, xerial: bool) -> Vec<u8> {
        let mut b = BatchBuilder::new(1_000);
        for (i, (k, v)) in records.iter().enumerate() {
            b = b.record_at(1_000 + i as i64, Some(k), *v, &[]);
        }
        let mut plain = b.build();
        crate::batch::stamp(&mut plain, 100, 3);
        let body = compress(codec, xerial, &plain[HEADER_LEN..]).expect("compress");
        let mut out = plain[..HEADER_LEN].to_vec();
        out.extend_from_slice(&body);
        let len = (out.len() - LOG_OVERHEAD) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        let attrs = i16::from(codec);
        out[21..23].copy_from_slice(&attrs.to_be_bytes());
        let crc = compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn records(batch: &[u8]) -> Vec<(Offset, i64, Vec<u8>, bool)> {
        let h = verify(batch).expect("a valid batch");
        let mut v = Vec::new();
        for_each_record(batch, &h, 1 << 20, &mut |r| {
            v.push((
                r.offset,
                r.timestamp,
                r.key.unwrap_or_default().to_vec(),
                r.tombstone,
            ));
        })
        .expect("records");
        v
    }

    #[test]
    fn thinned_batches_keep_offsets_and_timestamps_in_every_codec() {
        let recs: [(&[u8], Option<&[u8]>); 4] = [
            (b"a", Some(b"1")),
            (b"b", Some(b"2")),
            (b"a", None),
            (b"c", Some(b"3")),
        ];
        for (codec, xerial) in [
            (0, false),
            (1, false),
            (2, false),
            (2, true),
            (3, false),
            (4, false),
        ] {
            let b = batch_of(&recs, codec, xerial);
            let h = verify(&b).expect("valid");
            let Thinned::Rewritten(out) =
                retain_records(&b, &h, 1 << 20, &mut |r| r.offset != 101 && r.offset != 103)
                    .expect("thinned")
            else {
                panic!("codec {codec}: expected a rewritten batch");
            };
            let oh = verify(&out).expect("the rewritten batch passes its CRC");
            assert_eq!(oh.base_offset, 100);
            assert_eq!(oh.last_offset_delta, 3, "lastOffsetDelta is kept");
            assert_eq!(oh.record_count, 2);
            assert_eq!(oh.compression(), codec);
            assert_eq!(oh.leader_epoch, 3);
            assert_eq!(oh.max_timestamp, 1_002, "the max of the records kept");
            assert_eq!(out[HEADER_LEN..].starts_with(XERIAL_MAGIC), xerial);
            assert_eq!(
                records(&out),
                vec![
                    (100, 1_000, b"a".to_vec(), false),
                    (102, 1_002, b"a".to_vec(), true)
                ],
                "codec {codec}"
            );
            // Thinning a thinned batch again works (offset deltas now have gaps).
            let again =
                retain_records(&out, &oh, 1 << 20, &mut |r| r.offset == 102).expect("again");
            let Thinned::Rewritten(again) = again else {
                panic!("expected a rewrite");
            };
            assert_eq!(records(&again), vec![(102, 1_002, b"a".to_vec(), true)]);
            let ah = verify(&again).expect("valid");
            assert_eq!(
                crate::batch::find_timestamp(&again, &ah, 0, 1 << 20).expect("lookup"),
                Some((102, 1_002)),
                "timestamp lookups read thinned batches"
            );
        }
    }

    #[test]
    fn keeping_all_or_nothing_says_so() {
        let b = batch_of(&[(b"a", Some(b"1")), (b"b", Some(b"2"))], 0, false);
        let h = verify(&b).expect("valid");
        assert_eq!(
            retain_records(&b, &h, 1 << 20, &mut |_| true).expect("ok"),
            Thinned::Unchanged
        );
        assert_eq!(
            retain_records(&b, &h, 1 << 20, &mut |_| false).expect("ok"),
            Thinned::Empty
        );
    }

    #[test]
    fn malformed_records_are_refused_not_panicked_on() {
        let b = batch_of(&[(b"a", Some(b"1")), (b"b", Some(b"2"))], 0, false);
        for cut in HEADER_LEN..b.len() {
            let mut t = b[..cut].to_vec();
            let len = (t.len() - LOG_OVERHEAD) as i32;
            t[8..12].copy_from_slice(&len.to_be_bytes());
            let h = BatchHeader::parse(&t).expect("header");
            assert!(
                retain_records(&t, &h, 1 << 20, &mut |_| false).is_err(),
                "cut at {cut}"
            );
        }
    }
}
