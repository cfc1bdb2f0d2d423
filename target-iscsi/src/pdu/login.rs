//! Login Request (RFC 7143 §11.12) and Login Response (§11.13): stages, ISID and login status.

use std::ops::Range;

use super::bhs::{data_limit, expect_opcode, no_ahs, CID, CMD_SN, EXP_STAT_SN, ITT};
use super::{Bhs, Opcode, PduError, StatusSns};

// BHS byte offsets of the fields that only the Login Request and Response (§11.12, §11.13) carry;
// the fields several PDUs share are in bhs.rs.

/// Version-max (1 byte).
const VERSION_MAX: usize = 2;
/// Version-min of a Login Request (1 byte).
const VERSION_MIN: usize = 3;
/// Version-active of a Login Response (1 byte).
const VERSION_ACTIVE: usize = 3;
/// ISID (6 bytes).
const ISID: Range<usize> = 8..14;
/// TSIH (2 bytes).
const TSIH: usize = 14;
/// Status-Class of a Login Response (1 byte).
const STATUS_CLASS: usize = 36;
/// Status-Detail of a Login Response (1 byte).
const STATUS_DETAIL: usize = 37;

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
        isid.copy_from_slice(&bhs.bytes[ISID]);
        Ok(Self {
            transit,
            continue_bit,
            csg,
            nsg,
            version_max: bhs.bytes[VERSION_MAX],
            version_min: bhs.bytes[VERSION_MIN],
            isid: Isid(isid),
            tsih: bhs.u16_at(TSIH),
            itt: bhs.itt(),
            cid: bhs.u16_at(CID),
            cmd_sn: bhs.u32_at(CMD_SN),
            exp_stat_sn: bhs.u32_at(EXP_STAT_SN),
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
        b.bytes[VERSION_MAX] = self.version_max;
        b.bytes[VERSION_MIN] = self.version_min;
        b.set_lengths(0, self.data_segment_length);
        b.bytes[ISID].copy_from_slice(&self.isid.0);
        b.set_u16(TSIH, self.tsih);
        b.set_u32(ITT, self.itt);
        b.set_u16(CID, self.cid);
        b.set_u32(CMD_SN, self.cmd_sn);
        b.set_u32(EXP_STAT_SN, self.exp_stat_sn);
        b
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
        b.bytes[VERSION_MAX] = self.version_max;
        b.bytes[VERSION_ACTIVE] = self.version_active;
        b.set_lengths(0, self.data_segment_length);
        b.bytes[ISID].copy_from_slice(&self.isid.0);
        b.set_u16(TSIH, self.tsih);
        b.set_u32(ITT, self.itt);
        self.sns.write(&mut b);
        b.bytes[STATUS_CLASS] = self.status.class();
        b.bytes[STATUS_DETAIL] = self.status.detail();
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
        isid.copy_from_slice(&bhs.bytes[ISID]);
        Ok(Self {
            transit,
            continue_bit,
            csg,
            nsg,
            version_max: bhs.bytes[VERSION_MAX],
            version_active: bhs.bytes[VERSION_ACTIVE],
            isid: Isid(isid),
            tsih: bhs.u16_at(TSIH),
            itt: bhs.itt(),
            sns: StatusSns::read(bhs),
            status: LoginStatus::from_parts(bhs.bytes[STATUS_CLASS], bhs.bytes[STATUS_DETAIL])
                .ok_or(PduError::InvalidField("unknown login status"))?,
            data_segment_length: bhs.data_segment_length(),
        })
    }
}
