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

use std::fmt;

use bytemuck::{Pod, Zeroable};

/// Size of the Basic Header Segment in bytes.
pub const BHS_LEN: usize = 48;

/// Largest data segment length the 24-bit DataSegmentLength field can express.
pub const MAX_DATA_SEGMENT_LENGTH: u32 = (1 << 24) - 1;

/// Largest CDB a SCSI Command PDU can carry (16 bytes in the BHS plus an extended CDB AHS).
pub const MAX_CDB_LEN: usize = 260;

/// The reserved tag value (§11.1): "no task" / "no response wanted".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// The 48-byte Basic Header Segment exactly as it is on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Bhs {
    /// Raw header bytes, big-endian fields.
    pub bytes: [u8; BHS_LEN],
}

const _: () = assert!(core::mem::size_of::<Bhs>() == BHS_LEN);
const _: () = assert!(core::mem::align_of::<Bhs>() == 1);

impl fmt::Debug for Bhs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bhs(")?;
        for b in &self.bytes {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl Bhs {
    /// Wraps raw header bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; BHS_LEN]) -> Self {
        Self { bytes }
    }

    /// Reads a BHS from the front of `buf`; `None` if fewer than 48 bytes are there.
    #[must_use]
    pub fn from_slice(buf: &[u8]) -> Option<Self> {
        let head: &[u8; BHS_LEN] = buf.get(..BHS_LEN)?.try_into().ok()?;
        Some(Self { bytes: *head })
    }

    /// Raw opcode bits (byte 0, bits 0..6).
    #[must_use]
    pub const fn opcode_raw(&self) -> u8 {
        self.bytes[0] & 0x3f
    }

    /// The typed opcode, if it is one RFC 7143 defines.
    #[must_use]
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode_raw())
    }

    /// The I (immediate delivery) bit.
    #[must_use]
    pub const fn immediate(&self) -> bool {
        self.bytes[0] & 0x40 != 0
    }

    /// The F (final) bit, byte 1 bit 7.
    #[must_use]
    pub const fn final_bit(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }

    /// TotalAHSLength in 4-byte words.
    #[must_use]
    pub const fn total_ahs_length_words(&self) -> u8 {
        self.bytes[4]
    }

    /// TotalAHSLength in bytes.
    #[must_use]
    pub const fn total_ahs_length_bytes(&self) -> usize {
        self.bytes[4] as usize * 4
    }

    /// DataSegmentLength in bytes (without padding).
    #[must_use]
    pub const fn data_segment_length(&self) -> u32 {
        u32::from_be_bytes([0, self.bytes[5], self.bytes[6], self.bytes[7]])
    }

    /// Sets TotalAHSLength (in words) and DataSegmentLength; the length is clipped to 24 bits
    /// by an assertion because a larger value is a programming error.
    pub fn set_lengths(&mut self, total_ahs_length_words: u8, data_segment_length: u32) {
        assert!(data_segment_length <= MAX_DATA_SEGMENT_LENGTH, "DataSegmentLength > 2^24-1");
        self.bytes[4] = total_ahs_length_words;
        let dsl = data_segment_length.to_be_bytes();
        self.bytes[5..8].copy_from_slice(&dsl[1..4]);
    }

    /// The 8-byte LUN field (bytes 8..16), as the raw SAM LUN.
    #[must_use]
    pub fn lun(&self) -> u64 {
        self.u64_at(8)
    }

    /// Initiator Task Tag.
    #[must_use]
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }

    /// Big-endian u16 at `offset` (a compile-time constant inside the header).
    #[must_use]
    pub fn u16_at(&self, offset: usize) -> u16 {
        u16::from_be_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    /// Big-endian u32 at `offset`.
    #[must_use]
    pub fn u32_at(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[offset..offset + 4]);
        u32::from_be_bytes(b)
    }

    /// Big-endian u64 at `offset`.
    #[must_use]
    pub fn u64_at(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[offset..offset + 8]);
        u64::from_be_bytes(b)
    }

    /// Writes a big-endian u16 at `offset`.
    pub fn set_u16(&mut self, offset: usize, v: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes a big-endian u32 at `offset`.
    pub fn set_u32(&mut self, offset: usize, v: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes a big-endian u64 at `offset`.
    pub fn set_u64(&mut self, offset: usize, v: u64) {
        self.bytes[offset..offset + 8].copy_from_slice(&v.to_be_bytes());
    }

    fn with_opcode(opcode: Opcode, immediate: bool) -> Self {
        let mut bhs = Self::default();
        bhs.bytes[0] = opcode as u8 | if immediate { 0x40 } else { 0 };
        bhs
    }
}

/// Every opcode of RFC 7143 §11.2.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// NOP-Out (initiator).
    NopOut = 0x00,
    /// SCSI Command (initiator).
    ScsiCommand = 0x01,
    /// SCSI Task Management Function Request (initiator).
    TaskMgmtRequest = 0x02,
    /// Login Request (initiator).
    LoginRequest = 0x03,
    /// Text Request (initiator).
    TextRequest = 0x04,
    /// SCSI Data-Out (initiator).
    ScsiDataOut = 0x05,
    /// Logout Request (initiator).
    LogoutRequest = 0x06,
    /// SNACK Request (initiator).
    SnackRequest = 0x10,
    /// NOP-In (target).
    NopIn = 0x20,
    /// SCSI Response (target).
    ScsiResponse = 0x21,
    /// SCSI Task Management Function Response (target).
    TaskMgmtResponse = 0x22,
    /// Login Response (target).
    LoginResponse = 0x23,
    /// Text Response (target).
    TextResponse = 0x24,
    /// SCSI Data-In (target).
    ScsiDataIn = 0x25,
    /// Logout Response (target).
    LogoutResponse = 0x26,
    /// Ready To Transfer (target).
    R2t = 0x31,
    /// Asynchronous Message (target).
    AsyncMessage = 0x32,
    /// Reject (target).
    Reject = 0x3f,
}

impl Opcode {
    /// Decodes the 6-bit opcode; vendor-specific and reserved codes give `None`.
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => Self::NopOut,
            0x01 => Self::ScsiCommand,
            0x02 => Self::TaskMgmtRequest,
            0x03 => Self::LoginRequest,
            0x04 => Self::TextRequest,
            0x05 => Self::ScsiDataOut,
            0x06 => Self::LogoutRequest,
            0x10 => Self::SnackRequest,
            0x20 => Self::NopIn,
            0x21 => Self::ScsiResponse,
            0x22 => Self::TaskMgmtResponse,
            0x23 => Self::LoginResponse,
            0x24 => Self::TextResponse,
            0x25 => Self::ScsiDataIn,
            0x26 => Self::LogoutResponse,
            0x31 => Self::R2t,
            0x32 => Self::AsyncMessage,
            0x3f => Self::Reject,
            _ => return None,
        })
    }

    /// True for opcodes an initiator sends (0x00..0x1f).
    #[must_use]
    pub const fn is_initiator(self) -> bool {
        (self as u8) < 0x20
    }
}

/// Reject reason codes (RFC 7143 §11.17.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectReason {
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

impl RejectReason {
    /// Decodes a reason byte.
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x02 => Self::DataDigestError,
            0x03 => Self::SnackReject,
            0x04 => Self::ProtocolError,
            0x05 => Self::CommandNotSupported,
            0x06 => Self::ImmediateCommandReject,
            0x07 => Self::TaskInProgress,
            0x08 => Self::InvalidDataAck,
            0x09 => Self::InvalidPduField,
            0x0a => Self::LongOpReject,
            0x0c => Self::WaitingForLogout,
            _ => return None,
        })
    }
}

