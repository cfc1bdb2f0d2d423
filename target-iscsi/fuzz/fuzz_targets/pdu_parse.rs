//! Feeds arbitrary bytes to the PDU parsers: BHS (initiator and target opcodes), AHS,
//! and digest checks; see `target_iscsi::fuzz::pdu_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    target_iscsi::fuzz::pdu_parse(data);
});
