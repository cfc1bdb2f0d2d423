//! Drives the login state machine with a stream of Login Request PDUs as they arrive on the
//! wire; see `target_iscsi::fuzz::login_sequence`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    target_iscsi::fuzz::login_sequence(data);
});
