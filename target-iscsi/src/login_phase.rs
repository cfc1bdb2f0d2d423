//! A connection from accept to close: the login phase over the socket, session registration,
//! then the full-feature phase.

use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use drivers::buffer::IoBuf;
use drivers::executor;

use crate::connection::{self, ConnEnd, Established, FfpParams, QUEUE_DEPTH};
use crate::digest::DigestKind;
use crate::login::{Login, LoginOutcome, LoginResult, SessionKind};
use crate::negotiation::LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH;
use crate::pdu::{LoginRequest, LoginStatus, Opcode, StatusSns};
use crate::scsi::nexus::ItNexus;
use crate::server::{Portal, Server};
use crate::session::SessionKey;
use crate::writer::{self, Digests, OutData, OutItem, Sender};

/// Time a login may take before the connection is dropped.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one accepted connection until it ends.
pub async fn serve_connection(server: Arc<Server>, fd: OwnedFd, portal: Portal, shard: usize) {
    let raw = fd.as_raw_fd();
    let digests = Rc::new(Cell::new(Digests::default()));
    let (sender, writer_fut) = writer::writer(raw);
    let writer_task = executor::spawn(writer_fut);
    let login =
        executor::timeout_after(LOGIN_TIMEOUT, login_phase(&server, raw, &sender, portal)).await;
    let registered = match login {
        Ok(Some(established)) => {
            let tsih = established.tsih;
            let end = connection::full_feature_phase(
                raw,
                Arc::clone(&server),
                sender.clone(),
                Rc::clone(&digests),
                established,
                server.keepalive,
            )
            .await;
            if let ConnEnd::Protocol(why) = &end {
                log::warn!("shard {shard}: connection dropped: {why}");
            }
            Some(tsih)
        }
        Ok(None) | Err(_) => None,
    };
    // Let queued responses (logout, reject, login failure) reach the initiator.
    sender.close();
    let _ = executor::timeout_after(Duration::from_secs(2), writer_task).await;
    if let Some(tsih) = registered {
        server.sessions.remove(tsih, raw);
    }
    // SAFETY: shutdown(2) on our own socket before it is closed.
    unsafe { libc::shutdown(raw, libc::SHUT_RDWR) };
    let _ = drivers::ops::close(fd).await;
}

fn to_digests(header: DigestKind, data: DigestKind) -> Digests {
    Digests { header: header == DigestKind::Crc32c, data: data == DigestKind::Crc32c }
}

/// Runs the login exchange. Returns the established session, or None when the login failed
/// (the failure response has been queued).
async fn login_phase(
    server: &Arc<Server>,
    fd: RawFd,
    sender: &Sender,
    portal: Portal,
) -> Option<Established> {
    let mut login = Login::new();
    let mut hdr = IoBuf::zeroed(4096);
    let mut stat_sn: u32 = 1;
    loop {
        let (res, back) = connection::recv_header(fd, hdr, false).await;
        hdr = back;
        let (bhs, _) = res.ok()?;
        if bhs.opcode() != Some(Opcode::LoginRequest) {
            // Anything but a Login Request before full feature phase: protocol error.
            return None;
        }
        let Ok(req) = LoginRequest::parse(&bhs, LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH) else {
            fail(sender, &bhs, LoginStatus::InitiatorError, stat_sn);
            return None;
        };
        let data =
            connection::recv_small(fd, bhs.data_segment_length() as usize, false).await.ok()??;
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
                send_reply(sender, reply.response, reply.text);
            }
            LoginOutcome::Fail(_) => {
                send_reply(sender, reply.response, reply.text);
                return None;
            }
            LoginOutcome::FullFeature(result) => {
                let result: LoginResult = *result;
                if result.tsih_requested != 0 {
                    // One connection per session (MaxConnections=1): no connection joins an
                    // existing session.
                    let status = if server.sessions.exists(result.tsih_requested) {
                        LoginStatus::TooManyConnections
                    } else {
                        LoginStatus::SessionDoesNotExist
                    };
                    let mut response = reply.response;
                    response.status = status;
                    response.transit = false;
                    response.nsg = None;
                    send_reply(sender, response, Vec::new());
                    return None;
                }
                let (target, target_name) = match result.kind {
                    SessionKind::Discovery => (None, String::new()),
                    SessionKind::Normal { target_index } => {
                        let name = server.login.targets.get(target_index)?.name.clone();
                        (Some(Arc::clone(server.target(&name)?)), name)
                    }
                };
                let key = SessionKey {
                    initiator_name: result.initiator_name.to_ascii_lowercase(),
                    isid: result.isid.0,
                    target_name: target_name.to_ascii_lowercase(),
                };
                let shard = executor::current_shard();
                let (tsih, _reinstated) = server.sessions.register(key, fd, shard);
                let mut response = reply.response;
                response.tsih = tsih;
                send_reply(sender, response, reply.text);
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
                let params = FfpParams {
                    initiator_max_recv_dsl: result.connection.max_xmit_data_segment_length,
                    target_max_recv_dsl: result.connection.max_recv_data_segment_length,
                    first_burst_length: result.session.first_burst_length,
                    max_burst_length: result.session.max_burst_length,
                    max_outstanding_r2t: u32::from(result.session.max_outstanding_r2t),
                    immediate_data: result.session.immediate_data,
                    initial_r2t: result.session.initial_r2t,
                    digests: to_digests(
                        result.connection.header_digest,
                        result.connection.data_digest,
                    ),
                };
                return Some(Established {
                    params,
                    target,
                    nexus,
                    tsih,
                    stat_sn,
                    exp_cmd_sn: req.cmd_sn,
                    tpgt: portal.group_tag,
                });
            }
        }
    }
}

fn send_reply(sender: &Sender, mut response: crate::pdu::LoginResponse, text: Vec<u8>) {
    response.data_segment_length = u32::try_from(text.len()).unwrap_or(0);
    let data = if text.is_empty() { OutData::None } else { OutData::Bytes(text) };
    sender.push(OutItem::Pdu(response.encode(), data));
}

fn fail(sender: &Sender, bhs: &crate::pdu::Bhs, status: LoginStatus, stat_sn: u32) {
    let mut out = crate::pdu::Bhs::default();
    out.bytes[0] = Opcode::LoginResponse as u8;
    out.bytes[1] = 0;
    out.bytes[2] = 0;
    out.bytes[3] = 0;
    out.bytes[8..14].copy_from_slice(&bhs.bytes[8..14]);
    out.set_u32(16, bhs.itt());
    out.set_u32(24, stat_sn);
    let code = status as u16;
    out.bytes[36] = (code >> 8) as u8;
    out.bytes[37] = (code & 0xff) as u8;
    sender.push(OutItem::Pdu(out, OutData::None));
}
