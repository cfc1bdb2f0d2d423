//! The code tables of RFC 7143 §11: opcodes, task attributes, login stages and status, and the
//! reason, response and event codes of the PDUs that carry one. Each is declared once with
//! [`wire_enum!`], which derives its decoder (and, where a header field holds the code, its
//! [`BhsField`](super::layout::BhsField) codec) from the same list.

use super::layout::wire_enum;

wire_enum! {
    /// Every opcode of RFC 7143 §11.2.1.2; vendor-specific and reserved codes have no variant.
    pub enum Opcode: u8, from_u8, unknown = "unknown opcode" {
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
}

wire_enum! {
    /// SCSI task attributes (§11.3.1, ATTR field).
    pub enum TaskAttribute: u8, from_u8, unknown = "reserved task attribute" {
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
}

wire_enum! {
    /// Task management response codes (§11.6.1).
    pub enum TmfResponse: u8, from_u8, unknown = "unknown TMF response" {
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
}

wire_enum! {
    /// Login stages carried in CSG/NSG (§11.12.3).
    pub enum Stage: u8, from_u8, unknown = "reserved stage" {
        /// 0: SecurityNegotiation.
        SecurityNegotiation = 0,
        /// 1: LoginOperationalNegotiation.
        LoginOperationalNegotiation = 1,
        /// 3: FullFeaturePhase.
        FullFeaturePhase = 3,
    }
}

wire_enum! {
    /// Login status class and detail (§11.13.5), as one 16-bit code `class << 8 | detail`.
    pub enum LoginStatus: u16, from_u16, unknown = "unknown login status" {
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
}

wire_enum! {
    /// Logout reason codes (§11.14.1).
    pub enum LogoutReason: u8, from_u8, unknown = "reserved logout reason code" {
        /// 0 close the session.
        CloseSession = 0,
        /// 1 close the connection.
        CloseConnection = 1,
        /// 2 remove the connection for recovery.
        RemoveConnectionForRecovery = 2,
    }
}

wire_enum! {
    /// Logout response codes (§11.15.1).
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

wire_enum! {
    /// SNACK types (§11.16.1).
    pub enum SnackType: u8, from_u8, unknown = "reserved SNACK type" {
        /// 0 Data/R2T SNACK.
        DataR2t = 0,
        /// 1 Status SNACK.
        Status = 1,
        /// 2 DataACK.
        DataAck = 2,
        /// 3 R-Data SNACK.
        RData = 3,
    }
}

wire_enum! {
    /// Reject reason codes (RFC 7143 §11.17.1).
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

wire_enum! {
    /// AsyncEvent codes (§11.9.1).
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

impl Opcode {
    /// True for opcodes an initiator sends (0x00..0x1f).
    #[must_use]
    pub const fn is_initiator(self) -> bool {
        (self as u8) < 0x20
    }
}

impl Stage {
    /// Decodes a 2-bit stage code (the bits above are ignored); 2 is reserved.
    #[must_use]
    pub const fn from_bits(v: u8) -> Option<Self> {
        Self::from_u8(v & 3)
    }
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
        Self::from_u16(u16::from_be_bytes([class, detail]))
    }
}
