//! Kafka's framing: every request and response is a 4-byte big-endian size followed
//! by that many bytes. The server, [`crate::client`] and the tests all frame through
//! [`frame_codec`], so no code reads or writes size prefixes by hand.

use std::io;

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio_util::codec::LengthDelimitedCodec;

use super::{RequestMemory, Reservation};

/// The smallest request frame: API key, API version and correlation id.
pub const MIN_REQUEST_BYTES: usize = 8;

/// A codec for Kafka frames of at most `max_frame_bytes` (a larger size prefix, or
/// a negative one read as a huge unsigned size, is an error that closes the
/// connection before anything is allocated for the frame). Decoded frames and the
/// bytes to encode exclude the size prefix.
pub fn frame_codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// Reads request frames from a client, each one only once the node-wide
/// [`RequestMemory`] budget has room for it: the size prefix is read first, and the
/// frame's bytes are reserved (waiting, which pushes back on the client through
/// TCP) before any buffer is sized for them. Frames larger than `max_frame_bytes`
/// are an error before anything is allocated.
///
/// [`FrameReader::next`] is cancel-safe: what was read stays in the reader.
pub struct FrameReader<'a, R> {
    rd: R,
    buf: BytesMut,
    max_frame_bytes: usize,
    memory: &'a RequestMemory,
    /// The frame being read: its size, and its reservation once granted.
    current: Option<(usize, Option<Reservation<'a>>)>,
}

/// Bytes read ahead before a frame's size is known.
const READ_AHEAD: usize = 4096;

impl<'a, R: AsyncRead + Unpin> FrameReader<'a, R> {
    /// A reader of frames of at most `max_frame_bytes` from `rd`, under `memory`.
    pub fn new(rd: R, max_frame_bytes: usize, memory: &'a RequestMemory) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::new(),
            max_frame_bytes,
            memory,
            current: None,
        }
    }

    /// Whether part of a frame has arrived and the rest is awaited from the client
    /// (not while the frame waits for room in the budget: that is not the client's
    /// doing).
    pub fn partial(&self) -> bool {
        !self.buf.is_empty() && !matches!(self.current, Some((_, None)))
    }

    /// The next frame (without its size prefix) with its reservation, which the
    /// caller keeps until the request is answered; `None` when the client closed the
    /// connection between frames.
    ///
    /// # Errors
    /// An oversized frame, a connection closed inside a frame, or a read error.
    pub async fn next(&mut self) -> Option<io::Result<(Bytes, Reservation<'a>)>> {
        loop {
            if self.current.is_none() && self.buf.len() >= 4 {
                let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if size > self.max_frame_bytes {
                    return Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a request frame of {size} bytes is larger than max_request_bytes ({})",
                            self.max_frame_bytes
                        ),
                    )));
                }
                self.current = Some((size, None));
            }
            let want = match &mut self.current {
                Some((size, reservation)) => {
                    if reservation.is_none() {
                        *reservation = Some(self.memory.reserve(4 + *size).await);
                    }
                    if self.buf.len() >= 4 + *size {
                        let size = *size;
                        let reservation = self.current.take().and_then(|(_, r)| r)?;
                        self.buf.advance(4);
                        return Some(Ok((self.buf.split_to(size).freeze(), reservation)));
                    }
                    4 + *size - self.buf.len()
                }
                None => READ_AHEAD,
            };
            self.buf.reserve(want);
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return None,
                Ok(0) => {
                    return Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection inside a request frame",
                    )));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes, BytesMut};
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut codec = frame_codec(16);
        let mut buf = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"hello"), &mut buf)
            .expect("encodes");
        assert_eq!(&buf[..4], &5u32.to_be_bytes());
        let frame = codec.decode(&mut buf).expect("decodes");
        assert_eq!(frame.as_deref(), Some(&b"hello"[..]));

        let mut big = BytesMut::new();
        big.put_i32(17);
        assert!(codec.decode(&mut big).is_err());
        let mut negative = BytesMut::new();
        negative.put_i32(-1);
        assert!(codec.decode(&mut negative).is_err());
    }
}
