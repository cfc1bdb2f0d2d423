//! Drives one connection's full-feature phase with the PDU stream an initiator sends, over a
//! socketpair on a local reactor against an in-memory LUN; see `target_iscsi::fuzz::connection`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    target_iscsi::fuzz::connection(data);
});