/// Why a PDU could not be accepted; [`PduError::reject_reason`] is the code to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduError {
    /// Reserved or vendor-specific opcode.
    UnsupportedOpcode(u8),
    /// A target opcode arrived from the initiator.
    UnexpectedOpcode(Opcode),
    /// DataSegmentLength exceeds the MaxRecvDataSegmentLength this side declared.
    DataSegmentTooLong {
        /// DataSegmentLength of the PDU.
        length_bytes: u32,
        /// The declared limit.
        limit_bytes: u32,
    },
    /// The PDU carries a data segment or AHS where this opcode allows none.
    UnexpectedSegment(&'static str),
    /// A field holds a reserved or inconsistent value (Reject reason 0x09).
    InvalidField(&'static str),
    /// The PDU breaks a protocol rule (Reject reason 0x04).
    Protocol(&'static str),
    /// An Additional Header Segment is malformed.
    MalformedAhs(&'static str),
    /// The data digest did not match (Reject reason 0x02).
    DataDigest,
    /// Fewer bytes than the header or segment needs.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
}

impl PduError {
    /// The Reject reason code the target answers with (RFC 7143 §11.17.1).
    #[must_use]
    pub const fn reject_reason(&self) -> RejectReason {
        match self {
            Self::UnsupportedOpcode(_) | Self::UnexpectedOpcode(_) => {
                RejectReason::CommandNotSupported
            }
            Self::InvalidField(_) | Self::MalformedAhs(_) => RejectReason::InvalidPduField,
            Self::DataDigest => RejectReason::DataDigestError,
            Self::DataSegmentTooLong { .. }
            | Self::UnexpectedSegment(_)
            | Self::Protocol(_)
            | Self::Truncated { .. } => RejectReason::ProtocolError,
        }
    }
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedOpcode(op) => write!(f, "unsupported opcode {op:#04x}"),
            Self::UnexpectedOpcode(op) => write!(f, "opcode {op:?} not valid from an initiator"),
            Self::DataSegmentTooLong { length_bytes, limit_bytes } => write!(
                f,
                "DataSegmentLength {length_bytes} exceeds MaxRecvDataSegmentLength {limit_bytes}"
            ),
            Self::UnexpectedSegment(what) => write!(f, "unexpected segment: {what}"),
            Self::InvalidField(what) => write!(f, "invalid PDU field: {what}"),
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
            Self::MalformedAhs(what) => write!(f, "malformed AHS: {what}"),
            Self::DataDigest => write!(f, "data digest mismatch"),
            Self::Truncated { need, got } => write!(f, "truncated: need {need} bytes, got {got}"),
        }
    }
}

impl std::error::Error for PduError {}

// ---------------------------------------------------------------------------------------
// Padding and serial numbers
// ---------------------------------------------------------------------------------------

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

/// RFC 1982 serial-number "less than" with SERIAL_BITS = 32 (CmdSN, StatSN, DataSN...).
///
/// Two numbers exactly 2^31 apart are neither less nor greater than each other.
#[must_use]
pub const fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// RFC 1982 "greater than".
#[must_use]
pub const fn sn_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// RFC 1982 "less than or equal".
#[must_use]
pub const fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

/// RFC 1982 "greater than or equal".
#[must_use]
pub const fn sn_ge(a: u32, b: u32) -> bool {
    a == b || sn_gt(a, b)
}

/// True when `sn` lies in the command window `[exp_cmd_sn, max_cmd_sn]` (RFC 7143 §4.2.2.1).
/// An empty window (MaxCmdSN = ExpCmdSN - 1) accepts nothing.
#[must_use]
pub const fn sn_in_window(sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) -> bool {
    sn_ge(sn, exp_cmd_sn) && sn_le(sn, max_cmd_sn)
}

// ---------------------------------------------------------------------------------------
// Shared enums
// ---------------------------------------------------------------------------------------

/// Initiator Session ID (§11.12.5), 6 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Isid(pub [u8; 6]);

/// Login stages carried in CSG/NSG (§11.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// 0: SecurityNegotiation.
    SecurityNegotiation = 0,
    /// 1: LoginOperationalNegotiation.
    LoginOperationalNegotiation = 1,
    /// 3: FullFeaturePhase.
    FullFeaturePhase = 3,
}

impl Stage {
    /// Decodes a 2-bit stage code; 2 is reserved.
    #[must_use]
    pub const fn from_bits(v: u8) -> Option<Self> {
        match v & 3 {
            0 => Some(Self::SecurityNegotiation),
            1 => Some(Self::LoginOperationalNegotiation),
            3 => Some(Self::FullFeaturePhase),
            _ => None,
        }
    }
}

/// SCSI task attributes (§11.3.1, ATTR field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskAttribute {
    /// 0: Untagged (treated as Simple).
    Untagged = 0,
    /// 1: Simple.
    Simple = 1,
    /// 2: Ordered.
    Ordered = 2,
    /// 3: Head of queue.
    HeadOfQueue = 3,
    /// 4: ACA.
    Aca = 4,
}

impl TaskAttribute {
    const fn from_bits(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Untagged),
            1 => Some(Self::Simple),
            2 => Some(Self::Ordered),
            3 => Some(Self::HeadOfQueue),
            4 => Some(Self::Aca),
            _ => None,
        }
    }
}

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

/// Task management response codes (§11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TmfResponse {
    /// 0 Function complete.
    FunctionComplete = 0,
    /// 1 Task does not exist.
    TaskDoesNotExist = 1,
    /// 2 LUN does not exist.
    LunDoesNotExist = 2,
    /// 3 Task still allegiant.
    TaskStillAllegiant = 3,
    /// 4 Task allegiance reassignment not supported.
    TaskReassignNotSupported = 4,
    /// 5 Task management function not supported.
    FunctionNotSupported = 5,
    /// 6 Function authorization failed.
    FunctionAuthorizationFailed = 6,
    /// 255 Function rejected.
    FunctionRejected = 255,
}

impl TmfResponse {
    /// Decodes a response byte.
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::FunctionComplete,
            1 => Self::TaskDoesNotExist,
            2 => Self::LunDoesNotExist,
            3 => Self::TaskStillAllegiant,
            4 => Self::TaskReassignNotSupported,
            5 => Self::FunctionNotSupported,
            6 => Self::FunctionAuthorizationFailed,
            255 => Self::FunctionRejected,
            _ => return None,
        })
    }
}

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

/// SNACK types (§11.16.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnackType {
    /// 0 Data/R2T SNACK.
    DataR2t = 0,
    /// 1 Status SNACK.
    Status = 1,
    /// 2 DataACK.
    DataAck = 2,
    /// 3 R-Data SNACK.
    RData = 3,
}

/// Residual reported in a SCSI Response or a final Data-In (§11.4.5): the O and U bits plus
/// the Residual Count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Residual {
    /// Exactly the expected amount was transferred.
    #[default]
    None,
    /// O bit: the command wanted this many bytes more than Expected Data Transfer Length.
    Overflow(u32),
    /// U bit: this many bytes of Expected Data Transfer Length were not transferred.
    Underflow(u32),
}

impl Residual {
    /// Residual from the expected and the actual transfer length in bytes.
    #[must_use]
    pub const fn from_lengths(expected_bytes: u32, actual_bytes: u32) -> Self {
        if actual_bytes > expected_bytes {
            Self::Overflow(actual_bytes - expected_bytes)
        } else if actual_bytes < expected_bytes {
            Self::Underflow(expected_bytes - actual_bytes)
        } else {
            Self::None
        }
    }

    const fn count(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Overflow(n) | Self::Underflow(n) => n,
        }
    }

    /// (overflow bit, underflow bit) values to OR into a flags byte.
    const fn bits(self, overflow: u8, underflow: u8) -> u8 {
        match self {
            Self::None => 0,
            Self::Overflow(_) => overflow,
            Self::Underflow(_) => underflow,
        }
    }

    fn decode(flags: u8, overflow: u8, underflow: u8, count: u32) -> Result<Self, PduError> {
        match (flags & overflow != 0, flags & underflow != 0) {
            (false, false) => Ok(Self::None),
            (true, false) => Ok(Self::Overflow(count)),
            (false, true) => Ok(Self::Underflow(count)),
            (true, true) => Err(PduError::InvalidField("both overflow and underflow set")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------------------

fn expect_opcode(bhs: &Bhs, opcode: Opcode) -> Result<(), PduError> {
    if bhs.opcode_raw() == opcode as u8 {
        Ok(())
    } else {
        Err(PduError::InvalidField("opcode does not match header type"))
    }
}

fn no_ahs(bhs: &Bhs) -> Result<(), PduError> {
    if bhs.total_ahs_length_words() == 0 {
        Ok(())
    } else {
        Err(PduError::UnexpectedSegment("AHS on a PDU that allows none"))
    }
}

fn no_data(bhs: &Bhs) -> Result<(), PduError> {
    if bhs.data_segment_length() == 0 {
        Ok(())
    } else {
        Err(PduError::UnexpectedSegment("data segment on a PDU that allows none"))
    }
}

fn require_final(bhs: &Bhs) -> Result<(), PduError> {
    if bhs.final_bit() {
        Ok(())
    } else {
        Err(PduError::InvalidField("F bit must be 1"))
    }
}

fn data_limit(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<u32, PduError> {
    let dsl = bhs.data_segment_length();
    if dsl > max_recv_data_segment_length {
        return Err(PduError::DataSegmentTooLong {
            length_bytes: dsl,
            limit_bytes: max_recv_data_segment_length,
        });
    }
    Ok(dsl)
}

// ---------------------------------------------------------------------------------------
// Initiator PDUs (parsed by the target)
// ---------------------------------------------------------------------------------------

/// NOP-Out (§11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopOut {
    /// I bit.
    pub immediate: bool,
    /// LUN (echoed in the NOP-In).
    pub lun: u64,
    /// Initiator Task Tag; [`RESERVED_TAG`] means no response is wanted.
    pub itt: u32,
    /// Target Transfer Tag; not [`RESERVED_TAG`] when answering a target's NOP-In.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Ping data length in bytes.
    pub data_segment_length: u32,
}

impl NopOut {
    /// Parses and validates a NOP-Out BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::NopOut)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let itt = bhs.itt();
        if itt == RESERVED_TAG && !bhs.immediate() {
            return Err(PduError::Protocol("NOP-Out with ITT 0xffffffff must be immediate"));
        }
        Ok(Self {
            immediate: bhs.immediate(),
            lun: bhs.lun(),
            itt,
            ttt: bhs.u32_at(20),
            cmd_sn: bhs.u32_at(24),
            exp_stat_sn: bhs.u32_at(28),
            data_segment_length,
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::NopOut, self.immediate);
        b.bytes[1] = 0x80;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        b
    }
}

/// SCSI Command (§11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiCommand {
    /// I bit.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out PDUs follow.
    pub final_bit: bool,
    /// R bit: data flows to the initiator.
    pub read: bool,
    /// W bit: data flows to the target.
    pub write: bool,
    /// ATTR.
    pub attr: TaskAttribute,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length in bytes.
    pub expected_data_transfer_length: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// First 16 bytes of the CDB (the rest is in an extended CDB AHS).
    pub cdb: [u8; 16],
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_length_words: u8,
    /// Immediate data length in bytes.
    pub data_segment_length: u32,
}

impl ScsiCommand {
    /// Parses and validates a SCSI Command BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or inconsistent F/R/W bits.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::ScsiCommand)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let flags = bhs.bytes[1];
        let final_bit = flags & 0x80 != 0;
        let read = flags & 0x40 != 0;
        let write = flags & 0x20 != 0;
        let attr = TaskAttribute::from_bits(flags & 0x07)
            .ok_or(PduError::InvalidField("reserved task attribute"))?;
        let expected_data_transfer_length = bhs.u32_at(20);
        if !read && !write && expected_data_transfer_length != 0 {
            return Err(PduError::InvalidField("Expected Data Transfer Length without R or W bit"));
        }
        if !write && data_segment_length != 0 {
            return Err(PduError::Protocol("immediate data on a command without W bit"));
        }
        if !write && !final_bit {
            return Err(PduError::Protocol("F bit clear on a command without W bit"));
        }
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&bhs.bytes[32..48]);
        Ok(Self {
            immediate: bhs.immediate(),
            final_bit,
            read,
            write,
            attr,
            lun: bhs.lun(),
            itt: bhs.itt(),
            expected_data_transfer_length,
            cmd_sn: bhs.u32_at(24),
            exp_stat_sn: bhs.u32_at(28),
            cdb,
            total_ahs_length_words: bhs.total_ahs_length_words(),
            data_segment_length,
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiCommand, self.immediate);
        b.bytes[1] = u8::from(self.final_bit) << 7
            | u8::from(self.read) << 6
            | u8::from(self.write) << 5
            | self.attr as u8;
        b.set_lengths(self.total_ahs_length_words, self.data_segment_length);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.expected_data_transfer_length);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        b.bytes[32..48].copy_from_slice(&self.cdb);
        b
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

impl TaskMgmtRequest {
    /// Parses and validates a Task Management Function Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::TaskMgmtRequest)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        Ok(Self {
            immediate: bhs.immediate(),
            function: TmfFunction::from_u8(bhs.bytes[1] & 0x7f),
            lun: bhs.lun(),
            itt: bhs.itt(),
            referenced_task_tag: bhs.u32_at(20),
            cmd_sn: bhs.u32_at(24),
            exp_stat_sn: bhs.u32_at(28),
            ref_cmd_sn: bhs.u32_at(32),
            exp_data_sn: bhs.u32_at(36),
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TaskMgmtRequest, self.immediate);
        b.bytes[1] = 0x80 | self.function.code();
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.referenced_task_tag);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        b.set_u32(32, self.ref_cmd_sn);
        b.set_u32(36, self.exp_data_sn);
        b
    }
}

