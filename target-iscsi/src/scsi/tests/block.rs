//! READ/WRITE, VERIFY, COMPARE AND WRITE, ORWRITE, WRITE SAME, UNMAP, GET LBA STATUS,
//! capacity and cache commands.

use super::*;
use crate::scsi::cdb::opcode as op;

#[test]
fn write_then_read_10_and_16_all_block_sizes() {
    for (l, p) in [(512, 512), (4096, 4096), (512, 4096)] {
        let lu = lu(l, p);
        let n = nexus(1);
        let data: Vec<u8> = (0..2 * l as usize).map(|i| i as u8).collect();
        good(&run(&lu, &n, &cdb10(op::WRITE_10, 5, 2), Some(&data)));
        assert_eq!(good(&run(&lu, &n, &cdb16(op::READ_16, 5, 2), None)), data);
        assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, 6, 1), None)), data[l as usize..]);
    }
}

#[test]
fn read6_zero_length_reads_256_blocks() {
    let lu = lu(512, 512);
    let d = good(&run(&lu, &nexus(1), &[op::READ_6, 0, 0, 0, 0, 0], None));
    assert_eq!(d.len(), 256 * 512);
}

#[test]
fn zero_length_transfers_and_lba_out_of_range() {
    let (lu, n) = lu_and_nexus();
    assert!(good(&run(&lu, &n, &cdb10(op::READ_10, 0, 0), None)).is_empty());
    good(&run(&lu, &n, &cdb10(op::READ_10, BLOCKS as u32, 0), None));
    check(&run(&lu, &n, &cdb10(op::READ_10, BLOCKS as u32 + 1, 0), None), 5, 0x21, 0);
    check(&run(&lu, &n, &cdb10(op::READ_10, BLOCKS as u32 - 1, 2), None), 5, 0x21, 0);
    check(&run(&lu, &n, &cdb16(op::READ_16, u64::MAX, 1), None), 5, 0x21, 0);
    check(&run(&lu, &n, &cdb16(op::WRITE_16, u64::MAX, 1), Some(&[0; 512])), 5, 0x21, 0);
    good(&run(&lu, &n, &cdb16(op::WRITE_16, 0, 0), None));
}

#[test]
fn protect_fields_are_invalid_field_in_cdb_with_pointer() {
    let lu = lu(512, 512);
    let mut c = cdb10(op::READ_10, 0, 1);
    c[1] = 0x20;
    let s = check(&run(&lu, &nexus(1), &c, None), 5, 0x24, 0);
    assert_eq!(&s[15..18], &[0xCF, 0, 1]);
}

#[test]
fn too_long_transfer_is_rejected() {
    let lu = lu(512, 512);
    let blocks = limits::max_transfer_blocks(512) + 1;
    let s = check(&run(&lu, &nexus(1), &cdb16(op::READ_16, 0, blocks), None), 5, 0x24, 0);
    assert_eq!(&s[16..18], &[0, 10]);
}

#[test]
fn fua_write_and_dpo_are_accepted() {
    let lu = lu(4096, 4096);
    let mut c = cdb10(op::WRITE_10, 1, 1);
    c[1] = 0x18;
    good(&run(&lu, &nexus(1), &c, Some(&[7; 4096])));
    assert_eq!(good(&run(&lu, &nexus(1), &cdb10(op::READ_10, 1, 1), None)), vec![7; 4096]);
}

#[test]
fn short_write_data_out_writes_only_the_blocks_sent() {
    let (lu, n) = lu_and_nexus();
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 2), Some(&[b'a'; 1024])));
    // The initiator's expected length covers one of two blocks: the first block is written,
    // the second keeps its data (the transport reports the overflow residual).
    let p = lu.prepare(&n, &cdb10(op::WRITE_10, 0, 2), 512).ok();
    assert_eq!(p, Some(Prepared { direction: DataDirection::Out, data_out_bytes: 1024 }));
    let r =
        block_on(lu.execute(&n, &cdb10(op::WRITE_10, 0, 2), Some(IoBuf::from_slice(&[b'b'; 512]))));
    good(&r);
    let d = good(&run(&lu, &n, &cdb10(op::READ_10, 0, 2), None));
    assert_eq!((d[0], d[511], d[512], d[1023]), (b'b', b'b', b'a', b'a'));
    // WRITE AND VERIFY likewise; no Data-Out at all writes nothing.
    let r = block_on(lu.execute(&n, &cdb10(op::WRITE_AND_VERIFY_10, 1, 1), None));
    good(&r);
    assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, 1, 1), None))[0], b'a');
    // Part of a block cannot be written.
    let r =
        block_on(lu.execute(&n, &cdb10(op::WRITE_10, 0, 1), Some(IoBuf::from_slice(&[0; 200]))));
    check(&r, 5, 0x0E, 0x03);
    // Parameter lists and COMPARE AND WRITE are still all or nothing.
    let r = lu.prepare(&n, &caw(0, 1), 512);
    check(&r.err().unwrap_or_else(|| CommandResult::good(None)), 5, 0x0E, 0x03);
    let r = lu.prepare(&n, &caw(0, 0), 512);
    check(&r.err().unwrap_or_else(|| CommandResult::good(None)), 5, 0x24, 0);
    // Longer Data-Out than needed: prepare asks for exactly the CDB's bytes.
    let p = lu.prepare(&n, &cdb10(op::WRITE_10, 0, 1), 4096).ok();
    assert_eq!(p, Some(Prepared { direction: DataDirection::Out, data_out_bytes: 512 }));
}

