//! Data transfer PDUs: SCSI Data-Out and Data-In (RFC 7143 §11.7) and Ready To Transfer (§11.8).

use super::bhs::{
    data_limit, expect_opcode, no_ahs, no_data, require_final, EXP_CMD_SN, EXP_STAT_SN, ITT, LUN,
    MAX_CMD_SN, STATUS, STAT_SN, TTT,
};
use super::command::RESIDUAL;
use super::layout::{bhs_layout, BhsField};
use super::{Bhs, Opcode, PduError, Residual, StatusSns};

/// DataSN of a Data-Out or Data-In (4 bytes).
const DATA_SN: usize = 36;
/// Buffer Offset of a Data-Out, Data-In or R2T (4 bytes).
const BUFFER_OFFSET: usize = 40;

bhs_layout! {
    /// SCSI Data-Out (§11.7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct ScsiDataOut {
        /// F bit: last PDU of the sequence.
        pub final_bit: bool,
        /// LUN (set when TTT is not reserved).
        pub lun: u64 [LUN],
        /// Initiator Task Tag of the command.
        pub itt: u32 [ITT],
        /// Target Transfer Tag from the R2T, or 0xffffffff for unsolicited data.
        pub ttt: u32 [TTT],
        /// ExpStatSN.
        pub exp_stat_sn: u32 [EXP_STAT_SN],
        /// DataSN within the sequence.
        pub data_sn: u32 [DATA_SN],
        /// Buffer Offset in bytes.
        pub buffer_offset: u32 [BUFFER_OFFSET],
        /// Payload length in bytes.
        pub data_segment_length: u32,
    }
}

impl ScsiDataOut {
    /// Parses and validates a Data-Out BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::ScsiDataOut)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        Self::from_bhs(bhs, bhs.final_bit(), data_segment_length)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiDataOut, false);
        b.bytes[1] = u8::from(self.final_bit) << 7;
        b.set_lengths(0, self.data_segment_length);
        self.write_fields(&mut b);
        b
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

bhs_layout! {
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
        pub lun: u64 [LUN],
        /// Initiator Task Tag.
        pub itt: u32 [ITT],
        /// Target Transfer Tag (with the A bit), else 0xffffffff.
        pub ttt: u32 [TTT],
        /// ExpCmdSN.
        pub exp_cmd_sn: u32 [EXP_CMD_SN],
        /// MaxCmdSN.
        pub max_cmd_sn: u32 [MAX_CMD_SN],
        /// DataSN.
        pub data_sn: u32 [DATA_SN],
        /// Buffer Offset in bytes.
        pub buffer_offset: u32 [BUFFER_OFFSET],
        /// Payload length in bytes.
        pub data_segment_length: u32,
    }
}

impl ScsiDataIn {
    /// Encodes the header; the S bit implies the F bit and the residual bits exist only then.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiDataIn, false);
        b.bytes[1] = u8::from(self.final_bit) << 7 | u8::from(self.acknowledge) << 6;
        if let Some(st) = self.status {
            b.bytes[1] |= 0x80 | 0x01;
            b.bytes[STATUS] = st.status;
            b.set_u32(STAT_SN, st.stat_sn);
            st.residual.write(&mut b, RESIDUAL);
        }
        b.set_lengths(0, self.data_segment_length);
        self.write_fields(&mut b);
        b
    }

    /// Parses a Data-In header.
    ///
    /// # Errors
    /// [`PduError`] on S without F, or O/U bits without S.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::ScsiDataIn)?;
        no_ahs(bhs)?;
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

bhs_layout! {
    /// Ready To Transfer (§11.8).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct R2t {
        /// LUN.
        pub lun: u64 [LUN],
        /// Initiator Task Tag.
        pub itt: u32 [ITT],
        /// Target Transfer Tag the Data-Out PDUs must echo.
        pub ttt: u32 [TTT],
        /// StatSN / ExpCmdSN / MaxCmdSN (StatSN is the next StatSN, not advanced).
        pub sns: StatusSns [STAT_SN],
        /// R2TSN.
        pub r2t_sn: u32 [36],
        /// Buffer Offset in bytes.
        pub buffer_offset: u32 [BUFFER_OFFSET],
        /// Desired Data Transfer Length in bytes.
        pub desired_data_transfer_length: u32 [44],
    }
}

impl R2t {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::R2t, false);
        b.bytes[1] = 0x80;
        self.write_fields(&mut b);
        b
    }

    /// Parses an R2T header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::R2t)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        Self::from_bhs(bhs)
    }
}
