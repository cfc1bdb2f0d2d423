//! One iSCSI connection in the full-feature phase (RFC 7143 §4, §11).
//!
//! The connection's reader task receives PDUs (header first, then the data segment straight
//! into the buffer the command will hand to the volume), keeps the CmdSN window, and starts one
//! task per SCSI command. Command tasks collect their Data-Out (immediate, unsolicited, then
//! solicited by R2T), execute through the SCSI layer and queue their response on the writer.
//! Everything here runs on one shard; shared state is `Rc`/`Cell`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use drivers::buffer::IoBuf;
use drivers::error::IoError;
use drivers::executor::{self, JoinHandle};
use drivers::ops;
use engine::copy_stats::{self, CopyPath};

use crate::digest;
use crate::pdu::{
    padded_len, Ahs, Bhs, Cdb, DataInStatus, LogoutRequest, LogoutResponse, LogoutResponseCode,
    NopIn, NopOut, Opcode, PduError, R2t, Reject, RejectReason, Residual, ScsiCommand, ScsiDataIn,
    ScsiDataOut, ScsiResponse, StatusSns, TaskMgmtRequest, TaskMgmtResponse, TextRequest,
    TextResponse, TmfFunction, TmfResponse, BHS_LEN, RESERVED_TAG,
};
use crate::scsi::nexus::ItNexus;
use crate::scsi::sense::Sense;
use crate::scsi::status::{CommandResult, DataDirection};
use crate::server::{Server, TargetNode};
use crate::stats::{ConnRecorder, IoKind};
use crate::writer::{Digests, OutData, OutItem, Sender};

/// Parameters of the full-feature phase, from login negotiation.
#[derive(Debug, Clone, Copy)]
pub struct FfpParams {
    /// MaxRecvDataSegmentLength the initiator declared (limits our Data-In and text PDUs).
    pub initiator_max_recv_segment: u32,
    /// MaxRecvDataSegmentLength we declared (limits what we accept).
    pub target_max_recv_segment: u32,
    /// FirstBurstLength.
    pub first_burst_length: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// ImmediateData.
    pub immediate_data: bool,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// Digests.
    pub digests: Digests,
}

/// Keepalive timing: a NOP-In after `interval` without traffic; the connection is dropped when
/// its answer has not come within `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Idle time before a NOP-In ping.
    pub interval: Duration,
    /// Time allowed for the NOP-Out answer.
    pub timeout: Duration,
}

/// What the login phase established.
pub struct Established {
    /// Negotiated parameters.
    pub params: FfpParams,
    /// The target (None for a discovery session).
    pub target: Option<Arc<TargetNode>>,
    /// I_T nexus of the session.
    pub nexus: ItNexus,
    /// TSIH given to the session.
    pub tsih: u16,
    /// StatSN to use for the next status PDU.
    pub stat_sn: u32,
    /// ExpCmdSN after login.
    pub exp_cmd_sn: u32,
    /// Portal group tag of the portal the connection came in on.
    pub tpgt: u16,
}

/// Why the connection ended.
#[derive(Debug)]
pub enum ConnEnd {
    /// Logout completed.
    Logout,
    /// The peer closed or the socket failed.
    Io(IoError),
    /// A PDU could not be parsed or broke the protocol; the connection was dropped.
    Protocol(String),
    /// A keepalive went unanswered.
    KeepaliveTimeout,
    /// The initiator asked for a TARGET COLD RESET, which ends the session.
    ColdReset,
}

/// Commands the target accepts at once beyond ExpCmdSN (advertised through MaxCmdSN).
pub const QUEUE_DEPTH: u32 = 128;

/// Largest data segment we ever accept, whatever was negotiated.
const MAX_ACCEPTED_DSL: u32 = 16 << 20;

struct DataCollect {
    buf: Option<IoBuf>,
    /// Expected Data Transfer Length of the command: no Data-Out may go past it.
    expected_transfer: u32,
    /// Bytes the target takes from the initiator.
    wanted: u32,
    /// Bytes received so far (data arrives in order).
    received: u32,
    /// Next offset to solicit with an R2T.
    next_r2t_offset: u32,
    /// R2T sequences outstanding.
    outstanding_r2t: u32,
    /// Unsolicited Data-Out still expected (F bit not yet seen).
    unsolicited_open: bool,
    ttt: u32,
    r2t_sn: u32,
    /// DataSN the next Data-Out must carry; back to 0 after each sequence's F bit (sequences
    /// arrive in order: DataSequenceInOrder and DataPDUInOrder are Yes).
    next_data_sn: u32,
    waker: Option<Waker>,
    /// Why the Data-Out went wrong; the command fails once its open sequences are closed.
    failed: Option<Sense>,
}

