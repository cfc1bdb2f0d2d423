//! Reject (RFC 7143 §11.17) and its reason codes.

use super::bhs::{expect_opcode, no_ahs, require_final, ITT};
use super::{Bhs, Opcode, PduError, StatusSns, BHS_LEN, RESERVED_TAG};

// BHS byte offsets of the fields that only the Reject (§11.17) carries; the fields several PDUs
// share are in bhs.rs.

/// Reason (1 byte).
const REASON: usize = 2;
/// DataSN/R2TSN (4 bytes).
const DATA_SN_OR_R2T_SN: usize = 36;

/// Reject reason codes (RFC 7143 §11.17.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectReason {
    /// 0x02 Data (payload) digest error.
    DataDigestError = 0x02,
    /// 0x03 SNACK Reject.
    SnackReject = 0x03,
    /// 0x04 Protocol Error (e.g., SNACK Request for a status that was already acknowledged).
    ProtocolError = 0x04,
    /// 0x05 Command not supported.
    CommandNotSupported = 0x05,
    /// 0x06 Immediate command reject - too many immediate commands.
    ImmediateCommandReject = 0x06,
    /// 0x07 Task in progress.
    TaskInProgress = 0x07,
    /// 0x08 Invalid data ack.
    InvalidDataAck = 0x08,
    /// 0x09 Invalid PDU field.
    InvalidPduField = 0x09,
    /// 0x0a Long op reject - cannot generate Target Transfer Tag, out of resources.
    LongOpReject = 0x0a,
    /// 0x0c Waiting for Logout.
    WaitingForLogout = 0x0c,
}

impl RejectReason {
    /// Decodes a reason byte.
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x02 => Self::DataDigestError,
            0x03 => Self::SnackReject,
            0x04 => Self::ProtocolError,
            0x05 => Self::CommandNotSupported,
            0x06 => Self::ImmediateCommandReject,
            0x07 => Self::TaskInProgress,
            0x08 => Self::InvalidDataAck,
            0x09 => Self::InvalidPduField,
            0x0a => Self::LongOpReject,
            0x0c => Self::WaitingForLogout,
            _ => return None,
        })
    }
}

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

impl Reject {
    /// The data segment of a Reject carries exactly the rejected BHS.
    pub const DATA_SEGMENT_LENGTH: u32 = BHS_LEN as u32;

    /// Encodes the header; the rejected header goes in the data segment.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::Reject, false);
        b.bytes[1] = 0x80;
        b.bytes[REASON] = self.reason as u8;
        b.set_lengths(0, Self::DATA_SEGMENT_LENGTH);
        b.set_u32(ITT, RESERVED_TAG);
        self.sns.write(&mut b);
        b.set_u32(DATA_SN_OR_R2T_SN, self.data_sn_or_r2t_sn);
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
        expect_opcode(bhs, Opcode::Reject)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        Ok(Self {
            reason: RejectReason::from_u8(bhs.bytes[REASON])
                .ok_or(PduError::InvalidField("unknown reject reason"))?,
            sns: StatusSns::read(bhs),
            data_sn_or_r2t_sn: bhs.u32_at(DATA_SN_OR_R2T_SN),
        })
    }
}
