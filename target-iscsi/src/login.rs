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
    /// A target every initiator may log in to without authentication (no ACL, no CHAP).
    #[must_use]
    pub fn open(name: &str, alias: Option<&str>, portal_group_tag: u16) -> Self {
        Self {
            name: name.into(),
            alias: alias.map(Into::into),
            portal_group_tag,
            acl: None,
            chap: None,
        }
    }

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
mod tests;
