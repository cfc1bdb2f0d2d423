//! Reject (RFC 7143 §11.17) and its reason codes.

use super::bhs::{expect_header, FINAL, ITT, NO_AHS, STAT_SN};
use super::layout::bhs_layout;
use super::{Bhs, Opcode, PduError, RejectReason, StatusSns, BHS_LEN, RESERVED_TAG};

/// Reject (§11.17). The data segment is the complete header of the rejected PDU
/// ([`Reject::DATA_SEGMENT_LENGTH`] bytes: send `rejected.bytes` after this header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reject {
    /// Reason code.
    pub reason: RejectReason,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// DataSN/R2TSN (for a rejected SNACK), else 0.
    pub data_sn_or_r2t_sn: u32,
}

bhs_layout! {
    Opcode::Reject => Reject() {
        reason @ 2, sns @ STAT_SN, data_sn_or_r2t_sn @ 36
    }
}

impl Reject {
    /// The data segment of a Reject carries exactly the rejected BHS.
    pub const DATA_SEGMENT_LENGTH: u32 = BHS_LEN as u32;

    /// Encodes the header; the rejected header goes in the data segment.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = self.encode_header(false, 0x80, 0, Self::DATA_SEGMENT_LENGTH);
        b.set_u32(ITT, RESERVED_TAG);
        b
    }

    /// Header and data segment of a Reject for `rejected`, as one 96-byte wire image.
    #[must_use]
    pub fn encode_with_header(&self, rejected: &Bhs) -> [u8; 2 * BHS_LEN] {
        let mut out = [0u8; 2 * BHS_LEN];
        out[..BHS_LEN].copy_from_slice(&self.encode().bytes);
        out[BHS_LEN..].copy_from_slice(&rejected.bytes);
        out
    }

    /// Parses a Reject header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or unknown reason.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::Reject, FINAL | NO_AHS)?;
        Self::from_bhs(bhs)
    }
}
