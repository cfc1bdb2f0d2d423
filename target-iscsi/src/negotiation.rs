//! Operational parameter negotiation (RFC 7143 §6.2 and §13) from the target's side.
//!
//! The initiator offers keys; [`Negotiator`] answers each with the value the RFC's result
//! function gives (list: first acceptable value in the initiator's order; numerical: minimum
//! or maximum; boolean: AND or OR), `Irrelevant` where the RFC says so, `NotUnderstood` for
//! keys it does not know and `Reject` for malformed or out-of-range values. What the
//! negotiation produced is read back as [`SessionParams`] and [`ConnectionParams`].
//!
//! Security keys (`AuthMethod`, `CHAP_*`) belong to the login state machine; here they are
//! only checked to be out of place.

use std::collections::HashSet;
use std::fmt;

use crate::digest::DigestKind;
use crate::pdu::{LoginStatus, Stage};
use crate::text::{bool_str, parse_bool, parse_number, KeyValue, TextBuilder};

/// MaxRecvDataSegmentLength that applies to every login PDU (RFC 7143 §13.12 default).
pub const LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;

/// iSCSIProtocolLevel this target implements (RFC 7144: 1 = RFC 7143).
pub const ISCSI_PROTOCOL_LEVEL: u64 = 1;

const MIN_SEGMENT: u64 = 512;
const MAX_SEGMENT: u64 = (1 << 24) - 1;

/// Discovery or Normal session (SessionType key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionType {
    /// SessionType=Discovery: SendTargets only.
    Discovery,
    /// SessionType=Normal (the default).
    #[default]
    Normal,
}

impl SessionType {
    /// Parses a SessionType value.
    #[must_use]
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "Discovery" => Some(Self::Discovery),
            "Normal" => Some(Self::Normal),
            _ => None,
        }
    }
}

/// Which digests the target accepts for HeaderDigest or DataDigest; the initiator's order
/// decides among the accepted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigestPolicy {
    /// Accept `None`.
    pub allow_none: bool,
    /// Accept `CRC32C`.
    pub allow_crc32c: bool,
}

impl Default for DigestPolicy {
    fn default() -> Self {
        Self { allow_none: true, allow_crc32c: true }
    }
}

impl DigestPolicy {
    fn allows(self, d: DigestKind) -> bool {
        match d {
            DigestKind::None => self.allow_none,
            DigestKind::Crc32c => self.allow_crc32c,
        }
    }
}

/// What this target can do and prefers; its side of every negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetLimits {
    /// MaxRecvDataSegmentLength the target declares (bytes it can receive per PDU).
    pub max_recv_data_segment_length: u32,
    /// Largest MaxBurstLength accepted, bytes.
    pub max_burst_length: u32,
    /// Largest FirstBurstLength accepted, bytes.
    pub first_burst_length: u32,
    /// Largest MaxOutstandingR2T accepted.
    pub max_outstanding_r2t: u16,
    /// Largest MaxConnections accepted.
    pub max_connections: u16,
    /// The target's ImmediateData value (AND).
    pub immediate_data: bool,
    /// The target's InitialR2T value (OR).
    pub initial_r2t: bool,
    /// The target's DataPDUInOrder value (OR).
    pub data_pdu_in_order: bool,
    /// The target's DataSequenceInOrder value (OR).
    pub data_sequence_in_order: bool,
    /// The target's DefaultTime2Wait, seconds (result is the maximum).
    pub default_time2wait_s: u16,
    /// The target's DefaultTime2Retain, seconds (result is the minimum).
    pub default_time2retain_s: u16,
    /// Highest ErrorRecoveryLevel implemented (ferrite: 0).
    pub error_recovery_level: u8,
    /// Accepted header digests.
    pub header_digest: DigestPolicy,
    /// Accepted data digests.
    pub data_digest: DigestPolicy,
    /// The target's RDMAExtensions value (AND; only an iSER transport says Yes).
    pub rdma_extensions: bool,
}