/// Login Request (§11.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginRequest {
    /// T bit: the initiator is ready to move to `nsg`.
    pub transit: bool,
    /// C bit: the text continues in the next PDU.
    pub continue_bit: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage; meaningful only when `transit` is set (`None` otherwise).
    pub nsg: Option<Stage>,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID.
    pub isid: Isid,
    /// TSIH (0 for a new session).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Text length in bytes.
    pub data_segment_length: u32,
}

impl LoginRequest {
    /// Parses and validates a Login Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header (T and C both set, reserved stage codes...).
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::LoginRequest)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let flags = bhs.bytes[1];
        let transit = flags & 0x80 != 0;
        let continue_bit = flags & 0x40 != 0;
        if transit && continue_bit {
            return Err(PduError::Protocol("Login Request with both T and C bits"));
        }
        let csg = match Stage::from_bits(flags >> 2) {
            Some(Stage::FullFeaturePhase) | None => {
                return Err(PduError::InvalidField("reserved CSG"));
            }
            Some(stage) => stage,
        };
        let nsg = if transit {
            Some(Stage::from_bits(flags).ok_or(PduError::InvalidField("reserved NSG"))?)
        } else {
            None
        };
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&bhs.bytes[8..14]);
        Ok(Self {
            transit,
            continue_bit,
            csg,
            nsg,
            version_max: bhs.bytes[2],
            version_min: bhs.bytes[3],
            isid: Isid(isid),
            tsih: bhs.u16_at(14),
            itt: bhs.itt(),
            cid: bhs.u16_at(20),
            cmd_sn: bhs.u32_at(24),
            exp_stat_sn: bhs.u32_at(28),
            data_segment_length,
        })
    }

    /// Encodes the header (the I bit is always set on Login Requests).
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LoginRequest, true);
        b.bytes[1] = u8::from(self.transit) << 7
            | u8::from(self.continue_bit) << 6
            | (self.csg as u8) << 2
            | self.nsg.map_or(0, |s| s as u8);
        b.bytes[2] = self.version_max;
        b.bytes[3] = self.version_min;
        b.set_lengths(0, self.data_segment_length);
        b.bytes[8..14].copy_from_slice(&self.isid.0);
        b.set_u16(14, self.tsih);
        b.set_u32(16, self.itt);
        b.set_u16(20, self.cid);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        b
    }
}

/// Text Request (§11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextRequest {
    /// I bit.
    pub immediate: bool,
    /// F bit.
    pub final_bit: bool,
    /// C bit.
    pub continue_bit: bool,
    /// LUN field (reserved unless a key uses it).
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag: 0xffffffff to start, else the tag of the continued response.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Text length in bytes.
    pub data_segment_length: u32,
}

impl TextRequest {
    /// Parses and validates a Text Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header (F and C both set...).
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::TextRequest)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let final_bit = bhs.final_bit();
        let continue_bit = bhs.bytes[1] & 0x40 != 0;
        if final_bit && continue_bit {
            return Err(PduError::Protocol("Text Request with both F and C bits"));
        }
        if bhs.itt() == RESERVED_TAG {
            return Err(PduError::InvalidField("Text Request with reserved ITT"));
        }
        Ok(Self {
            immediate: bhs.immediate(),
            final_bit,
            continue_bit,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            cmd_sn: bhs.u32_at(24),
            exp_stat_sn: bhs.u32_at(28),
            data_segment_length,
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TextRequest, self.immediate);
        b.bytes[1] = u8::from(self.final_bit) << 7 | u8::from(self.continue_bit) << 6;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        b
    }
}

/// SCSI Data-Out (§11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiDataOut {
    /// F bit: last PDU of the sequence.
    pub final_bit: bool,
    /// LUN (set when TTT is not reserved).
    pub lun: u64,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag from the R2T, or 0xffffffff for unsolicited data.
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN within the sequence.
    pub data_sn: u32,
    /// Buffer Offset in bytes.
    pub buffer_offset: u32,
    /// Payload length in bytes.
    pub data_segment_length: u32,
}

impl ScsiDataOut {
    /// Parses and validates a Data-Out BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::ScsiDataOut)?;
        no_ahs(bhs)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        Ok(Self {
            final_bit: bhs.final_bit(),
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            exp_stat_sn: bhs.u32_at(28),
            data_sn: bhs.u32_at(36),
            buffer_offset: bhs.u32_at(40),
            data_segment_length,
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiDataOut, false);
        b.bytes[1] = u8::from(self.final_bit) << 7;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(28, self.exp_stat_sn);
        b.set_u32(36, self.data_sn);
        b.set_u32(40, self.buffer_offset);
        b
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
            cid: bhs.u16_at(20),
            cmd_sn: bhs.u32_at(24),
            exp_stat_sn: bhs.u32_at(28),
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LogoutRequest, self.immediate);
        b.bytes[1] = 0x80 | self.reason as u8;
        b.set_u32(16, self.itt);
        b.set_u16(20, self.cid);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        b
    }
}

/// SNACK Request (§11.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnackRequest {
    /// SNACK type.
    pub snack_type: SnackType,
    /// LUN (DataACK).
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff for Status SNACK).
    pub itt: u32,
    /// Target Transfer Tag (DataACK) or SNACK Tag (R-Data).
    pub ttt_or_snack_tag: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun.
    pub beg_run: u32,
    /// RunLength.
    pub run_length: u32,
}

impl SnackRequest {
    /// Parses and validates a SNACK Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or a reserved type.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::SnackRequest)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        let snack_type = match bhs.bytes[1] & 0x0f {
            0 => SnackType::DataR2t,
            1 => SnackType::Status,
            2 => SnackType::DataAck,
            3 => SnackType::RData,
            _ => return Err(PduError::InvalidField("reserved SNACK type")),
        };
        Ok(Self {
            snack_type,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt_or_snack_tag: bhs.u32_at(20),
            exp_stat_sn: bhs.u32_at(28),
            beg_run: bhs.u32_at(40),
            run_length: bhs.u32_at(44),
        })
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::SnackRequest, false);
        b.bytes[1] = 0x80 | self.snack_type as u8;
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt_or_snack_tag);
        b.set_u32(28, self.exp_stat_sn);
        b.set_u32(40, self.beg_run);
        b.set_u32(44, self.run_length);
        b
    }
}

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

// ---------------------------------------------------------------------------------------
// Additional Header Segments (§11.2.2)
// ---------------------------------------------------------------------------------------

/// AHSType 1: Extended CDB.
pub const AHS_TYPE_EXTENDED_CDB: u8 = 1;
/// AHSType 2: Bidirectional Read Expected Data Transfer Length.
pub const AHS_TYPE_BIDI_READ_LENGTH: u8 = 2;

