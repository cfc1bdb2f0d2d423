//! The login phase of a connection over its transport (RFC 7143 §6): the exchange of Login
//! Requests and Responses, session registration, and a failed login's record and late answer.
//! It ends with the [`Established`] handoff (`ffp.rs`); `serve.rs` hands that to the
//! full-feature phase. This module does not import `connection`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::buffer::IoBuf;
use drivers::executor;

use crate::digest::DigestKind;
use crate::ffp::{ConnEnd, Established, FfpParams, QUEUE_DEPTH};
use crate::login::{ClaimedSession, Login, LoginOutcome, LoginReply, LoginResult, SessionKind};
use crate::login_failures::{Failure, FailureReason};
use crate::negotiation::LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH;
use crate::pdu::{LoginRequest, LoginResponse, LoginStatus, Opcode, StatusSns};
use crate::scsi::nexus::ItNexus;
use crate::server::{Portal, Server};
use crate::session::SessionKey;
use crate::transport::Transport;
use crate::writer::{Digests, OutData, OutItem, Sender};

/// Runs the login phase of a connection over `transport`, within the server's login timeout:
/// the established session, or None once a failed login has been recorded (and, after the
/// authentication-failure delay, its answer queued on `sender`) or the peer went away.
pub(crate) async fn login<T: Transport>(
    server: &Arc<Server>,
    transport: &T,
    sender: &Sender,
    portal: Portal,
    source: IpAddr,
) -> Option<Established> {
    let limits = *server.admission.limits();
    let mut login = Login::new();
    let exchange =
        login_phase(server, transport, sender, portal, &mut login, limits.first_pdu_timeout);
    let ended = executor::timeout_after(limits.login_timeout, exchange)
        .await
        .unwrap_or(LoginEnd::Failed { reason: FailureReason::Timeout, answer: None });
    match ended {
        LoginEnd::Established(established) => Some(established),
        LoginEnd::Failed { reason, answer } => {
            let failure = Failure {
                target: claimed_target(server, &login),
                initiator: login.claim().and_then(|c| c.initiator_name.as_deref()),
                source,
                reason,
            };
            // A failed authentication is answered late, on this shard's timer: other
            // connections go on meanwhile.
            let delay = server.login_failures.record(&failure, Instant::now());
            if !delay.is_zero() {
                executor::sleep(delay).await;
            }
            if let Some(item) = answer {
                sender.push(item);
            }
            None
        }
        LoginEnd::Closed => None,
    }
}

/// The target label of a failed login: a configured target's name, `discovery`, or empty.
fn claimed_target<'a>(server: &'a Server, login: &Login) -> &'a str {
    match login.claim().map(|c| c.session) {
        Some(ClaimedSession::Discovery) => "discovery",
        Some(ClaimedSession::Target(i)) => server.login.targets.get(i).map_or("", |t| &t.name),
        Some(ClaimedSession::Unknown) | None => "",
    }
}

/// How the login phase ended.
enum LoginEnd {
    /// Full feature phase reached.
    Established(Established),
    /// The login failed; `answer` (the failure response, if any) is still to be sent.
    Failed { reason: FailureReason, answer: Option<OutItem> },
    /// The peer closed the connection or the socket failed: nothing to answer.
    Closed,
}

impl LoginEnd {
    fn protocol(answer: Option<OutItem>) -> LoginEnd {
        LoginEnd::Failed { reason: FailureReason::Protocol, answer }
    }
}

fn to_digests(header: DigestKind, data: DigestKind) -> Digests {
    Digests { header: header == DigestKind::Crc32c, data: data == DigestKind::Crc32c }
}

/// Receives one Login Request and its data segment.
async fn recv_login_request<T: Transport>(
    transport: &T,
    hdr: IoBuf,
    stat_sn: u32,
) -> (Result<(LoginRequest, Vec<u8>), LoginEnd>, IoBuf) {
    let (res, hdr) = transport.recv_header(hdr).await;
    let bhs = match res {
        Ok((bhs, _)) => bhs,
        Err(ConnEnd::Protocol(_)) => return (Err(LoginEnd::protocol(None)), hdr),
        Err(_) => return (Err(LoginEnd::Closed), hdr),
    };
    if bhs.opcode() != Some(Opcode::LoginRequest) {
        // Anything but a Login Request before full feature phase: protocol error.
        return (Err(LoginEnd::protocol(None)), hdr);
    }
    let Ok(req) = LoginRequest::parse(&bhs, LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH) else {
        let answer = fail_item(&bhs, LoginStatus::InitiatorError, stat_sn);
        return (Err(LoginEnd::protocol(Some(answer))), hdr);
    };
    match transport.recv_small(bhs.data_segment_length() as usize).await {
        Ok(Some(data)) => (Ok((req, data)), hdr),
        _ => (Err(LoginEnd::Closed), hdr),
    }
}