impl Default for TargetLimits {
    fn default() -> Self {
        Self {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            max_outstanding_r2t: 8,
            max_connections: 1,
            immediate_data: true,
            initial_r2t: false,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait_s: 2,
            default_time2retain_s: 20,
            error_recovery_level: 0,
            header_digest: DigestPolicy::default(),
            data_digest: DigestPolicy::default(),
            rdma_extensions: false,
        }
    }
}

/// Session-wide results (RFC 7143 §13 defaults until negotiated).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionParams {
    /// SessionType.
    pub session_type: SessionType,
    /// InitiatorName.
    pub initiator_name: Option<String>,
    /// InitiatorAlias.
    pub initiator_alias: Option<String>,
    /// TargetName (Normal sessions).
    pub target_name: Option<String>,
    /// MaxConnections.
    pub max_connections: u16,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxBurstLength, bytes.
    pub max_burst_length: u32,
    /// FirstBurstLength, bytes.
    pub first_burst_length: u32,
    /// DefaultTime2Wait, seconds.
    pub default_time2wait_s: u16,
    /// DefaultTime2Retain, seconds.
    pub default_time2retain_s: u16,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel.
    pub error_recovery_level: u8,
    /// iSCSIProtocolLevel (RFC 7144).
    pub iscsi_protocol_level: u8,
    /// RDMAExtensions (RFC 7145).
    pub rdma_extensions: bool,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            session_type: SessionType::Normal,
            initiator_name: None,
            initiator_alias: None,
            target_name: None,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait_s: 2,
            default_time2retain_s: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            iscsi_protocol_level: 0,
            rdma_extensions: false,
        }
    }
}

/// Per-connection results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionParams {
    /// HeaderDigest.
    pub header_digest: DigestKind,
    /// DataDigest.
    pub data_digest: DigestKind,
    /// Largest data segment the target accepts (its declared MaxRecvDataSegmentLength).
    pub max_recv_data_segment_length: u32,
    /// Largest data segment the target may send (the initiator's MaxRecvDataSegmentLength).
    pub max_xmit_data_segment_length: u32,
}

impl Default for ConnectionParams {
    fn default() -> Self {
        Self {
            header_digest: DigestKind::None,
            data_digest: DigestKind::None,
            max_recv_data_segment_length: LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH,
            max_xmit_data_segment_length: LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH,
        }
    }
}

/// A negotiation error that fails the login (Login Response status 0x0200, initiator error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    /// A key offered or declared a second time in this login (RFC 7143 §6.1).
    Renegotiated(String),
    /// A security key outside the security negotiation stage.
    SecurityKeyOutOfStage(String),
    /// A leading-only key in the login of a connection added to an existing session.
    LeadingOnlyKey(String),
    /// A key only a target may send arrived from the initiator.
    TargetOnlyKey(String),
    /// No digest both sides accept.
    NoAcceptableDigest(&'static str),
}

impl NegotiationError {
    /// Status for the failing Login Response.
    #[must_use]
    pub const fn login_status(&self) -> LoginStatus {
        LoginStatus::InitiatorError
    }
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Renegotiated(k) => write!(f, "key {k} negotiated twice"),
            Self::SecurityKeyOutOfStage(k) => write!(f, "security key {k} outside security stage"),
            Self::LeadingOnlyKey(k) => write!(f, "leading-only key {k} on a non-leading login"),
            Self::TargetOnlyKey(k) => write!(f, "target-only key {k} sent by the initiator"),
            Self::NoAcceptableDigest(k) => write!(f, "no acceptable {k}"),
        }
    }
}

impl std::error::Error for NegotiationError {}

/// True for the keys of the security stage (RFC 7143 §12).
#[must_use]
pub fn is_security_key(key: &str) -> bool {
    key == "AuthMethod"
        || key.starts_with("CHAP_")
        || key.starts_with("SRP_")
        || key.starts_with("KRB_")
        || key.starts_with("SPKM_")
}

/// How a boolean key's result is computed from the offer and our value (RFC 7143 §6.2.1).
#[derive(Clone, Copy)]
enum BoolResult {
    /// The OR of the two.
    Or,
    /// The AND of the two.
    And,
}

