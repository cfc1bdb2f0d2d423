//! Fuzzes a space map image of a given unit count; see `engine::fuzz::space_map`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    engine::fuzz::space_map(data);
});
