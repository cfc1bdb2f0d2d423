//! Fuzzes a dedup-table log object, decoded and replayed into a table; see `engine::fuzz::ddt_log`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    engine::fuzz::ddt_log(data);
});
