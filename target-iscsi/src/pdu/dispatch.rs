//! Any PDU of either direction, parsed from its BHS by opcode.

use super::{
    AsyncMessage, Bhs, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse, NopIn, NopOut,
    Opcode, PduError, R2t, Reject, ScsiCommand, ScsiDataIn, ScsiDataOut, ScsiResponse,
    SnackRequest, TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse,
};

/// Any PDU an initiator may send, parsed from its BHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitiatorPdu {
    /// NOP-Out.
    NopOut(NopOut),
    /// SCSI Command.
    ScsiCommand(ScsiCommand),
    /// Task Management Function Request.
    TaskMgmtRequest(TaskMgmtRequest),
    /// Login Request.
    LoginRequest(LoginRequest),
    /// Text Request.
    TextRequest(TextRequest),
    /// SCSI Data-Out.
    ScsiDataOut(ScsiDataOut),
    /// Logout Request.
    LogoutRequest(LogoutRequest),
    /// SNACK Request.
    SnackRequest(SnackRequest),
}

impl InitiatorPdu {
    /// Parses any initiator BHS. `max_recv_data_segment_length` is the limit this target
    /// declared for the connection (8192 during login).
    ///
    /// # Errors
    /// [`PduError`] whose [`PduError::reject_reason`] is the Reject reason to send.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        let raw = bhs.opcode_raw();
        let opcode = Opcode::from_u8(raw).ok_or(PduError::UnsupportedOpcode(raw))?;
        let limit = max_recv_data_segment_length;
        Ok(match opcode {
            Opcode::NopOut => Self::NopOut(NopOut::parse(bhs, limit)?),
            Opcode::ScsiCommand => Self::ScsiCommand(ScsiCommand::parse(bhs, limit)?),
            Opcode::TaskMgmtRequest => Self::TaskMgmtRequest(TaskMgmtRequest::parse(bhs)?),
            Opcode::LoginRequest => Self::LoginRequest(LoginRequest::parse(bhs, limit)?),
            Opcode::TextRequest => Self::TextRequest(TextRequest::parse(bhs, limit)?),
            Opcode::ScsiDataOut => Self::ScsiDataOut(ScsiDataOut::parse(bhs, limit)?),
            Opcode::LogoutRequest => Self::LogoutRequest(LogoutRequest::parse(bhs)?),
            Opcode::SnackRequest => Self::SnackRequest(SnackRequest::parse(bhs)?),
            target => return Err(PduError::UnexpectedOpcode(target)),
        })
    }

    /// Encodes the header back to a BHS.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        match self {
            Self::NopOut(p) => p.encode(),
            Self::ScsiCommand(p) => p.encode(),
            Self::TaskMgmtRequest(p) => p.encode(),
            Self::LoginRequest(p) => p.encode(),
            Self::TextRequest(p) => p.encode(),
            Self::ScsiDataOut(p) => p.encode(),
            Self::LogoutRequest(p) => p.encode(),
            Self::SnackRequest(p) => p.encode(),
        }
    }
}

/// Any PDU a target sends, parsed from its BHS (used by tests, tools and the load generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetPdu {
    /// NOP-In.
    NopIn(NopIn),
    /// SCSI Response.
    ScsiResponse(ScsiResponse),
    /// Task Management Function Response.
    TaskMgmtResponse(TaskMgmtResponse),
    /// Login Response.
    LoginResponse(LoginResponse),
    /// Text Response.
    TextResponse(TextResponse),
    /// SCSI Data-In.
    ScsiDataIn(ScsiDataIn),
    /// Logout Response.
    LogoutResponse(LogoutResponse),
    /// R2T.
    R2t(R2t),
    /// Asynchronous Message.
    AsyncMessage(AsyncMessage),
    /// Reject.
    Reject(Reject),
}

impl TargetPdu {
    /// Parses any target BHS.
    ///
    /// # Errors
    /// [`PduError`] on an initiator or unknown opcode, or a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        let raw = bhs.opcode_raw();
        let opcode = Opcode::from_u8(raw).ok_or(PduError::UnsupportedOpcode(raw))?;
        Ok(match opcode {
            Opcode::NopIn => Self::NopIn(NopIn::parse(bhs)?),
            Opcode::ScsiResponse => Self::ScsiResponse(ScsiResponse::parse(bhs)?),
            Opcode::TaskMgmtResponse => Self::TaskMgmtResponse(TaskMgmtResponse::parse(bhs)?),
            Opcode::LoginResponse => Self::LoginResponse(LoginResponse::parse(bhs)?),
            Opcode::TextResponse => Self::TextResponse(TextResponse::parse(bhs)?),
            Opcode::ScsiDataIn => Self::ScsiDataIn(ScsiDataIn::parse(bhs)?),
            Opcode::LogoutResponse => Self::LogoutResponse(LogoutResponse::parse(bhs)?),
            Opcode::R2t => Self::R2t(R2t::parse(bhs)?),
            Opcode::AsyncMessage => Self::AsyncMessage(AsyncMessage::parse(bhs)?),
            Opcode::Reject => Self::Reject(Reject::parse(bhs)?),
            initiator => return Err(PduError::UnexpectedOpcode(initiator)),
        })
    }

    /// Encodes the header back to a BHS.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        match self {
            Self::NopIn(p) => p.encode(),
            Self::ScsiResponse(p) => p.encode(),
            Self::TaskMgmtResponse(p) => p.encode(),
            Self::LoginResponse(p) => p.encode(),
            Self::TextResponse(p) => p.encode(),
            Self::ScsiDataIn(p) => p.encode(),
            Self::LogoutResponse(p) => p.encode(),
            Self::R2t(p) => p.encode(),
            Self::AsyncMessage(p) => p.encode(),
            Self::Reject(p) => p.encode(),
        }
    }
}
