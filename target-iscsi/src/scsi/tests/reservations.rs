//! Persistent and SPC-2 reservations.

use super::*;
use crate::scsi::cdb::opcode as op;
use crate::scsi::reservation::service_action::{
    CLEAR, PREEMPT, REGISTER, REGISTER_AND_IGNORE_EXISTING_KEY as REGISTER_IGNORE, RELEASE, RESERVE,
};

fn prout(sa: u8, pr_type: u8, key: u64, sa_key: u64, flags: u8) -> ([u8; 10], Vec<u8>) {
    let mut list = vec![0u8; 24];
    list[0..8].copy_from_slice(&key.to_be_bytes());
    list[8..16].copy_from_slice(&sa_key.to_be_bytes());
    list[20] = flags;
    ([op::PERSISTENT_RESERVE_OUT, sa, pr_type, 0, 0, 0, 0, 0, 24, 0], list)
}

fn out(lu: &LogicalUnit, n: &ItNexus, sa: u8, pr_type: u8, key: u64, sa_key: u64) -> CommandResult {
    let (c, l) = prout(sa, pr_type, key, sa_key, 0);
    run(lu, n, &c, Some(&l))
}

fn prin(lu: &LogicalUnit, n: &ItNexus, sa: u8) -> Vec<u8> {
    good(&run(lu, n, &[op::PERSISTENT_RESERVE_IN, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], None))
}

fn keys(lu: &LogicalUnit, n: &ItNexus) -> (u32, Vec<u64>) {
    let d = prin(lu, n, 0);
    let gen = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let ks = d[8..].chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    (gen, ks)
}

fn read_ok(lu: &LogicalUnit, n: &ItNexus) -> bool {
    run(lu, n, &cdb10(op::READ_10, 1, 1), None).status == ScsiStatus::Good
}

fn write_ok(lu: &LogicalUnit, n: &ItNexus) -> bool {
    run(lu, n, &cdb10(op::WRITE_10, 1, 1), Some(&[0; 512])).status == ScsiStatus::Good
}

#[test]
fn register_unregister_and_generation() {
    let (lu, n) = lu_and_nexus();
    good(&out(&lu, &n, REGISTER, 0, 0, 0xAB));
    assert_eq!(keys(&lu, &n), (1, vec![0xAB]));
    assert_eq!(out(&lu, &n, REGISTER, 0, 0x99, 0xCD).status, ScsiStatus::ReservationConflict);
    good(&out(&lu, &n, REGISTER, 0, 0xAB, 0xCD));
    good(&out(&lu, &n, REGISTER_IGNORE, 0, 0, 0xEF));
    assert_eq!(keys(&lu, &n), (3, vec![0xEF]));
    good(&out(&lu, &n, REGISTER, 0, 0xEF, 0));
    assert_eq!(keys(&lu, &n), (4, vec![]));
    // Truncated READ KEYS keeps the additional length.
    good(&out(&lu, &n, REGISTER, 0, 0, 0x11));
    let d = good(&run(&lu, &n, &[op::PERSISTENT_RESERVE_IN, 0, 0, 0, 0, 0, 0, 0, 8, 0], None));
    assert_eq!(&d[4..8], &[0, 0, 0, 8]);
    assert_eq!(d.len(), 8);
}

#[test]
fn access_table_for_all_six_types() {
    // (type, registered reads, registered writes, unregistered reads, unregistered writes)
    let table = [
        (1, true, false, true, false),
        (3, false, false, false, false),
        (5, true, true, true, false),
        (6, true, true, false, false),
        (7, true, true, true, false),
        (8, true, true, false, false),
    ];
    for (t, rr, rw, ur, uw) in table {
        let (lu, a, b) = lu_and_two_nexuses();
        good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
        good(&out(&lu, &b, REGISTER, 0, 0, 0xB));
        good(&out(&lu, &a, RESERVE, t, 0xA, 0));
        let rr_d = prin(&lu, &a, 1);
        let expect_key = if t >= 7 { 0 } else { 0xA };
        assert_eq!((&rr_d[8..16], rr_d[21]), (&u64::to_be_bytes(expect_key)[..], t), "type {t}");
        assert!(read_ok(&lu, &a) && write_ok(&lu, &a), "holder, type {t}");
        assert_eq!((read_ok(&lu, &b), write_ok(&lu, &b)), (rr, rw), "registered, type {t}");
        good(&out(&lu, &b, REGISTER, 0, 0xB, 0));
        assert_eq!((read_ok(&lu, &b), write_ok(&lu, &b)), (ur, uw), "unregistered, type {t}");
        // INQUIRY and PR IN are always allowed.
        good(&run(&lu, &b, &[op::INQUIRY, 0, 0, 0, 36, 0], None));
        prin(&lu, &b, 0);
        good(&out(&lu, &a, RELEASE, t, 0xA, 0));
        assert!(write_ok(&lu, &b));
    }
}

