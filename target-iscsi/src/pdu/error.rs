//! Why a received PDU is refused, and the Reject reason that answers it.

use std::fmt;

use super::{Opcode, RejectReason};

/// Why a PDU could not be accepted; [`PduError::reject_reason`] is the code to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduError {
    /// Reserved or vendor-specific opcode.
    UnsupportedOpcode(u8),
    /// A target opcode arrived from the initiator.
    UnexpectedOpcode(Opcode),
    /// DataSegmentLength exceeds the MaxRecvDataSegmentLength this side declared.
    DataSegmentTooLong {
        /// DataSegmentLength of the PDU.
        length_bytes: u32,
        /// The declared limit.
        limit_bytes: u32,
    },
    /// The PDU carries a data segment or AHS where this opcode allows none.
    UnexpectedSegment(&'static str),
    /// A field holds a reserved or inconsistent value (Reject reason 0x09).
    InvalidField(&'static str),
    /// The PDU breaks a protocol rule (Reject reason 0x04).
    Protocol(&'static str),
    /// An Additional Header Segment is malformed.
    MalformedAhs(&'static str),
    /// The data digest did not match (Reject reason 0x02).
    DataDigest,
    /// Fewer bytes than the header or segment needs.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
}

impl PduError {
    /// The Reject reason code the target answers with (RFC 7143 §11.17.1).
    #[must_use]
    pub const fn reject_reason(&self) -> RejectReason {
        match self {
            Self::UnsupportedOpcode(_) | Self::UnexpectedOpcode(_) => {
                RejectReason::CommandNotSupported
            }
            Self::InvalidField(_) | Self::MalformedAhs(_) => RejectReason::InvalidPduField,
            Self::DataDigest => RejectReason::DataDigestError,
            Self::DataSegmentTooLong { .. }
            | Self::UnexpectedSegment(_)
            | Self::Protocol(_)
            | Self::Truncated { .. } => RejectReason::ProtocolError,
        }
    }
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedOpcode(op) => write!(f, "unsupported opcode {op:#04x}"),
            Self::UnexpectedOpcode(op) => write!(f, "opcode {op:?} not valid from an initiator"),
            Self::DataSegmentTooLong { length_bytes, limit_bytes } => write!(
                f,
                "DataSegmentLength {length_bytes} exceeds MaxRecvDataSegmentLength {limit_bytes}"
            ),
            Self::UnexpectedSegment(what) => write!(f, "unexpected segment: {what}"),
            Self::InvalidField(what) => write!(f, "invalid PDU field: {what}"),
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
            Self::MalformedAhs(what) => write!(f, "malformed AHS: {what}"),
            Self::DataDigest => write!(f, "data digest mismatch"),
            Self::Truncated { need, got } => write!(f, "truncated: need {need} bytes, got {got}"),
        }
    }
}

impl std::error::Error for PduError {}
