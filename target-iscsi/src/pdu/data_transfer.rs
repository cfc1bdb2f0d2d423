//! Data transfer PDUs: SCSI Data-Out and Data-In (RFC 7143 §11.7) and Ready To Transfer (§11.8).

use super::bhs::{
    data_limit, expect_header, EXP_CMD_SN, EXP_STAT_SN, ITT, LUN, MAX_CMD_SN, NO_AHS, STATUS,
    STAT_SN, TTT,
};
use super::command::RESIDUAL;
use super::layout::{bhs_layout, simple_codec, BhsField};
use super::{Bhs, Opcode, PduError, Residual, StatusSns};

/// DataSN of a Data-Out or Data-In (4 bytes).
const DATA_SN: usize = 36;
/// Buffer Offset of a Data-Out, Data-In or R2T (4 bytes).
const BUFFER_OFFSET: usize = 40;

/// SCSI Data-Out (§11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiDataOut {
    /// F bit: last PDU of the sequence.
    pub final_bit: bool,
    /// LUN (set when TTT is not reserved).
    pub lun: u64,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag from the R2T, or 0xffffffff for unsolicited data.
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN within the sequence.
    pub data_sn: u32,
    /// Buffer Offset in bytes.
    pub buffer_offset: u32,
    /// Payload length in bytes.
    pub data_segment_length: u32,
}

bhs_layout! {
    Opcode::ScsiDataOut => ScsiDataOut(final_bit: bool, data_segment_length: u32) {
        lun @ LUN, itt @ ITT, ttt @ TTT, exp_stat_sn @ EXP_STAT_SN, data_sn @ DATA_SN,
        buffer_offset @ BUFFER_OFFSET
    }
}

impl ScsiDataOut {
    /// Parses and validates a Data-Out BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::ScsiDataOut, NO_AHS)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        Self::from_bhs(bhs, bhs.final_bit(), data_segment_length)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(false, u8::from(self.final_bit) << 7, 0, self.data_segment_length)
    }
}

/// Status carried in a final Data-In PDU ("phase collapse", S bit, §11.7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataInStatus {
    /// SCSI status (GOOD or a status without sense data).
    pub status: u8,
    /// Residual (O/U bits and Residual Count).
    pub residual: Residual,
    /// StatSN.
    pub stat_sn: u32,
}

/// SCSI Data-In (§11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiDataIn {
    /// F bit: last PDU of the sequence. Forced on when `status` is present.
    pub final_bit: bool,
    /// A bit: the target asks for a DataACK SNACK (ErrorRecoveryLevel > 0).
    pub acknowledge: bool,
    /// Status collapsed into this PDU (S bit); `None` for a plain data PDU.
    pub status: Option<DataInStatus>,
    /// LUN (set when the A bit is set).
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (with the A bit), else 0xffffffff.
    pub ttt: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset in bytes.
    pub buffer_offset: u32,
    /// Payload length in bytes.
    pub data_segment_length: u32,
}

bhs_layout! {
    Opcode::ScsiDataIn => ScsiDataIn(
        final_bit: bool, acknowledge: bool, status: Option<DataInStatus>, data_segment_length: u32,
    ) {
        lun @ LUN, itt @ ITT, ttt @ TTT, exp_cmd_sn @ EXP_CMD_SN, max_cmd_sn @ MAX_CMD_SN,
        data_sn @ DATA_SN, buffer_offset @ BUFFER_OFFSET
    }
}

impl ScsiDataIn {
    /// Encodes the header; the S bit implies the F bit and the residual bits exist only then.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let flags = u8::from(self.final_bit) << 7 | u8::from(self.acknowledge) << 6;
        let mut b = self.encode_header(false, flags, 0, self.data_segment_length);
        if let Some(st) = self.status {
            b.bytes[1] |= 0x80 | 0x01;
            b.bytes[STATUS] = st.status;
            b.set_u32(STAT_SN, st.stat_sn);
            st.residual.write(&mut b, RESIDUAL);
        }
        b
    }

    /// Parses a Data-In header.
    ///
    /// # Errors
    /// [`PduError`] on S without F, or O/U bits without S.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::ScsiDataIn, NO_AHS)?;
        let flags = bhs.bytes[1];
        let final_bit = flags & 0x80 != 0;
        let status = if flags & 0x01 != 0 {
            if !final_bit {
                return Err(PduError::Protocol("Data-In with S bit but without F bit"));
            }
            Some(DataInStatus {
                status: bhs.bytes[STATUS],
                residual: Residual::read(bhs, RESIDUAL)?,
                stat_sn: bhs.u32_at(STAT_SN),
            })
        } else {
            if flags & 0x06 != 0 {
                return Err(PduError::InvalidField("Data-In residual bits without S bit"));
            }
            None
        };
        let acknowledge = flags & 0x40 != 0;
        Self::from_bhs(bhs, final_bit, acknowledge, status, bhs.data_segment_length())
    }
}

/// Ready To Transfer (§11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct R2t {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag the Data-Out PDUs must echo.
    pub ttt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN (StatSN is the next StatSN, not advanced).
    pub sns: StatusSns,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset in bytes.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length in bytes.
    pub desired_data_transfer_length: u32,
}

bhs_layout! {
    Opcode::R2t => R2t() {
        lun @ LUN, itt @ ITT, ttt @ TTT, sns @ STAT_SN, r2t_sn @ 36, buffer_offset @ BUFFER_OFFSET,
        desired_data_transfer_length @ 44
    }
}

simple_codec!(R2t);