/// What collecting a command's Data-Out ended with.
enum Collected {
    /// All the data (None when the command takes none).
    Data(Option<IoBuf>),
    /// The Data-Out broke the protocol or failed its digest: the command fails with this.
    Failed(Sense),
    /// The task was aborted meanwhile.
    Gone,
}

struct Task {
    lun: u64,
    handle: Option<JoinHandle<()>>,
    collect: Option<DataCollect>,
    /// Set once the response is queued; aborting then does nothing.
    done: bool,
}

/// Per-connection state shared by the reader and the command tasks.
pub struct Conn {
    fd: RawFd,
    server: Arc<Server>,
    sender: Sender,
    digests: Rc<Cell<Digests>>,
    params: FfpParams,
    target: Option<Arc<TargetNode>>,
    nexus: ItNexus,
    stat_sn: Cell<u32>,
    exp_cmd_sn: Cell<u32>,
    tasks: RefCell<HashMap<u32, Task>>,
    next_ttt: Cell<u32>,
    last_rx: Cell<Instant>,
    ping: Cell<Option<(u32, Instant)>>,
    stats: ConnRecorder,
}

/// A SCSI command between its PDU and its response, for the statistics: it leaves the queue
/// depth when completed, or when dropped (the task was aborted).
struct InFlight {
    conn: Rc<Conn>,
    lun: u64,
    started: Instant,
    done: bool,
}

impl InFlight {
    fn new(conn: &Rc<Conn>, lun: u64, started: Instant) -> InFlight {
        conn.stats.begin(lun);
        InFlight { conn: Rc::clone(conn), lun, started, done: false }
    }

    fn complete(mut self, kind: IoKind, bytes: u64, good: bool) {
        self.done = true;
        self.conn.stats.end(self.lun, self.started, Some((kind, bytes, good)));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.conn.stats.end(self.lun, self.started, None);
        }
    }
}

impl Conn {
    fn sns(&self, advance_stat_sn: bool) -> StatusSns {
        let outstanding = self.tasks.borrow().len();
        self.sns_with(outstanding, advance_stat_sn)
    }

    /// Sequence numbers for an outgoing PDU with `outstanding` tasks in the window.
    fn sns_with(&self, outstanding: usize, advance_stat_sn: bool) -> StatusSns {
        let stat_sn = self.stat_sn.get();
        if advance_stat_sn {
            self.stat_sn.set(stat_sn.wrapping_add(1));
        }
        let outstanding = u32::try_from(outstanding).unwrap_or(u32::MAX);
        let window = QUEUE_DEPTH.saturating_sub(outstanding).max(1);
        let exp = self.exp_cmd_sn.get();
        StatusSns { stat_sn, exp_cmd_sn: exp, max_cmd_sn: exp.wrapping_add(window - 1) }
    }

    /// A non-immediate PDU that is not a SCSI command (NOP-Out, task management, text,
    /// logout) takes its CmdSN when it is the next one expected.
    fn consume_cmd_sn(&self, immediate: bool, cmd_sn: u32) {
        let exp = self.exp_cmd_sn.get();
        if !immediate && cmd_sn == exp {
            self.exp_cmd_sn.set(exp.wrapping_add(1));
        }
    }

    fn alloc_ttt(&self) -> u32 {
        let mut t = self.next_ttt.get().wrapping_add(1);
        if t == RESERVED_TAG {
            t = 1;
        }
        self.next_ttt.set(t);
        t
    }

    fn reject(&self, reason: RejectReason, header: &Bhs) {
        let sns = self.sns(true);
        let reject = Reject { reason, sns, data_sn_or_r2t_sn: 0 };
        self.sender.push(OutItem::Pdu(reject.encode(), OutData::Bytes(header.bytes.to_vec())));
    }
}

