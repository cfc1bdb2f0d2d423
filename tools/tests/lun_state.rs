//! State that belongs to one LUN stays with that LUN, and a LUN's contents never change under
//! a logged-in initiator unnoticed, with a real ferrited and the in-tree initiator:
//!
//! - An APTPL persistent reservation and a saved WCE=0 made on one LUN of two targets whose
//!   IQNs differ only after the last dot (two LUNs each) survive a daemon restart on that LUN
//!   and appear on none of the other three; a state file in the old shared naming is set aside
//!   and applied to no LUN.
//! - `snapshot rollback` of a volume exported with two sessions is refused, naming them; with
//!   `--force` both sessions get UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
//!   on their next command and then read the rolled-back data.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use target_iscsi::initiator::{Initiator, LoginOptions, Response};

const TARGET_A: &str = "iqn.2026-12.io.ferrite:state.a";
const TARGET_B: &str = "iqn.2026-12.io.ferrite:state.b";
const KEY: u64 = 0x0123_4567_89ab_cdef;
/// PERSISTENT RESERVE type WRITE EXCLUSIVE.
const WRITE_EXCLUSIVE: u8 = 1;

fn memory_targets_config() -> String {
    let luns = "[[target.lun]]\nid = 0\nbackend = \"memory\"\nsize = \"16M\"\n\
                [[target.lun]]\nid = 1\nbackend = \"memory\"\nsize = \"16M\"\n";
    format!(
        "[daemon]\nshards = 1\n[[portal]]\naddress = \"PORTAL\"\n\
         [[target]]\niqn = \"{TARGET_A}\"\n{luns}[[target]]\niqn = \"{TARGET_B}\"\n{luns}"
    )
}

/// Additional sense code and qualifier (fixed or descriptor format).
fn asc_ascq(r: &Response) -> Option<(u8, u8)> {
    match r.sense.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) => Some((*r.sense.get(12)?, *r.sense.get(13)?)),
        Some(0x72 | 0x73) => Some((*r.sense.get(2)?, *r.sense.get(3)?)),
        _ => None,
    }
}

fn login(portal: SocketAddr, initiator: &str, target: &str) -> Initiator {
    let mut opts = LoginOptions::new(initiator, target);
    opts.timeout = Duration::from_secs(20);
    let mut ini = Initiator::login(portal, &opts).expect("login");
    for lun in 0..2 {
        clear_unit_attentions(&mut ini, lun);
    }
    ini
}

/// Clears the unit attentions a new session starts with on `lun`.
fn clear_unit_attentions(ini: &mut Initiator, lun: u64) {
    for _ in 0..8 {
        let r = ini.command(lun, &[0; 6], None, 0).expect("TEST UNIT READY");
        if r.status == 0 || r.sense_key() == Some(0x05) {
            return;
        }
    }
    panic!("unit attentions did not clear on LUN {lun}");
}

fn pr_out(ini: &mut Initiator, lun: u64, action: u8, pr_type: u8, key: u64, sa_key: u64) {
    let mut list = [0u8; 24];
    list[0..8].copy_from_slice(&key.to_be_bytes());
    list[8..16].copy_from_slice(&sa_key.to_be_bytes());
    list[20] = 0x01; // APTPL
    let cdb = [0x5f, action, pr_type, 0, 0, 0, 0, 0, 24, 0];
    let r = ini.command(lun, &cdb, Some(&list), 0).expect("PERSISTENT RESERVE OUT");
    assert_eq!(r.status, 0, "PR OUT {action:#x} sense {:02x?}", r.sense);
}

/// (registered keys, reservation (key, type) if any) from PERSISTENT RESERVE IN.
fn pr_state(ini: &mut Initiator, lun: u64) -> (Vec<u64>, Option<(u64, u8)>) {
    let read = |ini: &mut Initiator, action: u8| {
        let cdb = [0x5e, action, 0, 0, 0, 0, 0, 1, 0, 0];
        let r = ini.command(lun, &cdb, None, 256).expect("PERSISTENT RESERVE IN");
        assert_eq!(r.status, 0, "PR IN {action} on LUN {lun}: sense {:02x?}", r.sense);
        r.data
    };
    let keys_data = read(ini, 0);
    let len = u32::from_be_bytes(keys_data[4..8].try_into().expect("4 bytes")) as usize;
    let keys = keys_data[8..8 + len]
        .chunks_exact(8)
        .map(|k| u64::from_be_bytes(k.try_into().expect("8 bytes")))
        .collect();
    let res = read(ini, 1);
    let reservation = (u32::from_be_bytes(res[4..8].try_into().expect("4 bytes")) >= 16)
        .then(|| (u64::from_be_bytes(res[8..16].try_into().expect("8 bytes")), res[21] & 0x0f));
    (keys, reservation)
}

