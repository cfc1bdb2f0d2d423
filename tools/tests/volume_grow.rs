//! Growing a pool volume that is exported as a LUN (`volume_grow` on the control socket): the
//! initiator gets UNIT ATTENTION, CAPACITY DATA HAS CHANGED on its next command, READ CAPACITY
//! reports the new size, the new blocks read as zeros and take writes, a shrink is refused with
//! an error naming it, and the new size and data survive a restart.

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use target_iscsi::initiator::{Initiator, LoginOptions, Response};

const IQN: &str = "iqn.2026-11.io.ferrite:grow";
const OLD_BYTES: u64 = 64 << 20;
const NEW_BYTES: u64 = 96 << 20;

/// Additional sense code and qualifier (fixed or descriptor format).
fn asc_ascq(r: &Response) -> Option<(u8, u8)> {
    match r.sense.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) => Some((*r.sense.get(12)?, *r.sense.get(13)?)),
        Some(0x72 | 0x73) => Some((*r.sense.get(2)?, *r.sense.get(3)?)),
        _ => None,
    }
}

fn test_unit_ready(ini: &mut Initiator) -> Response {
    ini.command(0, &[0; 6], None, 0).expect("TEST UNIT READY")
}

/// Clears the unit attentions a new session starts with (power on / reset).
fn clear_unit_attentions(ini: &mut Initiator) {
    for _ in 0..8 {
        if test_unit_ready(ini).status == 0 {
            return;
        }
    }
    panic!("unit attentions did not clear");
}

/// READ CAPACITY(16): (last LBA, block length).
fn read_capacity(ini: &mut Initiator) -> (u64, u32) {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb[13] = 32;
    let r = ini.command(0, &cdb, None, 32).expect("READ CAPACITY(16)");
    assert_eq!(r.status, 0, "READ CAPACITY sense {:02x?}", r.sense);
    let last = u64::from_be_bytes(r.data[0..8].try_into().expect("8 bytes"));
    let block = u32::from_be_bytes(r.data[8..12].try_into().expect("4 bytes"));
    (last, block)
}

fn login(portal: std::net::SocketAddr) -> Initiator {
    let mut opts = LoginOptions::new("iqn.2026-11.io.ferrite:grow-test", IQN);
    opts.timeout = Duration::from_secs(20);
    let mut ini = Initiator::login(portal, &opts).expect("login");
    clear_unit_attentions(&mut ini);
    ini
}

fn grow(socket: &Path, bytes: u64) -> Result<serde_json::Value, serde_json::Value> {
    common::rpc_call(socket, "volume_grow", &json!({"name": "tank/vm", "size_bytes": bytes}))
}

#[test]
fn growing_an_exported_volume_raises_capacity_changed_and_keeps_the_new_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = common::start_volume(dir.path(), "tank.img", IQN, "tank/vm");
    let socket = dir.path().join("data/ferrited.sock");
    let mut ini = login(daemon.portal);
    assert_eq!(read_capacity(&mut ini), (OLD_BYTES / 512 - 1, 512));

    // Past the old end: LOGICAL BLOCK ADDRESS OUT OF RANGE.
    let new_lba = OLD_BYTES / 512 + 100;
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 | 1).collect();
    let r = ini.write16(0, new_lba, 512, &data, false).expect("write");
    assert_eq!((r.status, r.sense_key(), asc_ascq(&r)), (2, Some(0x05), Some((0x21, 0x00))));

    grow(&socket, NEW_BYTES).expect("grow");
    let r = test_unit_ready(&mut ini);
    assert_eq!(
        (r.status, r.sense_key(), asc_ascq(&r)),
        (2, Some(0x06), Some((0x2a, 0x09))),
        "UNIT ATTENTION, CAPACITY DATA HAS CHANGED"
    );
    assert_eq!(test_unit_ready(&mut ini).status, 0, "reported once");
    assert_eq!(read_capacity(&mut ini), (NEW_BYTES / 512 - 1, 512));

    let r = ini.read16(0, new_lba, 512, 8).expect("read");
    assert_eq!(r.status, 0);
    assert!(r.data.iter().all(|&b| b == 0), "new blocks read as zeros");
    let r = ini.write16(0, new_lba, 512, &data, true).expect("write");
    assert_eq!(r.status, 0, "write sense {:02x?}", r.sense);

    // A shrink is refused and changes nothing.
    let err = grow(&socket, OLD_BYTES).expect_err("shrink refused");
    let message = err["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("only grow"), "{message}");
    assert_eq!(read_capacity(&mut ini), (NEW_BYTES / 512 - 1, 512));
    ini.logout().expect("logout");
    assert!(daemon.stop());

    // The size and the FUA write are on disk.
    let daemon = common::start_volume(dir.path(), "tank.img", IQN, "tank/vm");
    let mut ini = login(daemon.portal);
    assert_eq!(read_capacity(&mut ini), (NEW_BYTES / 512 - 1, 512));
    let r = ini.read16(0, new_lba, 512, 8).expect("read");
    assert_eq!(r.status, 0);
    assert!(r.data == data, "the write past the old end survives a restart");
    ini.logout().expect("logout");
    assert!(daemon.stop());
    println!(
        "grew tank/vm from {} to {} MiB: CAPACITY DATA HAS CHANGED once, READ CAPACITY follows, \
         kept across a restart",
        OLD_BYTES >> 20,
        NEW_BYTES >> 20
    );
}
