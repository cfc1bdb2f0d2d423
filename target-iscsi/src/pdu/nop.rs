//! NOP-Out (RFC 7143 §11.18) and NOP-In (§11.19).

use super::bhs::{
    data_limit, expect_header, CMD_SN, EXP_STAT_SN, FINAL, ITT, LUN, NO_AHS, STAT_SN, TTT,
};
use super::layout::{bhs_layout, simple_codec};
use super::{Bhs, Opcode, PduError, StatusSns, RESERVED_TAG};

/// NOP-Out (§11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopOut {
    /// I bit.
    pub immediate: bool,
    /// LUN (echoed in the NOP-In).
    pub lun: u64,
    /// Initiator Task Tag; [`RESERVED_TAG`] means no response is wanted.
    pub itt: u32,
    /// Target Transfer Tag; not [`RESERVED_TAG`] when answering a target's NOP-In.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Ping data length in bytes.
    pub data_segment_length: u32,
}

bhs_layout! {
    Opcode::NopOut => NopOut(immediate: bool, data_segment_length: u32) {
        lun @ LUN, itt @ ITT, ttt @ TTT, cmd_sn @ CMD_SN, exp_stat_sn @ EXP_STAT_SN
    }
}

impl NopOut {
    /// Parses and validates a NOP-Out BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::NopOut, FINAL | NO_AHS)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        if bhs.itt() == RESERVED_TAG && !bhs.immediate() {
            return Err(PduError::Protocol("NOP-Out with ITT 0xffffffff must be immediate"));
        }
        Self::from_bhs(bhs, bhs.immediate(), data_segment_length)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(self.immediate, 0x80, 0, self.data_segment_length)
    }
}

/// NOP-In (§11.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopIn {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (echo of a NOP-Out) or 0xffffffff (target ping).
    pub itt: u32,
    /// Target Transfer Tag: 0xffffffff when no answer is wanted.
    pub ttt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// Ping data length in bytes.
    pub data_segment_length: u32,
}

bhs_layout! {
    Opcode::NopIn => NopIn(data_segment_length: u32) {
        lun @ LUN, itt @ ITT, ttt @ TTT, sns @ STAT_SN
    }
}

simple_codec!(NopIn, data_segment_length);
