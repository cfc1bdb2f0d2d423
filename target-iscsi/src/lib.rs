//! ferrite iSCSI target: PDU codec, login and negotiation, sessions, and the SCSI block
//! command layer shared with the iSER transport.

pub mod chap;
pub mod digest;
pub mod login;
pub mod negotiation;
pub mod pdu;
pub mod text;
pub mod scsi;