/// The current caching mode page (MODE SENSE(10), no block descriptors).
fn caching_page(ini: &mut Initiator, lun: u64) -> Vec<u8> {
    let cdb = [0x5a, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0];
    let r = ini.command(lun, &cdb, None, 255).expect("MODE SENSE");
    assert_eq!(r.status, 0, "MODE SENSE on LUN {lun}: sense {:02x?}", r.sense);
    let page = &r.data[8..];
    assert_eq!(page[0] & 0x3f, 0x08, "caching page");
    page[..2 + usize::from(page[1])].to_vec()
}

fn write_cache_enabled(ini: &mut Initiator, lun: u64) -> bool {
    caching_page(ini, lun)[2] & 0x04 != 0
}

/// MODE SELECT(10) of the caching page with WCE=0, saved (SP=1).
fn disable_write_cache_saved(ini: &mut Initiator, lun: u64) {
    let mut page = caching_page(ini, lun);
    page[0] &= 0x3f; // PS is reserved in MODE SELECT.
    page[2] &= !0x04;
    let mut list = vec![0u8; 8];
    list.extend_from_slice(&page);
    let len = u8::try_from(list.len()).expect("short list");
    let cdb = [0x55, 0x11, 0, 0, 0, 0, 0, 0, len, 0];
    let r = ini.command(lun, &cdb, Some(&list), 0).expect("MODE SELECT");
    assert_eq!(r.status, 0, "MODE SELECT sense {:02x?}", r.sense);
}

/// What one LUN shows an initiator.
#[derive(Debug, PartialEq, Eq)]
struct LunView {
    target: &'static str,
    lun: u64,
    registered_keys: Vec<u64>,
    /// (key, type) of the reservation, if any.
    reservation: Option<(u64, u8)>,
    write_cache: bool,
}

/// Every LUN of both targets.
fn observe(portal: SocketAddr) -> Vec<LunView> {
    let mut out = Vec::new();
    for target in [TARGET_A, TARGET_B] {
        let mut ini = login(portal, "iqn.2026-12.io.ferrite:observer", target);
        for lun in 0..2 {
            let (registered_keys, reservation) = pr_state(&mut ini, lun);
            let write_cache = write_cache_enabled(&mut ini, lun);
            out.push(LunView { target, lun, registered_keys, reservation, write_cache });
        }
        ini.logout().expect("logout");
    }
    out
}

/// No registration, no reservation, WCE=1.
fn untouched(target: &'static str, lun: u64) -> LunView {
    LunView { target, lun, registered_keys: Vec::new(), reservation: None, write_cache: true }
}

#[test]
fn aptpl_reservation_and_saved_wce_stay_with_their_lun_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = memory_targets_config();
    let daemon = common::Daemon::start(dir.path(), &config, &[]);
    let mut ini = login(daemon.portal, "iqn.2026-12.io.ferrite:holder", TARGET_A);
    pr_out(&mut ini, 0, 0x00, 0, 0, KEY); // REGISTER with APTPL
    pr_out(&mut ini, 0, 0x01, WRITE_EXCLUSIVE, KEY, 0); // RESERVE
    disable_write_cache_saved(&mut ini, 0);
    ini.logout().expect("logout");
    assert!(daemon.stop(), "clean stop");

    let daemon = common::Daemon::start(dir.path(), &config, &[]);
    let held = LunView {
        target: TARGET_A,
        lun: 0,
        registered_keys: vec![KEY],
        reservation: Some((KEY, WRITE_EXCLUSIVE)),
        write_cache: false,
    };
    let expected =
        vec![held, untouched(TARGET_A, 1), untouched(TARGET_B, 0), untouched(TARGET_B, 1)];
    assert_eq!(observe(daemon.portal), expected, "after a restart");
    assert!(daemon.stop(), "clean stop");

    // The same state in the old shared file name (the IQN cut at its last dot, no LUN) is
    // set aside and applied to no LUN.
    let data = dir.path().join("data");
    let own = data.join("lun-state").join(TARGET_A);
    let legacy_pr = data.join("iqn.2026-12.io.ferrite_state.pr.json");
    let legacy_mode = data.join("iqn.2026-12.io.ferrite_state.mode.json");
    std::fs::rename(own.join("lun0.pr.json"), &legacy_pr).expect("move pr state");
    std::fs::rename(own.join("lun0.mode.json"), &legacy_mode).expect("move mode state");
    let daemon = common::Daemon::start(dir.path(), &config, &[]);
    let expected = vec![
        untouched(TARGET_A, 0),
        untouched(TARGET_A, 1),
        untouched(TARGET_B, 0),
        untouched(TARGET_B, 1),
    ];
    assert_eq!(observe(daemon.portal), expected, "legacy shared state applied to no LUN");
    assert!(!legacy_pr.exists() && !legacy_mode.exists(), "legacy files moved out of the way");
    for legacy in [&legacy_pr, &legacy_mode] {
        let kept = legacy.with_extension(format!(
            "{}.unowned",
            legacy.extension().and_then(|e| e.to_str()).unwrap_or_default()
        ));
        assert!(kept.is_file(), "{} kept", kept.display());
    }
    assert!(daemon.stop(), "clean stop");
    println!("APTPL reservation and WCE=0 kept on {TARGET_A} LUN 0 only; legacy file set aside");
}

