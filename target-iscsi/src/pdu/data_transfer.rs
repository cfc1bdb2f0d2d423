//! Data transfer PDUs: SCSI Data-Out and Data-In (RFC 7143 §11.7) and Ready To Transfer (§11.8).

use super::bhs::{
    data_limit, expect_opcode, no_ahs, no_data, require_final, EXP_CMD_SN, EXP_STAT_SN, ITT, LUN,
    MAX_CMD_SN, RESIDUAL_COUNT, STATUS, STAT_SN, TTT,
};
use super::{Bhs, Opcode, PduError, Residual, StatusSns};

// BHS byte offsets of the fields that only Data-Out, Data-In and R2T (§11.7, §11.8) carry; the
// fields several PDUs share are in bhs.rs.

/// DataSN of a Data-Out or Data-In (4 bytes).
const DATA_SN: usize = 36;
/// Buffer Offset of a Data-Out, Data-In or R2T (4 bytes).
const BUFFER_OFFSET: usize = 40;
/// R2TSN of an R2T (4 bytes).
const R2T_SN: usize = 36;
/// Desired Data Transfer Length of an R2T (4 bytes).
const DESIRED_DATA_TRANSFER_LENGTH: usize = 44;

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

impl ScsiDataOut {
    /// Parses and validates a Data-Out BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::ScsiDataOut)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        Ok(Self {
            final_bit: bhs.final_bit(),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(TTT),
            exp_stat_sn: bhs.u32_at(EXP_STAT_SN),
            data_sn: bhs.u32_at(DATA_SN),
            buffer_offset: bhs.u32_at(BUFFER_OFFSET),
            data_segment_length,
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiDataOut, false);
        b.bytes[1] = u8::from(self.final_bit) << 7;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(LUN, self.lun);
        b.set_u32(ITT, self.itt);
        b.set_u32(TTT, self.ttt);
        b.set_u32(EXP_STAT_SN, self.exp_stat_sn);
        b.set_u32(DATA_SN, self.data_sn);
        b.set_u32(BUFFER_OFFSET, self.buffer_offset);
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

impl ScsiDataIn {
    /// Encodes the header; the S bit implies the F bit and the residual bits exist only then.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiDataIn, false);
        let mut flags = u8::from(self.final_bit) << 7 | u8::from(self.acknowledge) << 6;
        if let Some(st) = self.status {
            flags |= 0x80 | 0x01 | st.residual.bits(0x04, 0x02);
            b.bytes[STATUS] = st.status;
            b.set_u32(STAT_SN, st.stat_sn);
            b.set_u32(RESIDUAL_COUNT, st.residual.count());
        }
        b.bytes[1] = flags;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(LUN, self.lun);
        b.set_u32(ITT, self.itt);
        b.set_u32(TTT, self.ttt);
        b.set_u32(EXP_CMD_SN, self.exp_cmd_sn);
        b.set_u32(MAX_CMD_SN, self.max_cmd_sn);
        b.set_u32(DATA_SN, self.data_sn);
        b.set_u32(BUFFER_OFFSET, self.buffer_offset);
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
                residual: Residual::decode(flags, 0x04, 0x02, bhs.u32_at(RESIDUAL_COUNT))?,
                stat_sn: bhs.u32_at(STAT_SN),
            })
        } else {
            if flags & 0x06 != 0 {
                return Err(PduError::InvalidField("Data-In residual bits without S bit"));
            }
            None
        };
        Ok(Self {
            final_bit,
            acknowledge: flags & 0x40 != 0,
            status,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(TTT),
            exp_cmd_sn: bhs.u32_at(EXP_CMD_SN),
            max_cmd_sn: bhs.u32_at(MAX_CMD_SN),
            data_sn: bhs.u32_at(DATA_SN),
            buffer_offset: bhs.u32_at(BUFFER_OFFSET),
            data_segment_length: bhs.data_segment_length(),
        })
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

impl R2t {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::R2t, false);
        b.bytes[1] = 0x80;
        b.set_u64(LUN, self.lun);
        b.set_u32(ITT, self.itt);
        b.set_u32(TTT, self.ttt);
        self.sns.write(&mut b);
        b.set_u32(R2T_SN, self.r2t_sn);
        b.set_u32(BUFFER_OFFSET, self.buffer_offset);
        b.set_u32(DESIRED_DATA_TRANSFER_LENGTH, self.desired_data_transfer_length);
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
        Ok(Self {
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(TTT),
            sns: StatusSns::read(bhs),
            r2t_sn: bhs.u32_at(R2T_SN),
            buffer_offset: bhs.u32_at(BUFFER_OFFSET),
            desired_data_transfer_length: bhs.u32_at(DESIRED_DATA_TRANSFER_LENGTH),
        })
    }
}
