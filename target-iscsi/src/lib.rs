//! ferrite iSCSI target: PDU codec, login and negotiation, sessions, and the SCSI block
//! command layer shared with the iSER transport.

pub mod admission;
pub mod chap;
pub mod connection;
pub mod digest;
pub mod ffp;
pub mod fuzz;
#[cfg(feature = "test-initiator")]
pub mod initiator;
pub mod login;
pub mod login_failures;
pub mod login_phase;
pub mod negotiation;
pub mod pdu;
pub mod scsi;
pub mod serve;
pub mod server;
pub mod session;
pub mod stats;
pub mod text;
pub mod transport;
pub mod writer;