#[test]
fn verify_bytchk_modes_and_miscompare_information() {
    let (lu, n) = lu_and_nexus();
    let data: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 10, 2), Some(&data)));
    let mut v = cdb10(op::VERIFY_10, 10, 2);
    v[1] = 0x02;
    good(&run(&lu, &n, &v, Some(&data)));
    let mut bad = data.clone();
    bad[700] ^= 0xFF;
    let s = check(&run(&lu, &n, &v, Some(&bad)), 0x0E, 0x1D, 0);
    assert_eq!(s[0], 0xF0);
    assert_eq!(&s[3..7], &700u32.to_be_bytes());
    // BYTCHK 0: medium verification only.
    good(&run(&lu, &n, &cdb10(op::VERIFY_10, 10, 2), None));
    // BYTCHK 3: one block compared against each.
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 20, 2), Some(&[9; 1024])));
    let mut v3 = cdb10(op::VERIFY_10, 20, 2);
    v3[1] = 0x06;
    good(&run(&lu, &n, &v3, Some(&[9; 512])));
    let mut blk = [9u8; 512];
    blk[3] = 1;
    let s = check(&run(&lu, &n, &v3, Some(&blk)), 0x0E, 0x1D, 0);
    assert_eq!(&s[3..7], &3u32.to_be_bytes());
    check(&run(&lu, &n, &cdb16(op::VERIFY_16, BLOCKS, 1), None), 5, 0x21, 0);
}

#[test]
fn write_and_verify_writes() {
    let (lu, n) = lu_and_nexus();
    let mut c = cdb10(op::WRITE_AND_VERIFY_10, 3, 1);
    c[1] = 0x02;
    good(&run(&lu, &n, &c, Some(&[0xA6; 512])));
    assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, 3, 1), None)), vec![0xA6; 512]);
    let mut c = cdb16(op::WRITE_AND_VERIFY_16, 3, 1);
    c[1] = 0x20;
    check(&run(&lu, &n, &c, Some(&[0; 512])), 5, 0x24, 0);
}

fn caw(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op::COMPARE_AND_WRITE;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

#[test]
fn compare_and_write_success_miscompare_and_limits() {
    let (lu, n) = lu_and_nexus();
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 1), Some(&[b'A'; 512])));
    let mut d = vec![b'A'; 512];
    d.extend_from_slice(&[b'B'; 512]);
    good(&run(&lu, &n, &caw(0, 1), Some(&d)));
    assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, 0, 1), None)), vec![b'B'; 512]);
    let mut d2 = vec![b'B'; 512];
    d2[100] = b'Z';
    d2.extend_from_slice(&[b'C'; 512]);
    let s = check(&run(&lu, &n, &caw(0, 1), Some(&d2)), 0x0E, 0x1D, 0);
    assert_eq!(&s[3..7], &100u32.to_be_bytes());
    assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, 0, 1), None)), vec![b'B'; 512]);
    check(&run(&lu, &n, &caw(BLOCKS, 1), Some(&d)), 5, 0x21, 0);
    good(&run(&lu, &n, &caw(0, 0), None));
    // Data-Out length must match 2 x NUMBER OF BLOCKS exactly.
    let r = lu.prepare(&n, &caw(0, 1), 4 * 512).err().unwrap_or_else(|| CommandResult::good(None));
    assert_eq!(r.status, ScsiStatus::CheckCondition);
    let r = lu.prepare(&n, &caw(0, 3), 4 * 512).err().unwrap_or_else(|| CommandResult::good(None));
    assert_eq!(r.status, ScsiStatus::CheckCondition);
}

#[test]
fn orwrite_ors_into_existing_data() {
    let (lu, n) = lu_and_nexus();
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 7, 2), Some(&[0xA5; 1024])));
    good(&run(&lu, &n, &cdb16(op::ORWRITE_16, 7, 2), Some(&[0x5A; 1024])));
    assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, 7, 2), None)), vec![0xFF; 1024]);
    good(&run(&lu, &n, &cdb16(op::ORWRITE_16, 7, 0), None));
    check(&run(&lu, &n, &cdb16(op::ORWRITE_16, BLOCKS, 1), Some(&[0; 512])), 5, 0x21, 0);
}

