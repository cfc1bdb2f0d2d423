//! A SCSI Command PDU: admitted (CmdSN window, task tag, CDB), prepared (how much data it
//! takes), its immediate data received into the command's buffer, then run as a task that
//! collects the rest of its Data-Out, executes and responds.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use drivers::buffer::IoBuf;
use drivers::error::IoError;
use drivers::executor;
use engine::copy_stats::{self, CopyPath};

use super::data_out::{collect_data, Collected, DataCollect};
use super::dispatch::{pdu_error_reason, skip, Step};
use super::respond::respond;
use super::{decode_lun, Conn, InFlight, Task};
use crate::pdu::{Ahs, Bhs, Cdb, RejectReason, ScsiCommand, RESERVED_TAG};
use crate::scsi::status::{CommandResult, DataDirection};
use crate::scsi::PreparedCommand;
use crate::server::TargetNode;
use crate::stats::IoKind;
use crate::transport::Transport;

/// A command the connection accepted: in the CmdSN window, for a target, with a new task tag
/// and a well-formed CDB.
struct Admitted {
    cmd: ScsiCommand,
    target: Arc<TargetNode>,
    cdb_bytes: Vec<u8>,
}

/// How much data a command takes, decided before any is solicited.
struct Transfer {
    /// Data-Out bytes the CDB asks for.
    needed: u32,
    /// Bytes the target takes from the initiator (`needed`, within the expected length).
    wanted: u32,
    /// The decoded command, or its result when preparing it already failed (it then takes
    /// no data).
    prepared: Result<PreparedCommand, CommandResult>,
}

pub(super) async fn on_scsi_command<T: Transport>(
    conn: &Rc<Conn<T>>,
    bhs: &Bhs,
    ahs: &[u8],
) -> Result<Step, IoError> {
    let started = Instant::now();
    let dsl = bhs.data_segment_length();
    let admitted = match admit(conn, bhs, ahs) {
        Ok(a) => a,
        Err(reason) => {
            conn.reject(reason, bhs);
            return skip(conn, dsl).await;
        }
    };
    let lun = decode_lun(admitted.cmd.lun);
    let transfer = plan_transfer(conn, &admitted, lun);
    let mut buf = data_buffer(transfer.wanted);
    if dsl > 0 && !recv_immediate(conn, &mut buf, dsl, transfer.wanted).await? {
        // The command PDU is dropped (RFC 7143 §7.8): the initiator retries or times out.
        conn.reject(RejectReason::DataDigestError, bhs);
        return Ok(Step::Continue);
    }
    let received = dsl.min(transfer.wanted);
    start_task(conn, admitted, lun, transfer, buf, received, started);
    Ok(Step::Continue)
}

/// Checks a command PDU in the order RFC 7143 asks for; the CmdSN is taken once it is the
/// next one expected, even when a later check rejects the command.
fn admit<T: Transport>(conn: &Conn<T>, bhs: &Bhs, ahs: &[u8]) -> Result<Admitted, RejectReason> {
    let dsl = bhs.data_segment_length();
    let cmd = ScsiCommand::parse(bhs, conn.params.target_max_recv_segment)
        .map_err(|e| pdu_error_reason(&e))?;
    // Immediate data is bounded by the transfer, FirstBurstLength and the ImmediateData key
    // (RFC 7143 §13.11, §13.14): anything else breaks the burst rules.
    if dsl > 0
        && (!conn.params.immediate_data
            || dsl > cmd.expected_data_transfer_length
            || dsl > conn.params.first_burst_length)
    {
        return Err(RejectReason::ProtocolError);
    }
    // CmdSN window (RFC 7143 §4.2.2.1).
    if !cmd.immediate {
        let exp = conn.exp_cmd_sn.get();
        if cmd.cmd_sn != exp {
            return Err(RejectReason::ProtocolError);
        }
        conn.exp_cmd_sn.set(exp.wrapping_add(1));
    }
    // SCSI commands are not allowed in a discovery session.
    let target = conn.target.clone().ok_or(RejectReason::ProtocolError)?;
    if conn.tasks.borrow().contains_key(&cmd.itt) {
        return Err(RejectReason::TaskInProgress);
    }
    let extended = Ahs::parse(ahs).map_err(|e| pdu_error_reason(&e))?.extended_cdb;
    let cdb = Cdb::assemble(&cmd.cdb, extended);
    let cdb_bytes = cdb.as_bytes().to_vec();
    Ok(Admitted { cmd, target, cdb_bytes })
}

