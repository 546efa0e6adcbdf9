//! Test scaffolding (feature `testing`): a RecordBatch v2 builder and an
//! uncompressed-record decoder for the suites and tests. Tools use
//! `kafka_protocol::records` instead.

use super::*;

/// Builds RecordBatch v2 bytes: for tests, tools and benchmarks (uncompressed only).
///
/// ```
/// use weir_core::batch::{BatchBuilder, verify_produced};
/// let bytes = BatchBuilder::new(1_700_000_000_000)
///     .record(Some(b"key"), Some(b"value"))
///     .build();
/// let header = verify_produced(&bytes).unwrap();
/// assert_eq!(header.record_count, 1);
/// ```
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    records: Vec<u8>,
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

impl BatchBuilder {
    /// Starts a batch whose first record has timestamp `base_timestamp` (ms).
    pub fn new(base_timestamp: i64) -> Self {
        BatchBuilder {
            base_timestamp,
            max_timestamp: base_timestamp,
            count: 0,
            records: Vec::new(),
        }
    }

    /// Adds a record at the base timestamp.
    pub fn record(self, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        let ts = self.base_timestamp;
        self.record_at(ts, key, value, &[])
    }

    /// Adds a record with its own timestamp and headers.
    pub fn record_at(
        mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Self {
        let mut body = Vec::new();
        body.push(0); // attributes
        put_varint(&mut body, timestamp - self.base_timestamp);
        put_varint(&mut body, self.count as i64);
        put_bytes(&mut body, key);
        put_bytes(&mut body, value);
        put_varint(&mut body, headers.len() as i64);
        for (k, v) in headers {
            put_bytes(&mut body, Some(k.as_bytes()));
            put_bytes(&mut body, Some(v));
        }
        put_varint(&mut self.records, body.len() as i64);
        self.records.extend_from_slice(&body);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self
    }

    /// Encodes the batch with base offset 0 and leader epoch -1, CRC filled in.
    pub fn build(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + self.records.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        let len = (HEADER_LEN - LOG_OVERHEAD + self.records.len()) as i32;
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(MAGIC_V2 as u8);
        b.extend_from_slice(&[0; 4]); // crc, below
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(self.count - 1).max(0).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&self.max_timestamp.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(&self.records);
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

/// One record of an uncompressed batch, as [`decode_records`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's offset.
    pub offset: Offset,
    /// Its timestamp (ms).
    pub timestamp: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value, if any.
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

fn get_varint(b: &[u8], at: &mut usize) -> Result<i64> {
    let (mut v, mut shift) = (0u64, 0u32);
    loop {
        let byte = *b
            .get(*at)
            .ok_or_else(|| Error::Invalid("truncated varint in a record".into()))?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err(Error::Invalid("varint too long in a record".into()));
        }
    }
}

fn get_bytes(b: &[u8], at: &mut usize) -> Result<Option<Vec<u8>>> {
    let len = get_varint(b, at)?;
    if len < 0 {
        return Ok(None);
    }
    let end = at.checked_add(len as usize).filter(|&e| e <= b.len());
    let end = end.ok_or_else(|| Error::Invalid("record field runs past the batch".into()))?;
    let v = b[*at..end].to_vec();
    *at = end;
    Ok(Some(v))
}

/// Decodes the records of one verified, uncompressed batch. For tools (`weir
/// consume`), never the broker's hot path, which serves batches as stored.
///
/// # Errors
/// [`Error::Unsupported`] for compressed batches, [`Error::Invalid`] when the
/// records are malformed.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>> {
    let h = verify(batch)?;
    if h.compression() != 0 {
        return Err(Error::Unsupported(format!(
            "decoding compressed batches (codec {})",
            h.compression()
        )));
    }
    let mut at = HEADER_LEN;
    let mut out = Vec::with_capacity(h.record_count.max(0) as usize);
    for _ in 0..h.record_count {
        let _len = get_varint(batch, &mut at)?;
        at += 1; // attributes
        let ts_delta = get_varint(batch, &mut at)?;
        let off_delta = get_varint(batch, &mut at)?;
        let key = get_bytes(batch, &mut at)?;
        let value = get_bytes(batch, &mut at)?;
        let n = get_varint(batch, &mut at)?;
        let mut headers = Vec::new();
        for _ in 0..n.max(0) {
            let k = get_bytes(batch, &mut at)?.unwrap_or_default();
            let v = get_bytes(batch, &mut at)?;
            headers.push((String::from_utf8_lossy(&k).into_owned(), v));
        }
        out.push(Record {
            offset: h.base_offset.wrapping_add(off_delta),
            timestamp: h.base_timestamp.wrapping_add(ts_delta),
            key,
            value,
            headers,
        });
    }
    Ok(out)
}
