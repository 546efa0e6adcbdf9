//! Bytes received on a TCP peer connection after the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_transport_tcp::decode_frames(&bytes::Bytes::copy_from_slice(data), 1 << 20);
});
