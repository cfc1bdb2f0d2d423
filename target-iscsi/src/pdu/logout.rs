//! Logout Request (RFC 7143 §11.14) and Logout Response (§11.15).

use super::bhs::{
    expect_header, CID, CMD_SN, EXP_STAT_SN, FINAL, ITT, NO_AHS, NO_DATA, RESPONSE, STAT_SN,
};
use super::layout::{bhs_layout, simple_codec};
use super::{Bhs, LogoutReason, LogoutResponseCode, Opcode, PduError, StatusSns};

/// Logout Request (§11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutRequest {
    /// I bit.
    pub immediate: bool,
    /// Reason code.
    pub reason: LogoutReason,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID of the connection to close (reserved when closing the session).
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

bhs_layout! {
    Opcode::LogoutRequest => LogoutRequest(immediate: bool, reason: LogoutReason) {
        itt @ ITT, cid @ CID, cmd_sn @ CMD_SN, exp_stat_sn @ EXP_STAT_SN
    }
}

impl LogoutRequest {
    /// Parses and validates a Logout Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or a reserved reason code.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::LogoutRequest, FINAL | NO_AHS | NO_DATA)?;
        let reason = LogoutReason::decode(bhs.bytes[1] & 0x7f)?;
        Self::from_bhs(bhs, bhs.immediate(), reason)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(self.immediate, 0x80 | self.reason as u8, 0, 0)
    }
}

/// Logout Response (§11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutResponse {
    /// Response code.
    pub response: LogoutResponseCode,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// Time2Wait in seconds.
    pub time2wait_s: u16,
    /// Time2Retain in seconds.
    pub time2retain_s: u16,
}

bhs_layout! {
    Opcode::LogoutResponse => LogoutResponse() {
        response @ RESPONSE, itt @ ITT, sns @ STAT_SN, time2wait_s @ 40, time2retain_s @ 42
    }
}

simple_codec!(LogoutResponse);
