//! The reader loop: receives each PDU header, checks its data segment length, and routes the
//! PDU to its handler by opcode.

use std::rc::Rc;
use std::time::Instant;

use drivers::buffer::IoBuf;
use drivers::error::IoError;

use super::command::on_scsi_command;
use super::control::{on_logout, on_nop_out, on_task_mgmt, on_text};
use super::data_out::on_data_out;
use super::{Conn, ConnEnd, MAX_ACCEPTED_DATA_SEGMENT_LENGTH};
use crate::pdu::{Bhs, Opcode, PduError, RejectReason, BHS_LEN};
use crate::transport::Transport;

pub(super) async fn reader_loop<T: Transport>(conn: &Rc<Conn<T>>) -> ConnEnd {
    let mut hdr = IoBuf::zeroed(4096);
    loop {
        let (res, back) = conn.transport.recv_header(hdr).await;
        hdr = back;
        let (bhs, ahs_bytes) = match res {
            Ok(v) => v,
            Err(end) => return end,
        };
        conn.last_rx.set(Instant::now());
        let dsl = bhs.data_segment_length();
        if dsl > conn.params.target_max_recv_segment.min(MAX_ACCEPTED_DATA_SEGMENT_LENGTH) {
            // Data past the negotiated limit: reject, and drop the connection since the
            // stream cannot be resynchronised safely.
            conn.reject(RejectReason::ProtocolError, &bhs);
            return ConnEnd::Protocol(format!(
                "data segment of {dsl} bytes exceeds MaxRecvDataSegmentLength"
            ));
        }
        let ahs = hdr[BHS_LEN..BHS_LEN + ahs_bytes].to_vec();
        let step = match bhs.opcode() {
            Some(Opcode::ScsiCommand) => on_scsi_command(conn, &bhs, &ahs).await,
            Some(Opcode::ScsiDataOut) => on_data_out(conn, &bhs).await,
            Some(Opcode::NopOut) => on_nop_out(conn, &bhs).await,
            Some(Opcode::TaskMgmtRequest) => on_task_mgmt(conn, &bhs).await,
            Some(Opcode::TextRequest) => on_text(conn, &bhs).await,
            Some(Opcode::LogoutRequest) => on_logout(conn, &bhs).await,
            Some(Opcode::SnackRequest) => {
                conn.reject(RejectReason::SnackReject, &bhs);
                skip(conn, dsl).await
            }
            _ => {
                conn.reject(RejectReason::CommandNotSupported, &bhs);
                skip(conn, dsl).await
            }
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Stop(end)) => return end,
            Err(e) => return ConnEnd::Io(e),
        }
    }
}

pub(super) enum Step {
    Continue,
    Stop(ConnEnd),
}

pub(super) async fn skip<T: Transport>(conn: &Rc<Conn<T>>, dsl: u32) -> Result<Step, IoError> {
    conn.transport.discard(dsl as usize).await?;
    Ok(Step::Continue)
}

/// The parsed PDU, or None once a malformed one has been rejected and its data segment
/// skipped (the connection goes on).
pub(super) async fn parsed_or_rejected<T: Transport, P>(
    conn: &Rc<Conn<T>>,
    bhs: &Bhs,
    parsed: Result<P, PduError>,
) -> Result<Option<P>, IoError> {
    match parsed {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            skip(conn, bhs.data_segment_length()).await?;
            Ok(None)
        }
    }
}

pub(super) fn pdu_error_reason(err: &PduError) -> RejectReason {
    err.reject_reason()
}
