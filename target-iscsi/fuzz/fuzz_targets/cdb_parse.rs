//! Fuzzes the SCSI CDB decoder and the logical-unit command path (see
//! `target_iscsi::scsi::fuzz::run_one`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    target_iscsi::scsi::fuzz::run_one(data);
});
