//! SANITIZE: the operations over a whole LU, what is advertised, and the NOT READY state
//! while an operation runs on a reactor.

use std::time::Duration;

use drivers::executor::{Reactor, ReactorConfig};

use super::*;
use crate::scsi::cdb::opcode as op;
use crate::scsi::config::BackgroundWork;

fn in_command(block_erase: bool) -> LunConfig {
    let mut c = LunConfig::new("iqn.2024-01.io.ferrite:t1", 0);
    c.background = BackgroundWork::InCommand;
    c.block_erase = block_erase;
    c
}

fn sanitize(service_action: u8, list_bytes: usize) -> [u8; 10] {
    let [hi, lo] = u16::try_from(list_bytes).unwrap_or(u16::MAX).to_be_bytes();
    [op::SANITIZE, service_action, 0, 0, 0, 0, 0, hi, lo, 0]
}

fn overwrite_list(byte0: u8, pattern: &[u8]) -> Vec<u8> {
    let mut l = vec![byte0, 0];
    l.extend_from_slice(&u16::try_from(pattern.len()).unwrap_or(0).to_be_bytes());
    l.extend_from_slice(pattern);
    l
}

fn read_all(lu: &LogicalUnit, n: &ItNexus) -> Vec<u8> {
    let mut all = Vec::new();
    for lba in (0..BLOCKS).step_by(256) {
        all.extend(good(&run(lu, n, &cdb16(op::READ_16, lba, 256), None)));
    }
    all
}

#[test]
fn overwrite_writes_the_pattern_over_every_block() {
    for (l, p) in [(512, 512), (4096, 4096), (512, 4096)] {
        let lu = lu_with(l, p, in_command(false));
        let n = nexus(1);
        good(&run(&lu, &n, &cdb16(op::WRITE_16, 7, 1), Some(&vec![0x61; l as usize])));
        let list = overwrite_list(0x01, &[0xAA, 0x55, 0x0F]);
        good(&run(&lu, &n, &sanitize(op::SA_SANITIZE_OVERWRITE, list.len()), Some(&list)));
        let all = read_all(&lu, &n);
        assert_eq!(all.len() as u64, BLOCKS * u64::from(l));
        for block in all.chunks(l as usize) {
            assert!(block.iter().zip([0xAA, 0x55, 0x0F].iter().cycle()).all(|(a, b)| a == b));
        }
    }
}

#[test]
fn overwrite_with_invert_ends_on_the_pattern() {
    let lu = lu_with(512, 512, in_command(false));
    let n = nexus(1);
    let list = overwrite_list(0x80 | 0x02, &[0x3C; 512]);
    good(&run(&lu, &n, &sanitize(op::SA_SANITIZE_OVERWRITE, list.len()), Some(&list)));
    assert!(read_all(&lu, &n).iter().all(|b| *b == 0x3C));
}

#[test]
fn overwrite_parameter_errors() {
    let lu = lu_with(512, 512, in_command(false));
    let n = nexus(1);
    // A pattern longer than a block does not fit the PARAMETER LIST LENGTH.
    let long = overwrite_list(0x01, &[0; 513]);
    check(&run(&lu, &n, &sanitize(op::SA_SANITIZE_OVERWRITE, long.len()), Some(&long)), 5, 0x24, 0);
    let zero_count = overwrite_list(0x00, &[0; 4]);
    let c = sanitize(op::SA_SANITIZE_OVERWRITE, zero_count.len());
    check(&run(&lu, &n, &c, Some(&zero_count)), 5, 0x26, 0);
}

