//! Fuzzes an intent-log block (header, checksum, records); see `engine::fuzz::log_block`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    engine::fuzz::log_block(data);
});
