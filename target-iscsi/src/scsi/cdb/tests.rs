use super::*;

#[test]
fn read6_zero_length_means_256_blocks() {
    let c = parse(&[op6(opcode::READ_6), 0x1F, 0xFF, 0xFF, 0, 0]).ok();
    let Some(Command::Read(io)) = c else { panic!("not a read: {c:?}") };
    assert_eq!(io.lba, 0x1F_FFFF);
    assert_eq!(io.blocks, 256);
}

fn op6(op: u8) -> u8 {
    op
}

#[test]
fn read10_fields() {
    let cdb = [opcode::READ_10, 0x18, 0, 0, 1, 0, 0, 0, 8, 0];
    assert_eq!(
        parse(&cdb),
        Ok(Command::Read(BlockIo { lba: 256, blocks: 8, dpo: true, fua: true, cdb_bytes: 10 }))
    );
}

#[test]
fn read16_fields() {
    let mut cdb = [0u8; 16];
    cdb[0] = opcode::READ_16;
    cdb[2..10].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    cdb[10..14].copy_from_slice(&9u32.to_be_bytes());
    let Ok(Command::Read(io)) = parse(&cdb) else { panic!("not a read") };
    assert_eq!((io.lba, io.blocks), (0x0102_0304_0506_0708, 9));
}

#[test]
fn rdprotect_is_invalid_field_bit7_byte1() {
    for p in 1..8u8 {
        let cdb = [opcode::READ_10, p << 5, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(parse(&cdb), Err(Sense::invalid_field_in_cdb(1, Some(7))));
    }
}

#[test]
fn unknown_opcode() {
    assert_eq!(parse(&[0xFF; 16]), Err(Sense::invalid_opcode()));
    assert_eq!(parse(&[]), Err(Sense::invalid_opcode()));
}

#[test]
fn unknown_service_action_points_at_byte1() {
    let cdb = [opcode::SERVICE_ACTION_IN_16, 0x1F];
    assert_eq!(parse(&cdb), Err(Sense::invalid_field_in_cdb(1, Some(4))));
}

#[test]
fn short_cdb_reads_as_zero_padded() {
    assert_eq!(parse(&[opcode::READ_16]).ok().map(|c| c.data_out_bytes(512)), Some(0));
}

#[test]
fn verify_bytchk_2_is_invalid() {
    let cdb = [opcode::VERIFY_10, 0x04, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(parse(&cdb), Err(Sense::invalid_field_in_cdb(1, Some(2))));
}

/// A 16-byte CDB of `op` with byte `at` set to `value`, all else zero.
fn cdb16(op: u8, at: usize, value: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[at] = value;
    c
}

#[test]
fn data_out_lengths() {
    let caw = cdb16(opcode::COMPARE_AND_WRITE, 13, 3);
    assert_eq!(parse(&caw).map(|c| c.data_out_bytes(512)), Ok(3072));
    let ws = [opcode::WRITE_SAME_10, 0, 0, 0, 0, 0, 0, 0, 9, 0];
    assert_eq!(parse(&ws).map(|c| c.data_out_bytes(4096)), Ok(4096));
    let ws16 = cdb16(opcode::WRITE_SAME_16, 1, 0x09);
    assert_eq!(parse(&ws16).map(|c| c.data_out_bytes(4096)), Ok(0));
    let v3 = [opcode::VERIFY_10, 0x06, 0, 0, 0, 0, 0, 0, 4, 0];
    assert_eq!(parse(&v3).map(|c| c.data_out_bytes(512)), Ok(512));
    let pro = [opcode::PERSISTENT_RESERVE_OUT, 0, 0, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(parse(&pro).map(|c| c.data_out_bytes(512)), Ok(24));
}

fn sanitize_cdb(byte1: u8, list_bytes: u16) -> [u8; 10] {
    let [hi, lo] = list_bytes.to_be_bytes();
    [opcode::SANITIZE, byte1, 0, 0, 0, 0, 0, hi, lo, 0]
}

#[test]
fn sanitize_fields() {
    let c = parse(&sanitize_cdb(0x80 | 0x20 | opcode::SA_SANITIZE_OVERWRITE, 516));
    assert_eq!(
        c,
        Ok(Command::Sanitize(SanitizeCdb {
            immed: true,
            ause: true,
            service_action: opcode::SA_SANITIZE_OVERWRITE,
            parameter_list_length: 516,
        }))
    );
    assert_eq!(c.map(|c| c.data_out_bytes(512)), Ok(516));
}

#[test]
fn sanitize_reserved_bits_and_bytes_are_invalid_fields() {
    let sa = opcode::SA_SANITIZE_BLOCK_ERASE;
    assert_eq!(parse(&sanitize_cdb(0x40 | sa, 0)), Err(Sense::invalid_field_in_cdb(1, Some(6))));
    for i in 2..=6 {
        let mut cdb = sanitize_cdb(sa, 0);
        cdb[i] = 1;
        assert_eq!(parse(&cdb), Err(Sense::invalid_field_in_cdb(i as u16, None)));
    }
}

#[test]
fn sanitize_service_actions_and_parameter_list_lengths() {
    // Reserved codes and CRYPTOGRAPHIC ERASE (no encryption to erase) are refused.
    for sa in (0..=0x1Eu8).filter(|sa| !matches!(sa, 1 | 2)) {
        assert_eq!(
            parse(&sanitize_cdb(sa, 0)),
            Err(Sense::invalid_field_in_cdb(1, Some(4))),
            "service action {sa:#x}"
        );
    }
    for sa in [opcode::SA_SANITIZE_BLOCK_ERASE, opcode::SA_SANITIZE_EXIT_FAILURE_MODE] {
        assert!(parse(&sanitize_cdb(sa, 0)).is_ok());
        assert_eq!(parse(&sanitize_cdb(sa, 8)), Err(Sense::invalid_field_in_cdb(7, None)));
    }
    for len in 0..=4 {
        assert_eq!(
            parse(&sanitize_cdb(opcode::SA_SANITIZE_OVERWRITE, len)),
            Err(Sense::invalid_field_in_cdb(7, None))
        );
    }
    assert!(parse(&sanitize_cdb(opcode::SA_SANITIZE_OVERWRITE, 5)).is_ok());
}

#[test]
fn parse_never_panics_on_any_two_byte_prefix() {
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            let _ = parse(&[a, b, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
    }
}