#[test]
fn reserve_conflicts_release_type_mismatch_and_ownership() {
    let (lu, a, b) = lu_and_two_nexuses();
    assert_eq!(out(&lu, &a, RESERVE, 1, 0, 0).status, ScsiStatus::ReservationConflict);
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    good(&out(&lu, &b, REGISTER, 0, 0, 0xB));
    check(&out(&lu, &a, RESERVE, 2, 0xA, 0), 5, 0x24, 0);
    good(&out(&lu, &a, RESERVE, 3, 0xA, 0));
    good(&out(&lu, &a, RESERVE, 3, 0xA, 0));
    assert_eq!(out(&lu, &b, RESERVE, 3, 0xB, 0).status, ScsiStatus::ReservationConflict);
    check(&out(&lu, &a, RELEASE, 1, 0xA, 0), 5, 0x26, 0x04);
    good(&out(&lu, &b, RELEASE, 3, 0xB, 0)); // not the holder: no-op
                                             // Unregistering the holder releases a non-all-registrants reservation.
    good(&out(&lu, &a, REGISTER, 0, 0xA, 0));
    assert_eq!(prin(&lu, &b, 1)[4..8], [0, 0, 0, 0]);
    // All registrants: survives the creator unregistering.
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    good(&out(&lu, &a, RESERVE, 8, 0xA, 0));
    good(&out(&lu, &a, REGISTER, 0, 0xA, 0));
    assert_eq!(prin(&lu, &b, 1)[21], 8);
    good(&out(&lu, &b, RELEASE, 8, 0xB, 0));
}

#[test]
fn preempt_removes_registration_and_raises_ua() {
    let (lu, a, b) = lu_and_two_nexuses();
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    good(&out(&lu, &b, REGISTER, 0, 0, 0xB));
    let (gen, _) = keys(&lu, &a);
    good(&out(&lu, &b, PREEMPT, 3, 0xB, 0xA));
    check(&run(&lu, &a, &TEST_UNIT_READY_6, None), 6, 0x2A, 0x05);
    assert_eq!(keys(&lu, &a), (gen + 1, vec![0xB]));
    assert_eq!(out(&lu, &b, PREEMPT, 3, 0xB, 0x77).status, ScsiStatus::ReservationConflict);
    check(&out(&lu, &b, PREEMPT, 3, 0xB, 0), 5, 0x26, 0);
    // Preempting the holder takes the reservation over.
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    good(&out(&lu, &a, RESERVE, 1, 0xA, 0));
    good(&out(&lu, &b, PREEMPT, 3, 0xB, 0xA));
    let r = prin(&lu, &b, 1);
    assert_eq!((&r[8..16], r[21]), (&0xBu64.to_be_bytes()[..], 3));
}

#[test]
fn clear_and_report_capabilities_and_full_status() {
    let (lu, a, b) = lu_and_two_nexuses();
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    good(&out(&lu, &b, REGISTER, 0, 0, 0xB));
    good(&out(&lu, &a, RESERVE, 1, 0xA, 0));
    let fs = prin(&lu, &a, 3);
    assert_eq!(&fs[8..16], &0xAu64.to_be_bytes());
    assert_eq!(fs[8 + 12], 0x01, "R_HOLDER");
    assert_eq!(fs[8 + 13], 1);
    assert_eq!(fs[8 + 24], 0x45, "iSCSI TransportID");
    let caps = prin(&lu, &a, 2);
    assert_eq!(&caps[..6], &[0, 8, 0x04, 0x90, 0xEA, 0x01]);
    good(&out(&lu, &a, CLEAR, 0, 0xA, 0));
    check(&run(&lu, &b, &TEST_UNIT_READY_6, None), 6, 0x2A, 0x03);
    assert_eq!(keys(&lu, &a).1, Vec::<u64>::new());
    check(
        &run(&lu, &a, &[op::PERSISTENT_RESERVE_IN, 4, 0, 0, 0, 0, 0, 0x10, 0, 0], None),
        5,
        0x24,
        0,
    );
}

#[test]
fn parameter_list_errors_spec_i_pt_and_aptpl() {
    let (lu, n) = lu_and_nexus();
    let (c, l) = prout(REGISTER, 0, 0, 0xA, 0x08);
    check(&run(&lu, &n, &c, Some(&l)), 5, 0x26, 0);
    let (c, l) = prout(REGISTER, 0, 0, 0xA, 0x01);
    check(&run(&lu, &n, &c, Some(&l)), 5, 0x26, 0);
    let mut c = [op::PERSISTENT_RESERVE_OUT, 0, 0, 0, 0, 0, 0, 0, 20, 0];
    check(&run(&lu, &n, &c, Some(&[0; 20])), 5, 0x1A, 0);
    c[1] = 9;
    c[8] = 24;
    check(&run(&lu, &n, &c, Some(&[0; 24])), 5, 0x24, 0);
}

