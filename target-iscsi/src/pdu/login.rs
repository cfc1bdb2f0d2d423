//! Login Request (RFC 7143 §11.12) and Login Response (§11.13): stages, ISID and login status.

use super::bhs::{data_limit, expect_opcode, no_ahs, CID, CMD_SN, EXP_STAT_SN, ITT, STAT_SN};
use super::layout::{bhs_layout, wire_enum, BhsField};
use super::{Bhs, Opcode, PduError, StatusSns};

/// ISID of a Login Request or Response (6 bytes).
const ISID: usize = 8;

/// Initiator Session ID (§11.12.5), 6 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Isid(pub [u8; 6]);

impl BhsField for Isid {
    type At = usize;

    #[inline]
    fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
        <[u8; 6]>::read(bhs, at).map(Self)
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: usize) {
        self.0.write(bhs, at);
    }
}

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

/// Byte 1 of a Login Request or Response: the T and C bits, CSG and NSG (§11.12.3).
fn stage_flags(transit: bool, continue_bit: bool, csg: Stage, nsg: Option<Stage>) -> u8 {
    u8::from(transit) << 7
        | u8::from(continue_bit) << 6
        | (csg as u8) << 2
        | nsg.map_or(0, |s| s as u8)
}

/// T, C, CSG and NSG (`None` without T) from byte 1 of a Login Request or Response. Refused: T
/// and C both set (`both_t_and_c` names the PDU), a reserved stage code, and CSG
/// FullFeaturePhase unless `full_feature_csg` allows it.
fn parse_stage_flags(
    flags: u8,
    both_t_and_c: &'static str,
    full_feature_csg: bool,
) -> Result<(bool, bool, Stage, Option<Stage>), PduError> {
    let transit = flags & 0x80 != 0;
    let continue_bit = flags & 0x40 != 0;
    if transit && continue_bit {
        return Err(PduError::Protocol(both_t_and_c));
    }
    let csg = match Stage::from_bits(flags >> 2) {
        Some(Stage::FullFeaturePhase) if !full_feature_csg => {
            return Err(PduError::InvalidField("reserved CSG"));
        }
        None => return Err(PduError::InvalidField("reserved CSG")),
        Some(stage) => stage,
    };
    let nsg = if transit {
        Some(Stage::from_bits(flags).ok_or(PduError::InvalidField("reserved NSG"))?)
    } else {
        None
    };
    Ok((transit, continue_bit, csg, nsg))
}

bhs_layout! {
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
        pub version_max: u8 [2],
        /// Version-min.
        pub version_min: u8 [3],
        /// ISID.
        pub isid: Isid [ISID],
        /// TSIH (0 for a new session).
        pub tsih: u16 [14],
        /// Initiator Task Tag.
        pub itt: u32 [ITT],
        /// Connection ID.
        pub cid: u16 [CID],
        /// CmdSN.
        pub cmd_sn: u32 [CMD_SN],
        /// ExpStatSN.
        pub exp_stat_sn: u32 [EXP_STAT_SN],
        /// Text length in bytes.
        pub data_segment_length: u32,
    }
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
        let (transit, continue_bit, csg, nsg) =
            parse_stage_flags(bhs.bytes[1], "Login Request with both T and C bits", false)?;
        Self::from_bhs(bhs, transit, continue_bit, csg, nsg, data_segment_length)
    }

    /// Encodes the header (the I bit is always set on Login Requests).
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LoginRequest, true);
        b.bytes[1] = stage_flags(self.transit, self.continue_bit, self.csg, self.nsg);
        b.set_lengths(0, self.data_segment_length);
        self.write_fields(&mut b);
        b
    }
}

wire_enum! {
    /// Login status class and detail (§11.13.5), as one 16-bit code `class << 8 | detail`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

bhs_layout! {
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
        pub version_max: u8 [2],
        /// Version-active.
        pub version_active: u8 [3],
        /// ISID echoed from the request.
        pub isid: Isid [ISID],
        /// TSIH (the new session's on the final response of a leading login).
        pub tsih: u16 [14],
        /// Initiator Task Tag echoed from the request.
        pub itt: u32 [ITT],
        /// StatSN / ExpCmdSN / MaxCmdSN.
        pub sns: StatusSns [STAT_SN],
        /// Status class and detail.
        pub status: LoginStatus [36],
        /// Text length in bytes.
        pub data_segment_length: u32,
    }
}

impl LoginResponse {
    /// The final response refusing a login whose request could not be parsed: `status` and
    /// `stat_sn`, with the ISID and ITT of `request` echoed and every other field zero (no T bit,
    /// stage SecurityNegotiation, version 0, TSIH 0, ExpCmdSN and MaxCmdSN 0, no text).
    #[must_use]
    pub fn refusal(request: &Bhs, status: LoginStatus, stat_sn: u32) -> Self {
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&request.bytes[ISID..ISID + 6]);
        Self {
            transit: false,
            continue_bit: false,
            csg: Stage::SecurityNegotiation,
            nsg: None,
            version_max: 0,
            version_active: 0,
            isid: Isid(isid),
            tsih: 0,
            itt: request.itt(),
            sns: StatusSns { stat_sn, exp_cmd_sn: 0, max_cmd_sn: 0 },
            status,
            data_segment_length: 0,
        }
    }

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LoginResponse, false);
        let nsg = if self.transit { self.nsg } else { None };
        b.bytes[1] = stage_flags(self.transit, self.continue_bit, self.csg, nsg);
        b.set_lengths(0, self.data_segment_length);
        self.write_fields(&mut b);
        b
    }

    /// Parses a Login Response (initiator side and tests).
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_opcode(bhs, Opcode::LoginResponse)?;
        no_ahs(bhs)?;
        let (transit, continue_bit, csg, nsg) =
            parse_stage_flags(bhs.bytes[1], "Login Response with both T and C bits", true)?;
        Self::from_bhs(bhs, transit, continue_bit, csg, nsg, bhs.data_segment_length())
    }
}