fn ws10(lba: u32, blocks: u16, flags: u8) -> [u8; 10] {
    let mut c = cdb10(op::WRITE_SAME_10, lba, blocks);
    c[1] = flags;
    c
}

#[test]
fn write_same_repeats_the_block_across_pieces() {
    let (lu, n) = lu_and_nexus();
    good(&run(&lu, &n, &ws10(1, 3, 0), Some(&[0x42; 512])));
    assert_eq!(
        good(&run(&lu, &n, &cdb10(op::READ_10, 0, 5), None)),
        [vec![0; 512], vec![0x42; 1536], vec![0; 512]].concat()
    );
    // Longer than one piece (8 MiB = 16384 blocks of 512) would need a bigger volume; check
    // piece arithmetic on the whole volume instead.
    let mut c = cdb16(op::WRITE_SAME_16, 0, BLOCKS as u32);
    c[1] = 0;
    good(&run(&lu, &n, &c, Some(&[1; 512])));
    assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, BLOCKS as u32 - 1, 1), None)), vec![1; 512]);
}

#[test]
fn write_same_unmap_ndob_and_errors() {
    let lu = lu(512, 4096);
    let n = nexus(1);
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 8), Some(&[0xFF; 4096])));
    good(&run(&lu, &n, &ws10(0, 8, 0x08), Some(&[0; 512])));
    assert_eq!(good(&run(&lu, &n, &cdb10(op::READ_10, 0, 8), None)), vec![0; 4096]);
    let mut ndob = cdb16(op::WRITE_SAME_16, 0, 8);
    ndob[1] = 0x09;
    assert_eq!(lu.prepare(&n, &ndob, 0).ok().map(|p| p.data_out_bytes), Some(0));
    good(&run(&lu, &n, &ndob, None));
    // ANCHOR, WSNZ, protection, range, Data-Out size.
    let s = check(&run(&lu, &n, &ws10(0, 1, 0x18), Some(&[0; 512])), 5, 0x24, 0);
    assert_eq!(&s[15..18], &[0xCC, 0, 1]);
    check(&run(&lu, &n, &ws10(0, 1, 0x10), Some(&[0; 512])), 5, 0x24, 0);
    let s = check(&run(&lu, &n, &ws10(0, 0, 0), Some(&[0; 512])), 5, 0x24, 0);
    assert_eq!(&s[16..18], &[0, 7]);
    // Longer than MAXIMUM WRITE SAME LENGTH: the length is checked before the range.
    let too_long = u16::try_from(limits::max_write_same_blocks(512) + 1).unwrap_or(u16::MAX);
    let s = check(&run(&lu, &n, &ws10(0, too_long, 0), Some(&[0; 512])), 5, 0x24, 0);
    assert_eq!(&s[16..18], &[0, 7]);
    check(&run(&lu, &n, &ws10(0, 1, 0x20), Some(&[0; 512])), 5, 0x24, 0);
    check(&run(&lu, &n, &ws10(BLOCKS as u32, 1, 0), Some(&[0; 512])), 5, 0x21, 0);
    assert!(lu.prepare(&n, &ws10(0, 1, 0x08), 256).is_err());
    assert!(lu.prepare(&n, &ws10(0, 1, 0x08), 1024).is_err());
}

fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut l = vec![0u8; 8];
    for (lba, n) in ranges {
        l.extend_from_slice(&lba.to_be_bytes());
        l.extend_from_slice(&n.to_be_bytes());
        l.extend_from_slice(&[0; 4]);
    }
    let bd = (l.len() - 8) as u16;
    l[0..2].copy_from_slice(&(bd + 6).to_be_bytes());
    l[2..4].copy_from_slice(&bd.to_be_bytes());
    l
}

fn unmap_cdb(len: usize) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op::UNMAP;
    c[7..9].copy_from_slice(&(len as u16).to_be_bytes());
    c
}

#[test]
fn unmap_deallocates_and_validates() {
    let (lu, n) = lu_and_nexus();
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 4), Some(&[b'a'; 2048])));
    let l = unmap_list(&[(1, 2), (BLOCKS, 0)]);
    good(&run(&lu, &n, &unmap_cdb(l.len()), Some(&l)));
    let d = good(&run(&lu, &n, &cdb10(op::READ_10, 0, 4), None));
    assert_eq!(d, [vec![b'a'; 512], vec![0; 1024], vec![b'a'; 512]].concat());
    good(&run(&lu, &n, &unmap_cdb(0), None));
    check(&run(&lu, &n, &unmap_cdb(4), Some(&[0; 4])), 5, 0x1A, 0);
    let l = unmap_list(&[(BLOCKS - 1, 2)]);
    check(&run(&lu, &n, &unmap_cdb(l.len()), Some(&l)), 5, 0x21, 0);
    let many: Vec<(u64, u32)> = (0..257).map(|i| (i, 1)).collect();
    let l = unmap_list(&many);
    check(&run(&lu, &n, &unmap_cdb(l.len()), Some(&l)), 5, 0x26, 0);
    let mut c = unmap_cdb(24);
    c[1] = 1;
    check(&run(&lu, &n, &c, Some(&unmap_list(&[(0, 1)]))), 5, 0x24, 0);
}

