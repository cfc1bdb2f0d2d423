//! Login Request (RFC 7143 §11.12) and Login Response (§11.13): stages, ISID and login status.

use super::bhs::{data_limit, expect_header, CID, CMD_SN, EXP_STAT_SN, ITT, NO_AHS, STAT_SN};
use super::layout::{bhs_layout, BhsField};
use super::{Bhs, LoginStatus, Opcode, PduError, Stage, StatusSns};

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

bhs_layout! {
    Opcode::LoginRequest => LoginRequest(
        transit: bool, continue_bit: bool, csg: Stage, nsg: Option<Stage>, data_segment_length: u32,
    ) {
        version_max @ 2, version_min @ 3, isid @ ISID, tsih @ 14, itt @ ITT, cid @ CID,
        cmd_sn @ CMD_SN, exp_stat_sn @ EXP_STAT_SN
    }
}

impl LoginRequest {
    /// Parses and validates a Login Request BHS.
    ///
    /// # Errors
    /// [`PduError`] on a malformed header (T and C both set, reserved stage codes...).
    pub fn parse(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::LoginRequest, NO_AHS)?;
        let data_segment_length = data_limit(bhs, max_recv_data_segment_length)?;
        let (transit, continue_bit, csg, nsg) =
            parse_stage_flags(bhs.bytes[1], "Login Request with both T and C bits", false)?;
        Self::from_bhs(bhs, transit, continue_bit, csg, nsg, data_segment_length)
    }

    /// Encodes the header (the I bit is always set on Login Requests).
    #[must_use]
    pub fn encode(&self) -> Bhs {
        self.encode_header(
            true,
            stage_flags(self.transit, self.continue_bit, self.csg, self.nsg),
            0,
            self.data_segment_length,
        )
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

bhs_layout! {
    Opcode::LoginResponse => LoginResponse(
        transit: bool, continue_bit: bool, csg: Stage, nsg: Option<Stage>, data_segment_length: u32,
    ) {
        version_max @ 2, version_active @ 3, isid @ ISID, tsih @ 14, itt @ ITT, sns @ STAT_SN,
        status @ 36
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
        let nsg = if self.transit { self.nsg } else { None };
        let flags = stage_flags(self.transit, self.continue_bit, self.csg, nsg);
        self.encode_header(false, flags, 0, self.data_segment_length)
    }

    /// Parses a Login Response (initiator side and tests).
    ///
    /// # Errors
    /// [`PduError`] on a malformed header.
    pub fn parse(bhs: &Bhs) -> Result<Self, PduError> {
        expect_header(bhs, Opcode::LoginResponse, NO_AHS)?;
        let (transit, continue_bit, csg, nsg) =
            parse_stage_flags(bhs.bytes[1], "Login Response with both T and C bits", true)?;
        Self::from_bhs(bhs, transit, continue_bit, csg, nsg, bhs.data_segment_length())
    }
}
