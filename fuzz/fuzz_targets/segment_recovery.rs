//! Recovery of the segment engine when one of its files (WAL, segment, offset or
//! time index) holds arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_engine_segment::fuzzing::recover_image(data);
});