#[test]
fn get_lba_status_reports_runs() {
    let (lu, n) = lu_and_nexus();
    let mut c = cdb16(op::SERVICE_ACTION_IN_16, 0, 24);
    c[1] = op::SA_GET_LBA_STATUS;
    let d = good(&run(&lu, &n, &c, None));
    assert_eq!(d.len(), 24);
    assert_eq!(d[8 + 12], 1, "deallocated");
    good(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 1), Some(&[1; 512])));
    let d = good(&run(&lu, &n, &c, None));
    assert_eq!((&d[8..16], d[20]), (&0u64.to_be_bytes()[..], 0));
    let mut oob = cdb16(op::SERVICE_ACTION_IN_16, BLOCKS, 24);
    oob[1] = op::SA_GET_LBA_STATUS;
    check(&run(&lu, &n, &oob, None), 5, 0x21, 0);
}

#[test]
fn read_capacity_10_and_16() {
    let lu = lu(512, 4096);
    let n = nexus(1);
    let d = good(&run(&lu, &n, &[op::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0], None));
    assert_eq!(d, [(BLOCKS as u32 - 1).to_be_bytes(), 512u32.to_be_bytes()].concat());
    check(&run(&lu, &n, &[op::READ_CAPACITY_10, 0, 0, 0, 0, 1, 0, 0, 0, 0], None), 5, 0x24, 0);
    let mut c = cdb16(op::SERVICE_ACTION_IN_16, 0, 32);
    c[1] = op::SA_READ_CAPACITY_16;
    let d = good(&run(&lu, &n, &c, None));
    assert_eq!(&d[0..8], &(BLOCKS - 1).to_be_bytes());
    assert_eq!(&d[8..12], &512u32.to_be_bytes());
    assert_eq!(d[13], 3, "8 logical per physical");
    assert_eq!(d[14], 0xC0, "LBPME, LBPRZ");
    c[13] = 12;
    assert_eq!(good(&run(&lu, &n, &c, None)).len(), 12);
}

#[test]
fn prefetch_and_synchronize_cache() {
    let lu = lu(4096, 4096);
    let n = nexus(1);
    for o in [op::PRE_FETCH_10, op::SYNCHRONIZE_CACHE_10] {
        good(&run(&lu, &n, &cdb10(o, 0, 1), None));
        good(&run(&lu, &n, &cdb10(o, BLOCKS as u32 - 1, 1), None));
        good(&run(&lu, &n, &cdb10(o, 5, 0), None));
        check(&run(&lu, &n, &cdb10(o, BLOCKS as u32, 1), None), 5, 0x21, 0);
    }
    check(&run(&lu, &n, &cdb16(op::PRE_FETCH_16, u64::MAX, 1), None), 5, 0x21, 0);
    good(&run(&lu, &n, &cdb16(op::SYNCHRONIZE_CACHE_16, 0, 0), None));
}

#[test]
fn read_only_lu_refuses_writes_with_data_protect() {
    let mut cfg = LunConfig::new("iqn.t", 0);
    cfg.read_only = true;
    let lu = lu_with(512, 512, cfg);
    let n = nexus(1);
    check(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 1), Some(&[0; 512])), 7, 0x27, 0);
    check(&run(&lu, &n, &ws10(0, 1, 0x08), Some(&[0; 512])), 7, 0x27, 0);
    let l = unmap_list(&[(0, 1)]);
    check(&run(&lu, &n, &unmap_cdb(l.len()), Some(&l)), 7, 0x27, 0);
    check(&run(&lu, &n, &caw(0, 1), Some(&[0; 1024])), 7, 0x27, 0);
    // Decided from the CDB: a write that came without its Data-Out is refused the same way,
    // and the transport is not told to solicit any.
    check(&run(&lu, &n, &ws10(0, 1, 0x08), None), 7, 0x27, 0);
    check(&run(&lu, &n, &cdb10(op::WRITE_10, 0, 1), None), 7, 0x27, 0);
    let r = lu.prepare(&n, &ws10(0, 1, 0x08), 0);
    check(&r.err().unwrap_or_else(|| CommandResult::good(None)), 7, 0x27, 0);
    good(&run(&lu, &n, &cdb10(op::READ_10, 0, 1), None));
}
