//! A finished command's response: its Data-In, delivered by the transport from the volume's
//! buffers in place ([`Transport::send_data_in`]), and/or a SCSI Response.

use std::rc::Rc;

use engine::copy_stats::{self, CopyPath};

use super::Conn;
use crate::pdu::{Bhs, Residual, ScsiResponse, StatusSns};
use crate::scsi::status::CommandResult;
use crate::transport::{DataInReply, Transport};
use crate::writer::{OutData, OutItem};

/// Residual of a command (RFC 7143 §11.4.5): the initiator expected `expected_transfer`
/// bytes; the command consumed `data_out_bytes` (its SCSI transfer length, whether or not all
/// of it was sent) or produced `data_in_bytes`.
pub(super) fn command_residual(
    expected_transfer: u32,
    data_out_bytes: u32,
    data_in_bytes: Option<u32>,
) -> Residual {
    match data_in_bytes {
        Some(produced) => Residual::from_lengths(expected_transfer, produced),
        None => Residual::from_lengths(expected_transfer, data_out_bytes),
    }
}

/// Queues the response of a finished command: Data-In (with status collapsed into the last
/// PDU when there is no sense data) and/or a SCSI Response. `data_out_bytes` is the Data-Out
/// the CDB asks for.
pub(super) fn respond<T: Transport>(
    conn: &Rc<Conn<T>>,
    itt: u32,
    raw_lun: u64,
    expected_transfer: u32,
    read: bool,
    data_out_bytes: u32,
    result: CommandResult,
) {
    let still_ours = conn.tasks.borrow_mut().get_mut(&itt).map(|t| {
        t.done = true;
    });
    if still_ours.is_none() {
        // Aborted meanwhile: no response (RFC 7143 §4.2.3.3).
        return;
    }
    let status = result.status as u8;
    let mut data = result.data_in.filter(|d| !d.is_empty());
    let produced = data.as_ref().map_or(0, |d| u32::try_from(d.len()).unwrap_or(u32::MAX));
    let residual = command_residual(
        expected_transfer,
        data_out_bytes,
        (read || data.is_some()).then_some(produced),
    );
    if !read {
        // Data-In for a command without the R bit cannot be sent.
        data = None;
    }
    let send_len = produced.min(expected_transfer) as usize;
    conn.tasks.borrow_mut().remove(&itt);
    match data {
        Some(buf) if send_len > 0 => {
            // Data-In segments are sent from the volume's buffer in place (no copy).
            copy_stats::io(CopyPath::IscsiSend);
            let reply = DataInReply {
                lun: raw_lun,
                itt,
                segments: buf.segments,
                len_bytes: send_len,
                status,
                residual,
                sense: result.sense,
                sns: conn.sns(true),
                max_segment_bytes: conn.params.initiator_max_recv_segment.max(512) as usize,
            };
            conn.transport.send_data_in(&conn.sender, reply);
        }
        _ => {
            let sense = result.sense.as_deref();
            let (bhs, data) = scsi_response_pdu(itt, status, residual, sense, 0, conn.sns(true));
            conn.sender.push(OutItem::Pdu(bhs, OutData::Bytes(data)));
        }
    }
}

/// A SCSI Response PDU and its data segment (the sense data, with its length).
pub(crate) fn scsi_response_pdu(
    itt: u32,
    status: u8,
    residual: Residual,
    sense: Option<&[u8]>,
    exp_data_sn: u32,
    sns: StatusSns,
) -> (Bhs, Vec<u8>) {
    let data = match sense {
        Some(s) => {
            let mut d = Vec::with_capacity(2 + s.len());
            d.extend_from_slice(&u16::try_from(s.len()).unwrap_or(0).to_be_bytes());
            d.extend_from_slice(s);
            d
        }
        None => Vec::new(),
    };
    let rsp = ScsiResponse {
        bidi_read_residual: Residual::None,
        residual,
        response: 0,
        status,
        itt,
        snack_tag: 0,
        sns,
        exp_data_sn,
        data_segment_length: u32::try_from(data.len()).unwrap_or(0),
    };
    (rsp.encode(), data)
}
