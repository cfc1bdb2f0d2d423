//! Fuzzes block pointers: an indirect block, a pointer array, one pointer; see `engine::fuzz::block_pointer`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    engine::fuzz::block_pointer(data);
});
