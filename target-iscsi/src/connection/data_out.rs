//! Collecting a command's Data-Out: unsolicited data after the command, then requests for
//! the rest ([`Transport::solicit_data_out`]: R2Ts over TCP) within MaxOutstandingR2T and
//! MaxBurstLength, and each Data-Out PDU checked against the open sequences and received into
//! the command's buffer.

use std::rc::Rc;
use std::task::{Poll, Waker};

use drivers::buffer::IoBuf;
use drivers::error::IoError;

use super::dispatch::{parsed_or_rejected, skip, Step};
use super::{encode_lun, Conn};
use crate::pdu::{Bhs, RejectReason, ScsiDataOut, RESERVED_TAG};
use crate::scsi::sense::Sense;
use crate::transport::{Solicitation, Transport};

pub(super) struct DataCollect {
    pub(super) buf: Option<IoBuf>,
    /// Expected Data Transfer Length of the command: no Data-Out may go past it.
    pub(super) expected_transfer: u32,
    /// Bytes the target takes from the initiator.
    pub(super) wanted: u32,
    /// Bytes received so far (data arrives in order).
    pub(super) received: u32,
    /// Next offset to solicit with an R2T.
    pub(super) next_r2t_offset: u32,
    /// R2T sequences outstanding.
    pub(super) outstanding_r2t: u32,
    /// Unsolicited Data-Out still expected (F bit not yet seen).
    pub(super) unsolicited_open: bool,
    pub(super) ttt: u32,
    pub(super) r2t_sn: u32,
    /// DataSN the next Data-Out must carry; back to 0 after each sequence's F bit (sequences
    /// arrive in order: DataSequenceInOrder and DataPDUInOrder are Yes).
    pub(super) next_data_sn: u32,
    pub(super) waker: Option<Waker>,
    /// Why the Data-Out went wrong; the command fails once its open sequences are closed.
    pub(super) failed: Option<Sense>,
}

/// What collecting a command's Data-Out ended with.
pub(super) enum Collected {
    /// All the data (None when the command takes none).
    Data(Option<IoBuf>),
    /// The Data-Out broke the protocol or failed its digest: the command fails with this.
    Failed(Sense),
    /// The task was aborted meanwhile.
    Gone,
}

