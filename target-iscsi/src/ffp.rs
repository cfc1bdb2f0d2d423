//! The handoff between the login phase and the full-feature phase of a connection.
//!
//! Layering: `login_phase` runs the login exchange and ends with an [`Established`] session;
//! `connection` runs the full-feature phase from one and ends with a [`ConnEnd`]. Neither
//! imports the other: both depend on this module, and `serve` (the per-connection task the
//! shard spawns at accept) runs the one and hands its result to the other.

use std::sync::Arc;
use std::time::Duration;

use drivers::error::IoError;

use crate::scsi::nexus::ItNexus;
use crate::server::TargetNode;
use crate::writer::Digests;

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
