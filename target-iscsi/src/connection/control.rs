//! The PDUs that are not SCSI commands or data: NOP-Out (pings and keepalive answers), task
//! management, text (SendTargets) and logout.

use std::rc::Rc;
use std::time::{Duration, Instant};

use drivers::error::IoError;
use drivers::executor;

use super::dispatch::{parsed_or_rejected, Step};
use super::{decode_lun, Conn, ConnEnd, Task};
use crate::pdu::{
    Bhs, LogoutRequest, LogoutResponse, LogoutResponseCode, NopIn, NopOut, RejectReason,
    TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse, TmfFunction, TmfResponse,
    RESERVED_TAG,
};
use crate::transport::Transport;
use crate::writer::{OutData, OutItem};

pub(super) async fn on_nop_out<T: Transport>(
    conn: &Rc<Conn<T>>,
    bhs: &Bhs,
) -> Result<Step, IoError> {
    let dsl = bhs.data_segment_length();
    let Some(nop) =
        parsed_or_rejected(conn, bhs, NopOut::parse(bhs, conn.params.target_max_recv_segment))
            .await?
    else {
        return Ok(Step::Continue);
    };
    conn.consume_cmd_sn(nop.immediate, nop.cmd_sn);
    let Some(data) = conn.transport.recv_small(dsl as usize).await? else {
        conn.reject(RejectReason::DataDigestError, bhs);
        return Ok(Step::Continue);
    };
    if nop.ttt != RESERVED_TAG {
        // The answer to our keepalive.
        if conn.ping.get().is_some_and(|(ttt, _)| ttt == nop.ttt) {
            conn.ping.set(None);
        }
        return Ok(Step::Continue);
    }
    if nop.itt != RESERVED_TAG {
        let sns = conn.sns(true);
        let len = u32::try_from(data.len()).unwrap_or(0);
        let reply =
            NopIn { lun: nop.lun, itt: nop.itt, ttt: RESERVED_TAG, sns, data_segment_length: len };
        conn.sender.push(OutItem::Pdu(reply.encode(), OutData::Bytes(data)));
    }
    Ok(Step::Continue)
}

pub(super) async fn on_task_mgmt<T: Transport>(
    conn: &Rc<Conn<T>>,
    bhs: &Bhs,
) -> Result<Step, IoError> {
    let Some(req) = parsed_or_rejected(conn, bhs, TaskMgmtRequest::parse(bhs)).await? else {
        return Ok(Step::Continue);
    };
    conn.consume_cmd_sn(req.immediate, req.cmd_sn);
    let lun = decode_lun(req.lun);
    let response = match (req.function, &conn.target) {
        (_, None) => TmfResponse::FunctionRejected,
        (TmfFunction::AbortTask, Some(_)) => {
            let task = conn.tasks.borrow_mut().remove(&req.referenced_task_tag);
            match task {
                Some(t) => {
                    if let Some(h) = t.handle {
                        h.abort();
                    }
                    TmfResponse::FunctionComplete
                }
                // RFC 7143 §11.5.1: a command not received yet (RefCmdSN at or past ExpCmdSN,
                // inside the window) counts as received and aborted; one that was received
                // has completed and its response is on its way: "task does not exist".
                None if crate::pdu::sn_ge(req.ref_cmd_sn, conn.exp_cmd_sn.get()) => {
                    TmfResponse::FunctionComplete
                }
                None => TmfResponse::TaskDoesNotExist,
            }
        }
        (TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet, Some(_)) => {
            abort_where(conn, |t| t.lun == lun);
            TmfResponse::FunctionComplete
        }
        (TmfFunction::LogicalUnitReset, Some(target)) => {
            abort_where(conn, |t| t.lun == lun);
            if target.scsi.lun_reset(&conn.nexus, lun) {
                TmfResponse::FunctionComplete
            } else {
                TmfResponse::LunDoesNotExist
            }
        }
        (TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset, Some(target)) => {
            abort_where(conn, |_| true);
            target.scsi.target_reset(&conn.nexus);
            TmfResponse::FunctionComplete
        }
        _ => TmfResponse::FunctionNotSupported,
    };
    let sns = conn.sns(true);
    let rsp = TaskMgmtResponse { response, itt: req.itt, sns };
    conn.sender.push(OutItem::Pdu(rsp.encode(), OutData::None));
    if let (TmfFunction::TargetColdReset, Some(target)) = (req.function, &conn.target) {
        // A cold reset ends every session of the target once the response is sent
        // (RFC 7143 §11.5.1): the others now, this one after the writer has flushed.
        conn.server.sessions.close_target(&target.name, conn.transport.registry_handle());
        conn.sender.close();
        return Ok(Step::Stop(ConnEnd::ColdReset));
    }
    Ok(Step::Continue)
}

fn abort_where<T: Transport>(conn: &Conn<T>, pred: impl Fn(&Task) -> bool) {
    let victims: Vec<u32> =
        conn.tasks.borrow().iter().filter(|(_, t)| pred(t)).map(|(itt, _)| *itt).collect();
    for itt in victims {
        let task = conn.tasks.borrow_mut().remove(&itt);
        if let Some(h) = task.and_then(|t| t.handle) {
            h.abort();
        }
    }
}

pub(super) async fn on_text<T: Transport>(conn: &Rc<Conn<T>>, bhs: &Bhs) -> Result<Step, IoError> {
    let dsl = bhs.data_segment_length();
    let Some(req) =
        parsed_or_rejected(conn, bhs, TextRequest::parse(bhs, conn.params.target_max_recv_segment))
            .await?
    else {
        return Ok(Step::Continue);
    };
    conn.consume_cmd_sn(req.immediate, req.cmd_sn);
    let Some(data) = conn.transport.recv_small(dsl as usize).await? else {
        conn.reject(RejectReason::DataDigestError, bhs);
        return Ok(Step::Continue);
    };
    let answer =
        conn.server.text_request(&conn.nexus.initiator_name, conn.target.as_deref(), &data);
    let sns = conn.sns(true);
    let rsp = TextResponse {
        final_bit: true,
        continue_bit: false,
        lun: 0,
        itt: req.itt,
        ttt: RESERVED_TAG,
        sns,
        data_segment_length: u32::try_from(answer.len()).unwrap_or(0),
    };
    conn.sender.push(OutItem::Pdu(rsp.encode(), OutData::Bytes(answer)));
    Ok(Step::Continue)
}

pub(super) async fn on_logout<T: Transport>(
    conn: &Rc<Conn<T>>,
    bhs: &Bhs,
) -> Result<Step, IoError> {
    let Some(req) = parsed_or_rejected(conn, bhs, LogoutRequest::parse(bhs)).await? else {
        return Ok(Step::Continue);
    };
    conn.consume_cmd_sn(req.immediate, req.cmd_sn);
    // Let running commands finish before answering (RFC 7143 §11.14).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !conn.tasks.borrow().is_empty() && Instant::now() < deadline {
        executor::sleep(Duration::from_millis(1)).await;
    }
    let sns = conn.sns(true);
    let rsp = LogoutResponse {
        response: LogoutResponseCode::ClosedSuccessfully,
        itt: req.itt,
        sns,
        time2wait_s: 0,
        time2retain_s: 0,
    };
    conn.sender.push(OutItem::Pdu(rsp.encode(), OutData::None));
    conn.sender.close();
    Ok(Step::Stop(ConnEnd::Logout))
}
