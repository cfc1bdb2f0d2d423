//! Asynchronous Message (RFC 7143 §11.9) and its event codes.

use super::bhs::{expect_header, FINAL, ITT, LUN, NO_AHS, STAT_SN};
use super::layout::bhs_layout;
use super::{AsyncEvent, Bhs, Opcode, PduError, StatusSns, RESERVED_TAG};

/// Asynchronous Message (§11.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsyncMessage {
    /// LUN the event concerns (ScsiEvent).
    pub lun: u64,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// AsyncEvent.
    pub async_event: AsyncEvent,
    /// AsyncVCode.
    pub async_vcode: u8,
    /// Parameter1 (e.g., CID, or seconds until logout for LogoutRequested).
    pub parameter1: u16,
    /// Parameter2 (Time2Wait).
    pub parameter2: u16,
    /// Parameter3 (Time2Retain).
    pub parameter3: u16,
    /// SenseLength + sense data + iSCSI event data length in bytes.
    pub data_segment_length: u32,
}

bhs_layout! {
    Opcode::AsyncMessage => AsyncMessage(data_segment_length: u32) {
        lun @ LUN, sns @ STAT_SN, async_event @ 36, async_vcode @ 37, parameter1 @ 38,
        parameter2 @ 40, parameter3 @ 42
    }
}

impl AsyncMessage {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = self.encode_header(false, 0x80, 0, self.data_segment_length);
        b.set_u32(ITT, RESERVED_TAG);
        b
    }

    /// Parses an Asynchronous Message header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or unknown event.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::AsyncMessage, FINAL | NO_AHS)?;
        Self::from_bhs(bhs, bhs.data_segment_length())
    }
}
