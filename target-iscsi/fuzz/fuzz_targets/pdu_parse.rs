//! Feeds arbitrary bytes to the PDU parsers: BHS (initiator and target opcodes), AHS,
//! and digest checks. Anything that parses must re-encode to a header that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use target_iscsi::digest::{verify_data_digest, verify_header_digest};
use target_iscsi::pdu::{Ahs, Bhs, Cdb, InitiatorPdu, TargetPdu, BHS_LEN};

fuzz_target!(|data: &[u8]| {
    let Some(bhs) = Bhs::from_slice(data) else {
        return;
    };
    let rest = &data[BHS_LEN..];
    // The limit the target declared, taken from the input so every bound is exercised.
    let limit = rest
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(8192, |b| u32::from_be_bytes(b) & 0x00ff_ffff);
    if let Ok(pdu) = InitiatorPdu::parse(&bhs, limit) {
        assert_eq!(InitiatorPdu::parse(&pdu.encode(), limit), Ok(pdu));
        if let InitiatorPdu::ScsiCommand(cmd) = pdu {
            let ahs_len = usize::from(cmd.total_ahs_length_words) * 4;
            if let Some(ahs_bytes) = rest.get(..ahs_len) {
                if let Ok(ahs) = Ahs::parse(ahs_bytes) {
                    let cdb = Cdb::assemble(&cmd.cdb, ahs.extended_cdb);
                    assert!(cdb.as_bytes().len() >= 16);
                }
            }
        }
    }
    if let Ok(pdu) = TargetPdu::parse(&bhs) {
        assert_eq!(TargetPdu::parse(&pdu.encode()), Ok(pdu));
    }
    let _ = Ahs::parse(rest);
    if let Some(digest) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        let _ = verify_header_digest(&bhs.bytes, digest);
        let _ = verify_data_digest(&rest[4..], digest);
    }
});