/// Runs the full-feature phase until logout, error or keepalive timeout.
pub async fn full_feature_phase(
    fd: RawFd,
    server: Arc<Server>,
    sender: Sender,
    digests: Rc<Cell<Digests>>,
    est: Established,
    keepalive: Keepalive,
) -> ConnEnd {
    // Digests start with the first PDU after the final Login Response (RFC 7143 §13.1):
    // the writer switches in queue order, the reader from its next header on.
    digests.set(est.params.digests);
    sender.push(OutItem::SetDigests(est.params.digests));
    let target_name = est.target.as_ref().map_or(String::new(), |t| t.name.clone());
    let registered = server.stats.connection_started(
        est.tsih,
        &est.nexus.initiator_name,
        &target_name,
        executor::current_shard(),
    );
    let stats = ConnRecorder::new(Arc::clone(&server.stats), registered);
    let conn = Rc::new(Conn {
        fd,
        server,
        sender,
        digests,
        params: est.params,
        target: est.target,
        nexus: est.nexus,
        stat_sn: Cell::new(est.stat_sn),
        exp_cmd_sn: Cell::new(est.exp_cmd_sn),
        tasks: RefCell::new(HashMap::new()),
        next_ttt: Cell::new(0),
        last_rx: Cell::new(Instant::now()),
        ping: Cell::new(None),
        stats,
    });
    let pinger = executor::spawn(keepalive_loop(Rc::clone(&conn), keepalive));
    let end = reader_loop(&conn).await;
    pinger.abort();
    // Abort every task still running; their buffers return when the kernel is done.
    let tasks: Vec<Task> = conn.tasks.borrow_mut().drain().map(|(_, t)| t).collect();
    for task in tasks {
        if let Some(h) = task.handle {
            h.abort();
        }
    }
    if let Some(target) = &conn.target {
        target.scsi.nexus_lost(conn.nexus.nexus_id);
    }
    end
}

async fn keepalive_loop(conn: Rc<Conn>, keepalive: Keepalive) {
    loop {
        executor::sleep(keepalive.interval.min(Duration::from_secs(1))).await;
        let now = Instant::now();
        if let Some((_, sent)) = conn.ping.get() {
            if now.duration_since(sent) > keepalive.timeout {
                // No answer: drop the connection; the reader sees the shutdown.
                // SAFETY: shutdown(2) on our own open socket.
                unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
                return;
            }
            continue;
        }
        if now.duration_since(conn.last_rx.get()) >= keepalive.interval {
            let ttt = conn.alloc_ttt();
            conn.ping.set(Some((ttt, now)));
            let sns = conn.sns(false);
            let nop = NopIn { lun: 0, itt: RESERVED_TAG, ttt, sns, data_segment_length: 0 };
            conn.sender.push(OutItem::Pdu(nop.encode(), OutData::None));
        }
    }
}

/// Receives one PDU header (BHS, AHS, header digest) into `hdr`.
pub(crate) async fn recv_header(
    fd: RawFd,
    mut hdr: IoBuf,
    header_digest: bool,
) -> (Result<(Bhs, usize), ConnEnd>, IoBuf) {
    let (res, back) = ops::recv_exact(fd, hdr, 0..BHS_LEN).await;
    hdr = back;
    if let Err(e) = res {
        return (Err(ConnEnd::Io(e)), hdr);
    }
    let Some(bhs) = Bhs::from_slice(&hdr[..BHS_LEN]) else {
        return (Err(ConnEnd::Protocol("short header".into())), hdr);
    };
    let ahs_bytes = usize::from(bhs.total_ahs_length_words()) * 4;
    let digest_bytes = if header_digest { 4 } else { 0 };
    let total = BHS_LEN + ahs_bytes + digest_bytes;
    if total > hdr.len() {
        return (Err(ConnEnd::Protocol("AHS too long".into())), hdr);
    }
    if total > BHS_LEN {
        let (res, back) = ops::recv_exact(fd, hdr, BHS_LEN..total).await;
        hdr = back;
        if let Err(e) = res {
            return (Err(ConnEnd::Io(e)), hdr);
        }
    }
    if header_digest {
        let wire = [hdr[total - 4], hdr[total - 3], hdr[total - 2], hdr[total - 1]];
        if digest::verify_header_digest(&hdr[..BHS_LEN + ahs_bytes], wire).is_err() {
            // The lengths in a header that failed its digest cannot be trusted: drop the
            // connection (RFC 7143 §7.8).
            return (Err(ConnEnd::Protocol("header digest error".into())), hdr);
        }
    }
    (Ok((bhs, ahs_bytes)), hdr)
}

