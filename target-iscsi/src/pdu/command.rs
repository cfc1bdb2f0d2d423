//! SCSI Command (RFC 7143 §11.3) and SCSI Response (§11.4): task attributes, residuals and the
//! sense data segment.

use super::bhs::{
    data_limit, expect_header, CMD_SN, EXP_DATA_SN, EXP_STAT_SN, ITT, LUN, RESIDUAL_COUNT,
    RESPONSE, STATUS, STAT_SN,
};
use super::layout::{bhs_layout, simple_codec, BhsField};
use super::{Bhs, Opcode, PduError, StatusSns, TaskAttribute};

/// Where a residual is kept: its overflow and underflow bits in byte 1, and its count.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResidualAt {
    overflow: u8,
    underflow: u8,
    count: usize,
}

/// The Residual Count of a SCSI Response or a final Data-In, with its O and U bits.
pub(super) const RESIDUAL: ResidualAt =
    ResidualAt { overflow: 0x04, underflow: 0x02, count: RESIDUAL_COUNT };

/// The Bidirectional Read Residual Count of a SCSI Response, with its o and u bits.
const BIDI_READ_RESIDUAL: ResidualAt = ResidualAt { overflow: 0x10, underflow: 0x08, count: 40 };

/// Residual reported in a SCSI Response or a final Data-In (§11.4.5): the O and U bits plus
/// the Residual Count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Residual {
    /// Exactly the expected amount was transferred.
    #[default]
    None,
    /// O bit: the command wanted this many bytes more than Expected Data Transfer Length.
    Overflow(u32),
    /// U bit: this many bytes of Expected Data Transfer Length were not transferred.
    Underflow(u32),
}

impl Residual {
    /// Residual from the expected and the actual transfer length in bytes.
    #[must_use]
    pub const fn from_lengths(expected_bytes: u32, actual_bytes: u32) -> Self {
        if actual_bytes > expected_bytes {
            Self::Overflow(actual_bytes - expected_bytes)
        } else if actual_bytes < expected_bytes {
            Self::Underflow(expected_bytes - actual_bytes)
        } else {
            Self::None
        }
    }

    pub(super) const fn count(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Overflow(n) | Self::Underflow(n) => n,
        }
    }

    /// (overflow bit, underflow bit) values to OR into a flags byte.
    pub(super) const fn bits(self, overflow: u8, underflow: u8) -> u8 {
        match self {
            Self::None => 0,
            Self::Overflow(_) => overflow,
            Self::Underflow(_) => underflow,
        }
    }

    pub(super) fn decode(
        flags: u8,
        overflow: u8,
        underflow: u8,
        count: u32,
    ) -> Result<Self, PduError> {
        match (flags & overflow != 0, flags & underflow != 0) {
            (false, false) => Ok(Self::None),
            (true, false) => Ok(Self::Overflow(count)),
            (false, true) => Ok(Self::Underflow(count)),
            (true, true) => Err(PduError::InvalidField("both overflow and underflow set")),
        }
    }
}

/// The residual's bits are ORed into byte 1, which `encode` has set before.
impl BhsField for Residual {
    type At = ResidualAt;

    #[inline]
    fn read(bhs: &Bhs, at: ResidualAt) -> Result<Self, PduError> {
        Self::decode(bhs.bytes[1], at.overflow, at.underflow, bhs.u32_at(at.count))
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: ResidualAt) {
        bhs.bytes[1] |= self.bits(at.overflow, at.underflow);
        bhs.set_u32(at.count, self.count());
    }
}

/// SCSI Command (§11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiCommand {
    /// I bit.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out PDUs follow.
    pub final_bit: bool,
    /// R bit: data flows to the initiator.
    pub read: bool,
    /// W bit: data flows to the target.
    pub write: bool,
    /// ATTR.
    pub attr: TaskAttribute,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length in bytes.
    pub expected_data_transfer_length: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// First 16 bytes of the CDB (the rest is in an extended CDB AHS).
    pub cdb: [u8; 16],
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_length_words: u8,
    /// Immediate data length in bytes.
    pub data_segment_length: u32,
}

bhs_layout! {
    Opcode::ScsiCommand => ScsiCommand(
        immediate: bool, final_bit: bool, read: bool, write: bool, attr: TaskAttribute,
        total_ahs_length_words: u8, data_segment_length: u32,
    ) {
        lun @ LUN, itt @ ITT, expected_data_transfer_length @ 20, cmd_sn @ CMD_SN,
        exp_stat_sn @ EXP_STAT_SN, cdb @ 32
    }
}

impl ScsiCommand {
    /// Parses and validates a SCSI Command BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or inconsistent F/R/W bits.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::ScsiCommand, 0)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let flags = bhs.bytes[1];
        let final_bit = flags & 0x80 != 0;
        let read = flags & 0x40 != 0;
        let write = flags & 0x20 != 0;
        let attr = TaskAttribute::decode(flags & 0x07)?;
        let total_ahs_length_words = bhs.total_ahs_length_words();
        let cmd = Self::from_bhs(
            bhs,
            bhs.immediate(),
            final_bit,
            read,
            write,
            attr,
            total_ahs_length_words,
            data_segment_length,
        )?;
        if !read && !write && cmd.expected_data_transfer_length != 0 {
            return Err(PduError::InvalidField("Expected Data Transfer Length without R or W bit"));
        }
        if !write && data_segment_length != 0 {
            return Err(PduError::Protocol("immediate data on a command without W bit"));
        }
        if !write && !final_bit {
            return Err(PduError::Protocol("F bit clear on a command without W bit"));
        }
        Ok(cmd)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(
            self.immediate,
            u8::from(self.final_bit) << 7
                | u8::from(self.read) << 6
                | u8::from(self.write) << 5
                | self.attr as u8,
            self.total_ahs_length_words,
            self.data_segment_length,
        )
    }
}

/// SCSI Response (§11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiResponse {
    /// Bidirectional read residual (o/u bits and Bidirectional Read Residual Count).
    pub bidi_read_residual: Residual,
    /// Residual (O/U bits and Residual Count).
    pub residual: Residual,
    /// iSCSI Response: 0x00 command completed at target, 0x01 target failure.
    pub response: u8,
    /// SCSI status (valid when `response` is 0).
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag (0 unless answering an R-Data SNACK).
    pub snack_tag: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// ExpDataSN: number of Data-In (and R2T) PDUs the target sent for the command.
    pub exp_data_sn: u32,
    /// SenseLength + sense data + response data length in bytes.
    pub data_segment_length: u32,
}

bhs_layout! {
    Opcode::ScsiResponse => ScsiResponse(data_segment_length: u32) {
        bidi_read_residual @ BIDI_READ_RESIDUAL, residual @ RESIDUAL, response @ RESPONSE,
        status @ STATUS, itt @ ITT, snack_tag @ 20, sns @ STAT_SN, exp_data_sn @ EXP_DATA_SN
    }
}

simple_codec!(ScsiResponse, data_segment_length);

/// SCSI Response data segment: SenseLength (2 bytes) + sense data (§11.4.7), appended to `out`.
/// Returns the data segment length (without padding).
///
/// # Panics
/// If `sense` is longer than 65535 bytes (a programming error).
pub fn encode_sense_segment(sense: &[u8], out: &mut Vec<u8>) -> u32 {
    assert!(sense.len() <= usize::from(u16::MAX), "sense data too long");
    let len = u16::try_from(sense.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sense);
    u32::from(len) + 2
}
