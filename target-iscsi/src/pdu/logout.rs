//! Logout Request (RFC 7143 §11.14) and Logout Response (§11.15).

use super::bhs::{
    expect_opcode, no_ahs, no_data, require_final, CID, CMD_SN, EXP_STAT_SN, ITT, RESPONSE, STAT_SN,
};
use super::layout::{bhs_layout, wire_enum};
use super::{Bhs, Opcode, PduError, StatusSns};

/// Logout reason codes (§11.14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogoutReason {
    /// 0 close the session.
    CloseSession = 0,
    /// 1 close the connection.
    CloseConnection = 1,
    /// 2 remove the connection for recovery.
    RemoveConnectionForRecovery = 2,
}

wire_enum! {
    /// Logout response codes (§11.15.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum LogoutResponseCode: u8, from_u8, unknown = "unknown logout response" {
        /// 0 connection or session closed successfully.
        ClosedSuccessfully = 0,
        /// 1 CID not found.
        CidNotFound = 1,
        /// 2 connection recovery is not supported.
        RecoveryNotSupported = 2,
        /// 3 cleanup failed for various reasons.
        CleanupFailed = 3,
    }
}

bhs_layout! {
    /// Logout Request (§11.14).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct LogoutRequest {
        /// I bit.
        pub immediate: bool,
        /// Reason code.
        pub reason: LogoutReason,
        /// Initiator Task Tag.
        pub itt: u32 [ITT],
        /// CID of the connection to close (reserved when closing the session).
        pub cid: u16 [CID],
        /// CmdSN.
        pub cmd_sn: u32 [CMD_SN],
        /// ExpStatSN.
        pub exp_stat_sn: u32 [EXP_STAT_SN],
    }
}

impl LogoutRequest {
    /// Parses and validates a Logout Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or a reserved reason code.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::LogoutRequest)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        let reason = match bhs.bytes[1] & 0x7f {
            0 => LogoutReason::CloseSession,
            1 => LogoutReason::CloseConnection,
            2 => LogoutReason::RemoveConnectionForRecovery,
            _ => return Err(PduError::InvalidField("reserved logout reason code")),
        };
        Self::from_bhs(bhs, bhs.immediate(), reason)
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LogoutRequest, self.immediate);
        b.bytes[1] = 0x80 | self.reason as u8;
        self.write_fields(&mut b);
        b
    }
}

bhs_layout! {
    /// Logout Response (§11.15).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct LogoutResponse {
        /// Response code.
        pub response: LogoutResponseCode [RESPONSE],
        /// Initiator Task Tag of the request.
        pub itt: u32 [ITT],
        /// StatSN / ExpCmdSN / MaxCmdSN.
        pub sns: StatusSns [STAT_SN],
        /// Time2Wait in seconds.
        pub time2wait_s: u16 [40],
        /// Time2Retain in seconds.
        pub time2retain_s: u16 [42],
    }
}

impl LogoutResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LogoutResponse, false);
        b.bytes[1] = 0x80;
        self.write_fields(&mut b);
        b
    }

    /// Parses a Logout Response header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or unknown response code.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::LogoutResponse)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        Self::from_bhs(bhs)
    }
}
