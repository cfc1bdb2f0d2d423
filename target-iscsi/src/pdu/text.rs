//! Text Request (RFC 7143 §11.10) and Text Response (§11.11).

use super::bhs::{data_limit, expect_header, CMD_SN, EXP_STAT_SN, ITT, LUN, NO_AHS, STAT_SN, TTT};
use super::layout::bhs_layout;
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

bhs_layout! {
    Opcode::TextRequest => TextRequest(
        immediate: bool, final_bit: bool, continue_bit: bool, data_segment_length: u32,
    ) {
        lun @ LUN, itt @ ITT, ttt @ TTT, cmd_sn @ CMD_SN, exp_stat_sn @ EXP_STAT_SN
    }
}

/// The F and C bits of a Text Request or Response, refused when both are set.
fn final_and_continue(bhs: &Bhs, both: &'static str) -> Result<(bool, bool), PduError> {
    let final_bit = bhs.final_bit();
    let continue_bit = bhs.bytes[1] & 0x40 != 0;
    if final_bit && continue_bit {
        return Err(PduError::Protocol(both));
    }
    Ok((final_bit, continue_bit))
}

/// Byte 1 of a Text Request or Response.
fn flags(final_bit: bool, continue_bit: bool) -> u8 {
    u8::from(final_bit) << 7 | u8::from(continue_bit) << 6
}

impl TextRequest {
    /// Parses and validates a Text Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header (F and C both set...).
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::TextRequest, NO_AHS)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let (final_bit, continue_bit) =
            final_and_continue(bhs, "Text Request with both F and C bits")?;
        if bhs.itt() == RESERVED_TAG {
            return Err(PduError::InvalidField("Text Request with reserved ITT"));
        }
        Self::from_bhs(bhs, bhs.immediate(), final_bit, continue_bit, data_segment_length)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(
            self.immediate,
            flags(self.final_bit, self.continue_bit),
            0,
            self.data_segment_length,
        )
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

bhs_layout! {
    Opcode::TextResponse => TextResponse(
        final_bit: bool, continue_bit: bool, data_segment_length: u32,
    ) {
        lun @ LUN, itt @ ITT, ttt @ TTT, sns @ STAT_SN
    }
}

impl TextResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(
            false,
            flags(self.final_bit, self.continue_bit),
            0,
            self.data_segment_length,
        )
    }

    /// Parses a Text Response.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::TextResponse, NO_AHS)?;
        let (final_bit, continue_bit) =
            final_and_continue(bhs, "Text Response with both F and C bits")?;
        Self::from_bhs(bhs, final_bit, continue_bit, bhs.data_segment_length())
    }
}
