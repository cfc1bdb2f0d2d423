//! A SCSI target device (one iSCSI target node): routes commands to its logical units,
//! answers REPORT LUNS, and stands in for logical units that do not exist (SPC-4 7.3,
//! SAM-5 5.9).

use std::sync::Arc;

use drivers::buffer::IoBuf;

use super::cdb::{self, opcode, Command};
use super::inquiry::standard_inquiry;
use super::logical_unit::{LogicalUnit, ParsedCommand};
use super::nexus::ItNexus;
use super::report_luns::report_luns;
use super::sense::Sense;
use super::status::{data_in, CommandResult, DataDirection, Prepared, ScsiError};

/// A command [`ScsiTarget::prepare`] decoded: the data it takes and where it goes.
#[derive(Debug)]
pub struct PreparedCommand {
    /// Direction and Data-Out bytes, decided before any data is solicited.
    pub transfer: Prepared,
    route: Route,
}

/// Where a prepared command runs.
#[derive(Debug)]
enum Route {
    /// REPORT LUNS, answered by the target whatever the LUN.
    ReportLuns(Command),
    /// A command to an existing logical unit.
    Unit(ParsedCommand),
    /// INQUIRY or REQUEST SENSE to a LUN with no logical unit.
    NoUnit { opcode: Option<u8>, parsed: Result<Command, Sense> },
}

/// Peripheral qualifier 3, device type 0x1F: no logical unit at this LUN.
const NO_LOGICAL_UNIT: u8 = 0x7F;

/// The logical units of one target node. The LUN inventory is fixed for the life of the
/// value: to change it, build a new `ScsiTarget` and call
/// [`LogicalUnit::reported_luns_changed`] on the LUs that remain.
pub struct ScsiTarget {
    name: String,
    luns: Vec<(u64, Arc<LogicalUnit>)>,
}

impl ScsiTarget {
    /// A target named `name` (its iSCSI name) with `luns`, sorted by LUN.
    #[must_use]
    pub fn new(name: &str, mut luns: Vec<(u64, Arc<LogicalUnit>)>) -> ScsiTarget {
        luns.sort_by_key(|(n, _)| *n);
        luns.dedup_by_key(|(n, _)| *n);
        ScsiTarget { name: name.to_string(), luns }
    }

    /// The target's iSCSI name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The LU at `lun`.
    #[must_use]
    pub fn lun(&self, lun: u64) -> Option<&Arc<LogicalUnit>> {
        self.luns.binary_search_by_key(&lun, |(n, _)| *n).ok().map(|i| &self.luns[i].1)
    }