/// The AHSs of a SCSI Command, borrowed from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ahs<'a> {
    /// CDB bytes beyond the first 16 (extended CDB AHS), without padding.
    pub extended_cdb: Option<&'a [u8]>,
    /// Bidirectional Read Expected Data Transfer Length in bytes.
    pub bidi_read_expected_data_transfer_length: Option<u32>,
}

impl<'a> Ahs<'a> {
    /// Parses the `TotalAHSLength * 4` bytes that follow the BHS.
    ///
    /// # Errors
    /// [`PduError::MalformedAhs`] on overlong, duplicated, unknown or reserved AHSs.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PduError> {
        let mut out = Self::default();
        let mut rest = bytes;
        while !rest.is_empty() {
            let [l0, l1, ahs_type, _specific, ..] = *rest else {
                return Err(PduError::MalformedAhs("AHS header truncated"));
            };
            // AHSLength counts the AHS-specific byte and the data, not the 3 header bytes.
            let ahs_length = usize::from(u16::from_be_bytes([l0, l1]));
            if ahs_length == 0 {
                return Err(PduError::MalformedAhs("AHSLength 0"));
            }
            let total = padded_len(3 + ahs_length);
            let body = rest
                .get(4..3 + ahs_length)
                .ok_or(PduError::MalformedAhs("AHSLength beyond TotalAHSLength"))?;
            if total > rest.len() {
                return Err(PduError::MalformedAhs("AHS padding beyond TotalAHSLength"));
            }
            match ahs_type & 0x3f {
                AHS_TYPE_EXTENDED_CDB => {
                    if out.extended_cdb.is_some() {
                        return Err(PduError::MalformedAhs("duplicate extended CDB AHS"));
                    }
                    if body.is_empty() || body.len() > MAX_CDB_LEN - 16 {
                        return Err(PduError::MalformedAhs("extended CDB length"));
                    }
                    out.extended_cdb = Some(body);
                }
                AHS_TYPE_BIDI_READ_LENGTH => {
                    if out.bidi_read_expected_data_transfer_length.is_some() {
                        return Err(PduError::MalformedAhs("duplicate bidirectional AHS"));
                    }
                    let v: [u8; 4] = body
                        .try_into()
                        .map_err(|_| PduError::MalformedAhs("bidirectional AHSLength != 5"))?;
                    out.bidi_read_expected_data_transfer_length = Some(u32::from_be_bytes(v));
                }
                _ => return Err(PduError::MalformedAhs("unknown AHSType")),
            }
            rest = &rest[total..];
        }
        Ok(out)
    }

    /// Encodes AHSs into `out` (appending); returns TotalAHSLength in words.
    ///
    /// # Panics
    /// If the extended CDB is empty or longer than 244 bytes (a programming error).
    pub fn encode(&self, out: &mut Vec<u8>) -> u8 {
        let start = out.len();
        if let Some(ext) = self.extended_cdb {
            assert!(!ext.is_empty() && ext.len() <= MAX_CDB_LEN - 16, "extended CDB length");
            let ahs_length = u16::try_from(ext.len() + 1).unwrap_or(u16::MAX);
            out.extend_from_slice(&ahs_length.to_be_bytes());
            out.extend_from_slice(&[AHS_TYPE_EXTENDED_CDB, 0]);
            out.extend_from_slice(ext);
            out.extend_from_slice(&PAD[..pad_len(3 + ext.len() + 1)]);
        }
        if let Some(len) = self.bidi_read_expected_data_transfer_length {
            out.extend_from_slice(&5u16.to_be_bytes());
            out.extend_from_slice(&[AHS_TYPE_BIDI_READ_LENGTH, 0]);
            out.extend_from_slice(&len.to_be_bytes());
        }
        // At most 244 + 4 + 8 bytes, so the word count fits in a byte.
        u8::try_from((out.len() - start) / 4).unwrap_or(u8::MAX)
    }
}

/// A complete CDB of up to [`MAX_CDB_LEN`] bytes, assembled without allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cdb {
    bytes: [u8; MAX_CDB_LEN],
    len: usize,
}

impl fmt::Debug for Cdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cdb({:02x?})", self.as_bytes())
    }
}

impl Cdb {
    /// Joins the 16 BHS CDB bytes with the extended CDB AHS, if any.
    #[must_use]
    pub fn assemble(base: &[u8; 16], extended: Option<&[u8]>) -> Self {
        let mut bytes = [0u8; MAX_CDB_LEN];
        bytes[..16].copy_from_slice(base);
        let mut len = 16;
        if let Some(ext) = extended {
            let n = ext.len().min(MAX_CDB_LEN - 16);
            bytes[16..16 + n].copy_from_slice(&ext[..n]);
            len += n;
        }
        Self { bytes, len }
    }

    /// The CDB bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

// ---------------------------------------------------------------------------------------
// Target PDUs (built by the target)
// ---------------------------------------------------------------------------------------

/// Sequence numbers every target-to-initiator status PDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StatusSns {
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl StatusSns {
    fn write(&self, b: &mut Bhs) {
        b.set_u32(24, self.stat_sn);
        b.set_u32(28, self.exp_cmd_sn);
        b.set_u32(32, self.max_cmd_sn);
    }

    fn read(b: &Bhs) -> Self {
        Self { stat_sn: b.u32_at(24), exp_cmd_sn: b.u32_at(28), max_cmd_sn: b.u32_at(32) }
    }
}

/// Login status class and detail (§11.13.5), as one 16-bit code `class << 8 | detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum LoginStatus {
    /// 0x0000 Success.
    Success = 0x0000,
    /// 0x0101 Target moved temporarily.
    TargetMovedTemporarily = 0x0101,
    /// 0x0102 Target moved permanently.
    TargetMovedPermanently = 0x0102,
    /// 0x0200 Initiator error (miscellaneous).
    InitiatorError = 0x0200,
    /// 0x0201 Authentication failure.
    AuthenticationFailure = 0x0201,
    /// 0x0202 Authorization failure.
    AuthorizationFailure = 0x0202,
    /// 0x0203 Not found.
    NotFound = 0x0203,
    /// 0x0204 Target removed.
    TargetRemoved = 0x0204,
    /// 0x0205 Unsupported version.
    UnsupportedVersion = 0x0205,
    /// 0x0206 Too many connections.
    TooManyConnections = 0x0206,
    /// 0x0207 Missing parameter.
    MissingParameter = 0x0207,
    /// 0x0208 Can't include in session.
    CantIncludeInSession = 0x0208,
    /// 0x0209 Session type not supported.
    SessionTypeNotSupported = 0x0209,
    /// 0x020a Session does not exist.
    SessionDoesNotExist = 0x020a,
    /// 0x020b Invalid request during login.
    InvalidDuringLogin = 0x020b,
    /// 0x0300 Target error (miscellaneous).
    TargetError = 0x0300,
    /// 0x0301 Service unavailable.
    ServiceUnavailable = 0x0301,
    /// 0x0302 Out of resources.
    OutOfResources = 0x0302,
}

impl LoginStatus {
    /// Status-Class byte.
    #[must_use]
    pub const fn class(self) -> u8 {
        (self as u16 >> 8) as u8
    }

    /// Status-Detail byte.
    #[must_use]
    pub const fn detail(self) -> u8 {
        (self as u16 & 0xff) as u8
    }

    /// Decodes class and detail.
    #[must_use]
    pub const fn from_parts(class: u8, detail: u8) -> Option<Self> {
        Some(match (class as u16) << 8 | detail as u16 {
            0x0000 => Self::Success,
            0x0101 => Self::TargetMovedTemporarily,
            0x0102 => Self::TargetMovedPermanently,
            0x0200 => Self::InitiatorError,
            0x0201 => Self::AuthenticationFailure,
            0x0202 => Self::AuthorizationFailure,
            0x0203 => Self::NotFound,
            0x0204 => Self::TargetRemoved,
            0x0205 => Self::UnsupportedVersion,
            0x0206 => Self::TooManyConnections,
            0x0207 => Self::MissingParameter,
            0x0208 => Self::CantIncludeInSession,
            0x0209 => Self::SessionTypeNotSupported,
            0x020a => Self::SessionDoesNotExist,
            0x020b => Self::InvalidDuringLogin,
            0x0300 => Self::TargetError,
            0x0301 => Self::ServiceUnavailable,
            0x0302 => Self::OutOfResources,
            _ => return None,
        })
    }
}

/// Login Response (§11.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginResponse {
    /// T bit.
    pub transit: bool,
    /// C bit.
    pub continue_bit: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (only meaningful with `transit`; encoded as 0 otherwise).
    pub nsg: Option<Stage>,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID echoed from the request.
    pub isid: Isid,
    /// TSIH (the new session's on the final response of a leading login).
    pub tsih: u16,
    /// Initiator Task Tag echoed from the request.
    pub itt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// Status class and detail.
    pub status: LoginStatus,
    /// Text length in bytes.
    pub data_segment_length: u32,
}

