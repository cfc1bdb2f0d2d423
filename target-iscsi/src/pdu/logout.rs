//! Logout Request (RFC 7143 §11.14) and Logout Response (§11.15).

use super::bhs::{
    expect_opcode, no_ahs, no_data, require_final, CID, CMD_SN, EXP_STAT_SN, ITT, RESPONSE,
};
use super::{Bhs, Opcode, PduError, StatusSns};

// BHS byte offsets of the fields that only the Logout Response (§11.15) carries; the fields several
// PDUs share are in bhs.rs.

/// Time2Wait (2 bytes).
const TIME2WAIT: usize = 40;
/// Time2Retain (2 bytes).
const TIME2RETAIN: usize = 42;

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

/// Logout response codes (§11.15.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LogoutResponseCode {
    /// 0 connection or session closed successfully.
    ClosedSuccessfully = 0,
    /// 1 CID not found.
    CidNotFound = 1,
    /// 2 connection recovery is not supported.
    RecoveryNotSupported = 2,
    /// 3 cleanup failed for various reasons.
    CleanupFailed = 3,
}

impl LogoutResponseCode {
    /// Decodes a response byte.
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::ClosedSuccessfully,
            1 => Self::CidNotFound,
            2 => Self::RecoveryNotSupported,
            3 => Self::CleanupFailed,
            _ => return None,
        })
    }
}

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
        Ok(Self {
            immediate: bhs.immediate(),
            reason,
            itt: bhs.itt(),
            cid: bhs.u16_at(CID),
            cmd_sn: bhs.u32_at(CMD_SN),
            exp_stat_sn: bhs.u32_at(EXP_STAT_SN),
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LogoutRequest, self.immediate);
        b.bytes[1] = 0x80 | self.reason as u8;
        b.set_u32(ITT, self.itt);
        b.set_u16(CID, self.cid);
        b.set_u32(CMD_SN, self.cmd_sn);
        b.set_u32(EXP_STAT_SN, self.exp_stat_sn);
        b
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

impl LogoutResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LogoutResponse, false);
        b.bytes[1] = 0x80;
        b.bytes[RESPONSE] = self.response as u8;
        b.set_u32(ITT, self.itt);
        self.sns.write(&mut b);
        b.set_u16(TIME2WAIT, self.time2wait_s);
        b.set_u16(TIME2RETAIN, self.time2retain_s);
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
        Ok(Self {
            response: LogoutResponseCode::from_u8(bhs.bytes[RESPONSE])
                .ok_or(PduError::InvalidField("unknown logout response"))?,
            itt: bhs.itt(),
            sns: StatusSns::read(bhs),
            time2wait_s: bhs.u16_at(TIME2WAIT),
            time2retain_s: bhs.u16_at(TIME2RETAIN),
        })
    }
}
