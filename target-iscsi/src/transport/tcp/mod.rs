//! iSCSI over TCP (RFC 7143): the [`Transport`] that moves PDUs over a connected socket.
//!
//! Receiving reads the byte stream header first, then each data segment straight into the
//! buffer it is meant for (`receive.rs`); padding and the CRC32C header and data digests are
//! handled here. Sending drains the connection's queue in batches, one vectored send each
//! (`send.rs`). Data-Out is solicited with R2T PDUs and Data-In goes out as Data-In PDUs whose
//! segments reference the volume's buffers in place.

mod receive;
mod send;

use std::cell::Cell;
use std::ops::Range;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;

use drivers::buffer::IoBuf;
use drivers::error::IoError;

use super::{DataInReply, Solicitation, Transport};
use crate::connection::scsi_response_pdu;
use crate::ffp::ConnEnd;
use crate::pdu::{Bhs, DataInStatus, R2t, ScsiDataIn, RESERVED_TAG};
use crate::writer::{Digests, OutData, OutItem, Outbox, Sender};

/// A connected TCP socket carrying one iSCSI connection. The socket is owned elsewhere (the
/// accept loop hands it to `serve::serve_connection`, which closes it); this handle is
/// cheap to clone, for the reader, the writer and the command tasks.
#[derive(Clone)]
pub struct TcpTransport {
    fd: RawFd,
    /// Digests in force on the receiving side.
    digests: Rc<Cell<Digests>>,
}

impl TcpTransport {
    /// A transport on the connected socket `fd`, digests off (as during login).
    #[must_use]
    pub fn new(fd: RawFd) -> TcpTransport {
        TcpTransport { fd, digests: Rc::new(Cell::new(Digests::default())) }
    }
}

impl Transport for TcpTransport {
    async fn recv_header(&self, hdr: IoBuf) -> (Result<(Bhs, usize), ConnEnd>, IoBuf) {
        receive::recv_header(self.fd, hdr, self.digests.get().header).await
    }

    async fn recv_immediate(
        &self,
        buf: Option<IoBuf>,
        take: usize,
        segment_len: usize,
    ) -> (Result<bool, IoError>, Option<IoBuf>) {
        receive::recv_immediate(self.fd, buf, take, segment_len, self.digests.get().data).await
    }

    async fn recv_data(
        &self,
        buf: IoBuf,
        keep: Range<usize>,
        segment_len: usize,
    ) -> (Result<bool, IoError>, IoBuf) {
        receive::recv_data(self.fd, buf, keep, segment_len, self.digests.get().data).await
    }

    async fn recv_small(&self, segment_len: usize) -> Result<Option<Vec<u8>>, IoError> {
        receive::recv_small(self.fd, segment_len, self.digests.get().data).await
    }

    async fn discard(&self, segment_len: usize) -> Result<(), IoError> {
        receive::discard_data(self.fd, segment_len, self.digests.get().data).await
    }

    fn run_writer(
        self,
        outbox: Outbox,
    ) -> impl std::future::Future<Output = Result<(), IoError>> + 'static {
        send::run_writer(self.fd, outbox)
    }

    fn enable_digests(&self, sender: &Sender, digests: Digests) {
        // The writer switches in queue order, the reader from its next header on.
        self.digests.set(digests);
        sender.push(OutItem::SetDigests(digests));
    }

    fn solicit_data_out(&self, sender: &Sender, s: Solicitation) {
        let r2t = R2t {
            lun: s.lun,
            itt: s.itt,
            ttt: s.ttt,
            sns: s.sns,
            r2t_sn: s.r2t_sn,
            buffer_offset: s.buffer_offset,
            desired_data_transfer_length: s.desired_data_transfer_length,
        };
        sender.push(OutItem::Pdu(r2t.encode(), OutData::None));
    }

    fn send_data_in(&self, sender: &Sender, reply: DataInReply) {
        let (pdus, data_sn) = data_in_pdus(&reply);
        let DataInReply { itt, segments, status, residual, sense, sns, .. } = reply;
        let trailer = sense
            .as_deref()
            .map(|sense| scsi_response_pdu(itt, status, residual, Some(sense), data_sn, sns));
        sender.push(OutItem::DataIn { segments, pdus, trailer });
    }

    fn shutdown(&self) {
        // SAFETY: shutdown(2) on a socket that is open for as long as the connection runs.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }

    fn registry_handle(&self) -> RawFd {
        self.fd
    }
}

/// Closes the socket of a connection that has ended (its transport handles are gone).
pub async fn close(fd: OwnedFd) {
    let _ = drivers::ops::close(fd).await;
}

/// The Data-In PDUs of a reply, each with its range of the data, and the DataSN after the
/// last. The status goes in the last PDU (phase collapse) when there is no sense data.
fn data_in_pdus(reply: &DataInReply) -> (Vec<(Bhs, Range<usize>)>, u32) {
    let send_len = reply.len_bytes;
    let collapse = reply.sense.is_none();
    let sns = reply.sns;
    let mut pdus = Vec::new();
    let mut offset = 0usize;
    let mut data_sn = 0u32;
    while offset < send_len {
        let len = (send_len - offset).min(reply.max_segment_bytes);
        let last = offset + len == send_len;
        let status = (last && collapse).then_some(DataInStatus {
            status: reply.status,
            residual: reply.residual,
            stat_sn: sns.stat_sn,
        });
        let din = ScsiDataIn {
            final_bit: last,
            acknowledge: false,
            status,
            lun: reply.lun,
            itt: reply.itt,
            ttt: RESERVED_TAG,
            exp_cmd_sn: sns.exp_cmd_sn,
            max_cmd_sn: sns.max_cmd_sn,
            data_sn,
            buffer_offset: u32::try_from(offset).unwrap_or(u32::MAX),
            data_segment_length: u32::try_from(len).unwrap_or(u32::MAX),
        };
        pdus.push((din.encode(), offset..offset + len));
        offset += len;
        data_sn += 1;
    }
    (pdus, data_sn)
}