impl LoginResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LoginResponse, false);
        b.bytes[1] = u8::from(self.transit) << 7
            | u8::from(self.continue_bit) << 6
            | (self.csg as u8) << 2
            | if self.transit { self.nsg.map_or(0, |s| s as u8) } else { 0 };
        b.bytes[2] = self.version_max;
        b.bytes[3] = self.version_active;
        b.set_lengths(0, self.data_segment_length);
        b.bytes[8..14].copy_from_slice(&self.isid.0);
        b.set_u16(14, self.tsih);
        b.set_u32(16, self.itt);
        self.sns.write(&mut b);
        b.bytes[36] = self.status.class();
        b.bytes[37] = self.status.detail();
        b
    }

    /// Parses a Login Response (initiator side and tests).
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::LoginResponse)?;
        no_ahs(bhs)?;
        let flags = bhs.bytes[1];
        let transit = flags & 0x80 != 0;
        let continue_bit = flags & 0x40 != 0;
        if transit && continue_bit {
            return Err(PduError::Protocol("Login Response with both T and C bits"));
        }
        let csg = Stage::from_bits(flags >> 2).ok_or(PduError::InvalidField("reserved CSG"))?;
        let nsg = if transit {
            Some(Stage::from_bits(flags).ok_or(PduError::InvalidField("reserved NSG"))?)
        } else {
            None
        };
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&bhs.bytes[8..14]);
        Ok(Self {
            transit,
            continue_bit,
            csg,
            nsg,
            version_max: bhs.bytes[2],
            version_active: bhs.bytes[3],
            isid: Isid(isid),
            tsih: bhs.u16_at(14),
            itt: bhs.itt(),
            sns: StatusSns::read(bhs),
            status: LoginStatus::from_parts(bhs.bytes[36], bhs.bytes[37])
                .ok_or(PduError::InvalidField("unknown login status"))?,
            data_segment_length: bhs.data_segment_length(),
        })
    }
}

/// Text Response (§11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextResponse {
    /// F bit.
    pub final_bit: bool,
    /// C bit.
    pub continue_bit: bool,
    /// LUN echoed from the request.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff on the final response).
    pub ttt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// Text length in bytes.
    pub data_segment_length: u32,
}

impl TextResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TextResponse, false);
        b.bytes[1] = u8::from(self.final_bit) << 7 | u8::from(self.continue_bit) << 6;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        self.sns.write(&mut b);
        b
    }

    /// Parses a Text Response.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::TextResponse)?;
        no_ahs(bhs)?;
        let final_bit = bhs.final_bit();
        let continue_bit = bhs.bytes[1] & 0x40 != 0;
        if final_bit && continue_bit {
            return Err(PduError::Protocol("Text Response with both F and C bits"));
        }
        Ok(Self {
            final_bit,
            continue_bit,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            sns: StatusSns::read(bhs),
            data_segment_length: bhs.data_segment_length(),
        })
    }
}

/// SCSI Response (§11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiResponse {
    /// Bidirectional read residual (o/u bits and Bidirectional Read Residual Count).
    pub bidi_read_residual: Residual,
    /// Residual (O/U bits and Residual Count).
    pub residual: Residual,
    /// iSCSI Response: 0x00 command completed at target, 0x01 target failure.
    pub response: u8,
    /// SCSI status (valid when `response` is 0).
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag (0 unless answering an R-Data SNACK).
    pub snack_tag: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// ExpDataSN: number of Data-In (and R2T) PDUs the target sent for the command.
    pub exp_data_sn: u32,
    /// SenseLength + sense data + response data length in bytes.
    pub data_segment_length: u32,
}

impl ScsiResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiResponse, false);
        b.bytes[1] =
            0x80 | self.bidi_read_residual.bits(0x10, 0x08) | self.residual.bits(0x04, 0x02);
        b.bytes[2] = self.response;
        b.bytes[3] = self.status;
        b.set_lengths(0, self.data_segment_length);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.snack_tag);
        self.sns.write(&mut b);
        b.set_u32(36, self.exp_data_sn);
        b.set_u32(40, self.bidi_read_residual.count());
        b.set_u32(44, self.residual.count());
        b
    }

    /// Parses a SCSI Response.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::ScsiResponse)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        let flags = bhs.bytes[1];
        Ok(Self {
            bidi_read_residual: Residual::decode(flags, 0x10, 0x08, bhs.u32_at(40))?,
            residual: Residual::decode(flags, 0x04, 0x02, bhs.u32_at(44))?,
            response: bhs.bytes[2],
            status: bhs.bytes[3],
            itt: bhs.itt(),
            snack_tag: bhs.u32_at(20),
            sns: StatusSns::read(bhs),
            exp_data_sn: bhs.u32_at(36),
            data_segment_length: bhs.data_segment_length(),
        })
    }
}

/// Status carried in a final Data-In PDU ("phase collapse", S bit, §11.7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataInStatus {
    /// SCSI status (GOOD or a status without sense data).
    pub status: u8,
    /// Residual (O/U bits and Residual Count).
    pub residual: Residual,
    /// StatSN.
    pub stat_sn: u32,
}

/// SCSI Data-In (§11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiDataIn {
    /// F bit: last PDU of the sequence. Forced on when `status` is present.
    pub final_bit: bool,
    /// A bit: the target asks for a DataACK SNACK (ErrorRecoveryLevel > 0).
    pub acknowledge: bool,
    /// Status collapsed into this PDU (S bit); `None` for a plain data PDU.
    pub status: Option<DataInStatus>,
    /// LUN (set when the A bit is set).
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (with the A bit), else 0xffffffff.
    pub ttt: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset in bytes.
    pub buffer_offset: u32,
    /// Payload length in bytes.
    pub data_segment_length: u32,
}

impl ScsiDataIn {
    /// Encodes the header; the S bit implies the F bit and the residual bits exist only then.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiDataIn, false);
        let mut flags = u8::from(self.final_bit) << 7 | u8::from(self.acknowledge) << 6;
        if let Some(st) = self.status {
            flags |= 0x80 | 0x01 | st.residual.bits(0x04, 0x02);
            b.bytes[3] = st.status;
            b.set_u32(24, st.stat_sn);
            b.set_u32(44, st.residual.count());
        }
        b.bytes[1] = flags;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(28, self.exp_cmd_sn);
        b.set_u32(32, self.max_cmd_sn);
        b.set_u32(36, self.data_sn);
        b.set_u32(40, self.buffer_offset);
        b
    }

    /// Parses a Data-In header.
    ///
    /// # Errors
    /// [`PduError`] on S without F, or O/U bits without S.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::ScsiDataIn)?;
        no_ahs(bhs)?;
        let flags = bhs.bytes[1];
        let final_bit = flags & 0x80 != 0;
        let status = if flags & 0x01 != 0 {
            if !final_bit {
                return Err(PduError::Protocol("Data-In with S bit but without F bit"));
            }
            Some(DataInStatus {
                status: bhs.bytes[3],
                residual: Residual::decode(flags, 0x04, 0x02, bhs.u32_at(44))?,
                stat_sn: bhs.u32_at(24),
            })
        } else {
            if flags & 0x06 != 0 {
                return Err(PduError::InvalidField("Data-In residual bits without S bit"));
            }
            None
        };
        Ok(Self {
            final_bit,
            acknowledge: flags & 0x40 != 0,
            status,
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            exp_cmd_sn: bhs.u32_at(28),
            max_cmd_sn: bhs.u32_at(32),
            data_sn: bhs.u32_at(36),
            buffer_offset: bhs.u32_at(40),
            data_segment_length: bhs.data_segment_length(),
        })
    }
}

/// Ready To Transfer (§11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct R2t {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag the Data-Out PDUs must echo.
    pub ttt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN (StatSN is the next StatSN, not advanced).
    pub sns: StatusSns,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset in bytes.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length in bytes.
    pub desired_data_transfer_length: u32,
}

impl R2t {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::R2t, false);
        b.bytes[1] = 0x80;
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        self.sns.write(&mut b);
        b.set_u32(36, self.r2t_sn);
        b.set_u32(40, self.buffer_offset);
        b.set_u32(44, self.desired_data_transfer_length);
        b
    }

    /// Parses an R2T header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::R2t)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        Ok(Self {
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            sns: StatusSns::read(bhs),
            r2t_sn: bhs.u32_at(36),
            buffer_offset: bhs.u32_at(40),
            desired_data_transfer_length: bhs.u32_at(44),
        })
    }
}

/// NOP-In (§11.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NopIn {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (echo of a NOP-Out) or 0xffffffff (target ping).
    pub itt: u32,
    /// Target Transfer Tag: 0xffffffff when no answer is wanted.
    pub ttt: u32,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// Ping data length in bytes.
    pub data_segment_length: u32,
}

impl NopIn {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::NopIn, false);
        b.bytes[1] = 0x80;
        b.set_lengths(0, self.data_segment_length);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        self.sns.write(&mut b);
        b
    }

    /// Parses a NOP-In header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::NopIn)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        Ok(Self {
            lun: bhs.lun(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            sns: StatusSns::read(bhs),
            data_segment_length: bhs.data_segment_length(),
        })
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

