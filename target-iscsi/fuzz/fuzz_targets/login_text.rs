//! Feeds arbitrary bytes to the login text parser and to the login state machine, split into
//! several Login Request PDUs (with and without the C bit) against a target that requires
//! CHAP and one that does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use target_iscsi::chap::{ChapCredentials, ChapSecret};
use target_iscsi::login::{Login, LoginConfig, LoginOutcome, TargetConfig};
use target_iscsi::pdu::{Isid, LoginRequest, Stage};
use target_iscsi::text::{parse_binary, parse_number, parse_pairs};

fn config() -> LoginConfig {
    LoginConfig {
        targets: vec![
            TargetConfig {
                name: "iqn.2024-01.org.ferrite:open".into(),
                alias: Some("open".into()),
                portal_group_tag: 1,
                acl: None,
                chap: None,
            },
            TargetConfig {
                name: "iqn.2024-01.org.ferrite:secure".into(),
                alias: None,
                portal_group_tag: 1,
                acl: Some(vec!["iqn.2024-01.org.example:host".into()]),
                chap: Some(ChapCredentials {
                    initiator: ChapSecret { username: "u".into(), secret: b"secret-one".to_vec() },
                    mutual: Some(ChapSecret {
                        username: "t".into(),
                        secret: b"secret-two".to_vec(),
                    }),
                }),
            },
        ],
        ..LoginConfig::default()
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = parse_pairs(data) {
        for kv in &pairs {
            let _ = parse_number(kv.value);
            let _ = parse_binary(kv.value);
        }
    }
    let Some((&control, text)) = data.split_first() else {
        return;
    };
    let config = config();
    let mut login = Login::new();
    // Split the text into up to 4 PDUs; control bits choose stages, T and C bits.
    let pieces = text.len().div_ceil(4).max(1);
    for (i, chunk) in text.chunks(pieces).enumerate() {
        let bits = control.rotate_left(u32::try_from(i * 2).unwrap_or(0));
        let csg = if bits & 1 == 0 { Stage::SecurityNegotiation } else { Stage::LoginOperationalNegotiation };
        let transit = bits & 2 != 0;
        let req = LoginRequest {
            transit,
            continue_bit: !transit && bits & 4 != 0,
            csg,
            nsg: transit.then_some(Stage::FullFeaturePhase),
            version_max: 0,
            version_min: 0,
            isid: Isid([0x40, 0, 0, 1, 0, 0]),
            tsih: u16::from(bits & 8 != 0),
            itt: 1,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            data_segment_length: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
        };
        let reply = login.step(&config, &req, chunk);
        assert!(reply.text.len() <= 8192);
        assert_eq!(reply.response.data_segment_length as usize, reply.text.len());
        if !matches!(reply.outcome, LoginOutcome::Continue) {
            break;
        }
    }
});
