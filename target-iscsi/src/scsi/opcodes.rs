//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) and REPORT SUPPORTED TASK MANAGEMENT
//! FUNCTIONS (SPC-4 6.36). The table lists exactly the commands `cdb::parse` decodes, with
//! CDB usage bitmaps of exactly the bits it reads.

use super::cdb::opcode as op;
use super::logical_unit::LogicalUnit;
use super::sense::Sense;
use super::status::{data_in, ScsiResult};
use drivers::buffer::IoBuf;

/// One supported command.
#[derive(Debug, Clone, Copy)]
pub struct CommandInfo {
    /// Operation code.
    pub opcode: u8,
    /// Service action, for commands that have them.
    pub service_action: Option<u8>,
    /// CDB usage data (its length is the CDB length).
    pub usage: &'static [u8],
}

const fn c(opcode: u8, usage: &'static [u8]) -> CommandInfo {
    CommandInfo { opcode, service_action: None, usage }
}

const fn sa(opcode: u8, service_action: u8, usage: &'static [u8]) -> CommandInfo {
    CommandInfo { opcode, service_action: Some(service_action), usage }
}

const F: u8 = 0xFF;

/// SANITIZE: IMMED, AUSE, SERVICE ACTION, PARAMETER LIST LENGTH.
const SANITIZE_USAGE: &[u8] = &[0x48, 0xBF, 0, 0, 0, 0, 0, F, F, 0];

