//! The SCSI command layer (SPC-4 / SBC-4), independent of the transport.
//!
//! A transport (iSCSI here, iSER later) hands each command to a [`ScsiTarget`] (or directly
//! to a [`LogicalUnit`]) in two steps:
//!
//! 1. [`ScsiTarget::prepare`] decodes the CDB before any Data-Out is solicited. It returns
//!    the direction and the Data-Out bytes the command consumes, or the [`CommandResult`]
//!    to send at once (bad CDB, unit attention, reservation conflict, Data-Out announced
//!    shorter than the CDB needs). The transport solicits
//!    `min(expected data transfer length, data_out_bytes)` and reports the rest as residual.
//! 2. [`ScsiTarget::execute`] runs it with the Data-Out and returns status, sense bytes and
//!    Data-In. Data-In is already cut to the CDB's allocation length; the transport sends at
//!    most the expected data transfer length of it and computes the residual.
//!
//! Reading order: `cdb.rs` (decoding) → `logical_unit.rs` (admission and dispatch) → one
//! file per command family → `reservation.rs`, `unit_attention.rs`, `mode.rs` (state).

pub mod cache;
pub mod capacity;
pub mod cdb;
pub mod compare_and_write;
pub mod config;
pub mod defect_data;
#[doc(hidden)]
pub mod fuzz;
pub mod inquiry;
pub mod limits;
pub mod logical_unit;
pub mod medium_change;
pub mod mode;
pub mod mode_commands;
pub mod nexus;
pub mod opcodes;
pub mod persistent_reserve;
pub mod quiesce;
pub mod read_write;
pub mod report_luns;
pub mod reservation;
pub mod sanitize;
pub mod sense;
pub mod status;
pub mod target;
pub mod unit_attention;
pub mod unmap;
pub mod verify;
pub mod vpd;
pub mod write_same;
pub mod yield_now;

#[cfg(test)]
mod tests;

pub use config::LunConfig;
pub use logical_unit::{LogicalUnit, LunError, ParsedCommand};
pub use nexus::ItNexus;
pub use sense::{Sense, SenseKey};
pub use status::{CommandResult, DataDirection, DataIn, Prepared, ScsiStatus};
pub use target::{PreparedCommand, ScsiTarget};
