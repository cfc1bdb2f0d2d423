//! Fuzzes an uberblock ring slot; see `engine::fuzz::uberblock`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    engine::fuzz::uberblock(data);
});
