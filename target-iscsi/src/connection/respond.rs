//! A finished command's response: Data-In sent from the volume's buffers in place (status
//! collapsed into the last PDU when there is no sense data) and/or a SCSI Response.

use std::rc::Rc;

use engine::copy_stats::{self, CopyPath};

use super::Conn;
use crate::pdu::{Bhs, DataInStatus, Residual, ScsiDataIn, ScsiResponse, RESERVED_TAG};
use crate::scsi::status::CommandResult;
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
pub(super) fn respond(
    conn: &Rc<Conn>,
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
    let collapse = result.sense.is_none();
    conn.tasks.borrow_mut().remove(&itt);
    match data {
        Some(buf) if send_len > 0 => {
            // Data-In segments are sent from the volume's buffer in place (no copy).
            copy_stats::io(CopyPath::IscsiSend);
            let seg_max = conn.params.initiator_max_recv_segment.max(512) as usize;
            let mut pdus = Vec::new();
            let mut offset = 0usize;
            let mut data_sn = 0u32;
            while offset < send_len {
                let len = (send_len - offset).min(seg_max);
                let last = offset + len == send_len;
                let st =
                    (last && collapse).then_some(DataInStatus { status, residual, stat_sn: 0 });
                let sns = conn.sns(st.is_some());
                let mut din = ScsiDataIn {
                    final_bit: last,
                    acknowledge: false,
                    status: st,
                    lun: raw_lun,
                    itt,
                    ttt: RESERVED_TAG,
                    exp_cmd_sn: sns.exp_cmd_sn,
                    max_cmd_sn: sns.max_cmd_sn,
                    data_sn,
                    buffer_offset: u32::try_from(offset).unwrap_or(u32::MAX),
                    data_segment_length: u32::try_from(len).unwrap_or(u32::MAX),
                };
                if let Some(s) = din.status.as_mut() {
                    s.stat_sn = sns.stat_sn;
                }
                pdus.push((din.encode(), offset..offset + len));
                offset += len;
                data_sn += 1;
            }
            let trailer = (!collapse).then(|| {
                scsi_response(conn, itt, status, residual, result.sense.as_deref(), data_sn)
            });
            conn.sender.push(OutItem::DataIn { segments: buf.segments, pdus, trailer });
        }
        _ => {
            let (bhs, data) =
                scsi_response(conn, itt, status, residual, result.sense.as_deref(), 0);
            conn.sender.push(OutItem::Pdu(bhs, OutData::Bytes(data)));
        }
    }
}

fn scsi_response(
    conn: &Conn,
    itt: u32,
    status: u8,
    residual: Residual,
    sense: Option<&[u8]>,
    exp_data_sn: u32,
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
    let sns = conn.sns(true);
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