#[test]
fn block_erase_deallocates_every_block_and_is_advertised_only_when_enabled() {
    let rsoc = |sa: u8| {
        let mut c = [0u8; 12];
        c[0] = op::MAINTENANCE_IN;
        c[1] = op::SA_REPORT_SUPPORTED_OPCODES;
        c[2] = 2;
        c[3] = op::SANITIZE;
        c[5] = sa;
        c[9] = 64;
        c
    };
    let bdc = [op::INQUIRY, 1, 0xB1, 0, 64, 0];
    let off = lu_with(512, 512, in_command(false));
    let n = nexus(1);
    assert_eq!(good(&run(&off, &n, &rsoc(op::SA_SANITIZE_BLOCK_ERASE), None))[1] & 7, 1);
    assert_eq!(good(&run(&off, &n, &rsoc(op::SA_SANITIZE_OVERWRITE), None))[1] & 7, 3);
    assert_eq!(good(&run(&off, &n, &bdc, None))[7] & 0xC0, 0);
    check(&run(&off, &n, &sanitize(op::SA_SANITIZE_BLOCK_ERASE, 0), None), 5, 0x24, 0);

    let lu = lu_with(512, 512, in_command(true));
    assert_eq!(good(&run(&lu, &n, &rsoc(op::SA_SANITIZE_BLOCK_ERASE), None))[1] & 7, 3);
    assert_eq!(good(&run(&lu, &n, &bdc, None))[7] & 0xC0, 0x40, "WABEREQ 01b");
    good(&run(&lu, &n, &cdb16(op::WRITE_16, 0, 2), Some(&[0x61; 1024])));
    good(&run(&lu, &n, &sanitize(op::SA_SANITIZE_BLOCK_ERASE, 0), None));
    assert!(read_all(&lu, &n).iter().all(|b| *b == 0));
    let mut gls = cdb16(op::SERVICE_ACTION_IN_16, 0, 0);
    gls[1] = op::SA_GET_LBA_STATUS;
    gls[13] = 64;
    let d = good(&run(&lu, &n, &gls, None));
    assert_eq!(u64::from(u32::from_be_bytes([d[16], d[17], d[18], d[19]])), BLOCKS);
    assert_eq!(d[20] & 0x0F, 1, "deallocated");
}

#[test]
fn write_protection_and_reservations_refuse_sanitize() {
    let mut cfg = in_command(false);
    cfg.read_only = true;
    let ro = lu_with(512, 512, cfg);
    let list = overwrite_list(0x01, &[0; 4]);
    let c = sanitize(op::SA_SANITIZE_OVERWRITE, list.len());
    check(&run(&ro, &nexus(1), &c, Some(&list)), 7, 0x27, 0);

    let lu = lu_with(512, 512, in_command(false));
    good(&run(&lu, &nexus(2), &[op::RESERVE_6, 0, 0, 0, 0, 0], None));
    let r = run(&lu, &nexus(1), &c, Some(&list));
    assert_eq!(r.status, ScsiStatus::ReservationConflict);
}

#[test]
fn exit_failure_mode_without_a_failure_is_good() {
    let lu = lu_with(512, 512, in_command(false));
    good(&run(&lu, &nexus(1), &sanitize(op::SA_SANITIZE_EXIT_FAILURE_MODE, 0), None));
}

/// On a reactor the operation outlives its command: with IMMED the command returns at once,
/// other commands get NOT READY, SANITIZE IN PROGRESS (INQUIRY and REQUEST SENSE still
/// work), and the LU is ready again once the operation is done.
#[test]
fn immediate_sanitize_runs_on_the_reactor_and_blocks_other_commands() {
    let reactor = match Reactor::new(&ReactorConfig {
        buffer_count: 8,
        buffer_bytes: 4096,
        ..Default::default()
    }) {
        Ok(r) => r,
        Err(e) => panic!("reactor: {e}"),
    };
    let mut cfg = LunConfig::new("iqn.2024-01.io.ferrite:t1", 0);
    // 2 MiB at 8 MiB/s: about a quarter of a second.
    cfg.sanitize_bytes_per_s = Some(8 << 20);
    let lu = lu_with(512, 512, cfg);
    let n = nexus(1);
    let exec = |cdb: &[u8], data: Option<&[u8]>| {
        reactor.block_on(lu.execute(&n, cdb, data.map(IoBuf::from_slice)))
    };
    let list = overwrite_list(0x80 | 0x01, &[0x77; 8]);
    let mut c = sanitize(op::SA_SANITIZE_OVERWRITE, list.len());
    c[1] |= 0x80; // IMMED
    good(&exec(&c, Some(&list)));
    let sense = check(&exec(&TEST_UNIT_READY_6, None), 2, 0x04, 0x1B);
    assert_eq!(sense[15], 0x80, "progress indication");
    check(&exec(&cdb16(op::READ_16, 0, 1), None), 2, 0x04, 0x1B);
    check(&exec(&c, Some(&list)), 2, 0x04, 0x1B);
    good(&exec(&[op::INQUIRY, 0, 0, 0, 96, 0], None));
    let rs = good(&exec(&[op::REQUEST_SENSE, 0, 0, 0, 18, 0], None));
    assert_eq!((rs[2], rs[12], rs[13]), (2, 0x04, 0x1B));
    let mut ready = false;
    for _ in 0..200 {
        reactor.block_on(drivers::executor::sleep(Duration::from_millis(10)));
        if exec(&TEST_UNIT_READY_6, None).status == ScsiStatus::Good {
            ready = true;
            break;
        }
    }
    assert!(ready, "the sanitize operation never finished");
    let d = good(&exec(&cdb16(op::READ_16, BLOCKS - 1, 1), None));
    assert!(d.iter().all(|b| *b == 0x77));
}