/// Runs the login exchange: the first PDU must arrive within `first_pdu_timeout`. Ends with
/// the established session, or with the failure and its response still to be sent.
async fn login_phase<T: Transport>(
    server: &Arc<Server>,
    transport: &T,
    sender: &Sender,
    portal: Portal,
    login: &mut Login,
    first_pdu_timeout: Duration,
) -> LoginEnd {
    let mut hdr = IoBuf::zeroed(4096);
    let mut stat_sn: u32 = 1;
    let mut first = true;
    loop {
        let next = recv_login_request(transport, hdr, stat_sn);
        let (res, back) = if first {
            first = false;
            match executor::timeout_after(first_pdu_timeout, next).await {
                Ok(received) => received,
                Err(_) => return LoginEnd::Failed { reason: FailureReason::Timeout, answer: None },
            }
        } else {
            next.await
        };
        hdr = back;
        let (req, data) = match res {
            Ok(received) => received,
            Err(end) => return end,
        };
        let mut reply = login.step(&server.login, &req, &data);
        let sns = StatusSns {
            stat_sn,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn.wrapping_add(QUEUE_DEPTH - 1),
        };
        stat_sn = stat_sn.wrapping_add(1);
        reply.response.sns = sns;
        let outcome = std::mem::replace(&mut reply.outcome, LoginOutcome::Continue);
        match outcome {
            LoginOutcome::Continue => {
                sender.push(reply_item(reply.response, reply.text));
            }
            LoginOutcome::Fail(status) => {
                let answer = Some(reply_item(reply.response, reply.text));
                return LoginEnd::Failed { reason: FailureReason::of(status), answer };
            }
            LoginOutcome::FullFeature(result) => {
                return establish(server, transport, sender, portal, &result, reply);
            }
        }
    }
}

/// Registers the session a login completed and answers the last Login Request (its StatSN
/// and ExpCmdSN already set): the handoff to the full-feature phase, or the refusal of a
/// connection that tries to join an existing session.
fn establish<T: Transport>(
    server: &Arc<Server>,
    transport: &T,
    sender: &Sender,
    portal: Portal,
    result: &LoginResult,
    reply: LoginReply,
) -> LoginEnd {
    let mut response = reply.response;
    if result.tsih_requested != 0 {
        // One connection per session (MaxConnections=1): no connection joins an existing
        // session.
        response.status = if server.sessions.exists(result.tsih_requested) {
            LoginStatus::TooManyConnections
        } else {
            LoginStatus::SessionDoesNotExist
        };
        response.transit = false;
        response.nsg = None;
        return LoginEnd::protocol(Some(reply_item(response, Vec::new())));
    }
    let (target, target_name) = match result.kind {
        SessionKind::Discovery => (None, String::new()),
        SessionKind::Normal { target_index } => {
            let node = server.login.targets.get(target_index).and_then(|t| server.target(&t.name));
            let Some(node) = node else { return LoginEnd::protocol(None) };
            (Some(Arc::clone(node)), node.name.clone())
        }
    };
    let key = SessionKey {
        initiator_name: result.initiator_name.to_ascii_lowercase(),
        isid: result.isid.0,
        target_name: target_name.to_ascii_lowercase(),
    };
    let shard = executor::current_shard();
    let (tsih, _reinstated) = server.sessions.register(key, transport.registry_handle(), shard);
    let sns = response.sns;
    response.tsih = tsih;
    sender.push(reply_item(response, reply.text));
    let nexus = ItNexus::new(
        server.next_nexus_id(),
        &result.initiator_name,
        result.isid.0,
        if target_name.is_empty() { "discovery" } else { &target_name },
        portal.group_tag,
    );
    if let Some(t) = &target {
        t.scsi.nexus_established(&nexus);
    }
    LoginEnd::Established(Established {
        params: ffp_params(result),
        target,
        nexus,
        tsih,
        stat_sn: sns.stat_sn.wrapping_add(1),
        exp_cmd_sn: sns.exp_cmd_sn,
        tpgt: portal.group_tag,
    })
}

/// The full-feature phase's parameters from the negotiated keys.
fn ffp_params(result: &LoginResult) -> FfpParams {
    FfpParams {
        initiator_max_recv_segment: result.connection.max_xmit_data_segment_length,
        target_max_recv_segment: result.connection.max_recv_data_segment_length,
        first_burst_length: result.session.first_burst_length,
        max_burst_length: result.session.max_burst_length,
        max_outstanding_r2t: u32::from(result.session.max_outstanding_r2t),
        immediate_data: result.session.immediate_data,
        initial_r2t: result.session.initial_r2t,
        digests: to_digests(result.connection.header_digest, result.connection.data_digest),
    }
}

fn reply_item(mut response: crate::pdu::LoginResponse, text: Vec<u8>) -> OutItem {
    response.data_segment_length = u32::try_from(text.len()).unwrap_or(0);
    let data = if text.is_empty() { OutData::None } else { OutData::Bytes(text) };
    OutItem::Pdu(response.encode(), data)
}

fn fail_item(bhs: &crate::pdu::Bhs, status: LoginStatus, stat_sn: u32) -> OutItem {
    OutItem::Pdu(LoginResponse::refusal(bhs, status, stat_sn).encode(), OutData::None)
}
