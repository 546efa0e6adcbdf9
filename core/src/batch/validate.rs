//! What Kafka's log validator checks of a produced batch beyond its header and
//! CRC: that the records are there as the header says (count, offset deltas, no
//! bytes left over), that a compressed batch uses a known codec and decompresses —
//! within a bound — to such records, and that the transactional flag comes with a
//! producer id. A batch that passes is one every consumer can read.
//!
//! Records are walked, not decoded: per record, its length and the varints up to
//! its offset delta. Uncompressed batches cost one pass over those few bytes per
//! record; compressed ones are decompressed once (streaming, stopped at the bound).

use std::borrow::Cow;
use std::io::Read;

use super::{BatchHeader, HEADER_LEN};
use crate::error::{Error, Result};

/// Attribute bit: the batch belongs to a transaction.
const TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the timestamps are the broker's append time.
const LOG_APPEND_TIME: i16 = 0x08;

/// Checks the records of a batch whose header and CRC were verified, and returns
/// the largest record timestamp (what the header's max timestamp must say; some
/// clients leave it at -1). `max_decompressed` bounds what a compressed batch may
/// expand to. [`validate_record_times`] also returns the smallest.
///
/// # Errors
/// [`Error::Invalid`] for records that disagree with the header, a transactional
/// batch without a producer id, or compressed data that does not decompress (or
/// decompresses past the bound); [`Error::UnsupportedCompression`] for a codec
/// other than none, gzip, snappy, lz4 and zstd.
pub fn validate_records(batch: &[u8], h: &BatchHeader, max_decompressed: usize) -> Result<i64> {
    validate_record_times(batch, h, max_decompressed).map(|(_, max)| max)
}

/// [`validate_records`], returning the smallest and the largest record
/// timestamp (for `message.timestamp.before.max.ms` and `after.max.ms`).
///
/// # Errors
/// As [`validate_records`].
pub fn validate_record_times(
    batch: &[u8],
    h: &BatchHeader,
    max_decompressed: usize,
) -> Result<(i64, i64)> {
    if h.attributes & TRANSACTIONAL != 0 && h.producer_id < 0 {
        return Err(Error::Invalid(
            "a transactional record batch must carry a producer id".into(),
        ));
    }
    let (mut min_delta, mut max_delta) = (i64::MAX, i64::MIN);
    let mut seen = |_offset_delta: i64, ts_delta: i64| {
        min_delta = min_delta.min(ts_delta);
        max_delta = max_delta.max(ts_delta);
        false
    };
    walk_records(
        &records_of(batch, h, max_decompressed)?,
        h.record_count,
        Deltas::Exact,
        &mut seen,
    )?;
    Ok((
        h.base_timestamp.saturating_add(min_delta),
        h.base_timestamp.saturating_add(max_delta),
    ))
}

/// The records of a batch: in place, or decompressed when they are compressed.
pub(super) fn records_of<'a>(
    batch: &'a [u8],
    h: &BatchHeader,
    max_decompressed: usize,
) -> Result<Cow<'a, [u8]>> {
    let body = &batch[HEADER_LEN..];
    match h.compression() {
        0 => Ok(Cow::Borrowed(body)),
        codec @ 1..=4 => decompress(codec, body, max_decompressed).map(Cow::Owned),
        codec => Err(Error::UnsupportedCompression(codec)),
    }
}

/// The offset and timestamp of the first record of a (verified, stored) batch whose
/// timestamp is at least `timestamp`, if one is. A LogAppendTime batch's records
/// all carry the batch's max timestamp.
///
/// # Errors
/// As [`validate_records`].
pub fn find_timestamp(
    batch: &[u8],
    h: &BatchHeader,
    timestamp: i64,
    max_decompressed: usize,
) -> Result<Option<(i64, i64)>> {
    if h.attributes & LOG_APPEND_TIME != 0 {
        return Ok((h.max_timestamp >= timestamp).then_some((h.base_offset, h.max_timestamp)));
    }
    let records = records_of(batch, h, max_decompressed)?;
    let mut found = None;
    walk_records(
        &records,
        h.record_count,
        Deltas::Increasing,
        &mut |offset_delta, ts_delta| {
            let ts = h.base_timestamp.saturating_add(ts_delta);
            if ts >= timestamp {
                found = Some((h.base_offset + offset_delta, ts));
                return true;
            }
            false
        },
    )?;
    Ok(found)
}

