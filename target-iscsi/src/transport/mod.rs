//! The transport seam: how PDUs and their payloads move between the target and an initiator.
//!
//! The iSCSI logic — the login phase (`login_phase.rs`) and the full-feature phase
//! (`connection/`) — decides *what* to send and receive: which PDU comes next, how much
//! Data-Out a command takes and when to ask for it, a response's status, residual and sequence
//! numbers. A [`Transport`] carries it out. It owns every socket operation, the framing on the
//! wire (padding, header and data digests, batching) and the two bulk-data operations whose
//! shape depends on the fabric:
//!
//! | operation | iSCSI over TCP ([`tcp::TcpTransport`], RFC 7143) | iSER (RFC 7145) |
//! |---|---|---|
//! | [`Transport::recv_header`], [`Transport::recv_small`], [`Transport::discard`] | read from the byte stream | a receive buffer posted for a control PDU |
//! | [`Transport::recv_immediate`], [`Transport::recv_data`] | immediate data and Data-Out read straight into the command's buffer | immediate and unsolicited data from the receive that carried them |
//! | [`Transport::solicit_data_out`] | an R2T PDU; the data comes back as Data-Out PDUs | an RDMA Read from the initiator's buffer into the command's |
//! | [`Transport::send_data_in`] | Data-In PDUs referencing the volume's buffers, status collapsed into the last one when there is no sense | an RDMA Write from the volume's buffers, then the SCSI Response |
//! | [`Transport::run_writer`] | one vectored send per batch of queued PDUs | one send work request per control PDU |
//!
//! Everything on a connection runs on one shard. The connection is generic over its
//! transport (`Conn<T: Transport>`), so the hot path has no dynamic dispatch, and the
//! transport's operations allocate no more than the socket code did before the seam: the
//! payload of a command moves between the volume's buffers and the wire without a copy.

pub mod tcp;

use std::future::Future;
use std::ops::Range;
use std::os::fd::RawFd;

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoError;

use crate::ffp::ConnEnd;
use crate::pdu::{Bhs, Residual, StatusSns};
use crate::writer::{Digests, Outbox, Sender};

/// A request for part of a command's Data-Out (RFC 7143 §11.8; RFC 7145 §9.3).
///
/// The connection keeps the accounting (transfer tags, R2TSN, MaxOutstandingR2T,
/// MaxBurstLength); the transport carries out the request.
#[derive(Debug, Clone, Copy)]
pub struct Solicitation {
    /// The LUN field of the command, encoded.
    pub lun: u64,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag the data must come back with.
    pub ttt: u32,
    /// R2TSN of this request.
    pub r2t_sn: u32,
    /// Offset in the command's data.
    pub buffer_offset: u32,
    /// Bytes asked for.
    pub desired_data_transfer_length: u32,
    /// ExpCmdSN and MaxCmdSN to advertise (StatSN is not taken).
    pub sns: StatusSns,
}

/// A finished command's Data-In and status, for the transport to deliver.
pub struct DataInReply {
    /// The LUN field of the command, as received.
    pub lun: u64,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// The volume's buffers, in order; sent in place.
    pub segments: Vec<SharedBuf>,
    /// Bytes of `segments` to send (at most the expected transfer length); more than zero.
    pub len_bytes: usize,
    /// SCSI status.
    pub status: u8,
    /// Residual of the command.
    pub residual: Residual,
    /// Sense data; when present, the status goes in a SCSI Response after the data.
    pub sense: Option<Vec<u8>>,
    /// Sequence numbers of the response: its StatSN (already taken), ExpCmdSN and MaxCmdSN.
    pub sns: StatusSns,
    /// MaxRecvDataSegmentLength the initiator declared.
    pub max_segment_bytes: usize,
}

/// How PDUs and their payloads move on one connection. See the module docs.
///
/// Receiving is done by one task at a time (the login phase, then the connection's reader);
/// sending is done by queueing on a [`Sender`], which the writer ([`Transport::run_writer`])
/// drains in order.
pub trait Transport: Clone + 'static {
    /// Receives the next PDU's header into `hdr`: the BHS, then its AHS at
    /// `hdr[BHS_LEN..BHS_LEN + ahs_bytes]`. Returns the BHS and `ahs_bytes`.
    fn recv_header(
        &self,
        hdr: IoBuf,
    ) -> impl Future<Output = (Result<(Bhs, usize), ConnEnd>, IoBuf)>;

    /// Receives a command's immediate data, a segment of `segment_len` bytes whose first
    /// `take` bytes land at the start of `buf` in place (no copy); the rest is dropped. `buf`
    /// is None when the command takes no data (`take` is then 0). Returns Ok(false) when the
    /// segment failed its data digest.
    fn recv_immediate(
        &self,
        buf: Option<IoBuf>,
        take: usize,
        segment_len: usize,
    ) -> impl Future<Output = (Result<bool, IoError>, Option<IoBuf>)>;

    /// Receives a Data-Out segment of `segment_len` bytes whose first `keep.len()` bytes (at
    /// least one) land in `buf[keep]` in place (no copy); the rest is dropped. Returns
    /// Ok(false) when the segment failed its data digest.
    fn recv_data(
        &self,
        buf: IoBuf,
        keep: Range<usize>,
        segment_len: usize,
    ) -> impl Future<Output = (Result<bool, IoError>, IoBuf)>;

    /// Receives a small data segment (login and text keys, ping data) into a new Vec, a copy
    /// counted on `CopyPath::IscsiReceive`; Ok(None) on a data digest error.
    fn recv_small(
        &self,
        segment_len: usize,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, IoError>>;

    /// Drops a data segment of `segment_len` bytes, unread.
    fn discard(&self, segment_len: usize) -> impl Future<Output = Result<(), IoError>>;

    /// Drains `outbox` until it is closed or sending fails (the writer task owns its handle).
    fn run_writer(self, outbox: Outbox) -> impl Future<Output = Result<(), IoError>> + 'static;

    /// Turns digests on for the full-feature phase (RFC 7143 §13.1): from the next header
    /// received, and for every PDU queued on `sender` after this call.
    fn enable_digests(&self, sender: &Sender, digests: Digests);

    /// Asks the initiator for part of a command's Data-Out; the data arrives through the
    /// connection's Data-Out path.
    fn solicit_data_out(&self, sender: &Sender, solicitation: Solicitation);

    /// Delivers a command's Data-In from the volume's buffers, in place, and its status.
    fn send_data_in(&self, sender: &Sender, reply: DataInReply);

    /// Makes the connection's I/O fail, so its reader and writer end (keepalive timeout).
    fn shutdown(&self);

    /// The descriptor the session registry shuts down to end this connection from another
    /// shard (session reinstatement, TARGET COLD RESET).
    fn registry_handle(&self) -> RawFd;
}
