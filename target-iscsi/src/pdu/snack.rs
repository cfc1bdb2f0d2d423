//! SNACK Request (RFC 7143 §11.16).

use super::bhs::{expect_opcode, no_ahs, no_data, require_final, EXP_STAT_SN, ITT, LUN, TTT};
use super::layout::bhs_layout;
use super::{Bhs, Opcode, PduError};

/// SNACK types (§11.16.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnackType {
    /// 0 Data/R2T SNACK.
    DataR2t = 0,
    /// 1 Status SNACK.
    Status = 1,
    /// 2 DataACK.
    DataAck = 2,
    /// 3 R-Data SNACK.
    RData = 3,
}

bhs_layout! {
    /// SNACK Request (§11.16).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SnackRequest {
        /// SNACK type.
        pub snack_type: SnackType,
        /// LUN (DataACK).
        pub lun: u64 [LUN],
        /// Initiator Task Tag (0xffffffff for Status SNACK).
        pub itt: u32 [ITT],
        /// Target Transfer Tag (DataACK) or SNACK Tag (R-Data).
        pub ttt_or_snack_tag: u32 [TTT],
        /// ExpStatSN.
        pub exp_stat_sn: u32 [EXP_STAT_SN],
        /// BegRun.
        pub beg_run: u32 [40],
        /// RunLength.
        pub run_length: u32 [44],
    }
}

impl SnackRequest {
    /// Parses and validates a SNACK Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or a reserved type.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::SnackRequest)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        let snack_type = match bhs.bytes[1] & 0x0f {
            0 => SnackType::DataR2t,
            1 => SnackType::Status,
            2 => SnackType::DataAck,
            3 => SnackType::RData,
            _ => return Err(PduError::InvalidField("reserved SNACK type")),
        };
        Self::from_bhs(bhs, snack_type)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::SnackRequest, false);
        b.bytes[1] = 0x80 | self.snack_type as u8;
        self.write_fields(&mut b);
        b
    }
}