/// The answer to a boolean key offered as `value`: the result (`field`) combined from the
/// offer and `ours`, or Reject when the offer is not Yes or No.
fn answer_bool(value: &str, field: &mut bool, ours: bool, result: BoolResult) -> Answer {
    match parse_bool(value) {
        Some(v) => {
            *field = match result {
                BoolResult::Or => v || ours,
                BoolResult::And => v && ours,
            };
            Answer::Value(bool_str(*field).into())
        }
        None => reject(),
    }
}

/// Keys with "Use: LO" (leading-only) in RFC 7143 §13 and RFC 7144/7145: those irrelevant
/// in a discovery session, and six more.
fn is_leading_only(key: &str) -> bool {
    irrelevant_in_discovery(key)
        || matches!(
            key,
            "DefaultTime2Wait"
                | "DefaultTime2Retain"
                | "ErrorRecoveryLevel"
                | "SessionType"
                | "iSCSIProtocolLevel"
                | "RDMAExtensions"
        )
}

/// Keys "Irrelevant when: SessionType=Discovery" (all of them leading-only).
fn irrelevant_in_discovery(key: &str) -> bool {
    matches!(
        key,
        "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "TaskReporting"
    )
}

/// The answer to one offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Respond with this value.
    Value(String),
    /// Declarative key, no response.
    Silent,
}

fn reject() -> Answer {
    Answer::Value("Reject".into())
}

fn irrelevant() -> Answer {
    Answer::Value("Irrelevant".into())
}

fn number_in(value: &str, min: u64, max: u64) -> Option<u64> {
    parse_number(value).ok().filter(|v| (min..=max).contains(v))
}

