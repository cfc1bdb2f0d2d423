//! INQUIRY, VPD, mode pages, unit attentions, opcodes and target routing.

use super::*;
use crate::scsi::cdb::opcode as op;

fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let a = alloc.to_be_bytes();
    [op::INQUIRY, u8::from(evpd), page, a[0], a[1], 0]
}

#[test]
fn standard_inquiry_and_errors() {
    let (lu, n) = lu_and_nexus();
    let d = good(&run(&lu, &n, &inquiry(false, 0, 255), None));
    assert_eq!(d.len(), 96);
    assert_eq!((d[0], d[2], d[3], d[4], d[7]), (0, 6, 0x12, 91, 0x02));
    assert_eq!(&d[8..16], b"FERRITE ");
    assert_eq!(&d[58..60], &[0x00, 0xA0]);
    assert_eq!(good(&run(&lu, &n, &inquiry(false, 0, 5), None)).len(), 5);
    let s = check(&run(&lu, &n, &inquiry(false, 1, 255), None), 5, 0x24, 0);
    assert_eq!(&s[15..18], &[0xC0, 0, 2]);
    check(&run(&lu, &n, &inquiry(true, 0x99, 255), None), 5, 0x24, 0);
}

#[test]
fn vpd_pages() {
    let lu = lu(512, 4096);
    let n = nexus(1);
    let d = good(&run(&lu, &n, &inquiry(true, 0, 255), None));
    assert_eq!(&d[4..], &vpd::SUPPORTED_PAGES);
    for p in vpd::SUPPORTED_PAGES {
        let d = good(&run(&lu, &n, &inquiry(true, p, 512), None));
        assert_eq!(d[1], p);
        assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])) + 4, d.len());
    }
    let serial = good(&run(&lu, &n, &inquiry(true, 0x80, 255), None));
    let again = good(&run(&lu, &n, &inquiry(true, 0x80, 255), None));
    assert_eq!(serial, again);
    let id = good(&run(&lu, &n, &inquiry(true, 0x83, 255), None));
    assert_eq!((id[4], id[5], id[7], id[8] >> 4), (0x01, 0x03, 8, 5), "NAA 5 first");
    let bl = good(&run(&lu, &n, &inquiry(true, 0xB0, 255), None));
    assert_eq!(bl[3], 0x3C);
    assert_eq!(bl[4], 1, "WSNZ");
    let max_ws = limits::max_write_same_blocks(512);
    assert_eq!(&bl[36..44], &max_ws.to_be_bytes(), "MAXIMUM WRITE SAME LENGTH");
    assert_eq!(bl[5], limits::MAX_COMPARE_AND_WRITE_BLOCKS);
    assert_eq!(&bl[6..8], &[0, 8], "granularity = 8 logical per physical");
    assert_eq!(&bl[20..24], &limits::MAX_UNMAP_LBA_COUNT.to_be_bytes());
    let lbp = good(&run(&lu, &n, &inquiry(true, 0xB2, 255), None));
    assert_eq!((lbp[5], lbp[6]), (0xE4, 0x02));
    let bdc = good(&run(&lu, &n, &inquiry(true, 0xB1, 255), None));
    assert_eq!(&bdc[4..6], &[0, 1]);
}

#[test]
fn request_sense_returns_and_clears_unit_attention() {
    let (lu, n) = lu_and_nexus();
    good(&run(&lu, &n, &TEST_UNIT_READY_6, None));
    lu.capacity_changed();
    let d = good(&run(&lu, &n, &[op::REQUEST_SENSE, 0, 0, 0, 252, 0], None));
    assert_eq!((d[0], d[2], d[12], d[13]), (0x70, 6, 0x2A, 0x09));
    let d = good(&run(&lu, &n, &[op::REQUEST_SENSE, 1, 0, 0, 252, 0], None));
    assert_eq!(&d[..4], &[0x72, 0, 0, 0], "nothing pending: NO SENSE, descriptor format");
}

#[test]
fn unit_attention_reported_once_and_inquiry_exempt() {
    let (lu, a, b) = lu_and_two_nexuses();
    good(&run(&lu, &a, &TEST_UNIT_READY_6, None));
    good(&run(&lu, &b, &TEST_UNIT_READY_6, None));
    lu.lun_reset(&a);
    good(&run(&lu, &a, &inquiry(false, 0, 36), None));
    check(&run(&lu, &a, &cdb10(op::READ_10, 0, 1), None), 6, 0x29, 0x03);
    good(&run(&lu, &a, &cdb10(op::READ_10, 0, 1), None));
    check(&run(&lu, &b, &TEST_UNIT_READY_6, None), 6, 0x29, 0x03);
    good(&run(&lu, &b, &TEST_UNIT_READY_6, None));
}

