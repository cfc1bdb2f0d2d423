use super::data_out::{data_out_fate, DataCollect, DataOutFate};
use super::respond::command_residual;
use super::{decode_lun, encode_lun};
use crate::pdu::{Residual, ScsiDataOut, RESERVED_TAG};
use crate::scsi::sense::Sense;

fn collect(wanted: u32, expected_transfer: u32) -> DataCollect {
    DataCollect {
        buf: None,
        expected_transfer,
        wanted,
        received: 0,
        next_r2t_offset: 0,
        outstanding_r2t: 0,
        unsolicited_open: true,
        ttt: RESERVED_TAG,
        r2t_sn: 0,
        next_data_sn: 0,
        waker: None,
        failed: None,
    }
}

fn data_out(ttt: u32, data_sn: u32, buffer_offset: u32, len: u32) -> ScsiDataOut {
    ScsiDataOut {
        final_bit: false,
        lun: 0,
        itt: 1,
        ttt,
        exp_stat_sn: 0,
        data_sn,
        buffer_offset,
        data_segment_length: len,
    }
}

#[test]
fn write_residuals_compare_the_cdb_length_with_the_expected_length() {
    // WRITE of one 512-byte block: expected data transfer length 0 and 200 overflow, 10000 underflows.
    assert_eq!(command_residual(0, 512, None), Residual::Overflow(512));
    assert_eq!(command_residual(200, 512, None), Residual::Overflow(312));
    assert_eq!(command_residual(10000, 512, None), Residual::Underflow(9488));
    assert_eq!(command_residual(512, 512, None), Residual::None);
    // Reads compare what was produced; commands without data underflow the whole expected data transfer length.
    assert_eq!(command_residual(4096, 0, Some(512)), Residual::Underflow(3584));
    assert_eq!(command_residual(0, 0, Some(512)), Residual::Overflow(512));
    assert_eq!(command_residual(0, 0, None), Residual::None);
}

#[test]
fn data_out_sequence_checks() {
    let mut c = collect(1024, 1024);
    let first_burst = 65536;
    assert_eq!(
        data_out_fate(&c, &data_out(RESERVED_TAG, 0, 0, 512), first_burst),
        DataOutFate::Keep { keep: 512 }
    );
    // Wrong DataSN (0 twice, 27, -1) or a hole in the offsets fails the command.
    c.received = 512;
    c.next_data_sn = 1;
    for (sn, off) in [(0, 512), (27, 512), (u32::MAX, 512), (1, 0)] {
        assert_eq!(
            data_out_fate(&c, &data_out(RESERVED_TAG, sn, off, 512), first_burst),
            DataOutFate::Discard(Some(Sense::data_phase_error())),
            "DataSN {sn} offset {off}"
        );
    }
    // Past the expected transfer length, or the unsolicited burst: rejected.
    assert_eq!(
        data_out_fate(&c, &data_out(RESERVED_TAG, 1, 512, 1024), first_burst),
        DataOutFate::Reject
    );
    let mut big = collect(1 << 20, 1 << 20);
    big.received = 65536;
    big.next_data_sn = 128;
    assert_eq!(
        data_out_fate(&big, &data_out(RESERVED_TAG, 128, 65536, 512), first_burst),
        DataOutFate::Reject
    );
    // Solicited data needs the R2T's transfer tag and an outstanding R2T.
    c.unsolicited_open = false;
    c.ttt = 7;
    c.next_r2t_offset = 1024;
    c.next_data_sn = 0;
    assert_eq!(data_out_fate(&c, &data_out(8, 0, 512, 512), first_burst), DataOutFate::Reject);
    assert_eq!(data_out_fate(&c, &data_out(7, 0, 512, 512), first_burst), DataOutFate::Reject);
    c.outstanding_r2t = 1;
    assert_eq!(
        data_out_fate(&c, &data_out(7, 0, 512, 512), first_burst),
        DataOutFate::Keep { keep: 512 }
    );
    // Once failed, the rest of the sequence is dropped quietly.
    c.failed = Some(Sense::protocol_service_crc_error());
    assert_eq!(
        data_out_fate(&c, &data_out(7, 0, 512, 512), first_burst),
        DataOutFate::Discard(None)
    );
}

#[test]
fn lun_field_round_trips_for_flat_and_peripheral_addressing() {
    for lun in [0u64, 1, 7, 255, 256, 1000, 16383] {
        assert_eq!(decode_lun(encode_lun(lun)), lun);
    }
}
