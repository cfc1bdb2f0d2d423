//! NOP-Out (RFC 7143 §11.18) and NOP-In (§11.19).

use super::bhs::{
    data_limit, expect_opcode, no_ahs, require_final, CMD_SN, EXP_STAT_SN, ITT, LUN, STAT_SN, TTT,
};
use super::layout::bhs_layout;
use super::{Bhs, Opcode, PduError, StatusSns, RESERVED_TAG};

bhs_layout! {
    /// NOP-Out (§11.18).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct NopOut {
        /// I bit.
        pub immediate: bool,
        /// LUN (echoed in the NOP-In).
        pub lun: u64 [LUN],
        /// Initiator Task Tag; [`RESERVED_TAG`] means no response is wanted.
        pub itt: u32 [ITT],
        /// Target Transfer Tag; not [`RESERVED_TAG`] when answering a target's NOP-In.
        pub ttt: u32 [TTT],
        /// CmdSN.
        pub cmd_sn: u32 [CMD_SN],
        /// ExpStatSN.
        pub exp_stat_sn: u32 [EXP_STAT_SN],
        /// Ping data length in bytes.
        pub data_segment_length: u32,
    }
}

impl NopOut {
    /// Parses and validates a NOP-Out BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::NopOut)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        if bhs.itt() == RESERVED_TAG && !bhs.immediate() {
            return Err(PduError::Protocol("NOP-Out with ITT 0xffffffff must be immediate"));
        }
        Self::from_bhs(bhs, bhs.immediate(), data_segment_length)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::NopOut, self.immediate);
        b.bytes[1] = 0x80;
        b.set_lengths(0, self.data_segment_length);
        self.write_fields(&mut b);
        b
    }
}

bhs_layout! {
    /// NOP-In (§11.19).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct NopIn {
        /// LUN.
        pub lun: u64 [LUN],
        /// Initiator Task Tag (echo of a NOP-Out) or 0xffffffff (target ping).
        pub itt: u32 [ITT],
        /// Target Transfer Tag: 0xffffffff when no answer is wanted.
        pub ttt: u32 [TTT],
        /// StatSN / ExpCmdSN / MaxCmdSN.
        pub sns: StatusSns [STAT_SN],
        /// Ping data length in bytes.
        pub data_segment_length: u32,
    }
}

impl NopIn {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::NopIn, false);
        b.bytes[1] = 0x80;
        b.set_lengths(0, self.data_segment_length);
        self.write_fields(&mut b);
        b
    }

    /// Parses a NOP-In header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::NopIn)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        Self::from_bhs(bhs, bhs.data_segment_length())
    }
}
