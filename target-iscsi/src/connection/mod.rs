//! One iSCSI connection in the full-feature phase (RFC 7143 §4, §11).
//!
//! The connection's reader task receives PDUs (header first, then the data segment straight
//! into the buffer the command will hand to the volume), keeps the CmdSN window, and starts one
//! task per SCSI command. Command tasks collect their Data-Out (immediate, unsolicited, then
//! solicited), execute through the SCSI layer and queue their response on the writer.
//! Everything here runs on one shard; shared state is `Rc`/`Cell`.
//!
//! The connection is generic over its [`Transport`], which moves the PDUs and their payloads
//! (see [`crate::transport`]): nothing here touches a socket. A PDU's way through, file by
//! file:
//! - `dispatch.rs`: the reader loop, which receives each PDU header and routes the PDU to its
//!   handler by opcode;
//! - `command.rs`: a SCSI Command admitted, prepared, its immediate data received, and its
//!   task started;
//! - `data_out.rs`: the task's Data-Out collected (unsolicited, then solicited);
//! - `respond.rs`: the task's Data-In and SCSI Response;
//! - `control.rs`: NOP-Out, task management, text and logout.
//!
//! This file holds the connection's state ([`Conn`]), the full-feature phase's entry point
//! and the keepalive. The phase starts from the login phase's [`Established`] handoff and ends
//! with a [`ConnEnd`], both defined in `ffp.rs`: this module does not import `login_phase`,
//! and `serve.rs` runs the one after the other.

mod command;
mod control;
mod data_out;
mod dispatch;
mod respond;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::executor::{self, JoinHandle};

use crate::ffp::{ConnEnd, Established, FfpParams, Keepalive, QUEUE_DEPTH};
use crate::pdu::{Bhs, NopIn, Reject, RejectReason, StatusSns, RESERVED_TAG};
use crate::scsi::nexus::ItNexus;
use crate::server::{Server, TargetNode};
use crate::stats::{ConnRecorder, IoKind};
use crate::transport::Transport;
use crate::writer::{OutData, OutItem, Sender};

use data_out::DataCollect;
use dispatch::reader_loop;
pub(crate) use respond::scsi_response_pdu;

/// Largest data segment we ever accept, whatever was negotiated.
const MAX_ACCEPTED_DATA_SEGMENT_LENGTH: u32 = 16 << 20;

struct Task {
    lun: u64,
    handle: Option<JoinHandle<()>>,
    collect: Option<DataCollect>,
    /// Set once the response is queued; aborting then does nothing.
    done: bool,
}

/// Per-connection state shared by the reader and the command tasks.
pub struct Conn<T: Transport> {
    transport: T,
    server: Arc<Server>,
    sender: Sender,
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
struct InFlight<T: Transport> {
    conn: Rc<Conn<T>>,
    lun: u64,
    started: Instant,
    done: bool,
}

impl<T: Transport> InFlight<T> {
    fn new(conn: &Rc<Conn<T>>, lun: u64, started: Instant) -> InFlight<T> {
        conn.stats.begin(lun);
        InFlight { conn: Rc::clone(conn), lun, started, done: false }
    }

    fn complete(mut self, kind: IoKind, bytes: u64, good: bool) {
        self.done = true;
        self.conn.stats.end(self.lun, self.started, Some((kind, bytes, good)));
    }
}

impl<T: Transport> Drop for InFlight<T> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.stats.end(self.lun, self.started, None);
        }
    }
}

impl<T: Transport> Conn<T> {
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
pub async fn full_feature_phase<T: Transport>(
    transport: T,
    server: Arc<Server>,
    sender: Sender,
    est: Established,
    keepalive: Keepalive,
) -> ConnEnd {
    // Digests start with the first PDU after the final Login Response (RFC 7143 §13.1).
    transport.enable_digests(&sender, est.params.digests);
    let target_name = est.target.as_ref().map_or(String::new(), |t| t.name.clone());
    let registered = server.stats.connection_started(
        est.tsih,
        &est.nexus.initiator_name,
        &target_name,
        executor::current_shard(),
    );
    let stats = ConnRecorder::new(Arc::clone(&server.stats), registered);
    let conn = Rc::new(Conn {
        transport,
        server,
        sender,
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

async fn keepalive_loop<T: Transport>(conn: Rc<Conn<T>>, keepalive: Keepalive) {
    loop {
        executor::sleep(keepalive.interval.min(Duration::from_secs(1))).await;
        let now = Instant::now();
        if let Some((_, sent)) = conn.ping.get() {
            if now.duration_since(sent) > keepalive.timeout {
                // No answer: drop the connection; the reader sees the shutdown.
                conn.transport.shutdown();
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

/// The 8-byte LUN field to a flat LUN number (SAM-5 peripheral / flat addressing).
fn decode_lun(raw: u64) -> u64 {
    let top = (raw >> 48) as u16;
    match top >> 14 {
        0 => u64::from(top & 0x00ff),
        1 => u64::from(top & 0x3fff),
        _ => u64::from(top),
    }
}

/// Flat-space LUN encoding for responses.
fn encode_lun(lun: u64) -> u64 {
    if lun < 256 {
        lun << 48
    } else {
        ((0x4000 | (lun & 0x3fff)) << 48) & 0xffff_0000_0000_0000
    }
}