/// Every supported command, by opcode then service action.
pub const COMMANDS: &[CommandInfo] = &[
    c(op::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0]),
    c(op::REQUEST_SENSE, &[0x03, 0x01, 0, 0, F, 0]),
    c(op::READ_6, &[0x08, 0x1F, F, F, F, 0]),
    c(op::WRITE_6, &[0x0A, 0x1F, F, F, F, 0]),
    c(op::INQUIRY, &[0x12, 0x03, F, F, F, 0]),
    c(op::MODE_SELECT_6, &[0x15, 0x11, 0, 0, F, 0]),
    c(op::RESERVE_6, &[0x16, 0, 0, 0, 0, 0]),
    c(op::RELEASE_6, &[0x17, 0, 0, 0, 0, 0]),
    c(op::MODE_SENSE_6, &[0x1A, 0x08, F, F, F, 0]),
    c(op::START_STOP_UNIT, &[0x1B, 0x01, 0, 0, 0xF3, 0]),
    c(op::READ_CAPACITY_10, &[0x25, 0, F, F, F, F, 0, 0, 0x01, 0]),
    c(op::READ_10, &[0x28, 0xF8, F, F, F, F, 0, F, F, 0]),
    c(op::WRITE_10, &[0x2A, 0xF8, F, F, F, F, 0, F, F, 0]),
    c(op::WRITE_AND_VERIFY_10, &[0x2E, 0xF6, F, F, F, F, 0, F, F, 0]),
    c(op::VERIFY_10, &[0x2F, 0xF6, F, F, F, F, 0, F, F, 0]),
    c(op::PRE_FETCH_10, &[0x34, 0, F, F, F, F, 0, F, F, 0]),
    c(op::SYNCHRONIZE_CACHE_10, &[0x35, 0, F, F, F, F, 0, F, F, 0]),
    c(op::READ_DEFECT_DATA_10, &[0x37, 0, 0x1F, 0, 0, 0, 0, F, F, 0]),
    c(op::WRITE_SAME_10, &[0x41, 0xF8, F, F, F, F, 0, F, F, 0]),
    c(op::UNMAP, &[0x42, 0x01, 0, 0, 0, 0, 0, F, F, 0]),
    sa(op::SANITIZE, op::SA_SANITIZE_OVERWRITE, SANITIZE_USAGE),
    sa(op::SANITIZE, op::SA_SANITIZE_BLOCK_ERASE, SANITIZE_USAGE),
    sa(op::SANITIZE, op::SA_SANITIZE_EXIT_FAILURE_MODE, SANITIZE_USAGE),
    c(op::MODE_SELECT_10, &[0x55, 0x11, 0, 0, 0, 0, 0, F, F, 0]),
    c(op::RESERVE_10, &[0x56, 0x12, 0, 0, 0, 0, 0, 0, 0, 0]),
    c(op::RELEASE_10, &[0x57, 0x12, 0, 0, 0, 0, 0, 0, 0, 0]),
    c(op::MODE_SENSE_10, &[0x5A, 0x18, F, F, 0, 0, 0, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 0x00, &[0x5E, 0x1F, 0, 0, 0, 0, 0, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 0x01, &[0x5E, 0x1F, 0, 0, 0, 0, 0, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 0x02, &[0x5E, 0x1F, 0, 0, 0, 0, 0, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_IN, 0x03, &[0x5E, 0x1F, 0, 0, 0, 0, 0, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x00, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x01, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x02, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x03, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x04, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x05, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x06, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    sa(op::PERSISTENT_RESERVE_OUT, 0x07, &[0x5F, 0x1F, F, 0, 0, F, F, F, F, 0]),
    c(op::READ_16, &[0x88, 0xF8, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::COMPARE_AND_WRITE, &[0x89, 0xF8, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0, 0]),
    c(op::WRITE_16, &[0x8A, 0xF8, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::ORWRITE_16, &[0x8B, 0xF8, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::WRITE_AND_VERIFY_16, &[0x8E, 0xF6, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::VERIFY_16, &[0x8F, 0xF6, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::PRE_FETCH_16, &[0x90, 0, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::SYNCHRONIZE_CACHE_16, &[0x91, 0, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::WRITE_SAME_16, &[0x93, 0xF9, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0]),
    sa(
        op::SERVICE_ACTION_IN_16,
        op::SA_READ_CAPACITY_16,
        &[0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, 0],
    ),
    sa(
        op::SERVICE_ACTION_IN_16,
        op::SA_GET_LBA_STATUS,
        &[0x9E, 0x1F, F, F, F, F, F, F, F, F, F, F, F, F, 0, 0],
    ),
    c(op::REPORT_LUNS, &[0xA0, 0, F, 0, 0, 0, F, F, F, F, 0, 0]),
    sa(
        op::MAINTENANCE_IN,
        op::SA_REPORT_SUPPORTED_OPCODES,
        &[0xA3, 0x1F, 0x87, F, F, F, F, F, F, F, 0, 0],
    ),
    sa(
        op::MAINTENANCE_IN,
        op::SA_REPORT_SUPPORTED_TMFS,
        &[0xA3, 0x1F, 0x80, 0, 0, 0, F, F, F, F, 0, 0],
    ),
    c(op::READ_12, &[0xA8, 0xF8, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::WRITE_12, &[0xAA, 0xF8, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::WRITE_AND_VERIFY_12, &[0xAE, 0xF6, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::VERIFY_12, &[0xAF, 0xF6, F, F, F, F, F, F, F, F, 0, 0]),
    c(op::READ_DEFECT_DATA_12, &[0xB7, 0x1F, 0, 0, 0, 0, F, F, F, F, 0, 0]),
];

/// Recommended command timeout reported with RCTD, in seconds.
const RECOMMENDED_TIMEOUT_S: u32 = 30;

fn timeouts_descriptor() -> [u8; 12] {
    let mut t = [0u8; 12];
    t[1] = 0x0A;
    t[8..12].copy_from_slice(&RECOMMENDED_TIMEOUT_S.to_be_bytes());
    t
}

/// What of the table a LU executes: UNMAP needs a thin-provisioned volume, SANITIZE BLOCK
/// ERASE one whose deallocated blocks read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Thin provisioning (UNMAP).
    pub thin: bool,
    /// SANITIZE BLOCK ERASE (see `sanitize::block_erase_supported`).
    pub block_erase: bool,
}

impl Capabilities {
    /// Everything in the table.
    pub const ALL: Capabilities = Capabilities { thin: true, block_erase: true };
}

/// Commands supported by a LU with `caps`.
pub fn supported(caps: Capabilities) -> impl Iterator<Item = &'static CommandInfo> {
    COMMANDS.iter().filter(move |c| match (c.opcode, c.service_action) {
        (op::UNMAP, _) => caps.thin,
        (op::SANITIZE, Some(op::SA_SANITIZE_BLOCK_ERASE)) => caps.block_erase,
        _ => true,
    })
}

/// REPORT SUPPORTED OPERATION CODES data.
pub fn report_supported_opcodes(
    caps: Capabilities,
    rctd: bool,
    options: u8,
    opcode: u8,
    service_action: u16,
    allocation_length: u32,
) -> ScsiResult {
    let alloc = allocation_length as usize;
    if options == 0 {
        let mut d = vec![0u8; 4];
        for cmd in supported(caps) {
            d.push(cmd.opcode);
            d.push(0);
            d.extend_from_slice(&u16::from(cmd.service_action.unwrap_or(0)).to_be_bytes());
            d.push(0);
            d.push(if rctd { 0x02 } else { 0 } | u8::from(cmd.service_action.is_some()));
            d.extend_from_slice(&(cmd.usage.len() as u16).to_be_bytes());
            if rctd {
                d.extend_from_slice(&timeouts_descriptor());
            }
        }
        let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
        d[0..4].copy_from_slice(&len.to_be_bytes());
        return Ok(data_in(&d, alloc));
    }
    let has_sa = COMMANDS.iter().any(|c| c.opcode == opcode && c.service_action.is_some());
    let found = match options {
        1 if has_sa => return Err(Sense::invalid_field_in_cdb(2, Some(2)).into()),
        2 if !has_sa => return Err(Sense::invalid_field_in_cdb(2, Some(2)).into()),
        1..=3 => supported(caps).find(|c| {
            c.opcode == opcode
                && (!has_sa || c.service_action.map(u16::from) == Some(service_action))
        }),
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(2)).into()),
    };
    let mut d = vec![0u8; 4];
    match found {
        Some(cmd) => {
            d[1] = if rctd { 0x80 } else { 0 } | 0x03;
            d[2..4].copy_from_slice(&(cmd.usage.len() as u16).to_be_bytes());
            d.extend_from_slice(cmd.usage);
            if rctd {
                d.extend_from_slice(&timeouts_descriptor());
            }
        }
        None => d[1] = 0x01,
    }
    Ok(data_in(&d, alloc))
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS: ABORT TASK, ABORT TASK SET, CLEAR TASK SET,
/// LOGICAL UNIT RESET, TARGET RESET.
#[must_use]
pub fn report_supported_tmfs(repd: bool, allocation_length: u32) -> Option<IoBuf> {
    let mut d = vec![0x80 | 0x40 | 0x10 | 0x08 | 0x02, 0, 0, 0];
    if repd {
        d[3] = 0x0C;
        d.resize(16, 0);
    }
    data_in(&d, allocation_length as usize)
}

impl LogicalUnit {
    /// The optional commands this LU supports (what REPORT SUPPORTED OPERATION CODES lists).
    pub(super) fn capabilities(&self) -> Capabilities {
        let g = self.geometry();
        Capabilities {
            thin: g.thin_provisioned,
            block_erase: super::sanitize::block_erase_supported(&g, self.config.block_erase),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::{parse, MAX_CDB_BYTES};

    #[test]
    fn every_listed_command_parses_and_usage_starts_with_opcode() {
        for cmd in COMMANDS {
            assert_eq!(cmd.usage[0], cmd.opcode);
            let mut cdb = [0u8; MAX_CDB_BYTES];
            cdb[0] = cmd.opcode;
            if let Some(s) = cmd.service_action {
                cdb[1] = s;
            }
            if (cmd.opcode, cmd.service_action) == (op::SANITIZE, Some(op::SA_SANITIZE_OVERWRITE)) {
                cdb[8] = 8; // OVERWRITE needs a parameter list beyond its header.
            }
            // With reserved bits clear and lengths 0, every listed command decodes.
            assert!(parse(&cdb).is_ok(), "opcode {:#x} not decoded", cmd.opcode);
        }
    }

    #[test]
    fn sanitize_is_listed_per_executed_service_action() {
        let sas = |caps| {
            supported(caps)
                .filter(|c| c.opcode == op::SANITIZE)
                .map(|c| c.service_action)
                .collect::<Vec<_>>()
        };
        assert_eq!(sas(Capabilities::ALL), [Some(0x01), Some(0x02), Some(0x1F)]);
        let no_erase = Capabilities { thin: true, block_erase: false };
        assert_eq!(sas(no_erase), [Some(0x01), Some(0x1F)]);
        // One command descriptor per service action, and no CRYPTOGRAPHIC ERASE.
        let one = |sa: u16| {
            report_supported_opcodes(Capabilities::ALL, false, 2, op::SANITIZE, sa, 64)
                .ok()
                .flatten()
                .map(|d| d[1] & 0x07)
        };
        assert_eq!(one(0x01), Some(0x03));
        assert_eq!(one(0x02), Some(0x03));
        assert_eq!(one(0x03), Some(0x01));
        assert_eq!(one(0x1F), Some(0x03));
    }

    #[test]
    fn unlisted_opcodes_are_rejected_by_the_parser() {
        for opc in 0..=255u8 {
            if COMMANDS.iter().any(|c| c.opcode == opc) {
                continue;
            }
            assert_eq!(parse(&[opc; 1]), Err(Sense::invalid_opcode()), "opcode {opc:#x}");
        }
    }
}