#[test]
fn new_nexus_unit_attention_when_configured() {
    let mut cfg = LunConfig::new("iqn.t", 0);
    cfg.unit_attention_on_new_nexus = true;
    let lu = lu_with(512, 512, cfg);
    check(&run(&lu, &nexus(1), &TEST_UNIT_READY_6, None), 6, 0x29, 0);
    good(&run(&lu, &nexus(1), &TEST_UNIT_READY_6, None));
}

fn mode_sense6(pc: u8, page: u8, dbd: bool) -> [u8; 6] {
    [op::MODE_SENSE_6, if dbd { 0x08 } else { 0 }, pc << 6 | page, 0, 255, 0]
}

#[test]
fn mode_select_switches_write_cache_dsense_and_raises_ua() {
    let (lu, a, b) = lu_and_two_nexuses();
    good(&run(&lu, &b, &TEST_UNIT_READY_6, None));
    let d = good(&run(&lu, &a, &mode_sense6(0, mode::PAGE_CACHING, true), None));
    assert_eq!(d[4 + 2] & 0x04, 0x04, "WCE on");
    let mut caching = d[4..].to_vec();
    caching[2] &= !0x04;
    let mut list = vec![0, 0, 0, 0];
    list.extend_from_slice(&caching);
    good(&run(&lu, &a, &[op::MODE_SELECT_6, 0x10, 0, 0, list.len() as u8, 0], Some(&list)));
    assert!(!lu.volume.write_cache());
    check(&run(&lu, &b, &TEST_UNIT_READY_6, None), 6, 0x2A, 0x01);
    good(&run(&lu, &a, &TEST_UNIT_READY_6, None));
    // D_SENSE on: errors come back in descriptor format.
    let d = good(&run(&lu, &a, &mode_sense6(0, mode::PAGE_CONTROL, true), None));
    let mut control = d[4..].to_vec();
    control[2] |= 0x04;
    let mut list = vec![0, 0, 0, 0];
    list.extend_from_slice(&control);
    good(&run(&lu, &a, &[op::MODE_SELECT_6, 0x10, 0, 0, list.len() as u8, 0], Some(&list)));
    let r = run(&lu, &a, &cdb16(op::READ_16, u64::MAX, 1), None);
    assert_eq!(r.sense.as_deref().map(|s| (s[0], s[1], s[2])), Some((0x72, 5, 0x21)));
    // SP=1 without a state file.
    let r = run(&lu, &a, &[op::MODE_SELECT_6, 0x11, 0, 0, list.len() as u8, 0], Some(&list));
    assert_eq!(r.sense.as_deref().map(|s| (s[1], s[2])), Some((5, 0x39)));
}

#[test]
fn software_write_protect_blocks_writes() {
    let (lu, n) = lu_and_nexus();
    let d = good(&run(&lu, &n, &mode_sense6(0, mode::PAGE_CONTROL, true), None));
    let mut list = vec![0, 0, 0, 0];
    list.extend_from_slice(&d[4..]);
    list[4 + 4] |= 0x08;
    good(&run(&lu, &n, &[op::MODE_SELECT_6, 0x10, 0, 0, list.len() as u8, 0], Some(&list)));
    let d = good(&run(&lu, &n, &mode_sense6(0, mode::PAGE_ALL, false), None));
    assert_eq!(d[2] & 0x80, 0x80, "WP in the header");
    check(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 1), Some(&[0; 512])), 7, 0x27, 0);
    good(&run(&lu, &n, &cdb10(op::READ_10, 0, 1), None));
}

#[test]
fn saved_mode_pages_persist_across_restart() {
    let dir = tempfile::tempdir().ok();
    let path = dir.as_ref().map(|d| d.path().join("mode.json"));
    let mut cfg = LunConfig::new("iqn.t", 0);
    cfg.mode_state_path = path.clone();
    let lu1 = lu_with(512, 512, cfg.clone());
    let n = nexus(1);
    let d = good(&run(&lu1, &n, &mode_sense6(3, mode::PAGE_CONTROL, true), None));
    let mut list = vec![0, 0, 0, 0];
    list.extend_from_slice(&d[4..]);
    list[4 + 2] |= 0x04;
    good(&run(&lu1, &n, &[op::MODE_SELECT_6, 0x11, 0, 0, list.len() as u8, 0], Some(&list)));
    let lu2 = lu_with(512, 512, cfg);
    let d = good(&run(&lu2, &n, &mode_sense6(0, mode::PAGE_CONTROL, true), None));
    assert_eq!(d[4 + 2] & 0x04, 0x04);
}

fn rsoc(rctd: bool, options: u8, opcode: u8, sa: u16) -> [u8; 12] {
    let s = sa.to_be_bytes();
    [
        op::MAINTENANCE_IN,
        0x0C,
        u8::from(rctd) << 7 | options,
        opcode,
        s[0],
        s[1],
        0,
        0,
        0x40,
        0,
        0,
        0,
    ]
}