/// Receives a data segment of `len` bytes (plus padding and digest) into `buf[offset..]`.
/// Returns Ok(false) on a data digest mismatch.
pub(crate) async fn recv_data_into(
    fd: RawFd,
    buf: IoBuf,
    offset: usize,
    len: usize,
    data_digest: bool,
) -> (Result<bool, IoError>, IoBuf) {
    let (res, buf) = ops::recv_exact(fd, buf, offset..offset + len).await;
    if let Err(e) = res {
        return (Err(e), buf);
    }
    let tail_len = padded_len(len) - len + if data_digest { 4 } else { 0 };
    if tail_len == 0 {
        return (Ok(true), buf);
    }
    let tail = IoBuf::zeroed(8);
    let (res, tail) = ops::recv_exact(fd, tail, 0..tail_len).await;
    if let Err(e) = res {
        return (Err(e), buf);
    }
    if data_digest {
        let d = tail_len - 4;
        let wire = [tail[d], tail[d + 1], tail[d + 2], tail[d + 3]];
        let ok = digest::verify_data_digest(&buf[offset..offset + len], wire).is_ok();
        return (Ok(ok), buf);
    }
    (Ok(true), buf)
}

/// Receives a small data segment into a new Vec (login and text keys, ping data), a copy
/// counted on [`CopyPath::IscsiReceive`]; Ok(None) on digest error.
pub(crate) async fn recv_small(
    fd: RawFd,
    len: usize,
    data_digest: bool,
) -> Result<Option<Vec<u8>>, IoError> {
    if len == 0 {
        return Ok(Some(Vec::new()));
    }
    let buf = IoBuf::zeroed(len);
    let (res, buf) = recv_data_into(fd, buf, 0, len, data_digest).await;
    if !res? {
        return Ok(None);
    }
    copy_stats::record(CopyPath::IscsiReceive, len);
    Ok(Some(buf.to_vec()))
}

/// Receives the rest of a data segment of `dsl` bytes whose first `kept.len()` bytes were
/// received into `kept`: the remaining data (dropped), the padding and the digest. Returns
/// Ok(false) on a data digest mismatch (the digest covers the whole segment).
async fn recv_segment_tail(
    fd: RawFd,
    kept: &[u8],
    dsl: usize,
    data_digest: bool,
) -> Result<bool, IoError> {
    let tail_len = padded_len(dsl) - kept.len() + if data_digest { 4 } else { 0 };
    if tail_len == 0 {
        return Ok(true);
    }
    let tail = IoBuf::zeroed(tail_len);
    let (res, tail) = ops::recv_exact(fd, tail, 0..tail_len).await;
    res?;
    if !data_digest {
        return Ok(true);
    }
    let rest = &tail[..dsl - kept.len()];
    let computed = digest::data_digest_parts(&[kept, rest]);
    Ok(tail[tail_len - 4..] == computed)
}

async fn discard_data(fd: RawFd, len: usize, data_digest: bool) -> Result<(), IoError> {
    let mut remaining = padded_len(len) + if data_digest { 4 } else { 0 };
    let mut scratch = IoBuf::zeroed(64 * 1024);
    while remaining > 0 {
        let n = remaining.min(scratch.len());
        let (res, back) = ops::recv_exact(fd, scratch, 0..n).await;
        scratch = back;
        res?;
        remaining -= n;
    }
    Ok(())
}

