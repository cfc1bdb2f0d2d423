//! Reject (RFC 7143 §11.17) and its reason codes.

use super::bhs::{expect_opcode, no_ahs, require_final, ITT, STAT_SN};
use super::layout::{bhs_layout, wire_enum};
use super::{Bhs, Opcode, PduError, StatusSns, BHS_LEN, RESERVED_TAG};

wire_enum! {
    /// Reject reason codes (RFC 7143 §11.17.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RejectReason: u8, from_u8, unknown = "unknown reject reason" {
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
}

bhs_layout! {
    /// Reject (§11.17). The data segment is the complete header of the rejected PDU
    /// ([`Reject::DATA_SEGMENT_LENGTH`] bytes: send `rejected.bytes` after this header).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Reject {
        /// Reason code.
        pub reason: RejectReason [2],
        /// StatSN / ExpCmdSN / MaxCmdSN.
        pub sns: StatusSns [STAT_SN],
        /// DataSN/R2TSN (for a rejected SNACK), else 0.
        pub data_sn_or_r2t_sn: u32 [36],
    }
}

impl Reject {
    /// The data segment of a Reject carries exactly the rejected BHS.
    pub const DATA_SEGMENT_LENGTH: u32 = BHS_LEN as u32;

    /// Encodes the header; the rejected header goes in the data segment.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::Reject, false);
        b.bytes[1] = 0x80;
        b.set_lengths(0, Self::DATA_SEGMENT_LENGTH);
        b.set_u32(ITT, RESERVED_TAG);
        self.write_fields(&mut b);
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
        Self::from_bhs(bhs)
    }
}
