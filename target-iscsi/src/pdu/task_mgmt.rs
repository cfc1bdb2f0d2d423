//! SCSI Task Management Function Request (RFC 7143 §11.5) and Response (§11.6).

use super::bhs::{
    expect_header, CMD_SN, EXP_DATA_SN, EXP_STAT_SN, FINAL, ITT, LUN, NO_AHS, NO_DATA, RESPONSE,
    STAT_SN,
};
use super::layout::{bhs_layout, simple_codec};
use super::{Bhs, Opcode, PduError, StatusSns, TmfResponse};

/// Task management functions (§11.5.1). Unknown codes are kept so the target can answer
/// "Task management function not supported".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TmfFunction {
    /// 1 ABORT TASK.
    AbortTask,
    /// 2 ABORT TASK SET.
    AbortTaskSet,
    /// 3 CLEAR ACA.
    ClearAca,
    /// 4 CLEAR TASK SET.
    ClearTaskSet,
    /// 5 LOGICAL UNIT RESET.
    LogicalUnitReset,
    /// 6 TARGET WARM RESET.
    TargetWarmReset,
    /// 7 TARGET COLD RESET.
    TargetColdReset,
    /// 8 TASK REASSIGN.
    TaskReassign,
    /// 9 QUERY TASK.
    QueryTask,
    /// 10 QUERY TASK SET.
    QueryTaskSet,
    /// 11 I_T NEXUS RESET.
    ItNexusReset,
    /// 12 QUERY ASYNCHRONOUS EVENT.
    QueryAsyncEvent,
    /// Any other (reserved) code.
    Other(u8),
}

impl TmfFunction {
    /// Decodes the 7-bit function code.
    #[must_use]
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::AbortTask,
            2 => Self::AbortTaskSet,
            3 => Self::ClearAca,
            4 => Self::ClearTaskSet,
            5 => Self::LogicalUnitReset,
            6 => Self::TargetWarmReset,
            7 => Self::TargetColdReset,
            8 => Self::TaskReassign,
            9 => Self::QueryTask,
            10 => Self::QueryTaskSet,
            11 => Self::ItNexusReset,
            12 => Self::QueryAsyncEvent,
            other => Self::Other(other),
        }
    }

    /// The 7-bit function code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::AbortTask => 1,
            Self::AbortTaskSet => 2,
            Self::ClearAca => 3,
            Self::ClearTaskSet => 4,
            Self::LogicalUnitReset => 5,
            Self::TargetWarmReset => 6,
            Self::TargetColdReset => 7,
            Self::TaskReassign => 8,
            Self::QueryTask => 9,
            Self::QueryTaskSet => 10,
            Self::ItNexusReset => 11,
            Self::QueryAsyncEvent => 12,
            Self::Other(v) => v & 0x7f,
        }
    }
}

/// SCSI Task Management Function Request (§11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskMgmtRequest {
    /// I bit.
    pub immediate: bool,
    /// Function.
    pub function: TmfFunction,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// Referenced Task Tag (ABORT TASK, QUERY TASK, TASK REASSIGN).
    pub referenced_task_tag: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// RefCmdSN.
    pub ref_cmd_sn: u32,
    /// ExpDataSN (TASK REASSIGN).
    pub exp_data_sn: u32,
}

bhs_layout! {
    Opcode::TaskMgmtRequest => TaskMgmtRequest(immediate: bool, function: TmfFunction) {
        lun @ LUN, itt @ ITT, referenced_task_tag @ 20, cmd_sn @ CMD_SN, exp_stat_sn @ EXP_STAT_SN,
        ref_cmd_sn @ 32, exp_data_sn @ EXP_DATA_SN
    }
}

impl TaskMgmtRequest {
    /// Parses and validates a Task Management Function Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::TaskMgmtRequest, FINAL | NO_AHS | NO_DATA)?;
        Self::from_bhs(bhs, bhs.immediate(), TmfFunction::from_u8(bhs.bytes[1] & 0x7f))
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(self.immediate, 0x80 | self.function.code(), 0, 0)
    }
}

/// SCSI Task Management Function Response (§11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskMgmtResponse {
    /// Response code.
    pub response: TmfResponse,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
}

bhs_layout! {
    Opcode::TaskMgmtResponse => TaskMgmtResponse() {
        response @ RESPONSE, itt @ ITT, sns @ STAT_SN
    }
}

simple_codec!(TaskMgmtResponse);
