//! Asynchronous Message (RFC 7143 §11.9) and its event codes.

use super::bhs::{expect_opcode, no_ahs, require_final, ITT, LUN};
use super::{Bhs, Opcode, PduError, StatusSns, RESERVED_TAG};

// BHS byte offsets of the fields that only the Asynchronous Message (§11.9) carries; the fields
// several PDUs share are in bhs.rs.

/// AsyncEvent (1 byte).
const ASYNC_EVENT: usize = 36;
/// AsyncVCode (1 byte).
const ASYNC_VCODE: usize = 37;
/// Parameter1 (2 bytes).
const PARAMETER1: usize = 38;
/// Parameter2 (2 bytes).
const PARAMETER2: usize = 40;
/// Parameter3 (2 bytes).
const PARAMETER3: usize = 42;

/// AsyncEvent codes (§11.9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AsyncEvent {
    /// 0: a SCSI asynchronous event is reported in the sense data.
    ScsiEvent = 0,
    /// 1: the target requests a logout.
    LogoutRequested = 1,
    /// 2: the target will drop the connection (Parameter1 = CID).
    ConnectionDrop = 2,
    /// 3: the target will drop all connections of the session.
    SessionDrop = 3,
    /// 4: the target requests parameter renegotiation.
    NegotiationRequest = 4,
    /// 5: the target will terminate tasks (task termination, RFC 7143).
    TaskTermination = 5,
    /// 255: vendor-specific event.
    VendorSpecific = 255,
}

impl AsyncEvent {
    /// Decodes an event byte.
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::ScsiEvent,
            1 => Self::LogoutRequested,
            2 => Self::ConnectionDrop,
            3 => Self::SessionDrop,
            4 => Self::NegotiationRequest,
            5 => Self::TaskTermination,
            255 => Self::VendorSpecific,
            _ => return None,
        })
    }
}

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

impl AsyncMessage {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::AsyncMessage, false);
        b.bytes[1] = 0x80;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(LUN, self.lun);
        b.set_u32(ITT, RESERVED_TAG);
        self.sns.write(&mut b);
        b.bytes[ASYNC_EVENT] = self.async_event as u8;
        b.bytes[ASYNC_VCODE] = self.async_vcode;
        b.set_u16(PARAMETER1, self.parameter1);
        b.set_u16(PARAMETER2, self.parameter2);
        b.set_u16(PARAMETER3, self.parameter3);
        b
    }

    /// Parses an Asynchronous Message header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or unknown event.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::AsyncMessage)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        Ok(Self {
            lun: bhs.lun(),
            sns: StatusSns::read(bhs),
            async_event: AsyncEvent::from_u8(bhs.bytes[ASYNC_EVENT])
                .ok_or(PduError::InvalidField("unknown AsyncEvent"))?,
            async_vcode: bhs.bytes[ASYNC_VCODE],
            parameter1: bhs.u16_at(PARAMETER1),
            parameter2: bhs.u16_at(PARAMETER2),
            parameter3: bhs.u16_at(PARAMETER3),
            data_segment_length: bhs.data_segment_length(),
        })
    }
}