/// Rewrites a batch's max timestamp and its CRC (which covers it).
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    batch[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = super::compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Marks a batch as LogAppendTime (attribute bit 3) with the broker's `now` as
/// its max timestamp, and recomputes its CRC: what a topic with
/// `message.timestamp.type=LogAppendTime` stores.
pub fn set_log_append_time(batch: &mut [u8], now: i64) {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    set_max_timestamp(batch, now);
}

/// The codec's name, for messages.
fn codec_name(codec: u8) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "none",
    }
}

/// Decompresses a batch's records, refusing output past `max` bytes.
fn decompress(codec: u8, data: &[u8], max: usize) -> Result<Vec<u8>> {
    let name = codec_name(codec);
    let bad = |e: std::io::Error| {
        Error::Invalid(format!(
            "the {name}-compressed records of the batch do not decompress: {e}"
        ))
    };
    let mut out = Vec::new();
    let limit = max as u64 + 1;
    match codec {
        1 => {
            flate2::read::MultiGzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(bad)?;
        }
        2 => snappy(data, max, &mut out)?,
        3 => {
            lz4::Decoder::new(data)
                .map_err(bad)?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(bad)?;
        }
        _ => {
            zstd::stream::read::Decoder::new(data)
                .map_err(bad)?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(bad)?;
        }
    }
    if out.len() > max {
        return Err(bomb(name, data.len(), max));
    }
    Ok(out)
}

fn bomb(name: &str, compressed: usize, max: usize) -> Error {
    Error::Invalid(format!(
        "the {name}-compressed records of the batch expand past {max} bytes, over {}x their {compressed} bytes: refused as a decompression bomb",
        max / compressed.max(1)
    ))
}

/// The xerial framing that Java's snappy stream writes (and librdkafka reads):
/// a magic header, then blocks each prefixed by its 4-byte length.
pub(super) const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Snappy, raw or in xerial framing.
fn snappy(data: &[u8], max: usize, out: &mut Vec<u8>) -> Result<()> {
    let bad = |why: String| {
        Error::Invalid(format!(
            "the snappy-compressed records of the batch do not decompress: {why}"
        ))
    };
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<()> {
        let len = snap::raw::decompress_len(raw).map_err(|e| bad(e.to_string()))?;
        if out.len().saturating_add(len) > max {
            return Err(bomb("snappy", data.len(), max));
        }
        let at = out.len();
        out.resize(at + len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut out[at..])
            .map_err(|e| bad(e.to_string()))?;
        Ok(())
    };
    let Some(rest) = data.strip_prefix(XERIAL_MAGIC) else {
        return block(data, out);
    };
    // Version and compatible version (4 bytes each) follow the magic.
    let mut rest = rest
        .get(8..)
        .ok_or_else(|| bad("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated xerial block length".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let raw = tail
            .get(..len)
            .ok_or_else(|| bad("truncated xerial block".into()))?;
        block(raw, out)?;
        rest = &tail[len..];
    }
    Ok(())
}

/// Reads a zigzag varint (Kafka's record fields) at `*at`.
pub(super) fn varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// What a walk demands of record offset deltas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deltas {
    /// Each record's offset delta is its position (what producers send).
    Exact,
    /// Offset deltas only grow (a stored batch the cleaner thinned out:
    /// `cleanup.policy=compact` keeps each retained record's offset).
    Increasing,
}