/// Waits until all data of the task arrived, soliciting it as needed.
pub(super) async fn collect_data<T: Transport>(
    conn: &Rc<Conn<T>>,
    itt: u32,
    lun: u64,
) -> Collected {
    std::future::poll_fn(|cx| {
        let mut tasks = conn.tasks.borrow_mut();
        let outstanding = tasks.len();
        let Some(task) = tasks.get_mut(&itt) else { return Poll::Ready(Collected::Gone) };
        let Some(c) = task.collect.as_mut() else { return Poll::Ready(Collected::Gone) };
        let closed = !c.unsolicited_open && c.outstanding_r2t == 0;
        if let (Some(sense), true) = (c.failed, closed) {
            // Fail only once the initiator has finished the sequences it started, so that no
            // Data-Out arrives for a task that has already answered.
            task.collect = None;
            return Poll::Ready(Collected::Failed(sense));
        }
        if c.failed.is_none() && c.received >= c.wanted && closed {
            let buf = c.buf.take();
            task.collect = None;
            return Poll::Ready(Collected::Data(buf));
        }
        // Solicit what is still missing once the unsolicited burst is over.
        if !c.unsolicited_open && c.failed.is_none() {
            while c.next_r2t_offset < c.wanted
                && c.outstanding_r2t < conn.params.max_outstanding_r2t.max(1)
            {
                if c.ttt == RESERVED_TAG {
                    c.ttt = conn.alloc_ttt();
                }
                let len = (c.wanted - c.next_r2t_offset).min(conn.params.max_burst_length);
                let solicitation = Solicitation {
                    lun: encode_lun(lun),
                    itt,
                    ttt: c.ttt,
                    r2t_sn: c.r2t_sn,
                    buffer_offset: c.next_r2t_offset,
                    desired_data_transfer_length: len,
                    sns: conn.sns_with(outstanding, false),
                };
                c.r2t_sn = c.r2t_sn.wrapping_add(1);
                c.next_r2t_offset += len;
                c.outstanding_r2t += 1;
                conn.transport.solicit_data_out(&conn.sender, solicitation);
            }
        }
        c.waker = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Where a Data-Out PDU's payload goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DataOutFate {
    /// In order and inside an open sequence: `keep` bytes land in the buffer at the offset
    /// (the rest, past what the command takes, is dropped).
    Keep { keep: u32 },
    /// The command already failed, or this PDU breaks its sequence: drop the payload.
    Discard(Option<Sense>),
    /// No open sequence takes it (unknown task, wrong transfer tag, unsolicited data after
    /// the F bit) or it goes past the transfer or the unsolicited burst: reject the PDU (and
    /// fail the command, if there is one).
    Reject,
}

/// Checks one Data-Out against the task's collection state (RFC 7143 §11.7: DataSN,
/// Buffer Offset and Target Transfer Tag; the burst limits of §13.13, §13.14).
pub(super) fn data_out_fate(
    c: &DataCollect,
    d: &ScsiDataOut,
    first_burst_length: u32,
) -> DataOutFate {
    let solicited = d.ttt != RESERVED_TAG;
    let in_open_sequence =
        if solicited { d.ttt == c.ttt && c.outstanding_r2t > 0 } else { c.unsolicited_open };
    if !in_open_sequence {
        return DataOutFate::Reject;
    }
    let Some(end) = d.buffer_offset.checked_add(d.data_segment_length) else {
        return DataOutFate::Reject;
    };
    // Nothing past the expected transfer; unsolicited data within FirstBurstLength; solicited
    // data within what the R2Ts asked for.
    let limit =
        if solicited { c.next_r2t_offset } else { first_burst_length.min(c.expected_transfer) };
    if end > c.expected_transfer || end > limit {
        return DataOutFate::Reject;
    }
    if c.failed.is_some() {
        return DataOutFate::Discard(None);
    }
    let out_of_order = d.buffer_offset != c.received && d.buffer_offset < c.wanted;
    if d.data_sn != c.next_data_sn || out_of_order {
        return DataOutFate::Discard(Some(Sense::data_phase_error()));
    }
    let keep = if d.buffer_offset >= c.wanted {
        0
    } else {
        d.data_segment_length.min(c.wanted - d.buffer_offset)
    };
    DataOutFate::Keep { keep }
}

/// A Data-Out was rejected: its command fails. The initiator drops the command on the
/// Reject; a final PDU still closes the sequence it belongs to, so the task does not wait for
/// it.
fn fail_collect<T: Transport>(conn: &Conn<T>, d: &ScsiDataOut) {
    let mut tasks = conn.tasks.borrow_mut();
    let Some(c) = tasks.get_mut(&d.itt).and_then(|t| t.collect.as_mut()) else { return };
    c.failed.get_or_insert(Sense::data_phase_error());
    if d.final_bit && d.ttt == RESERVED_TAG {
        c.unsolicited_open = false;
    } else if d.final_bit && d.ttt == c.ttt {
        c.outstanding_r2t = c.outstanding_r2t.saturating_sub(1);
    }
    if let Some(w) = c.waker.take() {
        w.wake();
    }
}

pub(super) async fn on_data_out<T: Transport>(
    conn: &Rc<Conn<T>>,
    bhs: &Bhs,
) -> Result<Step, IoError> {
    let dsl = bhs.data_segment_length();
    let Some(d) =
        parsed_or_rejected(conn, bhs, ScsiDataOut::parse(bhs, conn.params.target_max_recv_segment))
            .await?
    else {
        return Ok(Step::Continue);
    };
    let first_burst = conn.params.first_burst_length;
    let (fate, buf) = {
        let mut tasks = conn.tasks.borrow_mut();
        match tasks.get_mut(&d.itt).and_then(|t| t.collect.as_mut()) {
            Some(c) => {
                let fate = data_out_fate(c, &d, first_burst);
                let buf = match fate {
                    DataOutFate::Keep { keep } if keep > 0 => c.buf.take(),
                    _ => None,
                };
                (fate, buf)
            }
            None => (DataOutFate::Reject, None),
        }
    };
    let offset = d.buffer_offset;
    let mut digest_ok = true;
    let (keep, buf) = match (fate, buf) {
        (DataOutFate::Reject, _) => {
            conn.reject(RejectReason::ProtocolError, bhs);
            fail_collect(conn, &d);
            return skip(conn, dsl).await;
        }
        (DataOutFate::Keep { keep }, Some(b)) => {
            // What the command takes lands in its buffer; the rest of the PDU is dropped.
            let kept = offset as usize..(offset + keep) as usize;
            let (res, b) = conn.transport.recv_data(b, kept, dsl as usize).await;
            digest_ok = res?;
            (keep, Some(b))
        }
        (fate, _) => {
            conn.transport.discard(dsl as usize).await?;
            let failure = match fate {
                DataOutFate::Discard(f) => f,
                _ => None,
            };
            if let Some(sense) = failure {
                if let Some(c) =
                    conn.tasks.borrow_mut().get_mut(&d.itt).and_then(|t| t.collect.as_mut())
                {
                    c.failed.get_or_insert(sense);
                }
            }
            (0, None)
        }
    };
    let mut tasks = conn.tasks.borrow_mut();
    if let Some(c) = tasks.get_mut(&d.itt).and_then(|t| t.collect.as_mut()) {
        if buf.is_some() {
            c.buf = buf;
        }
        if !digest_ok {
            // ERL 0: a data digest error fails the command.
            c.failed.get_or_insert(Sense::protocol_service_crc_error());
        }
        if c.failed.is_none() {
            c.received = c.received.max((offset + keep).min(c.wanted));
        }
        c.next_data_sn = c.next_data_sn.wrapping_add(1);
        if d.final_bit {
            c.next_data_sn = 0;
            if d.ttt == RESERVED_TAG {
                c.unsolicited_open = false;
            } else {
                c.outstanding_r2t = c.outstanding_r2t.saturating_sub(1);
            }
        }
        if let Some(w) = c.waker.take() {
            w.wake();
        }
    }
    drop(tasks);
    if !digest_ok {
        conn.reject(RejectReason::DataDigestError, bhs);
    }
    Ok(Step::Continue)
}
