//! Feeds arbitrary bytes to the login text parser and to the login state machine, split into
//! several Login Request PDUs; see `target_iscsi::fuzz::login_text`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    target_iscsi::fuzz::login_text(data);
});
