//! The login phase of one connection (RFC 7143 §6.3 and §11.12-13), as a pure state machine:
//! Login Request header and text in, Login Response fields and text out, plus an outcome
//! (continue, full feature phase, or failure with the §11.13.5 status). No sockets here.
//!
//! Stages: SecurityNegotiation (0) → LoginOperationalNegotiation (1) → FullFeaturePhase (3).
//! The initiator asks to move on with the T bit; the target agrees by echoing T=1 with the
//! same NSG once authentication is done and it has nothing left to ask.

use std::fmt;

use crate::chap::{ChapCredentials, ChapExchange, ChapReply};
use crate::negotiation::{
    is_security_key, ConnectionParams, Negotiator, SessionParams, SessionType, TargetLimits,
    LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH,
};
use crate::pdu::{Isid, LoginRequest, LoginResponse, LoginStatus, Stage, StatusSns};
use crate::text::{parse_pairs, KeyValue, TextAssembler, TextBuilder};

/// The only iSCSI version defined (Version-max/Version-min/Version-active = 0).
pub const ISCSI_VERSION: u8 = 0;

/// One iSCSI target node served by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// iSCSI name (IQN or EUI) the initiator logs in to.
    pub name: String,
    /// TargetAlias sent to initiators, if any.
    pub alias: Option<String>,
    /// Target portal group tag of the portals serving this target.
    pub portal_group_tag: u16,
    /// Initiator names allowed to log in; `None` allows every initiator.
    pub acl: Option<Vec<String>>,
    /// CHAP credentials required to log in; `None` means no authentication.
    pub chap: Option<ChapCredentials>,
}

impl TargetConfig {
    /// True when `initiator_name` may see and log in to this target.
    #[must_use]
    pub fn allows(&self, initiator_name: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.iter().any(|n| n == initiator_name))
    }
}

/// What the login state machine needs to know about this target process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginConfig {
    /// Target nodes.
    pub targets: Vec<TargetConfig>,
    /// CHAP credentials required for discovery sessions; `None` means none required.
    pub discovery_chap: Option<ChapCredentials>,
    /// The target's negotiation limits.
    pub limits: TargetLimits,
}

impl LoginConfig {
    /// Index of the target named `name`.
    #[must_use]
    pub fn find_target(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }
}

/// Discovery or Normal session, and for Normal sessions which target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// SessionType=Discovery.
    Discovery,
    /// SessionType=Normal, logged in to `config.targets[target_index]`.
    Normal {
        /// Index into [`LoginConfig::targets`].
        target_index: usize,
    },
}

/// Everything the session layer needs once a login reaches full feature phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResult {
    /// Session-wide negotiated values.
    pub session: SessionParams,
    /// Connection negotiated values.
    pub connection: ConnectionParams,
    /// Discovery or Normal (and which target).
    pub kind: SessionKind,
    /// InitiatorName.
    pub initiator_name: String,
    /// ISID.
    pub isid: Isid,
    /// TSIH the initiator sent: 0 to create a session, else the session to add a connection
    /// to (the session layer checks it exists; status 0x020a if not).
    pub tsih_requested: u16,
    /// Connection ID.
    pub cid: u16,
}

/// Result of one login step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Send the response and wait for the next Login Request.
    Continue,
    /// Send the response (after setting TSIH and the sequence numbers) and enter full
    /// feature phase.
    FullFeature(Box<LoginResult>),
    /// Send the response (it carries the failure status) and close the connection.
    Fail(LoginStatus),
}

/// The Login Response to send for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginReply {
    /// Response header. StatSN/ExpCmdSN/MaxCmdSN are zero and TSIH is the requested one:
    /// the session layer sets them before encoding.
    pub response: LoginResponse,
    /// Response text (`key=value\0` pairs), at most 8192 bytes.
    pub text: Vec<u8>,
    /// What happens next.
    pub outcome: LoginOutcome,
}

#[derive(Debug, Clone)]
enum Auth {
    /// Waiting for AuthMethod.
    NeedMethod,
    /// AuthMethod=CHAP chosen, waiting for CHAP_A.
    ChapAlgorithm,
    /// Challenge sent, waiting for CHAP_N/CHAP_R.
    ChapResponse(ChapExchange),
    /// Authentication finished (or not required).
    Done,
}

#[derive(Debug, Clone)]
struct Established {
    initiator_name: String,
    kind: SessionKind,
    isid: Isid,
    tsih: u16,
    cid: u16,
    chap: Option<ChapCredentials>,
    negotiator: Negotiator,
    auth: Auth,
    /// Stage the next request must be in.
    stage: Stage,
}

#[derive(Debug, Clone)]
enum State {
    /// No complete request seen yet.
    Initial,
    /// Login in progress.
    Negotiating(Box<Established>),
    /// Full feature phase reached or login failed: no more login requests.
    Finished,
}

/// What a login asks for, by its first complete request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimedSession {
    /// SessionType=Discovery.
    Discovery,
    /// A configured target, by index into [`LoginConfig::targets`].
    Target(usize),
    /// A target that is not configured, or none named.
    Unknown,
}

