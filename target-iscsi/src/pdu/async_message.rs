//! Asynchronous Message (RFC 7143 §11.9) and its event codes.

use super::bhs::{expect_opcode, no_ahs, require_final, ITT, LUN, STAT_SN};
use super::layout::{bhs_layout, wire_enum};
use super::{Bhs, Opcode, PduError, StatusSns, RESERVED_TAG};

wire_enum! {
    /// AsyncEvent codes (§11.9.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum AsyncEvent: u8, from_u8, unknown = "unknown AsyncEvent" {
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
}

bhs_layout! {
    /// Asynchronous Message (§11.9).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct AsyncMessage {
        /// LUN the event concerns (ScsiEvent).
        pub lun: u64 [LUN],
        /// StatSN / ExpCmdSN / MaxCmdSN.
        pub sns: StatusSns [STAT_SN],
        /// AsyncEvent.
        pub async_event: AsyncEvent [36],
        /// AsyncVCode.
        pub async_vcode: u8 [37],
        /// Parameter1 (e.g., CID, or seconds until logout for LogoutRequested).
        pub parameter1: u16 [38],
        /// Parameter2 (Time2Wait).
        pub parameter2: u16 [40],
        /// Parameter3 (Time2Retain).
        pub parameter3: u16 [42],
        /// SenseLength + sense data + iSCSI event data length in bytes.
        pub data_segment_length: u32,
    }
}

impl AsyncMessage {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::AsyncMessage, false);
        b.bytes[1] = 0x80;
        b.set_lengths(0, self.data_segment_length);
        b.set_u32(ITT, RESERVED_TAG);
        self.write_fields(&mut b);
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
        Self::from_bhs(bhs, bhs.data_segment_length())
    }
}