async fn reader_loop(conn: &Rc<Conn>) -> ConnEnd {
    let mut hdr = IoBuf::zeroed(4096);
    loop {
        let digests = conn.digests.get();
        let (res, back) = recv_header(conn.fd, hdr, digests.header).await;
        hdr = back;
        let (bhs, ahs_bytes) = match res {
            Ok(v) => v,
            Err(end) => return end,
        };
        conn.last_rx.set(Instant::now());
        let dsl = bhs.data_segment_length();
        if dsl > conn.params.target_max_recv_segment.min(MAX_ACCEPTED_DSL) {
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

enum Step {
    Continue,
    Stop(ConnEnd),
}

async fn skip(conn: &Rc<Conn>, dsl: u32) -> Result<Step, IoError> {
    discard_data(conn.fd, dsl as usize, conn.digests.get().data).await?;
    Ok(Step::Continue)
}

fn pdu_error_reason(err: &PduError) -> RejectReason {
    err.reject_reason()
}

// ----- SCSI commands -----

async fn on_scsi_command(conn: &Rc<Conn>, bhs: &Bhs, ahs: &[u8]) -> Result<Step, IoError> {
    let started = Instant::now();
    let dsl = bhs.data_segment_length();
    let cmd = match ScsiCommand::parse(bhs, conn.params.target_max_recv_segment) {
        Ok(c) => c,
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            return skip(conn, dsl).await;
        }
    };
    // Immediate data is bounded by the transfer, FirstBurstLength and the ImmediateData key
    // (RFC 7143 §13.11, §13.14): anything else breaks the burst rules.
    if dsl > 0
        && (!conn.params.immediate_data
            || dsl > cmd.expected_data_transfer_length
            || dsl > conn.params.first_burst_length)
    {
        conn.reject(RejectReason::ProtocolError, bhs);
        return skip(conn, dsl).await;
    }
    // CmdSN window (RFC 7143 §4.2.2.1).
    if !cmd.immediate {
        let exp = conn.exp_cmd_sn.get();
        if cmd.cmd_sn != exp {
            conn.reject(RejectReason::ProtocolError, bhs);
            return skip(conn, dsl).await;
        }
        conn.exp_cmd_sn.set(exp.wrapping_add(1));
    }
    let Some(target) = conn.target.clone() else {
        // SCSI commands are not allowed in a discovery session.
        conn.reject(RejectReason::ProtocolError, bhs);
        return skip(conn, dsl).await;
    };
    if conn.tasks.borrow().contains_key(&cmd.itt) {
        conn.reject(RejectReason::TaskInProgress, bhs);
        return skip(conn, dsl).await;
    }
    let extended = match Ahs::parse(ahs) {
        Ok(a) => a.extended_cdb,
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            return skip(conn, dsl).await;
        }
    };
    let cdb = Cdb::assemble(&cmd.cdb, extended);
    let cdb_bytes = cdb.as_bytes().to_vec();
    let lun = decode_lun(cmd.lun);

    // Decide how much data the command takes before soliciting any.
    let prepared = target.scsi.prepare(
        &conn.nexus,
        lun,
        &cdb_bytes,
        u64::from(cmd.expected_data_transfer_length),
    );
    let (needed, wanted, early) = match prepared {
        Ok(p) => {
            let needed = match p.direction {
                DataDirection::Out => u32::try_from(p.data_out_bytes).unwrap_or(u32::MAX),
                _ => 0,
            };
            let wanted = if cmd.write { needed.min(cmd.expected_data_transfer_length) } else { 0 };
            (needed, wanted, None)
        }
        Err(result) => (0, 0, Some(result)),
    };

    let mut buf = None;
    if wanted > 0 {
        // Immediate and Data-Out segments are received straight into this buffer (no copy).
        copy_stats::io(CopyPath::IscsiReceive);
        let pool = executor::buffer_pool();
        // A written buffer may be kept as dirty blocks until the next txg: take a registered
        // one only while half the pool is free, so held data never starves the shard's I/O.
        let fits = wanted as usize <= pool.buffer_bytes() && pool.available() > pool.count() / 2;
        let b = if fits { pool.get() } else { None };
        let mut b = b.unwrap_or_else(|| IoBuf::zeroed(wanted as usize));
        b.set_len(wanted as usize);
        buf = Some(b);
    }
    // Immediate data lands straight in the command's buffer.
    let mut received = 0u32;
    if dsl > 0 {
        let take = dsl.min(wanted);
        if let Some(b) = buf.take() {
            if take > 0 {
                let (res, b) = recv_data_into(conn.fd, b, 0, take as usize, false).await;
                buf = Some(b);
                res?;
            } else {
                buf = Some(b);
            }
        }
        // Excess immediate data (beyond what the command takes), pad and digest.
        let digest_on = conn.digests.get().data;
        let kept = buf.as_ref().map_or(&[][..], |b| &b[..take as usize]);
        if !recv_segment_tail(conn.fd, kept, dsl as usize, digest_on).await? {
            // The command PDU is dropped (RFC 7143 §7.8): the initiator retries or times out.
            conn.reject(RejectReason::DataDigestError, bhs);
            return Ok(Step::Continue);
        }
        received = take;
    }

    let unsolicited_open = cmd.write && !cmd.final_bit;
    let expected_transfer = cmd.expected_data_transfer_length;
    let collect = (wanted > 0 || unsolicited_open).then(|| DataCollect {
        buf: None,
        expected_transfer,
        wanted,
        received,
        next_r2t_offset: if conn.params.initial_r2t {
            received
        } else {
            received.max(conn.params.first_burst_length.min(wanted))
        },
        outstanding_r2t: 0,
        unsolicited_open,
        ttt: RESERVED_TAG,
        r2t_sn: 0,
        next_data_sn: 0,
        waker: None,
        failed: None,
    });
    let collecting = collect.is_some();
    let mut collect = collect;
    if let Some(c) = collect.as_mut() {
        c.buf = buf.take();
    }
    conn.tasks.borrow_mut().insert(cmd.itt, Task { lun, handle: None, collect, done: false });

    let task_conn = Rc::clone(conn);
    let itt = cmd.itt;
    let in_flight = InFlight::new(conn, lun, started);
    let kind = IoKind::of_cdb(&cdb_bytes);
    let handle = executor::spawn(async move {
        let data = if collecting {
            match collect_data(&task_conn, itt, lun).await {
                Collected::Data(d) => Ok(d),
                Collected::Failed(sense) => Err(sense),
                Collected::Gone => return,
            }
        } else {
            Ok(buf)
        };
        let result = match (early, data) {
            (Some(r), _) => r,
            (None, Err(sense)) => CommandResult::check_condition(&sense, false),
            (None, Ok(data)) => target.scsi.execute(&task_conn.nexus, lun, &cdb_bytes, data).await,
        };
        let bytes = match kind {
            IoKind::Read => {
                result.data_in.as_ref().map_or(0, |d| d.len().min(expected_transfer as usize))
            }
            _ => needed as usize,
        };
        let good = matches!(result.status, crate::scsi::status::ScsiStatus::Good);
        respond(&task_conn, itt, cmd.lun, expected_transfer, cmd.read, needed, result);
        in_flight.complete(kind, bytes as u64, good);
    });
    if let Some(task) = conn.tasks.borrow_mut().get_mut(&itt) {
        if !task.done {
            task.handle = Some(handle);
        }
    }
    Ok(Step::Continue)
}

/// The 8-byte LUN field to a flat LUN number (SAM-5 peripheral / flat addressing).
fn decode_lun(raw: u64) -> u64 {
    let top = (raw >> 48) as u16;
    match top >> 14 {
        0 => u64::from(top & 0x00ff),
        1 => u64::from(top & 0x3fff),
        _ => u64::from(top),
    }
}

/// Waits until all data of the task arrived, sending R2Ts as needed.
async fn collect_data(conn: &Rc<Conn>, itt: u32, lun: u64) -> Collected {
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
                let r2t = R2t {
                    lun: encode_lun(lun),
                    itt,
                    ttt: c.ttt,
                    sns: StatusSns::default(),
                    r2t_sn: c.r2t_sn,
                    buffer_offset: c.next_r2t_offset,
                    desired_data_transfer_length: len,
                };
                c.r2t_sn = c.r2t_sn.wrapping_add(1);
                c.next_r2t_offset += len;
                c.outstanding_r2t += 1;
                let r2t = R2t { sns: conn.sns_with(outstanding, false), ..r2t };
                conn.sender.push(OutItem::Pdu(r2t.encode(), OutData::None));
            }
        }
        c.waker = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Flat-space LUN encoding for responses.