    /// LUN numbers, ascending.
    pub fn lun_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.luns.iter().map(|(n, _)| *n)
    }

    /// Pre-flight of a command to `lun` (see [`LogicalUnit::prepare`]): how much data it
    /// takes, and the decoded command [`execute_prepared`](Self::execute_prepared) runs.
    pub fn prepare(
        &self,
        nexus: &ItNexus,
        lun: u64,
        cdb: &[u8],
        expected_bytes: u64,
    ) -> Result<PreparedCommand, CommandResult> {
        let data_in = Prepared { direction: DataDirection::In, data_out_bytes: 0 };
        let opcode = cdb.first().copied();
        if opcode == Some(opcode::REPORT_LUNS) {
            return match cdb::parse(cdb) {
                Ok(cmd) => Ok(PreparedCommand { transfer: data_in, route: Route::ReportLuns(cmd) }),
                Err(s) => Err(CommandResult::check_condition(&s, false)),
            };
        }
        match self.lun(lun) {
            Some(lu) => lu
                .prepare_command(nexus, cdb, expected_bytes)
                .map(|(transfer, parsed)| PreparedCommand { transfer, route: Route::Unit(parsed) }),
            None => match opcode {
                Some(opcode::INQUIRY | opcode::REQUEST_SENSE) => Ok(PreparedCommand {
                    transfer: data_in,
                    route: Route::NoUnit { opcode, parsed: cdb::parse(cdb) },
                }),
                _ => Err(CommandResult::check_condition(&Sense::lun_not_supported(), false)),
            },
        }
    }

    /// Executes a command addressed to `lun`, decoding its CDB here. The tests' entry; the
    /// connection runs [`execute_prepared`](Self::execute_prepared).
    #[cfg(test)]
    pub async fn execute(
        &self,
        nexus: &ItNexus,
        lun: u64,
        cdb: &[u8],
        data_out: Option<IoBuf>,
    ) -> CommandResult {
        if cdb.first() == Some(&opcode::REPORT_LUNS) {
            return self.report_luns(cdb::parse(cdb));
        }
        match self.lun(lun) {
            Some(lu) => lu.execute(nexus, cdb, data_out).await,
            None => Self::no_logical_unit(cdb.first().copied(), cdb::parse(cdb)),
        }
    }

    /// Executes a command [`prepare`](Self::prepare) decoded for `lun`, without parsing its
    /// CDB again.
    pub async fn execute_prepared(
        &self,
        nexus: &ItNexus,
        lun: u64,
        prepared: PreparedCommand,
        data_out: Option<IoBuf>,
    ) -> CommandResult {
        match prepared.route {
            Route::ReportLuns(cmd) => self.report_luns(Ok(cmd)),
            Route::Unit(parsed) => match self.lun(lun) {
                Some(lu) => lu.execute_prepared(nexus, parsed, data_out).await,
                // The inventory is fixed for the life of the target, so `prepare` found it.
                None => CommandResult::check_condition(&Sense::lun_not_supported(), false),
            },
            Route::NoUnit { opcode, parsed } => Self::no_logical_unit(opcode, parsed),
        }
    }

    fn report_luns(&self, parsed: Result<Command, Sense>) -> CommandResult {
        let luns: Vec<u64> = self.lun_numbers().collect();
        let res = match parsed {
            Ok(Command::ReportLuns { select, allocation_length }) => {
                report_luns(&luns, select, allocation_length)
            }
            Ok(_) => Err(Sense::invalid_opcode().into()),
            Err(s) => Err(s.into()),
        };
        match res {
            Ok(d) => CommandResult::good(d),
            Err(ScsiError::Check(s)) => CommandResult::check_condition(&s, false),
            Err(_) => CommandResult::check_condition(&Sense::internal_target_failure(), false),
        }
    }

    /// A command to a LUN with no logical unit (`opcode` is the CDB's first byte).
    fn no_logical_unit(opcode: Option<u8>, parsed: Result<Command, Sense>) -> CommandResult {
        match parsed {
            Ok(Command::Inquiry { evpd: false, page_code: 0, allocation_length }) => {
                let d = standard_inquiry(NO_LOGICAL_UNIT, "", "", "");
                CommandResult::good(data_in(&d, allocation_length as usize))
            }
            Ok(Command::RequestSense { desc, allocation_length }) => CommandResult::good(data_in(
                &Sense::lun_not_supported().encode(desc),
                allocation_length as usize,
            )),
            Err(s) if opcode == Some(opcode::INQUIRY) => CommandResult::check_condition(&s, false),
            _ => CommandResult::check_condition(&Sense::lun_not_supported(), false),
        }
    }

    /// Registers a new session with every LU.
    pub fn nexus_established(&self, nexus: &ItNexus) {
        for (_, lu) in &self.luns {
            lu.nexus_established(nexus);
        }
    }

    /// A session ended.
    pub fn nexus_lost(&self, nexus_id: u64) {
        for (_, lu) in &self.luns {
            lu.nexus_lost(nexus_id);
        }
    }

    /// LOGICAL UNIT RESET of `lun`; false when there is no such LU.
    pub fn lun_reset(&self, by: &ItNexus, lun: u64) -> bool {
        self.lun(lun).map(|lu| lu.lun_reset(by)).is_some()
    }

    /// TARGET WARM RESET: resets every LU.
    pub fn target_reset(&self, by: &ItNexus) {
        for (_, lu) in &self.luns {
            lu.target_reset(by);
        }
    }
}
