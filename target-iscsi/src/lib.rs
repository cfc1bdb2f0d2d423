//! ferrite iSCSI target: PDU codec, login and negotiation, sessions, and the SCSI block
//! command layer shared with the iSER transport.