const VOLUME_IQN: &str = "iqn.2026-12.io.ferrite:rollback";

fn ferritectl(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = common::ferritectl(socket, args);
    let text = common::text(&out.stdout) + &common::text(&out.stderr);
    (out.status.success(), text)
}

fn read_blocks(ini: &mut Initiator) -> Response {
    ini.read16(0, 0, 512, 8).expect("read")
}

#[test]
fn rollback_under_two_sessions_is_refused_and_forced_as_a_logical_unit_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        common::pool_config("tank.img", VOLUME_IQN, &common::volume_lun(0, "tank/vm", "64M"));
    let daemon = common::Daemon::start(dir.path(), &config, &[]);
    let socket = dir.path().join("data/ferrited.sock");
    let initiators = ["iqn.2026-12.io.ferrite:host-one", "iqn.2026-12.io.ferrite:host-two"];
    let mut sessions: Vec<Initiator> =
        initiators.iter().map(|name| login(daemon.portal, name, VOLUME_IQN)).collect();

    let before = vec![0xA5u8; 4096];
    let after = vec![0x5Au8; 4096];
    let r = sessions[0].write16(0, 0, 512, &before, true).expect("write");
    assert_eq!(r.status, 0, "write sense {:02x?}", r.sense);
    let (ok, text) = ferritectl(&socket, &["snapshot", "create", "tank/vm@s"]);
    assert!(ok, "snapshot create: {text}");
    let r = sessions[1].write16(0, 0, 512, &after, true).expect("write");
    assert_eq!(r.status, 0, "write sense {:02x?}", r.sense);

    let (ok, text) = ferritectl(&socket, &["snapshot", "rollback", "tank/vm@s"]);
    assert!(!ok, "rollback under sessions refused: {text}");
    for name in initiators {
        assert!(text.contains(name), "the refusal names {name}: {text}");
    }
    assert!(text.contains("--force"), "the refusal says how to override: {text}");
    println!("refused: {}", text.trim());
    for ini in &mut sessions {
        let r = read_blocks(ini);
        assert_eq!((r.status, r.data == after), (0, true), "refused rollback changed nothing");
    }

    let (ok, text) = ferritectl(&socket, &["snapshot", "rollback", "--force", "tank/vm@s"]);
    assert!(ok, "forced rollback: {text}");
    for ini in &mut sessions {
        let r = read_blocks(ini);
        assert_eq!(
            (r.status, r.sense_key(), asc_ascq(&r)),
            (2, Some(0x06), Some((0x29, 0x00))),
            "UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED on the next command"
        );
        let r = read_blocks(ini);
        assert_eq!(r.status, 0, "read sense {:02x?}", r.sense);
        assert!(r.data == before, "the session reads the rolled-back data");
    }
    for mut ini in sessions {
        ini.logout().expect("logout");
    }
    // With no session left, a rollback needs no --force.
    let (ok, text) = ferritectl(&socket, &["snapshot", "rollback", "tank/vm@s"]);
    assert!(ok, "rollback with no sessions: {text}");
    assert!(daemon.stop(), "clean stop");
    println!(
        "rollback refused under 2 sessions; forced: both saw 29h/00h, then the snapshot's data"
    );
}