/// Who a login says it is and what it asks for, from its first complete request: known even
/// when the login then fails (for the failure's log line and metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// InitiatorName, when given.
    pub initiator_name: Option<String>,
    /// The session asked for.
    pub session: ClaimedSession,
}

impl Claim {
    fn of(config: &LoginConfig, pairs: &[KeyValue<'_>]) -> Claim {
        let get = |k: &str| pairs.iter().find(|kv| kv.key == k).map(|kv| kv.value);
        let session = if get("SessionType") == Some("Discovery") {
            ClaimedSession::Discovery
        } else {
            get("TargetName")
                .and_then(|name| config.find_target(name))
                .map_or(ClaimedSession::Unknown, ClaimedSession::Target)
        };
        Claim { initiator_name: get("InitiatorName").map(str::to_owned), session }
    }
}

/// Login state machine of one connection.
#[derive(Debug, Clone)]
pub struct Login {
    state: State,
    assembler: TextAssembler,
    claim: Option<Claim>,
}

impl Default for Login {
    fn default() -> Self {
        Self::new()
    }
}

/// Error inside a step: a status to fail the login with.
struct Failure(LoginStatus);

impl From<LoginStatus> for Failure {
    fn from(s: LoginStatus) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({:?})", self.0)
    }
}

impl Login {
    /// A new connection's login.
    #[must_use]
    pub fn new() -> Self {
        Self { state: State::Initial, assembler: TextAssembler::default(), claim: None }
    }

    /// Who the login claims to be, once its first complete request arrived.
    #[must_use]
    pub fn claim(&self) -> Option<&Claim> {
        self.claim.as_ref()
    }

    /// Processes one Login Request (`data` is its data segment, without padding).
    pub fn step(&mut self, config: &LoginConfig, req: &LoginRequest, data: &[u8]) -> LoginReply {
        let mut reply = LoginReply {
            response: LoginResponse {
                transit: false,
                continue_bit: false,
                csg: req.csg,
                nsg: None,
                version_max: ISCSI_VERSION,
                version_active: ISCSI_VERSION,
                isid: req.isid,
                tsih: req.tsih,
                itt: req.itt,
                sns: StatusSns::default(),
                status: LoginStatus::Success,
                data_segment_length: 0,
            },
            text: Vec::new(),
            outcome: LoginOutcome::Continue,
        };
        match self.step_inner(config, req, data, &mut reply) {
            Ok(()) => {}
            Err(Failure(status)) => {
                self.state = State::Finished;
                reply.response.transit = false;
                reply.response.nsg = None;
                reply.response.status = status;
                reply.text.clear();
                reply.outcome = LoginOutcome::Fail(status);
            }
        }
        if matches!(reply.outcome, LoginOutcome::FullFeature(_)) {
            self.state = State::Finished;
        }
        reply.response.data_segment_length = u32::try_from(reply.text.len()).unwrap_or(0);
        reply
    }

    fn step_inner(
        &mut self,
        config: &LoginConfig,
        req: &LoginRequest,
        data: &[u8],
        reply: &mut LoginReply,
    ) -> Result<(), Failure> {
        if matches!(self.state, State::Finished) {
            return Err(LoginStatus::InvalidDuringLogin.into());
        }
        if req.version_min > ISCSI_VERSION {
            return Err(LoginStatus::UnsupportedVersion.into());
        }
        if req.data_segment_length > LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH {
            return Err(LoginStatus::InitiatorError.into());
        }
        if let State::Negotiating(est) = &self.state {
            if est.isid != req.isid || est.tsih != req.tsih || est.cid != req.cid {
                return Err(LoginStatus::InitiatorError.into());
            }
            if est.stage != req.csg {
                return Err(LoginStatus::InitiatorError.into());
            }
        }
        let Some(text) = self
            .assembler
            .push(data, req.continue_bit)
            .map_err(|_| Failure(LoginStatus::InitiatorError))?
        else {
            // Text continues: acknowledge with an empty response in the same stage.
            return Ok(());
        };
        let pairs = parse_pairs(&text).map_err(|_| Failure(LoginStatus::InitiatorError))?;
        let mut out = TextBuilder::new();
        if matches!(self.state, State::Initial) {
            self.claim = Some(Claim::of(config, &pairs));
            let est = Self::establish(config, req, &pairs, &mut out)?;
            self.state = State::Negotiating(Box::new(est));
        }
        let State::Negotiating(est) = &mut self.state else {
            return Err(LoginStatus::TargetError.into());
        };
        if req.transit {
            match req.nsg {
                Some(nsg) if nsg > req.csg => {}
                _ => return Err(LoginStatus::InitiatorError.into()),
            }
        }
        match req.csg {
            Stage::SecurityNegotiation => security_stage(est, req, &pairs, &mut out, reply)?,
            Stage::LoginOperationalNegotiation => {
                est.negotiator
                    .negotiate(&pairs, req.csg, &mut out)
                    .map_err(|e| Failure(e.login_status()))?;
                if req.transit {
                    transit(est, req, &mut out, reply)?;
                }
            }
            Stage::FullFeaturePhase => return Err(LoginStatus::InitiatorError.into()),
        }
        if out.len() > LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH as usize {
            // Only a hostile flood of unknown keys gets here; the initiator must not be sent
            // more than 8192 bytes per login PDU.
            return Err(LoginStatus::InitiatorError.into());
        }
        reply.text = out.into_bytes();
        Ok(())
    }