impl TaskMgmtResponse {
    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TaskMgmtResponse, false);
        b.bytes[1] = 0x80;
        b.bytes[2] = self.response as u8;
        b.set_u32(16, self.itt);
        self.sns.write(&mut b);
        b
    }

    /// Parses a Task Management Response header.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header or unknown response code.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::TaskMgmtResponse)?;
        require_final(bhs)?;
        no_ahs(bhs)?;
        no_data(bhs)?;
        Ok(Self {
            response: TmfResponse::from_u8(bhs.bytes[2])
                .ok_or(PduError::InvalidField("unknown TMF response"))?,
            itt: bhs.itt(),
            sns: StatusSns::read(bhs),
        })
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
        b.bytes[2] = self.response as u8;
        b.set_u32(16, self.itt);
        self.sns.write(&mut b);
        b.set_u16(40, self.time2wait_s);
        b.set_u16(42, self.time2retain_s);
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
            response: LogoutResponseCode::from_u8(bhs.bytes[2])
                .ok_or(PduError::InvalidField("unknown logout response"))?,
            itt: bhs.itt(),
            sns: StatusSns::read(bhs),
            time2wait_s: bhs.u16_at(40),
            time2retain_s: bhs.u16_at(42),
        })
    }
}

/// Reject (§11.17). The data segment is the complete header of the rejected PDU
/// ([`Reject::DATA_SEGMENT_LENGTH`] bytes: send `rejected.bytes` after this header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reject {
    /// Reason code.
    pub reason: RejectReason,
    /// StatSN / ExpCmdSN / MaxCmdSN.
    pub sns: StatusSns,
    /// DataSN/R2TSN (for a rejected SNACK), else 0.
    pub data_sn_or_r2t_sn: u32,
}

impl Reject {
    /// The data segment of a Reject carries exactly the rejected BHS.
    pub const DATA_SEGMENT_LENGTH: u32 = BHS_LEN as u32;

    /// Encodes the header; the rejected header goes in the data segment.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::Reject, false);
        b.bytes[1] = 0x80;
        b.bytes[2] = self.reason as u8;
        b.set_lengths(0, Self::DATA_SEGMENT_LENGTH);
        b.set_u32(16, RESERVED_TAG);
        self.sns.write(&mut b);
        b.set_u32(36, self.data_sn_or_r2t_sn);
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
        Ok(Self {
            reason: RejectReason::from_u8(bhs.bytes[2])
                .ok_or(PduError::InvalidField("unknown reject reason"))?,
            sns: StatusSns::read(bhs),
            data_sn_or_r2t_sn: bhs.u32_at(36),
        })
    }
}

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
        b.set_u64(8, self.lun);
        b.set_u32(16, RESERVED_TAG);
        self.sns.write(&mut b);
        b.bytes[36] = self.async_event as u8;
        b.bytes[37] = self.async_vcode;
        b.set_u16(38, self.parameter1);
        b.set_u16(40, self.parameter2);
        b.set_u16(42, self.parameter3);
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
            async_event: AsyncEvent::from_u8(bhs.bytes[36])
                .ok_or(PduError::InvalidField("unknown AsyncEvent"))?,
            async_vcode: bhs.bytes[37],
            parameter1: bhs.u16_at(38),
            parameter2: bhs.u16_at(40),
            parameter3: bhs.u16_at(42),
            data_segment_length: bhs.data_segment_length(),
        })
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