#[test]
fn report_supported_opcodes_all_one_and_timeouts() {
    let (lu, n) = lu_and_nexus();
    let d = good(&run(&lu, &n, &rsoc(false, 0, 0, 0), None));
    let len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
    // Every command of the table except SANITIZE BLOCK ERASE (not enabled by default).
    let listed = opcodes::COMMANDS.len() - 1;
    assert_eq!(len, listed * 8);
    for desc in d[4..].chunks(8) {
        if desc[5] & 0x01 == 0 {
            assert_eq!(&desc[2..4], &[0, 0]);
        }
    }
    let d = good(&run(&lu, &n, &rsoc(true, 0, 0, 0), None));
    assert_eq!(d.len(), 4 + listed * 20);
    assert_eq!(d[4 + 5] & 0x02, 0x02);
    let d = good(&run(&lu, &n, &rsoc(false, 1, op::READ_10, 0), None));
    assert_eq!((d[1], &d[2..4], d[4], d[5]), (0x03, &[0u8, 10][..], op::READ_10, 0xF8));
    check(&run(&lu, &n, &rsoc(false, 1, op::PERSISTENT_RESERVE_IN, 0), None), 5, 0x24, 0);
    check(&run(&lu, &n, &rsoc(false, 2, op::READ_10, 0), None), 5, 0x24, 0);
    let d = good(&run(&lu, &n, &rsoc(true, 2, op::SERVICE_ACTION_IN_16, 0x10), None));
    assert_eq!((d[1], d.len()), (0x83, 4 + 16 + 12));
    let d = good(&run(&lu, &n, &rsoc(false, 1, 0xFF, 0), None));
    assert_eq!(d[1], 0x01, "not supported");
    check(&run(&lu, &n, &rsoc(false, 5, 0, 0), None), 5, 0x24, 0);
}

#[test]
fn report_supported_tmfs() {
    let lu = lu(512, 512);
    let d = good(&run(
        &lu,
        &nexus(1),
        &[op::MAINTENANCE_IN, 0x0D, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0],
        None,
    ));
    assert_eq!(d, vec![0xDA, 0, 0, 0]);
    let d = good(&run(
        &lu,
        &nexus(1),
        &[op::MAINTENANCE_IN, 0x0D, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0],
        None,
    ));
    assert_eq!((d.len(), d[3]), (16, 0x0C));
}

#[test]
fn unknown_opcode_and_start_stop() {
    let lu = lu(512, 512);
    let s = check(&run(&lu, &nexus(1), &[0xC7, 0, 0, 0, 0, 0], None), 5, 0x20, 0);
    assert_eq!(s[15] & 0xC0, 0xC0);
    good(&run(&lu, &nexus(1), &[op::START_STOP_UNIT, 0, 0, 0, 0x01, 0], None));
}

#[test]
fn target_routes_reports_luns_and_handles_missing_lun() {
    let t = ScsiTarget::new("iqn.t", vec![(0, lu(512, 512)), (5, lu(4096, 4096))]);
    let n = nexus(1);
    let rl = [op::REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let r = block_on(t.execute(&n, 3, &rl, None));
    let d = good(&r);
    assert_eq!(&d[0..4], &[0, 0, 0, 16]);
    assert_eq!(d[8 + 8 + 1], 5);
    let r = block_on(t.execute(&n, 3, &inquiry(false, 0, 96), None));
    assert_eq!(good(&r)[0], 0x7F);
    let r = block_on(t.execute(&n, 3, &TEST_UNIT_READY_6, None));
    check(&r, 5, 0x25, 0);
    assert!(t.prepare(&n, 3, &TEST_UNIT_READY_6, 0).is_err());
    let r = block_on(t.execute(&n, 5, &cdb10(op::READ_10, 0, 1), None));
    assert_eq!(good(&r).len(), 4096);
    let r = block_on(t.execute(&n, 3, &[op::REQUEST_SENSE, 0, 0, 0, 18, 0], None));
    assert_eq!(good(&r)[12], 0x25);
    assert!(t.lun_reset(&n, 5));
    assert!(!t.lun_reset(&n, 4));
}

#[test]
fn read_defect_data_reports_empty_lists() {
    let lu = lu(512, 4096);
    let n = nexus(1);
    let mut c10 = [0u8; 10];
    c10[0] = op::READ_DEFECT_DATA_10;
    c10[2] = 0x18 | 0x04; // REQ_PLIST, REQ_GLIST, bytes from index
    c10[8] = 32;
    assert_eq!(good(&run(&lu, &n, &c10, None)), [0, 0x1C, 0, 0]);
    let mut c12 = [0u8; 12];
    c12[0] = op::READ_DEFECT_DATA_12;
    c12[9] = 32;
    assert_eq!(good(&run(&lu, &n, &c12, None)), [0; 8]);
    c12[1] = 0x01; // reserved format
    check(&run(&lu, &n, &c12, None), 5, 0x24, 0);
}