    /// First complete request: who is logging in to what, and is it allowed.
    fn establish(
        config: &LoginConfig,
        req: &LoginRequest,
        pairs: &[KeyValue<'_>],
        out: &mut TextBuilder,
    ) -> Result<Established, Failure> {
        let get = |k: &str| pairs.iter().find(|kv| kv.key == k).map(|kv| kv.value);
        let initiator_name = get("InitiatorName")
            .filter(|v| !v.is_empty())
            .ok_or(Failure(LoginStatus::MissingParameter))?;
        let session_type = match get("SessionType") {
            None => SessionType::Normal,
            Some(v) => {
                SessionType::parse(v).ok_or(Failure(LoginStatus::SessionTypeNotSupported))?
            }
        };
        let leading = req.tsih == 0;
        if session_type == SessionType::Discovery && !leading {
            return Err(LoginStatus::SessionTypeNotSupported.into());
        }
        let (kind, chap) = match session_type {
            SessionType::Discovery => (SessionKind::Discovery, config.discovery_chap.clone()),
            SessionType::Normal => {
                let name = get("TargetName").ok_or(Failure(LoginStatus::MissingParameter))?;
                let index = config.find_target(name).ok_or(Failure(LoginStatus::NotFound))?;
                let target = &config.targets[index];
                if !target.allows(initiator_name) {
                    return Err(LoginStatus::AuthorizationFailure.into());
                }
                // RFC 7143 §13.9: TargetPortalGroupTag in the response to the first complete
                // Login Request naming a target; TargetAlias when configured.
                out.push("TargetPortalGroupTag", &target.portal_group_tag.to_string());
                if let Some(alias) = &target.alias {
                    out.push("TargetAlias", alias);
                }
                (SessionKind::Normal { target_index: index }, target.chap.clone())
            }
        };
        if chap.is_some() && req.csg != Stage::SecurityNegotiation {
            // Authentication required but the initiator skipped the security stage.
            return Err(LoginStatus::AuthenticationFailure.into());
        }
        let auth = if chap.is_none() && req.csg != Stage::SecurityNegotiation {
            Auth::Done
        } else {
            Auth::NeedMethod
        };
        Ok(Established {
            initiator_name: initiator_name.to_owned(),
            kind,
            isid: req.isid,
            tsih: req.tsih,
            cid: req.cid,
            chap,
            negotiator: Negotiator::new(config.limits, session_type, leading),
            auth,
            stage: req.csg,
        })
    }
}

/// Security stage: AuthMethod and CHAP keys go to the authentication machine, the rest to
/// the negotiator.
fn security_stage(
    est: &mut Established,
    req: &LoginRequest,
    pairs: &[KeyValue<'_>],
    out: &mut TextBuilder,
    reply: &mut LoginReply,
) -> Result<(), Failure> {
    let (security, operational): (Vec<KeyValue<'_>>, Vec<KeyValue<'_>>) =
        pairs.iter().partition(|kv| is_security_key(kv.key));
    authenticate(est, &security, out)?;
    est.negotiator.negotiate(&operational, req.csg, out).map_err(|e| Failure(e.login_status()))?;
    if req.transit && matches!(est.auth, Auth::Done) {
        transit(est, req, out, reply)?;
    } else if req.transit && matches!(est.auth, Auth::NeedMethod) && est.chap.is_none() {
        // The initiator skipped AuthMethod and no authentication is required.
        est.auth = Auth::Done;
        transit(est, req, out, reply)?;
    }
    Ok(())
}

fn authenticate(
    est: &mut Established,
    security: &[KeyValue<'_>],
    out: &mut TextBuilder,
) -> Result<(), Failure> {
    let get = |k: &str| security.iter().find(|kv| kv.key == k).map(|kv| kv.value);
    let auth_failure = || Failure(LoginStatus::AuthenticationFailure);
    if let Some(methods) = get("AuthMethod") {
        if !matches!(est.auth, Auth::NeedMethod) {
            return Err(LoginStatus::InitiatorError.into());
        }
        // The target supports exactly one method: CHAP when credentials are configured,
        // None otherwise. The first acceptable value in the initiator's list wins.
        let wanted = if est.chap.is_some() { "CHAP" } else { "None" };
        if !methods.split(',').any(|m| m == wanted) {
            return Err(auth_failure());
        }
        out.push("AuthMethod", wanted);
        est.auth = if est.chap.is_some() { Auth::ChapAlgorithm } else { Auth::Done };
    }
    let chap_keys = security.iter().any(|kv| kv.key.starts_with("CHAP_"));
    let unknown = security.iter().any(|kv| {
        !matches!(kv.key, "AuthMethod" | "CHAP_A" | "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C")
    });
    if unknown {
        // SRP_, KRB_, SPKM_ keys of methods never chosen.
        return Err(LoginStatus::InitiatorError.into());
    }
    match &est.auth {
        Auth::ChapAlgorithm => {
            if let Some(a) = get("CHAP_A") {
                let ex = ChapExchange::start(a, out).map_err(|_| auth_failure())?;
                est.auth = Auth::ChapResponse(ex);
            } else if get("AuthMethod").is_none() {
                return Err(auth_failure());
            }
        }
        Auth::ChapResponse(ex) => {
            let creds = est.chap.as_ref().ok_or_else(auth_failure)?;
            let chap_reply = ChapReply {
                name: get("CHAP_N"),
                response: get("CHAP_R"),
                identifier: get("CHAP_I"),
                challenge: get("CHAP_C"),
            };
            ex.verify(creds, &chap_reply, out).map_err(|_| auth_failure())?;
            est.auth = Auth::Done;
        }
        Auth::NeedMethod => {
            if chap_keys {
                return Err(LoginStatus::InitiatorError.into());
            }
            if est.chap.is_some() && get("AuthMethod").is_none() {
                return Err(auth_failure());
            }
        }
        Auth::Done => {
            if chap_keys && get("AuthMethod").is_none() {
                return Err(LoginStatus::InitiatorError.into());
            }
        }
    }
    Ok(())
}

/// The initiator asked to move to `req.nsg`; agree unless the target still has offers out.
fn transit(
    est: &mut Established,
    req: &LoginRequest,
    out: &mut TextBuilder,
    reply: &mut LoginReply,
) -> Result<(), Failure> {
    let Some(nsg) = req.nsg else {
        return Err(LoginStatus::InitiatorError.into());
    };
    if nsg == Stage::FullFeaturePhase {
        if est.negotiator.target_offers(out) || est.negotiator.awaiting_answers() {
            return Ok(()); // T=0: wait for the answers.
        }
        let (session, connection) =
            est.negotiator.clone().finish().map_err(|e| Failure(e.login_status()))?;
        reply.outcome = LoginOutcome::FullFeature(Box::new(LoginResult {
            session,
            connection,
            kind: est.kind,
            initiator_name: est.initiator_name.clone(),
            isid: est.isid,
            tsih_requested: est.tsih,
            cid: est.cid,
        }));
    }
    reply.response.transit = true;
    reply.response.nsg = Some(nsg);
    est.stage = nsg;
    Ok(())
}

/// A portal address reported in SendTargets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Portal {
    /// Host: DNS name, dotted IPv4, or IPv6 (brackets added when missing).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Which targets a SendTargets request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTargetsScope<'a> {
    /// `SendTargets=All` (discovery sessions).
    All,
    /// `SendTargets=<iSCSI name>`, or the session's own target for an empty value in a
    /// Normal session.
    Named(&'a str),
}

impl<'a> SendTargetsScope<'a> {
    /// Interprets the SendTargets value; `session_target` is the target of a Normal session.
    /// `None` for a value the session may not ask (`All` outside discovery, empty in
    /// discovery).
    #[must_use]
    pub fn parse(value: &'a str, session_target: Option<&'a str>) -> Option<Self> {
        match (value, session_target) {
            ("All", None) => Some(Self::All),
            ("All", Some(_)) => None,
            ("", Some(own)) => Some(Self::Named(own)),
            ("", None) => None,
            (name, _) => Some(Self::Named(name)),
        }
    }
}

/// The SendTargets response text (RFC 7143 Appendix C): for each target the initiator may
/// see, `TargetName=` followed by one `TargetAddress=host:port,tpgt` per portal.
#[must_use]
pub fn send_targets(
    config: &LoginConfig,
    portals: &[Portal],
    initiator_name: &str,
    which: SendTargetsScope<'_>,
) -> Vec<u8> {
    let mut out = TextBuilder::new();
    for target in &config.targets {
        let wanted = match which {
            SendTargetsScope::All => true,
            SendTargetsScope::Named(name) => target.name == name,
        };
        if !wanted || !target.allows(initiator_name) {
            continue;
        }
        out.push("TargetName", &target.name);
        for portal in portals {
            let host = if portal.host.contains(':') && !portal.host.starts_with('[') {
                format!("[{}]", portal.host)
            } else {
                portal.host.clone()
            };
            out.push(
                "TargetAddress",
                &format!("{host}:{},{}", portal.port, target.portal_group_tag),
            );
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chap::{ChapAlgorithm, ChapSecret};
    use crate::text::{encode_hex, parse_binary};

    const INITIATOR: &str = "iqn.2024-01.org.example:host1";
    const TARGET: &str = "iqn.2024-01.org.ferrite:disk0";

    fn chap_creds(mutual: bool) -> ChapCredentials {
        ChapCredentials {
            initiator: ChapSecret { username: "user".into(), secret: b"initiator-pass".to_vec() },
            mutual: mutual
                .then(|| ChapSecret { username: "tgt".into(), secret: b"target-pass-1".to_vec() }),
        }
    }

    fn config() -> LoginConfig {
        LoginConfig {
            targets: vec![
                TargetConfig {
                    name: TARGET.into(),
                    alias: Some("disk zero".into()),
                    portal_group_tag: 1,
                    acl: None,
                    chap: None,
                },
                TargetConfig {
                    name: "iqn.2024-01.org.ferrite:secure".into(),
                    alias: None,
                    portal_group_tag: 2,
                    acl: Some(vec![INITIATOR.into()]),
                    chap: Some(chap_creds(true)),
                },
                TargetConfig {
                    name: "iqn.2024-01.org.ferrite:private".into(),
                    alias: None,
                    portal_group_tag: 1,
                    acl: Some(vec!["iqn.2024-01.org.example:other".into()]),
                    chap: None,
                },
            ],
            discovery_chap: None,
            limits: TargetLimits::default(),
        }
    }

    fn req(csg: Stage, nsg: Option<Stage>) -> LoginRequest {
        LoginRequest {
            transit: nsg.is_some(),
            continue_bit: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: Isid([0x40, 0, 0, 0x23, 0x3d, 0]),
            tsih: 0,
            itt: 0x1000,
            cid: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            data_segment_length: 0,
        }
    }

    fn text(s: &str) -> Vec<u8> {
        let mut v = s.replace(';', "\0").into_bytes();
        v.push(0);
        v
    }

    fn step(l: &mut Login, c: &LoginConfig, r: LoginRequest, t: &str) -> LoginReply {
        let data = if t.is_empty() { Vec::new() } else { text(t) };
        let r = LoginRequest { data_segment_length: u32::try_from(data.len()).unwrap_or(0), ..r };
        l.step(c, &r, &data)
    }

    fn value(reply: &LoginReply, key: &str) -> Option<String> {
        parse_pairs(&reply.text)
            .expect("valid response")
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.to_owned())
    }

    const OPS: &str = "HeaderDigest=None;DataDigest=None;InitialR2T=No;ImmediateData=Yes;\
        MaxBurstLength=262144;FirstBurstLength=65536;MaxRecvDataSegmentLength=65536;\
        DefaultTime2Wait=2;DefaultTime2Retain=0;MaxConnections=1;MaxOutstandingR2T=1;\
        ErrorRecoveryLevel=0;DataPDUInOrder=Yes;DataSequenceInOrder=Yes;IFMarker=No;OFMarker=No";

    fn expect_full(reply: &LoginReply) -> LoginResult {
        match &reply.outcome {
            LoginOutcome::FullFeature(r) => (**r).clone(),
            other => panic!("expected full feature, got {other:?}"),
        }
    }

    #[test]
    fn normal_login_without_auth_straight_to_operational() {
        let c = config();
        let mut l = Login::new();
        let t = format!("InitiatorName={INITIATOR};SessionType=Normal;TargetName={TARGET};{OPS}");
        let r = step(
            &mut l,
            &c,
            req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase)),
            &t,
        );
        assert_eq!(r.response.status, LoginStatus::Success);
        assert!(r.response.transit);
        assert_eq!(r.response.nsg, Some(Stage::FullFeaturePhase));
        assert_eq!(value(&r, "TargetPortalGroupTag").as_deref(), Some("1"));
        assert_eq!(value(&r, "TargetAlias").as_deref(), Some("disk zero"));
        assert_eq!(value(&r, "MaxRecvDataSegmentLength").as_deref(), Some("262144"));
        assert_eq!(value(&r, "InitialR2T").as_deref(), Some("No"));
        let res = expect_full(&r);
        assert_eq!(res.kind, SessionKind::Normal { target_index: 0 });
        assert_eq!(res.initiator_name, INITIATOR);
        assert_eq!(res.tsih_requested, 0);
        assert_eq!(res.connection.max_xmit_data_segment_length, 65536);
        assert_eq!(res.session.default_time2retain_s, 0);
        // Encoded header round-trips and carries the stage bits.
        let bhs = r.response.encode();
        assert_eq!(bhs.bytes[1], 0x80 | (1 << 2) | 3);
        assert_eq!(r.response.data_segment_length as usize, r.text.len());
        // No further login requests.
        let again = step(&mut l, &c, req(Stage::LoginOperationalNegotiation, None), "");
        assert!(matches!(again.outcome, LoginOutcome::Fail(_)));
    }

    #[test]
    fn security_stage_none_then_operational() {
        let c = config();
        let mut l = Login::new();
        let t = format!("InitiatorName={INITIATOR};TargetName={TARGET};AuthMethod=CHAP,None");
        let r = step(
            &mut l,
            &c,
            req(Stage::SecurityNegotiation, Some(Stage::LoginOperationalNegotiation)),
            &t,
        );
        assert_eq!(value(&r, "AuthMethod").as_deref(), Some("None"));
        assert!(r.response.transit);
        assert_eq!(r.response.nsg, Some(Stage::LoginOperationalNegotiation));
        assert_eq!(r.outcome, LoginOutcome::Continue);
        let r = step(
            &mut l,
            &c,
            req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase)),
            OPS,
        );
        expect_full(&r);
        assert!(value(&r, "TargetPortalGroupTag").is_none(), "only on the first response");
    }