/// SCSI Response data segment: SenseLength (2 bytes) + sense data (§11.4.7), appended to `out`.
/// Returns the data segment length (without padding).
///
/// # Panics
/// If `sense` is longer than 65535 bytes (a programming error).
pub fn encode_sense_segment(sense: &[u8], out: &mut Vec<u8>) -> u32 {
    assert!(sense.len() <= usize::from(u16::MAX), "sense data too long");
    let len = u16::try_from(sense.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sense);
    u32::from(len) + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: u32 = 262_144;
    const SNS: StatusSns = StatusSns { stat_sn: 0x1111, exp_cmd_sn: 0x2222, max_cmd_sn: 0x2232 };

    fn initiator_roundtrip(p: InitiatorPdu) {
        let bhs = p.encode();
        assert_eq!(InitiatorPdu::parse(&bhs, LIMIT), Ok(p), "{bhs:?}");
    }

    fn target_roundtrip(p: TargetPdu) {
        let bhs = p.encode();
        assert_eq!(TargetPdu::parse(&bhs), Ok(p), "{bhs:?}");
    }

    #[test]
    fn bhs_is_48_bytes_and_casts() {
        assert_eq!(core::mem::size_of::<Bhs>(), 48);
        let raw = [7u8; 48];
        let bhs: &Bhs = bytemuck::from_bytes(&raw);
        assert_eq!(bhs.bytes, raw);
        assert!(Bhs::from_slice(&raw[..47]).is_none());
        assert_eq!(Bhs::from_slice(&raw).map(|b| b.bytes), Some(raw));
    }

    #[test]
    fn opcodes_cover_rfc7143() {
        let all = [
            (0x00, Opcode::NopOut),
            (0x01, Opcode::ScsiCommand),
            (0x02, Opcode::TaskMgmtRequest),
            (0x03, Opcode::LoginRequest),
            (0x04, Opcode::TextRequest),
            (0x05, Opcode::ScsiDataOut),
            (0x06, Opcode::LogoutRequest),
            (0x10, Opcode::SnackRequest),
            (0x20, Opcode::NopIn),
            (0x21, Opcode::ScsiResponse),
            (0x22, Opcode::TaskMgmtResponse),
            (0x23, Opcode::LoginResponse),
            (0x24, Opcode::TextResponse),
            (0x25, Opcode::ScsiDataIn),
            (0x26, Opcode::LogoutResponse),
            (0x31, Opcode::R2t),
            (0x32, Opcode::AsyncMessage),
            (0x3f, Opcode::Reject),
        ];
        for (code, op) in all {
            assert_eq!(Opcode::from_u8(code), Some(op));
            assert_eq!(op as u8, code);
            assert_eq!(op.is_initiator(), code < 0x20);
        }
        for reserved in [0x07, 0x1c, 0x1e, 0x27, 0x3c] {
            assert_eq!(Opcode::from_u8(reserved), None);
        }
    }

    #[test]
    fn initiator_pdus_roundtrip() {
        initiator_roundtrip(InitiatorPdu::NopOut(NopOut {
            immediate: true,
            lun: 0x0001_0000_0000_0000,
            itt: RESERVED_TAG,
            ttt: 0x55,
            cmd_sn: 9,
            exp_stat_sn: 10,
            data_segment_length: 12,
        }));
        initiator_roundtrip(InitiatorPdu::ScsiCommand(ScsiCommand {
            immediate: false,
            final_bit: false,
            read: true,
            write: true,
            attr: TaskAttribute::Ordered,
            lun: 3,
            itt: 0x1234,
            expected_data_transfer_length: 8192,
            cmd_sn: 77,
            exp_stat_sn: 78,
            cdb: [0x8a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            total_ahs_length_words: 3,
            data_segment_length: 4096,
        }));
        initiator_roundtrip(InitiatorPdu::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::AbortTask,
            lun: 1,
            itt: 2,
            referenced_task_tag: 3,
            cmd_sn: 4,
            exp_stat_sn: 5,
            ref_cmd_sn: 6,
            exp_data_sn: 7,
        }));
        initiator_roundtrip(InitiatorPdu::LoginRequest(LoginRequest {
            transit: true,
            continue_bit: false,
            csg: Stage::SecurityNegotiation,
            nsg: Some(Stage::LoginOperationalNegotiation),
            version_max: 0,
            version_min: 0,
            isid: Isid([0x80, 1, 2, 3, 4, 5]),
            tsih: 0,
            itt: 0,
            cid: 1,
            cmd_sn: 0,
            exp_stat_sn: 0,
            data_segment_length: 100,
        }));
        initiator_roundtrip(InitiatorPdu::TextRequest(TextRequest {
            immediate: true,
            final_bit: false,
            continue_bit: true,
            lun: 0,
            itt: 5,
            ttt: RESERVED_TAG,
            cmd_sn: 1,
            exp_stat_sn: 2,
            data_segment_length: 16,
        }));
        initiator_roundtrip(InitiatorPdu::ScsiDataOut(ScsiDataOut {
            final_bit: true,
            lun: 2,
            itt: 3,
            ttt: 4,
            exp_stat_sn: 5,
            data_sn: 6,
            buffer_offset: 65536,
            data_segment_length: 8192,
        }));
        initiator_roundtrip(InitiatorPdu::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: LogoutReason::CloseConnection,
            itt: 8,
            cid: 2,
            cmd_sn: 9,
            exp_stat_sn: 10,
        }));
        initiator_roundtrip(InitiatorPdu::SnackRequest(SnackRequest {
            snack_type: SnackType::Status,
            lun: 0,
            itt: RESERVED_TAG,
            ttt_or_snack_tag: 0,
            exp_stat_sn: 4,
            beg_run: 2,
            run_length: 0,
        }));
    }

    #[test]
    fn target_pdus_roundtrip() {
        target_roundtrip(TargetPdu::NopIn(NopIn {
            lun: 1,
            itt: RESERVED_TAG,
            ttt: 0x99,
            sns: SNS,
            data_segment_length: 0,
        }));
        target_roundtrip(TargetPdu::ScsiResponse(ScsiResponse {
            bidi_read_residual: Residual::Overflow(5),
            residual: Residual::Underflow(512),
            response: 0,
            status: 0x02,
            itt: 7,
            snack_tag: 0,
            sns: SNS,
            exp_data_sn: 3,
            data_segment_length: 20,
        }));
        target_roundtrip(TargetPdu::TaskMgmtResponse(TaskMgmtResponse {
            response: TmfResponse::TaskDoesNotExist,
            itt: 4,
            sns: SNS,
        }));
        target_roundtrip(TargetPdu::LoginResponse(LoginResponse {
            transit: true,
            continue_bit: false,
            csg: Stage::LoginOperationalNegotiation,
            nsg: Some(Stage::FullFeaturePhase),
            version_max: 0,
            version_active: 0,
            isid: Isid([1, 2, 3, 4, 5, 6]),
            tsih: 0x0102,
            itt: 9,
            sns: SNS,
            status: LoginStatus::Success,
            data_segment_length: 64,
        }));
        target_roundtrip(TargetPdu::TextResponse(TextResponse {
            final_bit: false,
            continue_bit: true,
            lun: 0,
            itt: 5,
            ttt: 0x77,
            sns: SNS,
            data_segment_length: 8192,
        }));
        target_roundtrip(TargetPdu::ScsiDataIn(ScsiDataIn {
            final_bit: true,
            acknowledge: false,
            status: Some(DataInStatus {
                status: 0,
                residual: Residual::Underflow(100),
                stat_sn: 41,
            }),
            lun: 0,
            itt: 6,
            ttt: RESERVED_TAG,
            exp_cmd_sn: 2,
            max_cmd_sn: 33,
            data_sn: 4,
            buffer_offset: 32768,
            data_segment_length: 8192,
        }));
        target_roundtrip(TargetPdu::ScsiDataIn(ScsiDataIn {
            final_bit: false,
            acknowledge: true,
            status: None,
            lun: 5,
            itt: 6,
            ttt: 7,
            exp_cmd_sn: 2,
            max_cmd_sn: 33,
            data_sn: 0,
            buffer_offset: 0,
            data_segment_length: 8192,
        }));
        target_roundtrip(TargetPdu::LogoutResponse(LogoutResponse {
            response: LogoutResponseCode::ClosedSuccessfully,
            itt: 8,
            sns: SNS,
            time2wait_s: 2,
            time2retain_s: 20,
        }));
        target_roundtrip(TargetPdu::R2t(R2t {
            lun: 1,
            itt: 2,
            ttt: 3,
            sns: SNS,
            r2t_sn: 4,
            buffer_offset: 5,
            desired_data_transfer_length: 262_144,
        }));
        target_roundtrip(TargetPdu::AsyncMessage(AsyncMessage {
            lun: 0,
            sns: SNS,
            async_event: AsyncEvent::LogoutRequested,
            async_vcode: 0,
            parameter1: 10,
            parameter2: 2,
            parameter3: 20,
            data_segment_length: 0,
        }));
        target_roundtrip(TargetPdu::Reject(Reject {
            reason: RejectReason::InvalidPduField,
            sns: SNS,
            data_sn_or_r2t_sn: 0,
        }));
    }

    #[test]
    fn data_in_status_collapse_sets_f_s_and_residual_bits() {
        let p = ScsiDataIn {
            final_bit: false, // S forces F
            acknowledge: false,
            status: Some(DataInStatus { status: 0, residual: Residual::Overflow(7), stat_sn: 9 }),
            lun: 0,
            itt: 1,
            ttt: RESERVED_TAG,
            exp_cmd_sn: 2,
            max_cmd_sn: 3,
            data_sn: 0,
            buffer_offset: 0,
            data_segment_length: 512,
        };
        let b = p.encode();
        assert_eq!(b.bytes[1], 0x80 | 0x04 | 0x01);
        assert_eq!(b.u32_at(24), 9);
        assert_eq!(b.u32_at(44), 7);
        assert_eq!(b.data_segment_length(), 512);
        let plain = ScsiDataIn { status: None, ..p }.encode();
        assert_eq!(plain.bytes[1], 0);
        assert_eq!(plain.u32_at(24), 0, "StatSN reserved without S");
        let mut bad = b;
        bad.bytes[1] = 0x01; // S without F
        assert!(matches!(ScsiDataIn::parse(&bad), Err(PduError::Protocol(_))));
        bad.bytes[1] = 0x02; // U without S
        assert!(ScsiDataIn::parse(&bad).is_err());
    }

    #[test]
    fn scsi_response_and_residual_bits() {
        let r = ScsiResponse {
            bidi_read_residual: Residual::None,
            residual: Residual::from_lengths(4096, 1024),
            response: 0,
            status: 0,
            itt: 1,
            snack_tag: 0,
            sns: SNS,
            exp_data_sn: 1,
            data_segment_length: 0,
        };
        let b = r.encode();
        assert_eq!(b.opcode(), Some(Opcode::ScsiResponse));
        assert_eq!(b.bytes[1], 0x80 | 0x02);
        assert_eq!(b.u32_at(44), 3072);
        assert_eq!(Residual::from_lengths(512, 1024), Residual::Overflow(512));
        assert_eq!(Residual::from_lengths(512, 512), Residual::None);
        let mut both = b;
        both.bytes[1] = 0x86;
        assert_eq!(
            ScsiResponse::parse(&both),
            Err(PduError::InvalidField("both overflow and underflow set"))
        );
    }

    #[test]
    fn reject_carries_offending_header() {
        let mut bad = Bhs::default();
        bad.bytes[0] = 0x1d;
        let err = InitiatorPdu::parse(&bad, LIMIT).expect_err("vendor opcode");
        assert_eq!(err, PduError::UnsupportedOpcode(0x1d));
        let rej = Reject { reason: err.reject_reason(), sns: SNS, data_sn_or_r2t_sn: 0 };
        let wire = rej.encode_with_header(&bad);
        assert_eq!(wire[0], 0x3f);
        assert_eq!(wire[1], 0x80);
        assert_eq!(wire[2], 0x05);
        assert_eq!(&wire[5..8], &[0, 0, 48]);
        assert_eq!(&wire[16..20], &[0xff; 4]);
        assert_eq!(&wire[48..], &bad.bytes[..]);
    }

    #[test]
    fn reject_reasons_match_rfc() {
        assert_eq!(PduError::DataDigest.reject_reason() as u8, 0x02);
        assert_eq!(PduError::Protocol("x").reject_reason() as u8, 0x04);
        assert_eq!(PduError::UnsupportedOpcode(0x1c).reject_reason() as u8, 0x05);
        assert_eq!(PduError::InvalidField("x").reject_reason() as u8, 0x09);
        assert_eq!(RejectReason::LongOpReject as u8, 0x0a);
        assert_eq!(RejectReason::WaitingForLogout as u8, 0x0c);
        assert_eq!(RejectReason::from_u8(0x0b), None, "0x0b is deprecated");
    }

    #[test]
    fn parse_validation() {
        // Target opcode from an initiator.
        let b = NopIn { lun: 0, itt: 1, ttt: 2, sns: SNS, data_segment_length: 0 }.encode();
        assert_eq!(InitiatorPdu::parse(&b, LIMIT), Err(PduError::UnexpectedOpcode(Opcode::NopIn)));

        // DataSegmentLength above MaxRecvDataSegmentLength.
        let mut b = ScsiDataOut {
            final_bit: true,
            lun: 0,
            itt: 1,
            ttt: 2,
            exp_stat_sn: 0,
            data_sn: 0,
            buffer_offset: 0,
            data_segment_length: 8193,
        }
        .encode();
        assert_eq!(
            InitiatorPdu::parse(&b, 8192),
            Err(PduError::DataSegmentTooLong { length_bytes: 8193, limit_bytes: 8192 })
        );
        // AHS on a Data-Out.
        b.set_lengths(1, 16);
        assert!(matches!(InitiatorPdu::parse(&b, 8192), Err(PduError::UnexpectedSegment(_))));

        // SCSI Command consistency.
        let cmd = ScsiCommand {
            immediate: false,
            final_bit: true,
            read: false,
            write: false,
            attr: TaskAttribute::Simple,
            lun: 0,
            itt: 1,
            expected_data_transfer_length: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            cdb: [0; 16],
            total_ahs_length_words: 0,
            data_segment_length: 0,
        };
        assert!(ScsiCommand::parse(&cmd.encode(), LIMIT).is_ok());
        let expected_transfer = ScsiCommand { expected_data_transfer_length: 512, ..cmd };
        assert!(matches!(
            ScsiCommand::parse(&expected_transfer.encode(), LIMIT),
            Err(PduError::InvalidField(_))
        ));
        let immediate = ScsiCommand { data_segment_length: 512, read: true, ..cmd };
        assert!(matches!(
            ScsiCommand::parse(&immediate.encode(), LIMIT),
            Err(PduError::Protocol(_))
        ));
        let not_final = ScsiCommand { final_bit: false, read: true, ..cmd };
        assert!(matches!(
            ScsiCommand::parse(&not_final.encode(), LIMIT),
            Err(PduError::Protocol(_))
        ));
        let mut attr = cmd.encode();
        attr.bytes[1] |= 0x07;
        assert!(matches!(ScsiCommand::parse(&attr, LIMIT), Err(PduError::InvalidField(_))));

        // Login: T and C, reserved stages.
        let login = LoginRequest {
            transit: false,
            continue_bit: true,
            csg: Stage::SecurityNegotiation,
            nsg: None,
            version_max: 0,
            version_min: 0,
            isid: Isid::default(),
            tsih: 0,
            itt: 0,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            data_segment_length: 0,
        };
        let mut b = login.encode();
        b.bytes[1] |= 0x80;
        assert!(matches!(LoginRequest::parse(&b, 8192), Err(PduError::Protocol(_))));
        let mut b = login.encode();
        b.bytes[1] = 0x80 | (2 << 2) | 3;
        assert!(matches!(LoginRequest::parse(&b, 8192), Err(PduError::InvalidField(_))));
        let mut b = login.encode();
        b.bytes[1] = 0x80 | 2;
        assert!(matches!(LoginRequest::parse(&b, 8192), Err(PduError::InvalidField(_))));

        // Text: F and C.
        let mut b = TextRequest {
            immediate: false,
            final_bit: true,
            continue_bit: false,
            lun: 0,
            itt: 1,
            ttt: RESERVED_TAG,
            cmd_sn: 0,
            exp_stat_sn: 0,
            data_segment_length: 0,
        }
        .encode();
        b.bytes[1] |= 0x40;
        assert!(matches!(TextRequest::parse(&b, LIMIT), Err(PduError::Protocol(_))));

        // NOP-Out with reserved ITT must be immediate.
        let nop = NopOut {
            immediate: false,
            lun: 0,
            itt: RESERVED_TAG,
            ttt: RESERVED_TAG,
            cmd_sn: 0,
            exp_stat_sn: 0,
            data_segment_length: 0,
        };
        assert!(matches!(NopOut::parse(&nop.encode(), LIMIT), Err(PduError::Protocol(_))));

        // Logout reason, SNACK type, TMF data segment, missing F bit.
        let mut b = LogoutRequest {
            immediate: true,
            reason: LogoutReason::CloseSession,
            itt: 1,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
        }
        .encode();
        b.bytes[1] = 0x80 | 3;
        assert!(matches!(LogoutRequest::parse(&b), Err(PduError::InvalidField(_))));
        b.bytes[1] = 0x00;
        assert_eq!(LogoutRequest::parse(&b), Err(PduError::InvalidField("F bit must be 1")));
        let mut b = SnackRequest {
            snack_type: SnackType::DataR2t,
            lun: 0,
            itt: 1,
            ttt_or_snack_tag: 0,
            exp_stat_sn: 0,
            beg_run: 0,
            run_length: 0,
        }
        .encode();
        b.bytes[1] = 0x80 | 4;
        assert!(matches!(SnackRequest::parse(&b), Err(PduError::InvalidField(_))));
        let mut b = TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::LogicalUnitReset,
            lun: 0,
            itt: 1,
            referenced_task_tag: RESERVED_TAG,
            cmd_sn: 0,
            exp_stat_sn: 0,
            ref_cmd_sn: 0,
            exp_data_sn: 0,
        }
        .encode();
        b.set_lengths(0, 4);
        assert!(matches!(TaskMgmtRequest::parse(&b), Err(PduError::UnexpectedSegment(_))));
        b.set_lengths(0, 0);
        b.bytes[1] = 0x80 | 0x7f;
        assert_eq!(TaskMgmtRequest::parse(&b).map(|t| t.function), Ok(TmfFunction::Other(0x7f)));
    }

    #[test]
    fn ahs_extended_cdb_and_bidi() {
        let ext: Vec<u8> = (16u8..32).collect();
        let ahs =
            Ahs { extended_cdb: Some(&ext), bidi_read_expected_data_transfer_length: Some(4096) };
        let mut bytes = Vec::new();
        let words = ahs.encode(&mut bytes);
        assert_eq!(usize::from(words) * 4, bytes.len());
        // Extended CDB: AHSLength = CDB length - 15 = 17.
        assert_eq!(&bytes[..4], &[0, 17, 1, 0]);
        assert_eq!(bytes.len(), 20 + 8);
        assert_eq!(&bytes[20..24], &[0, 5, 2, 0]);
        let parsed = Ahs::parse(&bytes).expect("valid AHS");
        assert_eq!(parsed, ahs);
        let base: [u8; 16] = core::array::from_fn(|i| u8::try_from(i).unwrap_or(0));
        let cdb = Cdb::assemble(&base, parsed.extended_cdb);
        assert_eq!(cdb.as_bytes().len(), 32);
        assert_eq!(cdb.as_bytes()[31], 31);
        assert_eq!(Cdb::assemble(&base, None).as_bytes(), &base);

        assert!(Ahs::parse(&[0, 0, 1, 0]).is_err(), "AHSLength 0");
        assert!(Ahs::parse(&[0, 9, 1, 0, 1, 2, 3, 4]).is_err(), "beyond total");
        assert!(Ahs::parse(&[0, 5, 3, 0, 0, 0, 0, 0]).is_err(), "unknown type");
        assert!(Ahs::parse(&[0, 4, 2, 0, 0, 0, 0, 0]).is_err(), "bidi length");
        assert!(Ahs::parse(&[0, 5, 2, 0, 0, 0, 0, 1, 0, 5, 2, 0, 0, 0, 0, 1]).is_err(), "dup");
        assert!(Ahs::parse(&[0, 5]).is_err(), "truncated");
        assert_eq!(Ahs::parse(&[]), Ok(Ahs::default()));
    }

    #[test]
    fn padding() {
        assert_eq!(pad_len(0), 0);
        assert_eq!(pad_len(1), 3);
        assert_eq!(pad_len(2), 2);
        assert_eq!(pad_len(3), 1);
        assert_eq!(pad_len(4), 0);
        assert_eq!(padded_len(5), 8);
        assert_eq!(padded_len(48), 48);
    }

    #[test]
    fn serial_number_arithmetic() {
        assert!(sn_lt(1, 2));
        assert!(!sn_lt(2, 1));
        assert!(sn_lt(0xffff_ffff, 0), "wraps");
        assert!(sn_gt(0, 0xffff_fff0));
        assert!(sn_le(5, 5) && sn_ge(5, 5));
        assert!(!sn_lt(5, 5) && !sn_gt(5, 5));
        // Exactly 2^31 apart: undefined, neither less nor greater.
        assert!(!sn_lt(0, 0x8000_0000) && !sn_gt(0, 0x8000_0000));
        assert!(sn_in_window(10, 10, 20));
        assert!(sn_in_window(20, 10, 20));
        assert!(!sn_in_window(21, 10, 20));
        assert!(!sn_in_window(9, 10, 20));
        assert!(sn_in_window(1, 0xffff_fffe, 3), "window across wrap");
        // MaxCmdSN = ExpCmdSN - 1: closed window.
        assert!(!sn_in_window(10, 10, 9));
    }

    #[test]
    fn login_status_codes() {
        assert_eq!(LoginStatus::NotFound.class(), 2);
        assert_eq!(LoginStatus::NotFound.detail(), 3);
        assert_eq!(LoginStatus::from_parts(2, 1), Some(LoginStatus::AuthenticationFailure));
        assert_eq!(LoginStatus::from_parts(3, 2), Some(LoginStatus::OutOfResources));
        assert_eq!(LoginStatus::from_parts(2, 0x0c), None);
    }

    #[test]
    fn sense_segment() {
        let mut out = Vec::new();
        let len = encode_sense_segment(&[0x70, 0, 5], &mut out);
        assert_eq!(len, 5);
        assert_eq!(out, [0, 3, 0x70, 0, 5]);
    }

    proptest! {
        #[test]
        fn initiator_parse_never_panics_and_reencodes(
            raw in proptest::array::uniform32(any::<u8>()),
            tail in proptest::array::uniform16(any::<u8>()),
            limit in 0u32..(1 << 24),
        ) {
            let mut bytes = [0u8; 48];
            bytes[..32].copy_from_slice(&raw);
            bytes[32..].copy_from_slice(&tail);
            let bhs = Bhs::from_bytes(bytes);
            if let Ok(pdu) = InitiatorPdu::parse(&bhs, limit) {
                // Encoding drops only ignored bits: parsing again gives the same header.
                prop_assert_eq!(InitiatorPdu::parse(&pdu.encode(), limit), Ok(pdu));
            }
            if let Ok(pdu) = TargetPdu::parse(&bhs) {
                prop_assert_eq!(TargetPdu::parse(&pdu.encode()), Ok(pdu));
            }
        }

        #[test]
        fn initiator_parse_with_valid_opcode(
            opcode in prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 6, 0x10]),
            flags in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 46),
        ) {
            let mut bytes = [0u8; 48];
            bytes[0] = opcode | 0x40;
            bytes[1] = flags;
            bytes[2..].copy_from_slice(&rest);
            bytes[4] = 0;
            let bhs = Bhs::from_bytes(bytes);
            if let Ok(pdu) = InitiatorPdu::parse(&bhs, MAX_DATA_SEGMENT_LENGTH) {
                prop_assert_eq!(InitiatorPdu::parse(&pdu.encode(), MAX_DATA_SEGMENT_LENGTH), Ok(pdu));
            }
        }

        #[test]
        fn ahs_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Ok(ahs) = Ahs::parse(&bytes) {
                if let Some(ext) = ahs.extended_cdb {
                    prop_assert!(Cdb::assemble(&[0; 16], Some(ext)).as_bytes().len() <= MAX_CDB_LEN);
                }
            }
        }

        #[test]
        fn serial_lt_is_antisymmetric(a in any::<u32>(), b in any::<u32>()) {
            prop_assert!(!(sn_lt(a, b) && sn_lt(b, a)));
            prop_assert_eq!(sn_lt(a, b), sn_gt(b, a));
        }
    }
}