/// Decides how much data the command takes before soliciting any.
fn plan_transfer<T: Transport>(conn: &Conn<T>, admitted: &Admitted, lun: u64) -> Transfer {
    let cmd = &admitted.cmd;
    let prepared = admitted.target.scsi.prepare(
        &conn.nexus,
        lun,
        &admitted.cdb_bytes,
        u64::from(cmd.expected_data_transfer_length),
    );
    match prepared {
        Ok(p) => {
            let needed = match p.transfer.direction {
                DataDirection::Out => u32::try_from(p.transfer.data_out_bytes).unwrap_or(u32::MAX),
                _ => 0,
            };
            let wanted = if cmd.write { needed.min(cmd.expected_data_transfer_length) } else { 0 };
            Transfer { needed, wanted, prepared: Ok(p) }
        }
        Err(result) => Transfer { needed: 0, wanted: 0, prepared: Err(result) },
    }
}

/// The buffer the command's data is received into, straight from the wire (no copy): None
/// when it takes none.
fn data_buffer(wanted: u32) -> Option<IoBuf> {
    if wanted == 0 {
        return None;
    }
    // Immediate and Data-Out segments are received straight into this buffer (no copy).
    copy_stats::io(CopyPath::IscsiReceive);
    let pool = executor::buffer_pool();
    // A written buffer may be kept as dirty blocks until the next txg: take a registered
    // one only while half the pool is free, so held data never starves the shard's I/O.
    let fits = wanted as usize <= pool.buffer_bytes() && pool.available() > pool.count() / 2;
    let b = if fits { pool.get() } else { None };
    let mut b = b.unwrap_or_else(|| IoBuf::zeroed(wanted as usize));
    b.set_len(wanted as usize);
    Some(b)
}

/// Receives the command's `dsl` bytes of immediate data: what the command takes lands straight
/// in its buffer, the excess is dropped. Ok(false) on a data digest error.
async fn recv_immediate<T: Transport>(
    conn: &Conn<T>,
    buf: &mut Option<IoBuf>,
    dsl: u32,
    wanted: u32,
) -> Result<bool, IoError> {
    let take = dsl.min(wanted);
    let (res, back) = conn.transport.recv_immediate(buf.take(), take as usize, dsl as usize).await;
    *buf = back;
    res
}

/// The collection state of a command that takes Data-Out (or has unsolicited data coming).
fn new_collect<T: Transport>(
    conn: &Conn<T>,
    cmd: &ScsiCommand,
    wanted: u32,
    received: u32,
) -> Option<DataCollect> {
    let unsolicited_open = cmd.write && !cmd.final_bit;
    (wanted > 0 || unsolicited_open).then(|| DataCollect {
        buf: None,
        expected_transfer: cmd.expected_data_transfer_length,
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
    })
}

/// Registers the task and spawns it: collect the Data-Out, execute, respond.
fn start_task<T: Transport>(
    conn: &Rc<Conn<T>>,
    admitted: Admitted,
    lun: u64,
    transfer: Transfer,
    mut buf: Option<IoBuf>,
    received: u32,
    started: Instant,
) {
    let Admitted { cmd, target, cdb_bytes } = admitted;
    let Transfer { needed, wanted, prepared } = transfer;
    let expected_transfer = cmd.expected_data_transfer_length;
    let mut collect = new_collect(conn, &cmd, wanted, received);
    let collecting = collect.is_some();
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
        let result = match (prepared, data) {
            (Err(r), _) => r,
            (Ok(_), Err(sense)) => CommandResult::check_condition(&sense, false),
            (Ok(p), Ok(data)) => target.scsi.execute_prepared(&task_conn.nexus, lun, p, data).await,
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
}