    #[test]
    fn discovery_session() {
        let c = config();
        let mut l = Login::new();
        let t = format!("InitiatorName={INITIATOR};SessionType=Discovery;{OPS}");
        let r = step(
            &mut l,
            &c,
            req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase)),
            &t,
        );
        let res = expect_full(&r);
        assert_eq!(res.kind, SessionKind::Discovery);
        assert_eq!(value(&r, "MaxBurstLength").as_deref(), Some("Irrelevant"));
        assert!(value(&r, "TargetPortalGroupTag").is_none());
    }

    #[test]
    fn missing_initiator_name_and_target_name() {
        let c = config();
        let r = step(
            &mut Login::new(),
            &c,
            req(Stage::LoginOperationalNegotiation, None),
            &format!("TargetName={TARGET}"),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::MissingParameter));
        assert_eq!(r.response.status.class(), 2);
        assert_eq!(r.response.status.detail(), 7);
        let r = step(
            &mut Login::new(),
            &c,
            req(Stage::LoginOperationalNegotiation, None),
            &format!("InitiatorName={INITIATOR}"),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::MissingParameter));
    }

    #[test]
    fn unknown_target_is_not_found() {
        let r = step(
            &mut Login::new(),
            &config(),
            req(Stage::LoginOperationalNegotiation, None),
            &format!("InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:nope"),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::NotFound));
        let bhs = r.response.encode();
        assert_eq!((bhs.bytes[36], bhs.bytes[37]), (2, 3));
        assert!(r.text.is_empty());
    }

    #[test]
    fn acl_refusal_is_authorization_failure() {
        let mut l = Login::new();
        let r = step(
            &mut l,
            &config(),
            req(Stage::SecurityNegotiation, None),
            &format!("InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:private"),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthorizationFailure));
        assert_eq!(l.claim().map(|c| c.session), Some(ClaimedSession::Target(2)));
    }

    #[test]
    fn bad_session_type_and_version() {
        let r = step(
            &mut Login::new(),
            &config(),
            req(Stage::SecurityNegotiation, None),
            &format!("InitiatorName={INITIATOR};SessionType=Bogus"),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::SessionTypeNotSupported));
        let mut rq = req(Stage::SecurityNegotiation, None);
        rq.version_min = 1;
        rq.version_max = 2;
        let r = step(&mut Login::new(), &config(), rq, &format!("InitiatorName={INITIATOR}"));
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::UnsupportedVersion));
    }

    #[test]
    fn chap_required_but_security_skipped() {
        let r = step(
            &mut Login::new(),
            &config(),
            req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase)),
            &format!("InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:secure"),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
    }

    #[test]
    fn chap_required_but_only_none_offered() {
        let r = step(
            &mut Login::new(),
            &config(),
            req(Stage::SecurityNegotiation, Some(Stage::LoginOperationalNegotiation)),
            &format!(
                "InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:secure;AuthMethod=None"
            ),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
    }

    /// Runs a CHAP login up to the challenge; returns (login, identifier, challenge).
    fn chap_to_challenge(c: &LoginConfig, target: &str) -> (Login, u8, Vec<u8>) {
        let mut l = Login::new();
        let r = step(
            &mut l,
            c,
            req(Stage::SecurityNegotiation, None),
            &format!("InitiatorName={INITIATOR};TargetName={target};AuthMethod=CHAP,None"),
        );
        assert_eq!(value(&r, "AuthMethod").as_deref(), Some("CHAP"));
        assert!(!r.response.transit);
        let r = step(&mut l, c, req(Stage::SecurityNegotiation, None), "CHAP_A=5");
        assert_eq!(value(&r, "CHAP_A").as_deref(), Some("5"));
        let id = value(&r, "CHAP_I").and_then(|v| v.parse::<u8>().ok()).expect("CHAP_I");
        let challenge = parse_binary(&value(&r, "CHAP_C").expect("CHAP_C")).expect("hex");
        (l, id, challenge)
    }

    #[test]
    fn chap_mutual_login_succeeds() {
        let c = config();
        let secure = "iqn.2024-01.org.ferrite:secure";
        let (mut l, id, challenge) = chap_to_challenge(&c, secure);
        let resp = ChapAlgorithm::Md5.response(id, b"initiator-pass", &challenge);
        let my_challenge = [0x5au8; 16];
        let r = step(
            &mut l,
            &c,
            req(Stage::SecurityNegotiation, Some(Stage::LoginOperationalNegotiation)),
            &format!(
                "CHAP_N=user;CHAP_R={};CHAP_I=9;CHAP_C={}",
                encode_hex(&resp),
                encode_hex(&my_challenge)
            ),
        );
        assert_eq!(r.response.status, LoginStatus::Success, "{:?}", r.outcome);
        assert!(r.response.transit);
        assert_eq!(value(&r, "CHAP_N").as_deref(), Some("tgt"));
        let target_r = parse_binary(&value(&r, "CHAP_R").expect("CHAP_R")).expect("hex");
        assert_eq!(target_r, ChapAlgorithm::Md5.response(9, b"target-pass-1", &my_challenge));
        let r = step(
            &mut l,
            &c,
            req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase)),
            OPS,
        );
        assert_eq!(expect_full(&r).kind, SessionKind::Normal { target_index: 1 });
    }

    #[test]
    fn chap_wrong_password_refused() {
        let c = config();
        let (mut l, id, challenge) = chap_to_challenge(&c, "iqn.2024-01.org.ferrite:secure");
        let resp = ChapAlgorithm::Md5.response(id, b"wrong-pass", &challenge);
        let r = step(
            &mut l,
            &c,
            req(Stage::SecurityNegotiation, Some(Stage::LoginOperationalNegotiation)),
            &format!("CHAP_N=user;CHAP_R={}", encode_hex(&resp)),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
        assert_eq!(r.response.encode().bytes[36..38], [2, 1]);
        // The failure is reported with who asked for what.
        let claim = l.claim().expect("claim");
        assert_eq!(claim.initiator_name.as_deref(), Some(INITIATOR));
        assert_eq!(claim.session, ClaimedSession::Target(1));
    }

    #[test]
    fn chap_reflected_challenge_refused() {
        let c = config();
        let (mut l, id, challenge) = chap_to_challenge(&c, "iqn.2024-01.org.ferrite:secure");
        let resp = ChapAlgorithm::Md5.response(id, b"initiator-pass", &challenge);
        let r = step(
            &mut l,
            &c,
            req(Stage::SecurityNegotiation, Some(Stage::LoginOperationalNegotiation)),
            &format!(
                "CHAP_N=user;CHAP_R={};CHAP_I={id};CHAP_C={}",
                encode_hex(&resp),
                encode_hex(&challenge)
            ),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
    }

    #[test]
    fn transit_before_authentication_is_held() {
        let c = config();
        let mut l = Login::new();
        let r = step(
            &mut l,
            &c,
            req(Stage::SecurityNegotiation, Some(Stage::LoginOperationalNegotiation)),
            &format!(
                "InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:secure;AuthMethod=CHAP"
            ),
        );
        assert_eq!(r.outcome, LoginOutcome::Continue);
        assert!(!r.response.transit, "no transit while CHAP is pending");
    }

    #[test]
    fn discovery_chap_required() {
        let mut c = config();
        c.discovery_chap = Some(chap_creds(false));
        let r = step(
            &mut Login::new(),
            &c,
            req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase)),
            &format!("InitiatorName={INITIATOR};SessionType=Discovery"),
        );
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
    }

    #[test]
    fn text_continuation_is_reassembled() {
        let c = config();
        let mut l = Login::new();
        let full = text(&format!("InitiatorName={INITIATOR};TargetName={TARGET};{OPS}"));
        let (a, b) = full.split_at(20);
        let mut r1 = req(Stage::LoginOperationalNegotiation, None);
        r1.continue_bit = true;
        r1.data_segment_length = 20;
        let reply = l.step(&c, &r1, a);
        assert_eq!(reply.outcome, LoginOutcome::Continue);
        assert!(reply.text.is_empty());
        let r2 = req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase));
        let reply = l.step(&c, &r2, b);
        expect_full(&reply);
    }

    #[test]
    fn changed_isid_or_stage_mismatch_fails() {
        let c = config();
        let mut l = Login::new();
        let t = format!("InitiatorName={INITIATOR};TargetName={TARGET};AuthMethod=None");
        step(&mut l, &c, req(Stage::SecurityNegotiation, None), &t);
        let mut r = req(Stage::SecurityNegotiation, None);
        r.isid = Isid([1; 6]);
        let reply = step(&mut l, &c, r, "");
        assert_eq!(reply.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));

        let mut l = Login::new();
        step(&mut l, &c, req(Stage::SecurityNegotiation, None), &t);
        // Jumping to operational without the target agreeing to transit.
        let reply = step(&mut l, &c, req(Stage::LoginOperationalNegotiation, None), "");
        assert_eq!(reply.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));
    }

    #[test]
    fn duplicate_key_across_pdus_fails() {
        let c = config();
        let mut l = Login::new();
        let t = format!("InitiatorName={INITIATOR};TargetName={TARGET};MaxBurstLength=65536");
        let r = step(&mut l, &c, req(Stage::LoginOperationalNegotiation, None), &t);
        assert_eq!(r.outcome, LoginOutcome::Continue);
        let r =
            step(&mut l, &c, req(Stage::LoginOperationalNegotiation, None), "MaxBurstLength=65536");
        assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));
    }

    #[test]
    fn non_leading_login_reports_tsih() {
        let c = config();
        let mut r = req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase));
        r.tsih = 7;
        let reply = step(
            &mut Login::new(),
            &c,
            r,
            &format!("InitiatorName={INITIATOR};TargetName={TARGET};MaxRecvDataSegmentLength=8192"),
        );
        let res = expect_full(&reply);
        assert_eq!(res.tsih_requested, 7);
        assert_eq!(reply.response.tsih, 7);
    }

    #[test]
    fn flood_of_unknown_keys_is_refused() {
        let c = config();
        let mut t = format!("InitiatorName={INITIATOR};TargetName={TARGET}");
        for i in 0..200 {
            t.push_str(&format!(";X-vendor.key.with.a.long.name.{i:04}=1"));
        }
        let data = text(&t);
        let mut r = req(Stage::LoginOperationalNegotiation, None);
        r.data_segment_length = u32::try_from(data.len()).unwrap_or(0);
        assert!(data.len() <= 8192, "request fits one login PDU");
        let reply = Login::new().step(&c, &r, &data);
        assert_eq!(reply.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));
    }

    #[test]
    fn send_targets_respects_acl_and_scope() {
        let c = config();
        let portals = [
            Portal { host: "10.0.0.1".into(), port: 3260 },
            Portal { host: "fe80::1".into(), port: 3261 },
        ];
        let all = send_targets(&c, &portals, INITIATOR, SendTargetsScope::All);
        let pairs = parse_all(&all);
        assert_eq!(
            pairs,
            vec![
                ("TargetName".to_owned(), TARGET.to_owned()),
                ("TargetAddress".to_owned(), "10.0.0.1:3260,1".to_owned()),
                ("TargetAddress".to_owned(), "[fe80::1]:3261,1".to_owned()),
                ("TargetName".to_owned(), "iqn.2024-01.org.ferrite:secure".to_owned()),
                ("TargetAddress".to_owned(), "10.0.0.1:3260,2".to_owned()),
                ("TargetAddress".to_owned(), "[fe80::1]:3261,2".to_owned()),
            ]
        );
        let other =
            send_targets(&c, &portals[..1], "iqn.2024-01.org.example:other", SendTargetsScope::All);
        let names: Vec<String> = parse_all(&other)
            .into_iter()
            .filter(|(k, _)| k == "TargetName")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(names, [TARGET, "iqn.2024-01.org.ferrite:private"]);
        let one = send_targets(&c, &portals[..1], INITIATOR, SendTargetsScope::Named(TARGET));
        assert_eq!(parse_all(&one).len(), 2);
        let hidden = send_targets(
            &c,
            &portals[..1],
            INITIATOR,
            SendTargetsScope::Named("iqn.2024-01.org.ferrite:private"),
        );
        assert!(hidden.is_empty());
        assert_eq!(SendTargetsScope::parse("All", None), Some(SendTargetsScope::All));
        assert_eq!(SendTargetsScope::parse("All", Some(TARGET)), None);
        assert_eq!(
            SendTargetsScope::parse("", Some(TARGET)),
            Some(SendTargetsScope::Named(TARGET))
        );
    }

    proptest::proptest! {
        /// Hostile login texts split over PDUs never panic, and every reply respects the
        /// 8192-byte login segment limit.
        #[test]
        fn login_never_panics(
            control in proptest::prelude::any::<u16>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            prefix in proptest::sample::select(vec![
                "",
                "InitiatorName=iqn.2024-01.org.example:host1\0TargetName=iqn.2024-01.org.ferrite:disk0\0",
                "InitiatorName=iqn.2024-01.org.example:host1\0TargetName=iqn.2024-01.org.ferrite:secure\0AuthMethod=CHAP\0",
                "InitiatorName=iqn.2024-01.org.example:host1\0SessionType=Discovery\0",
            ]),
        ) {
            let c = config();
            let mut l = Login::new();
            let mut data = prefix.as_bytes().to_vec();
            data.extend_from_slice(&body);
            let pieces = data.len().div_ceil(4).max(1);
            for (i, chunk) in data.chunks(pieces).enumerate() {
                let bits = control >> (i * 4);
                let csg = if bits & 1 == 0 {
                    Stage::SecurityNegotiation
                } else {
                    Stage::LoginOperationalNegotiation
                };
                let transit = bits & 2 != 0;
                let mut r = req(csg, transit.then_some(Stage::FullFeaturePhase));
                r.continue_bit = !transit && bits & 4 != 0;
                r.data_segment_length = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
                let reply = l.step(&c, &r, chunk);
                proptest::prop_assert!(reply.text.len() <= 8192);
                proptest::prop_assert_eq!(reply.response.data_segment_length as usize, reply.text.len());
                if !matches!(reply.outcome, LoginOutcome::Continue) {
                    break;
                }
            }
        }
    }

    /// Parses a text that may repeat keys (SendTargets responses repeat TargetAddress).
    fn parse_all(t: &[u8]) -> Vec<(String, String)> {
        t.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = String::from_utf8_lossy(s);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }
}
