//! Fuzzes a label header (docs/format.md §Labels); see `engine::fuzz::label`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    engine::fuzz::label(data);
});