fn to_u16(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Target side of one connection's login negotiation.
#[derive(Debug, Clone)]
pub struct Negotiator {
    limits: TargetLimits,
    leading: bool,
    session: SessionParams,
    connection: ConnectionParams,
    /// Keys the initiator has offered or declared during this login.
    seen: HashSet<String>,
    /// Keys the target offered and whose answer is still due.
    offered: HashSet<&'static str>,
    declared_recv_length: bool,
}

impl Negotiator {
    /// A negotiator for one connection login. `leading` is true when the login creates a new
    /// session (TSIH 0); `session_type` comes from the first Login Request.
    #[must_use]
    pub fn new(limits: TargetLimits, session_type: SessionType, leading: bool) -> Self {
        let session = SessionParams { session_type, ..SessionParams::default() };
        Self {
            limits,
            leading,
            session,
            connection: ConnectionParams::default(),
            seen: HashSet::new(),
            offered: HashSet::new(),
            declared_recv_length: false,
        }
    }

    /// The session parameters negotiated so far.
    #[must_use]
    pub fn session(&self) -> &SessionParams {
        &self.session
    }

    /// The connection parameters negotiated so far.
    #[must_use]
    pub fn connection(&self) -> &ConnectionParams {
        &self.connection
    }

    /// True while the target waits for answers to keys it offered.
    #[must_use]
    pub fn awaiting_answers(&self) -> bool {
        !self.offered.is_empty()
    }

    /// True once the initiator sent `key` during this login.
    #[must_use]
    pub fn has_seen(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    /// Answers every key of one request text (security keys excluded: the caller filters
    /// them in the security stage), appending the responses to `out`.
    ///
    /// # Errors
    /// [`NegotiationError`] when the login must fail.
    pub fn negotiate(
        &mut self,
        pairs: &[KeyValue<'_>],
        stage: Stage,
        out: &mut TextBuilder,
    ) -> Result<(), NegotiationError> {
        // FirstBurstLength depends on InitialR2T, ImmediateData and MaxBurstLength, which may
        // come later in the same text: answer it last.
        let (first_burst, others): (Vec<_>, Vec<_>) =
            pairs.iter().partition(|kv| kv.key == "FirstBurstLength");
        for kv in others.into_iter().chain(first_burst) {
            self.negotiate_one(kv, stage, out)?;
        }
        Ok(())
    }

    fn negotiate_one(
        &mut self,
        kv: &KeyValue<'_>,
        stage: Stage,
        out: &mut TextBuilder,
    ) -> Result<(), NegotiationError> {
        let key = kv.key;
        if is_security_key(key) && stage != Stage::SecurityNegotiation {
            return Err(NegotiationError::SecurityKeyOutOfStage(key.to_owned()));
        }
        if let Some(&offered) = self.offered.get(key) {
            self.offered.remove(offered);
            // Answered: a later appearance of the key is a renegotiation.
            self.seen.insert(offered.to_owned());
            self.accept_answer(offered, kv.value);
            return Ok(());
        }
        if !self.seen.insert(key.to_owned()) {
            return Err(NegotiationError::Renegotiated(key.to_owned()));
        }
        if !self.leading && is_leading_only(key) {
            return Err(NegotiationError::LeadingOnlyKey(key.to_owned()));
        }
        if matches!(key, "TargetPortalGroupTag" | "TargetAlias" | "TargetAddress") {
            return Err(NegotiationError::TargetOnlyKey(key.to_owned()));
        }
        let answer = if self.session.session_type == SessionType::Discovery
            && irrelevant_in_discovery(key)
        {
            irrelevant()
        } else {
            self.answer(key, kv.value, out)
        };
        if let Answer::Value(v) = answer {
            out.push(key, &v);
        }
        Ok(())
    }

    /// The answer to one key the initiator offered, recorded in the negotiated parameters.
    fn answer(&mut self, key: &str, value: &str, out: &mut TextBuilder) -> Answer {
        if let Some(answer) = self.answer_session_key(key, value) {
            return answer;
        }
        let l = self.limits;
        let s = &mut self.session;
        match key {
            "HeaderDigest" => match pick_digest(value, l.header_digest) {
                Some(d) => {
                    self.connection.header_digest = d;
                    Answer::Value(d.as_str().into())
                }
                None => reject(),
            },
            "DataDigest" => match pick_digest(value, l.data_digest) {
                Some(d) => {
                    self.connection.data_digest = d;
                    Answer::Value(d.as_str().into())
                }
                None => reject(),
            },
            "TaskReporting" => {
                if value.split(',').any(|v| v == "RFC3720") {
                    Answer::Value("RFC3720".into())
                } else {
                    reject()
                }
            }
            "MaxRecvDataSegmentLength" => match number_in(value, MIN_SEGMENT, MAX_SEGMENT) {
                Some(v) => {
                    self.connection.max_xmit_data_segment_length = to_u32(v);
                    self.declare_recv_length(out);
                    Answer::Silent
                }
                None => reject(),
            },
            "InitiatorName" => {
                s.initiator_name = Some(value.to_owned());
                Answer::Silent
            }
            "InitiatorAlias" => {
                s.initiator_alias = Some(value.to_owned());
                Answer::Silent
            }
            "TargetName" => {
                s.target_name = Some(value.to_owned());
                Answer::Silent
            }
            "SessionType" => {
                if SessionType::parse(value).is_some() {
                    Answer::Silent
                } else {
                    reject()
                }
            }
            // RFC 7143 §13.26: markers are obsolete. IFMarker/OFMarker MAY be answered "No";
            // the marker intervals MUST be answered "Reject".
            "IFMarker" | "OFMarker" => {
                if parse_bool(value).is_some() {
                    Answer::Value("No".into())
                } else {
                    reject()
                }
            }
            "IFMarkInt" | "OFMarkInt" => reject(),
            // Full-feature-phase only (Text Request), not a login key.
            "SendTargets" => irrelevant(),
            // Unknown standard keys, X- and X# extension keys (RFC 7143 §6.2, §13.5.2).
            _ => Answer::Value("NotUnderstood".into()),
        }
    }

    /// The answer to a session-wide numeric or boolean key (RFC 7143 §13: MaxConnections to
    /// iSCSIProtocolLevel), recorded in the session's parameters; `None` for any other key.
    fn answer_session_key(&mut self, key: &str, value: &str) -> Option<Answer> {
        let l = self.limits;
        let s = &mut self.session;
        Some(match key {
            "MaxConnections" => {
                min_u64(value, 1, 65535, u64::from(l.max_connections)).map_or_else(reject, |v| {
                    s.max_connections = to_u16(v);
                    Answer::Value(v.to_string())
                })
            }
            "InitialR2T" => answer_bool(value, &mut s.initial_r2t, l.initial_r2t, BoolResult::Or),
            "ImmediateData" => {
                answer_bool(value, &mut s.immediate_data, l.immediate_data, BoolResult::And)
            }
            "DataPDUInOrder" => {
                answer_bool(value, &mut s.data_pdu_in_order, l.data_pdu_in_order, BoolResult::Or)
            }
            "DataSequenceInOrder" => answer_bool(
                value,
                &mut s.data_sequence_in_order,
                l.data_sequence_in_order,
                BoolResult::Or,
            ),
            "RDMAExtensions" => {
                answer_bool(value, &mut s.rdma_extensions, l.rdma_extensions, BoolResult::And)
            }
            "MaxBurstLength" => {
                min_u64(value, MIN_SEGMENT, MAX_SEGMENT, u64::from(l.max_burst_length)).map_or_else(
                    reject,
                    |v| {
                        s.max_burst_length = to_u32(v);
                        Answer::Value(v.to_string())
                    },
                )
            }
            "FirstBurstLength" => {
                if s.initial_r2t && !s.immediate_data {
                    // No unsolicited data at all: RFC 7143 §13.14.
                    return Some(irrelevant());
                }
                // FirstBurstLength MUST NOT exceed MaxBurstLength.
                let ours = l.first_burst_length.min(s.max_burst_length);
                min_u64(value, MIN_SEGMENT, MAX_SEGMENT, u64::from(ours)).map_or_else(reject, |v| {
                    s.first_burst_length = to_u32(v);
                    Answer::Value(v.to_string())
                })
            }
            "DefaultTime2Wait" => number_in(value, 0, 3600).map_or_else(reject, |v| {
                let r = v.max(u64::from(l.default_time2wait_s));
                s.default_time2wait_s = to_u16(r);
                Answer::Value(r.to_string())
            }),
            "DefaultTime2Retain" => min_u64(value, 0, 3600, u64::from(l.default_time2retain_s))
                .map_or_else(reject, |v| {
                    s.default_time2retain_s = to_u16(v);
                    Answer::Value(v.to_string())
                }),
            "MaxOutstandingR2T" => min_u64(value, 1, 65535, u64::from(l.max_outstanding_r2t))
                .map_or_else(reject, |v| {
                    s.max_outstanding_r2t = to_u16(v);
                    Answer::Value(v.to_string())
                }),
            "ErrorRecoveryLevel" => min_u64(value, 0, 2, u64::from(l.error_recovery_level))
                .map_or_else(reject, |v| {
                    s.error_recovery_level = u8::try_from(v).unwrap_or(0);
                    Answer::Value(v.to_string())
                }),
            "iSCSIProtocolLevel" => {
                min_u64(value, 0, 31, ISCSI_PROTOCOL_LEVEL).map_or_else(reject, |v| {
                    s.iscsi_protocol_level = u8::try_from(v).unwrap_or(0);
                    Answer::Value(v.to_string())
                })
            }
            _ => return None,
        })
    }

    /// Appends the target's MaxRecvDataSegmentLength declaration once per login.
    pub fn declare_recv_length(&mut self, out: &mut TextBuilder) {
        if !self.declared_recv_length {
            self.declared_recv_length = true;
            self.connection.max_recv_data_segment_length = self.limits.max_recv_data_segment_length;
            out.push(
                "MaxRecvDataSegmentLength",
                &self.limits.max_recv_data_segment_length.to_string(),
            );
        }
    }

    /// Before the move to full feature phase: declares MaxRecvDataSegmentLength if the
    /// initiator never did, and offers the keys whose RFC default the target cannot honour
    /// (a MaxBurstLength or FirstBurstLength below the default, ImmediateData=No). Returns
    /// true when offers were made: the login must then stay in this stage (T=0) until the
    /// initiator answers.
    pub fn target_offers(&mut self, out: &mut TextBuilder) -> bool {
        self.declare_recv_length(out);
        if self.session.session_type == SessionType::Discovery || !self.leading {
            return false;
        }
        let l = self.limits;
        let d = SessionParams::default();
        let mut offers: Vec<(&'static str, String)> = Vec::new();
        if l.max_burst_length < d.max_burst_length {
            offers.push(("MaxBurstLength", l.max_burst_length.to_string()));
        }
        if l.first_burst_length < d.first_burst_length {
            offers.push(("FirstBurstLength", l.first_burst_length.to_string()));
        }
        if !l.immediate_data {
            offers.push(("ImmediateData", "No".into()));
        }
        let mut any = false;
        for (key, value) in offers {
            if !self.seen.contains(key) && !self.offered.contains(key) {
                // Our offer is also our final value unless the initiator lowers it.
                self.accept_answer(key, &value);
                self.offered.insert(key);
                out.push(key, &value);
                any = true;
            }
        }
        any
    }

    /// Records the initiator's answer to a key the target offered.
    fn accept_answer(&mut self, key: &'static str, value: &str) {
        let l = self.limits;
        let s = &mut self.session;
        match key {
            "MaxBurstLength" => {
                if let Some(v) =
                    min_u64(value, MIN_SEGMENT, MAX_SEGMENT, u64::from(l.max_burst_length))
                {
                    s.max_burst_length = to_u32(v);
                }
            }
            "FirstBurstLength" => {
                if let Some(v) =
                    min_u64(value, MIN_SEGMENT, MAX_SEGMENT, u64::from(l.first_burst_length))
                {
                    s.first_burst_length = to_u32(v);
                }
            }
            "ImmediateData" => {
                if let Some(v) = parse_bool(value) {
                    s.immediate_data = v && l.immediate_data;
                }
            }
            _ => {}
        }
    }

    /// The negotiated parameters, checked for consistency.
    ///
    /// # Errors
    /// [`NegotiationError::NoAcceptableDigest`] when the defaults that remain are not
    /// acceptable to the target (it requires a digest the initiator never offered).
    pub fn finish(mut self) -> Result<(SessionParams, ConnectionParams), NegotiationError> {
        if !self.limits.header_digest.allows(self.connection.header_digest) {
            return Err(NegotiationError::NoAcceptableDigest("HeaderDigest"));
        }
        if !self.limits.data_digest.allows(self.connection.data_digest) {
            return Err(NegotiationError::NoAcceptableDigest("DataDigest"));
        }
        let s = &mut self.session;
        s.first_burst_length = s.first_burst_length.min(s.max_burst_length);
        // The target's own limits hold even for keys the initiator left at the default.
        s.max_burst_length = s.max_burst_length.min(self.limits.max_burst_length);
        s.first_burst_length = s.first_burst_length.min(self.limits.first_burst_length);
        s.immediate_data = s.immediate_data && self.limits.immediate_data;
        s.max_outstanding_r2t = s.max_outstanding_r2t.min(self.limits.max_outstanding_r2t);
        s.error_recovery_level = s.error_recovery_level.min(self.limits.error_recovery_level);
        if self.declared_recv_length {
            self.connection.max_recv_data_segment_length = self.limits.max_recv_data_segment_length;
        }
        Ok((self.session, self.connection))
    }
}

/// Numerical value in `[min, max]`, answered with the minimum of it and `ours`.
fn min_u64(value: &str, min: u64, max: u64, ours: u64) -> Option<u64> {
    number_in(value, min, max).map(|v| v.min(ours))
}

/// First digest of the initiator's list the policy accepts.
fn pick_digest(list: &str, policy: DigestPolicy) -> Option<DigestKind> {
    list.split(',').find_map(|v| {
        let d = match v {
            "None" => DigestKind::None,
            "CRC32C" => DigestKind::Crc32c,
            _ => return None,
        };
        policy.allows(d).then_some(d)
    })
}

#[cfg(test)]
mod tests;