#[test]
fn aptpl_state_survives_restart() {
    let dir = tempfile::tempdir().ok();
    let mut cfg = LunConfig::new("iqn.t", 0);
    cfg.pr_state_path = dir.as_ref().map(|d| d.path().join("pr.json"));
    let lu1 = lu_with(512, 512, cfg.clone());
    let n = nexus(1);
    let (c, l) = prout(REGISTER, 0, 0, 0xA, 0x01);
    good(&run(&lu1, &n, &c, Some(&l)));
    good(&out(&lu1, &n, RESERVE, 1, 0xA, 0));
    let lu2 = lu_with(512, 512, cfg);
    assert_eq!(keys(&lu2, &n).1, vec![0xA]);
    assert_eq!(prin(&lu2, &n, 1)[21], 1);
    assert_eq!(prin(&lu2, &n, 2)[3] & 0x01, 1, "PTPL_A");
    assert_eq!(out(&lu2, &nexus(2), RESERVE, 1, 0xA, 0).status, ScsiStatus::ReservationConflict);
}

#[test]
fn register_and_move_transfers_the_reservation() {
    let (lu, a, b) = lu_and_two_nexuses();
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    good(&out(&lu, &a, RESERVE, 3, 0xA, 0));
    let tid = reservation::iscsi_transport_id(&b.initiator_port);
    let mut l = vec![0u8; 24];
    l[0..8].copy_from_slice(&0xAu64.to_be_bytes());
    l[8..16].copy_from_slice(&0xBu64.to_be_bytes());
    l[17] = 0x02; // UNREG
    l[18..20].copy_from_slice(&a.relative_target_port.to_be_bytes());
    l[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    l.extend_from_slice(&tid);
    let c = [op::PERSISTENT_RESERVE_OUT, 7, 3, 0, 0, 0, 0, 0, l.len() as u8, 0];
    good(&run(&lu, &a, &c, Some(&l)));
    assert_eq!(keys(&lu, &a).1, vec![0xB]);
    assert!(write_ok(&lu, &b));
    assert!(!read_ok(&lu, &a));
}

#[test]
fn spc2_reserve_release_conflicts_and_reset() {
    let (lu, a, b) = lu_and_two_nexuses();
    good(&run(&lu, &a, &[op::RESERVE_6, 0, 0, 0, 0, 0], None));
    good(&run(&lu, &a, &[op::RESERVE_6, 0, 0, 0, 0, 0], None));
    assert_eq!(
        run(&lu, &b, &[op::RESERVE_6, 0, 0, 0, 0, 0], None).status,
        ScsiStatus::ReservationConflict
    );
    good(&run(&lu, &b, &[op::RELEASE_6, 0, 0, 0, 0, 0], None));
    assert_eq!(
        run(&lu, &b, &[op::MODE_SENSE_6, 0, 0x3F, 0, 255, 0], None).status,
        ScsiStatus::ReservationConflict
    );
    good(&run(&lu, &b, &[op::INQUIRY, 0, 0, 0, 36, 0], None));
    good(&run(&lu, &a, &[op::MODE_SENSE_6, 0, 0x3F, 0, 255, 0], None));
    good(&run(&lu, &a, &[op::RELEASE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0], None));
    good(&run(&lu, &b, &[op::RESERVE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0], None));
    lu.nexus_lost(b.nexus_id);
    good(&run(&lu, &a, &[op::RESERVE_6, 0, 0, 0, 0, 0], None));
    lu.lun_reset(&b);
    check(&run(&lu, &b, &[op::RESERVE_6, 0, 0, 0, 0, 0], None), 6, 0x29, 0x03);
    good(&run(&lu, &b, &[op::RESERVE_6, 0, 0, 0, 0, 0], None));
    // PR registrations make SPC-2 RESERVE conflict.
    good(&run(&lu, &b, &[op::RELEASE_6, 0, 0, 0, 0, 0], None));
    check(&run(&lu, &a, &TEST_UNIT_READY_6, None), 6, 0x29, 0x03);
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    assert_eq!(
        run(&lu, &a, &[op::RESERVE_6, 0, 0, 0, 0, 0], None).status,
        ScsiStatus::ReservationConflict
    );
}

/// A command is judged against the reservations when it runs, not only when its Data-Out is
/// solicited: a reservation taken meanwhile by another nexus makes it conflict.
#[test]
fn reservation_taken_while_data_out_arrives_conflicts() {
    let (lu, a, b) = lu_and_two_nexuses();
    good(&run(&lu, &b, &TEST_UNIT_READY_6, None));
    let write = cdb10(op::WRITE_10, 1, 1);
    let Ok((_, parsed)) = lu.prepare_command(&b, &write, 512) else {
        panic!("WRITE prepared before any reservation");
    };
    good(&out(&lu, &a, REGISTER, 0, 0, 0xA));
    good(&out(&lu, &a, RESERVE, 1, 0xA, 0));
    let r = block_on(lu.execute_prepared(&b, parsed, Some(IoBuf::from_slice(&[0; 512]))));
    assert_eq!(r.status, ScsiStatus::ReservationConflict);
}
