//! Text Request (RFC 7143 §11.10) and Text Response (§11.11).

use super::bhs::{data_limit, expect_opcode, no_ahs, CMD_SN, EXP_STAT_SN, ITT, LUN, TTT};
use super::{Bhs, Opcode, PduError, StatusSns, RESERVED_TAG};

/// Text Request (§11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextRequest {
    /// I bit.
    pub immediate: bool,
    /// F bit.
    pub final_bit: bool,
    /// C bit.
    pub continue_bit: bool,
    /// LUN field (reserved unless a key uses it).
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag: 0xffffffff to start, else the tag of the continued response.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Text length in bytes.
    pub data_segment_length: u32,
}

impl TextRequest {
    /// Parses and validates a Text Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header (F and C both set...).
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::TextRequest)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let final_bit = bhs.final_bit();
        let continue_bit = bhs.bytes[1] & 0x40 != 0;
        if final_bit && continue_bit {
            return Err(PduError::Protocol("Text Request with both F and C bits"));
        }
        if bhs.itt() == RESERVED_TAG {
            return Err(PduError::InvalidField("Text Request with reserved ITT"));
        }
        Ok(Self {
            immediate: bhs.immediate(),
            final_bit,
            continue_bit,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(TTT),
            cmd_sn: bhs.u32_at(CMD_SN),
            exp_stat_sn: bhs.u32_at(EXP_STAT_SN),
            data_segment_length,
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TextRequest, self.immediate);
        b.bytes[1] = u8::from(self.final_bit) << 7 | u8::from(self.continue_bit) << 6;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(LUN, self.lun);
        b.set_u32(ITT, self.itt);
        b.set_u32(TTT, self.ttt);
        b.set_u32(CMD_SN, self.cmd_sn);
        b.set_u32(EXP_STAT_SN, self.exp_stat_sn);
        b
    }
}

/// Text Response (§11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextResponse {
    /// F bit.
    pub final_bit: bool,
    /// C bit.
    pub continue_bit: bool,
    /// LUN echoed from the request.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff on the final response).
    pub ttt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// Text length in bytes.
    pub data_segment_length: u32,
}

impl TextResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TextResponse, false);
        b.bytes[1] = u8::from(self.final_bit) << 7 | u8::from(self.continue_bit) << 6;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(LUN, self.lun);
        b.set_u32(ITT, self.itt);
        b.set_u32(TTT, self.ttt);
        self.sns.write(&mut b);
        b
    }

    /// Parses a Text Response.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::TextResponse)?;
        no_ahs(bhs)?;
        let final_bit = bhs.final_bit();
        let continue_bit = bhs.bytes[1] & 0x40 != 0;
        if final_bit && continue_bit {
            return Err(PduError::Protocol("Text Response with both F and C bits"));
        }
        Ok(Self {
            final_bit,
            continue_bit,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(TTT),
            sns: StatusSns::read(bhs),
            data_segment_length: bhs.data_segment_length(),
        })
    }
}
