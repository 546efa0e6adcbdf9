//! Recovery of the segment engine from an arbitrary WAL file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_engine_segment::fuzzing::recover_wal_image(data);
});