fn encode_lun(lun: u64) -> u64 {
    if lun < 256 {
        lun << 48
    } else {
        ((0x4000 | (lun & 0x3fff)) << 48) & 0xffff_0000_0000_0000
    }
}

/// Where a Data-Out PDU's payload goes.
#[derive(Debug, PartialEq, Eq)]
enum DataOutFate {
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
fn data_out_fate(c: &DataCollect, d: &ScsiDataOut, first_burst_length: u32) -> DataOutFate {
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
fn fail_collect(conn: &Conn, d: &ScsiDataOut) {
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

async fn on_data_out(conn: &Rc<Conn>, bhs: &Bhs) -> Result<Step, IoError> {
    let dsl = bhs.data_segment_length();
    let d = match ScsiDataOut::parse(bhs, conn.params.target_max_recv_segment) {
        Ok(d) => d,
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            return skip(conn, dsl).await;
        }
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
    let digest_on = conn.digests.get().data;
    let offset = d.buffer_offset;
    let mut digest_ok = true;
    let (keep, buf) = match (fate, buf) {
        (DataOutFate::Reject, _) => {
            conn.reject(RejectReason::ProtocolError, bhs);
            fail_collect(conn, &d);
            return skip(conn, dsl).await;
        }
        (DataOutFate::Keep { keep }, Some(b)) if keep == dsl => {
            let (res, b) =
                recv_data_into(conn.fd, b, offset as usize, keep as usize, digest_on).await;
            digest_ok = res?;
            (keep, Some(b))
        }
        (DataOutFate::Keep { keep }, Some(b)) => {
            // Part of this PDU is past what the command takes: keep the front, drop the rest.
            // The digest covers the whole segment; it is checked over both parts.
            let kept = offset as usize..(offset + keep) as usize;
            let (res, b) = ops::recv_exact(conn.fd, b, kept.clone()).await;
            res?;
            digest_ok = recv_segment_tail(conn.fd, &b[kept], dsl as usize, digest_on).await?;
            (keep, Some(b))
        }
        (fate, _) => {
            discard_data(conn.fd, dsl as usize, digest_on).await?;
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

/// Residual of a command (RFC 7143 §11.4.5): the initiator expected `expected_transfer`
/// bytes; the command consumed `data_out_bytes` (its SCSI transfer length, whether or not all
/// of it was sent) or produced `data_in_bytes`.
fn command_residual(
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
fn respond(
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

// ----- other PDUs -----

async fn on_nop_out(conn: &Rc<Conn>, bhs: &Bhs) -> Result<Step, IoError> {
    let dsl = bhs.data_segment_length();
    let nop = match NopOut::parse(bhs, conn.params.target_max_recv_segment) {
        Ok(n) => n,
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            return skip(conn, dsl).await;
        }
    };
    conn.consume_cmd_sn(nop.immediate, nop.cmd_sn);
    let Some(data) = recv_small(conn.fd, dsl as usize, conn.digests.get().data).await? else {
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

async fn on_task_mgmt(conn: &Rc<Conn>, bhs: &Bhs) -> Result<Step, IoError> {
    let req = match TaskMgmtRequest::parse(bhs) {
        Ok(r) => r,
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            return skip(conn, bhs.data_segment_length()).await;
        }
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
        conn.server.sessions.close_target(&target.name, conn.fd);
        conn.sender.close();
        return Ok(Step::Stop(ConnEnd::ColdReset));
    }
    Ok(Step::Continue)
}

fn abort_where(conn: &Conn, pred: impl Fn(&Task) -> bool) {
    let victims: Vec<u32> =
        conn.tasks.borrow().iter().filter(|(_, t)| pred(t)).map(|(itt, _)| *itt).collect();
    for itt in victims {
        let task = conn.tasks.borrow_mut().remove(&itt);
        if let Some(h) = task.and_then(|t| t.handle) {
            h.abort();
        }
    }
}

async fn on_text(conn: &Rc<Conn>, bhs: &Bhs) -> Result<Step, IoError> {
    let dsl = bhs.data_segment_length();
    let req = match TextRequest::parse(bhs, conn.params.target_max_recv_segment) {
        Ok(r) => r,
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            return skip(conn, dsl).await;
        }
    };
    conn.consume_cmd_sn(req.immediate, req.cmd_sn);
    let Some(data) = recv_small(conn.fd, dsl as usize, conn.digests.get().data).await? else {
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

async fn on_logout(conn: &Rc<Conn>, bhs: &Bhs) -> Result<Step, IoError> {
    let req = match LogoutRequest::parse(bhs) {
        Ok(r) => r,
        Err(e) => {
            conn.reject(pdu_error_reason(&e), bhs);
            return skip(conn, bhs.data_segment_length()).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(wanted: u32, expected_transfer: u32) -> DataCollect {
        DataCollect {
            buf: None,
            expected_transfer,
            wanted,
            received: 0,
            next_r2t_offset: 0,
            outstanding_r2t: 0,
            unsolicited_open: true,
            ttt: RESERVED_TAG,
            r2t_sn: 0,
            next_data_sn: 0,
            waker: None,
            failed: None,
        }
    }

    fn data_out(ttt: u32, data_sn: u32, buffer_offset: u32, len: u32) -> ScsiDataOut {
        ScsiDataOut {
            final_bit: false,
            lun: 0,
            itt: 1,
            ttt,
            exp_stat_sn: 0,
            data_sn,
            buffer_offset,
            data_segment_length: len,
        }
    }

    #[test]
    fn write_residuals_compare_the_cdb_length_with_the_expected_length() {
        // WRITE of one 512-byte block: EDTL 0 and 200 overflow, 10000 underflows.
        assert_eq!(command_residual(0, 512, None), Residual::Overflow(512));
        assert_eq!(command_residual(200, 512, None), Residual::Overflow(312));
        assert_eq!(command_residual(10000, 512, None), Residual::Underflow(9488));
        assert_eq!(command_residual(512, 512, None), Residual::None);
        // Reads compare what was produced; commands without data underflow the whole EDTL.
        assert_eq!(command_residual(4096, 0, Some(512)), Residual::Underflow(3584));
        assert_eq!(command_residual(0, 0, Some(512)), Residual::Overflow(512));
        assert_eq!(command_residual(0, 0, None), Residual::None);
    }

    #[test]
    fn data_out_sequence_checks() {
        let mut c = collect(1024, 1024);
        let first_burst = 65536;
        assert_eq!(
            data_out_fate(&c, &data_out(RESERVED_TAG, 0, 0, 512), first_burst),
            DataOutFate::Keep { keep: 512 }
        );
        // Wrong DataSN (0 twice, 27, -1) or a hole in the offsets fails the command.
        c.received = 512;
        c.next_data_sn = 1;
        for (sn, off) in [(0, 512), (27, 512), (u32::MAX, 512), (1, 0)] {
            assert_eq!(
                data_out_fate(&c, &data_out(RESERVED_TAG, sn, off, 512), first_burst),
                DataOutFate::Discard(Some(Sense::data_phase_error())),
                "DataSN {sn} offset {off}"
            );
        }
        // Past the expected transfer length, or the unsolicited burst: rejected.
        assert_eq!(
            data_out_fate(&c, &data_out(RESERVED_TAG, 1, 512, 1024), first_burst),
            DataOutFate::Reject
        );
        let mut big = collect(1 << 20, 1 << 20);
        big.received = 65536;
        big.next_data_sn = 128;
        assert_eq!(
            data_out_fate(&big, &data_out(RESERVED_TAG, 128, 65536, 512), first_burst),
            DataOutFate::Reject
        );
        // Solicited data needs the R2T's transfer tag and an outstanding R2T.
        c.unsolicited_open = false;
        c.ttt = 7;
        c.next_r2t_offset = 1024;
        c.next_data_sn = 0;
        assert_eq!(data_out_fate(&c, &data_out(8, 0, 512, 512), first_burst), DataOutFate::Reject);
        assert_eq!(data_out_fate(&c, &data_out(7, 0, 512, 512), first_burst), DataOutFate::Reject);
        c.outstanding_r2t = 1;
        assert_eq!(
            data_out_fate(&c, &data_out(7, 0, 512, 512), first_burst),
            DataOutFate::Keep { keep: 512 }
        );
        // Once failed, the rest of the sequence is dropped quietly.
        c.failed = Some(Sense::protocol_service_crc_error());
        assert_eq!(
            data_out_fate(&c, &data_out(7, 0, 512, 512), first_burst),
            DataOutFate::Discard(None)
        );
    }

    #[test]
    fn lun_field_round_trips_for_flat_and_peripheral_addressing() {
        for lun in [0u64, 1, 7, 255, 256, 1000, 16383] {
            assert_eq!(decode_lun(encode_lun(lun)), lun);
        }
    }
}
