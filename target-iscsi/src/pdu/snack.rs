//! SNACK Request (RFC 7143 §11.16).

use super::bhs::{expect_header, EXP_STAT_SN, FINAL, ITT, LUN, NO_AHS, NO_DATA, TTT};
use super::layout::bhs_layout;
use super::{Bhs, Opcode, PduError, SnackType};

/// SNACK Request (§11.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnackRequest {
    /// SNACK type.
    pub snack_type: SnackType,
    /// LUN (DataACK).
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff for Status SNACK).
    pub itt: u32,
    /// Target Transfer Tag (DataACK) or SNACK Tag (R-Data).
    pub ttt_or_snack_tag: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun.
    pub beg_run: u32,
    /// RunLength.
    pub run_length: u32,
}

bhs_layout! {
    Opcode::SnackRequest => SnackRequest(snack_type: SnackType) {
        lun @ LUN, itt @ ITT, ttt_or_snack_tag @ TTT, exp_stat_sn @ EXP_STAT_SN, beg_run @ 40,
        run_length @ 44
    }
}

impl SnackRequest {
    /// Parses and validates a SNACK Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or a reserved type.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::SnackRequest, FINAL | NO_AHS | NO_DATA)?;
        let snack_type = SnackType::decode(bhs.bytes[1] & 0x0f)?;
        Self::from_bhs(bhs, snack_type)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(false, 0x80 | self.snack_type as u8, 0, 0)
    }
}
