//! Kafka's framing: every request and response is a 4-byte big-endian size followed
//! by that many bytes. The server, [`crate::client`] and the tests all frame through
//! [`frame_codec`], so no code reads or writes size prefixes by hand.

use tokio_util::codec::LengthDelimitedCodec;

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
