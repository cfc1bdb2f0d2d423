//! iSCSI PDU codec (RFC 7143 §11): the 48-byte Basic Header Segment, typed headers for every
//! PDU, Additional Header Segments, padding and serial-number arithmetic.
//!
//! Everything that arrives from the network is hostile: parsers never panic, never index out
//! of bounds and report a [`PduError`] that carries the Reject reason code (§11.17.1) the
//! connection layer sends back.
//!
//! Layout of the BHS (§11.2.1):
//!
//! ```text
//! byte 0      .|I| Opcode
//! byte 1      F| opcode-specific
//! byte 2..4   opcode-specific
//! byte 4      TotalAHSLength (4-byte words)
//! byte 5..8   DataSegmentLength (24-bit, big-endian)
//! byte 8..16  LUN or opcode-specific
//! byte 16..20 Initiator Task Tag
//! byte 20..48 opcode-specific
//! ```
//!
//! One file per PDU family; everything is re-exported here, so callers name `crate::pdu::X`.

mod ahs;
mod async_message;
mod bhs;
mod codes;
mod command;
mod data_transfer;
mod dispatch;
mod error;
mod layout;
mod login;
mod logout;
mod nop;
mod reject;
mod serial;
mod snack;
mod task_mgmt;
mod text;

pub use ahs::{Ahs, Cdb, AHS_TYPE_BIDI_READ_LENGTH, AHS_TYPE_EXTENDED_CDB};
pub use async_message::AsyncMessage;
pub use bhs::{Bhs, StatusSns};
pub use codes::{
    AsyncEvent, LoginStatus, LogoutReason, LogoutResponseCode, Opcode, RejectReason, SnackType,
    Stage, TaskAttribute, TmfResponse,
};
pub use command::{encode_sense_segment, Residual, ScsiCommand, ScsiResponse};
pub use data_transfer::{DataInStatus, R2t, ScsiDataIn, ScsiDataOut};
pub use dispatch::{InitiatorPdu, TargetPdu};
pub use error::PduError;
pub use login::{Isid, LoginRequest, LoginResponse};
pub use logout::{LogoutRequest, LogoutResponse};
pub use nop::{NopIn, NopOut};
pub use reject::Reject;
pub use serial::{sn_ge, sn_gt, sn_in_window, sn_le, sn_lt};
pub use snack::SnackRequest;
pub use task_mgmt::{TaskMgmtRequest, TaskMgmtResponse, TmfFunction};
pub use text::{TextRequest, TextResponse};

/// Size of the Basic Header Segment in bytes.
pub const BHS_LEN: usize = 48;

/// Largest data segment length the 24-bit DataSegmentLength field can express.
pub const MAX_DATA_SEGMENT_LENGTH: u32 = (1 << 24) - 1;

/// Largest CDB a SCSI Command PDU can carry (16 bytes in the BHS plus an extended CDB AHS).
pub const MAX_CDB_LEN: usize = 260;

/// The reserved tag value (§11.1): "no task" / "no response wanted".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Number of zero bytes that pad a segment of `len` bytes to a 4-byte boundary (§11.1).
#[must_use]
pub const fn pad_len(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// `len` rounded up to a multiple of 4 (the segment as sent on the wire).
#[must_use]
pub const fn padded_len(len: usize) -> usize {
    len + pad_len(len)
}

/// Zero bytes for padding; slice with `&PAD[..pad_len(n)]`.
pub const PAD: [u8; 3] = [0; 3];

#[cfg(test)]
mod tests;