/// Walks `count` records laid end to end in `buf`: each one's length must fit, its
/// offset delta must be as `deltas` demands, and nothing may be left over. `each`
/// sees every record's offset delta and timestamp delta, and stops the walk
/// (early, with nothing more checked) by returning true.
fn walk_records(
    buf: &[u8],
    count: i32,
    deltas: Deltas,
    each: &mut dyn FnMut(i64, i64) -> bool,
) -> Result<()> {
    let invalid = |why: String| Error::Invalid(format!("record batch: {why}"));
    let mut at = 0usize;
    let mut n: i64 = 0;
    let mut prev: i64 = -1;
    while at < buf.len() {
        if n >= i64::from(count) {
            return Err(invalid(format!(
                "the header counts {count} records but the batch holds more ({} bytes left after record {})",
                buf.len() - at,
                n - 1
            )));
        }
        let len = varint(buf, &mut at)
            .filter(|l| *l > 0)
            .ok_or_else(|| invalid(format!("record {n} has no valid length")))?;
        let end = at
            .checked_add(len as usize)
            .filter(|e| *e <= buf.len())
            .ok_or_else(|| invalid(format!("record {n} runs past the end of the batch")))?;
        let record = &buf[..end];
        let mut field = at + 1; // attributes (one byte)
        let timestamp_delta = varint(record, &mut field);
        let delta = varint(record, &mut field)
            .ok_or_else(|| invalid(format!("record {n} is truncated")))?;
        let ok = match deltas {
            Deltas::Exact => delta == n,
            Deltas::Increasing => delta > prev,
        };
        if !ok {
            return Err(invalid(format!(
                "record {n} has offset delta {delta} (expected {})",
                if deltas == Deltas::Exact { n } else { prev + 1 }
            )));
        }
        prev = delta;
        if each(delta, timestamp_delta.unwrap_or(0)) {
            return Ok(());
        }
        at = end;
        n += 1;
    }
    if n != i64::from(count) {
        return Err(invalid(format!(
            "the header counts {count} records but the batch holds {n}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::batch::{BatchBuilder, verify};

    fn header(batch: &[u8]) -> BatchHeader {
        verify(batch).expect("a well-formed batch")
    }

    #[test]
    fn well_formed_batches_pass() {
        let b = BatchBuilder::new(0)
            .record(Some(b"k"), Some(b"v1"))
            .record(None, Some(b"v2"))
            .record(None, None)
            .build();
        validate_records(&b, &header(&b), 1 << 20).expect("valid");
    }

    #[test]
    fn max_timestamps_and_timestamp_lookups_come_from_the_records() {
        let mut b = BatchBuilder::new(1000)
            .record_at(1000, None, Some(b"a"), &[])
            .record_at(3000, None, Some(b"b"), &[])
            .record_at(2000, None, Some(b"c"), &[])
            .build();
        // A client that leaves the max timestamp at -1 (Sarama).
        set_max_timestamp(&mut b, -1);
        let h = header(&b);
        assert_eq!(validate_records(&b, &h, 1 << 20).expect("valid"), 3000);
        set_max_timestamp(&mut b, 3000);
        let h = header(&b);
        assert_eq!(h.max_timestamp, 3000);
        assert_eq!(
            find_timestamp(&b, &h, 1500, 1 << 20).expect("ok"),
            Some((1, 3000))
        );
        assert_eq!(
            find_timestamp(&b, &h, 1000, 1 << 20).expect("ok"),
            Some((0, 1000))
        );
        assert_eq!(find_timestamp(&b, &h, 3001, 1 << 20).expect("ok"), None);
    }

    #[test]
    fn records_walk_catches_count_and_delta_mismatches() {
        let b = BatchBuilder::new(0)
            .record(None, Some(b"a"))
            .record(None, Some(b"b"))
            .record(None, Some(b"c"))
            .build();
        let body = &b[HEADER_LEN..];
        assert!(walk_records(body, 3, Deltas::Exact, &mut |_, _| false).is_ok());
        let e = walk_records(body, 1, Deltas::Exact, &mut |_, _| false)
            .expect_err("three records, header says one");
        assert!(e.to_string().contains("holds more"), "{e}");
        let e = walk_records(body, 4, Deltas::Exact, &mut |_, _| false)
            .expect_err("three records, header says four");
        assert!(e.to_string().contains("holds 3"), "{e}");
        assert!(
            walk_records(&body[..body.len() - 1], 3, Deltas::Exact, &mut |_, _| false).is_err()
        );
    }

    #[test]
    fn compressed_records_are_checked_and_bombs_refused() {
        let b = BatchBuilder::new(0)
            .record(None, Some(&[7u8; 10_000]))
            .build();
        let body = &b[HEADER_LEN..];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body).expect("compress");
        let gz = gz.finish().expect("compress");
        assert_eq!(decompress(1, &gz, 1 << 20).expect("gzip"), body);
        let e = decompress(1, &gz, 1000).expect_err("over the bound");
        assert!(e.to_string().contains("decompression bomb"), "{e}");
        assert!(decompress(1, b"not gzip at all", 1 << 20).is_err());

        let raw = snap::raw::Encoder::new()
            .compress_vec(body)
            .expect("snappy");
        assert_eq!(decompress(2, &raw, 1 << 20).expect("raw snappy"), body);
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        xerial.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&raw);
        assert_eq!(decompress(2, &xerial, 1 << 20).expect("xerial"), body);

        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
        lz.write_all(body).expect("lz4");
        let (lz, done) = lz.finish();
        done.expect("lz4");
        assert_eq!(decompress(3, &lz, 1 << 20).expect("lz4"), body);

        let z = zstd::encode_all(body, 3).expect("zstd");
        assert_eq!(decompress(4, &z, 1 << 20).expect("zstd"), body);
        assert!(decompress(4, &z, 100).is_err());
    }
}
