//! CDB decoding: every command the layer executes, parsed once into a typed [`Command`].
//!
//! The parser is total: any byte string yields a `Command` or the ILLEGAL REQUEST sense
//! (with a field pointer) to return for it. It never panics; short CDBs read as if
//! zero-padded to 16 bytes.

use super::sense::Sense;

/// Operation codes (SPC-4 / SBC-4).
#[allow(missing_docs)]
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const SANITIZE: u8 = 0x48;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;

    /// SERVICE ACTION IN(16) service actions.
    pub const SA_READ_CAPACITY_16: u8 = 0x10;
    pub const SA_GET_LBA_STATUS: u8 = 0x12;
    /// MAINTENANCE IN service actions.
    pub const SA_REPORT_SUPPORTED_OPCODES: u8 = 0x0C;
    pub const SA_REPORT_SUPPORTED_TMFS: u8 = 0x0D;
    /// SANITIZE service actions (SBC-4 table 65).
    pub const SA_SANITIZE_OVERWRITE: u8 = 0x01;
    pub const SA_SANITIZE_BLOCK_ERASE: u8 = 0x02;
    pub const SA_SANITIZE_CRYPTOGRAPHIC_ERASE: u8 = 0x03;
    pub const SA_SANITIZE_EXIT_FAILURE_MODE: u8 = 0x1F;
}

/// Longest CDB the parser looks at.
pub const MAX_CDB_BYTES: usize = 16;

/// A read- or write-type block command (READ, WRITE, WRITE AND VERIFY, ORWRITE, COMPARE AND
/// WRITE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockIo {
    /// First logical block.
    pub lba: u64,
    /// Number of logical blocks (READ(6)/WRITE(6) 0 already turned into 256).
    pub blocks: u32,
    /// DPO: a caching hint, accepted and ignored.
    pub dpo: bool,
    /// FUA: the data must be durable when the command completes.
    pub fua: bool,
    /// CDB length (6, 10, 12, 16), for field pointers.
    pub cdb_bytes: u8,
}

/// VERIFY and WRITE AND VERIFY byte-check mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteCheck {
    /// BYTCHK 0: medium verification only, no Data-Out.
    Medium,
    /// BYTCHK 1: compare with NUMBER OF BLOCKS blocks of Data-Out.
    Compare,
    /// BYTCHK 3: compare every block with one block of Data-Out.
    CompareOneBlock,
}

/// A block range (PRE-FETCH, SYNCHRONIZE CACHE); `blocks == 0` means "to the end".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// First logical block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u32,
}

/// WRITE SAME (10)/(16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSameCdb {
    /// First logical block.
    pub lba: u64,
    /// Number of blocks (0 is rejected: WSNZ = 1).
    pub blocks: u32,
    /// UNMAP: deallocate when the data is zeros.
    pub unmap: bool,
    /// ANCHOR (not supported: rejected by the executor).
    pub anchor: bool,
    /// NDOB: no Data-Out, the block is zeros (WRITE SAME(16) only).
    pub ndob: bool,
    /// CDB length, for field pointers.
    pub cdb_bytes: u8,
}

/// SANITIZE (SBC-4 5.30). The service action is one ferrite executes (OVERWRITE, BLOCK
/// ERASE, EXIT FAILURE MODE); CRYPTOGRAPHIC ERASE and reserved codes are refused by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanitizeCdb {
    /// IMMED: return status once the CDB and parameter list are validated.
    pub immed: bool,
    /// AUSE: a failure of this operation may be left with EXIT FAILURE MODE.
    pub ause: bool,
    /// SERVICE ACTION.
    pub service_action: u8,
    /// PARAMETER LIST LENGTH (OVERWRITE only; its upper bound depends on the block size and
    /// is checked by the logical unit).
    pub parameter_list_length: u32,
}

/// MODE SENSE (6)/(10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSenseCdb {
    /// True for the 10-byte form.
    pub ten: bool,
    /// DBD: no block descriptors.
    pub dbd: bool,
    /// LLBAA: long LBA block descriptors allowed (10-byte form only).
    pub llbaa: bool,
    /// PC: 0 current, 1 changeable, 2 default, 3 saved.
    pub page_control: u8,
    /// PAGE CODE (0x3F: all).
    pub page_code: u8,
    /// SUBPAGE CODE.
    pub subpage_code: u8,
    /// ALLOCATION LENGTH.
    pub allocation_length: u32,
}

/// MODE SELECT (6)/(10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSelectCdb {
    /// True for the 10-byte form.
    pub ten: bool,
    /// PF: page format.
    pub pf: bool,
    /// SP: save pages.
    pub sp: bool,
    /// PARAMETER LIST LENGTH.
    pub parameter_list_length: u32,
}

/// A decoded CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Command {
    TestUnitReady,
    RequestSense {
        desc: bool,
        allocation_length: u32,
    },
    Inquiry {
        evpd: bool,
        page_code: u8,
        allocation_length: u32,
    },
    ModeSense(ModeSenseCdb),
    ModeSelect(ModeSelectCdb),
    StartStopUnit {
        immed: bool,
        power_condition: u8,
        loej: bool,
        start: bool,
    },
    /// RESERVE(6)/(10), SPC-2.
    Reserve,
    /// RELEASE(6)/(10), SPC-2.
    Release,
    ReadCapacity10 {
        pmi: bool,
        lba: u32,
    },
    ReadCapacity16 {
        allocation_length: u32,
    },
    GetLbaStatus {
        lba: u64,
        allocation_length: u32,
    },
    /// READ DEFECT DATA (10)/(12).
    ReadDefectData {
        twelve: bool,
        req_plist: bool,
        req_glist: bool,
        format: u8,
        allocation_length: u32,
    },
    Read(BlockIo),
    Write(BlockIo),
    WriteAndVerify(BlockIo, ByteCheck),
    Verify(BlockIo, ByteCheck),
    OrWrite(BlockIo),
    CompareAndWrite(BlockIo),
    PreFetch(BlockRange),
    SynchronizeCache(BlockRange),
    WriteSame(WriteSameCdb),
    Unmap {
        anchor: bool,
        parameter_list_length: u32,
    },
    Sanitize(SanitizeCdb),
    PersistentReserveIn {
        service_action: u8,
        allocation_length: u32,
    },
    PersistentReserveOut {
        service_action: u8,
        scope: u8,
        pr_type: u8,
        parameter_list_length: u32,
    },
    ReportLuns {
        select: u8,
        allocation_length: u32,
    },
    ReportSupportedOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        service_action: u16,
        allocation_length: u32,
    },
    ReportSupportedTmfs {
        repd: bool,
        allocation_length: u32,
    },
}

/// How a command touches the medium, for the reservation conflict tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed under every reservation (INQUIRY, REPORT LUNS, ...).
    Always,
    /// Reads the medium or state (allowed to non-holders under Write Exclusive).
    Read,
    /// Changes the medium or state.
    Write,
}

/// A CDB zero-padded to [`MAX_CDB_BYTES`].
struct Bytes([u8; MAX_CDB_BYTES]);

impl Bytes {
    fn new(cdb: &[u8]) -> Bytes {
        let mut b = [0u8; MAX_CDB_BYTES];
        let n = cdb.len().min(MAX_CDB_BYTES);
        b[..n].copy_from_slice(&cdb[..n]);
        Bytes(b)
    }
    fn u8(&self, i: usize) -> u8 {
        self.0[i]
    }
    fn bit(&self, i: usize, mask: u8) -> bool {
        self.0[i] & mask != 0
    }
    fn be16(&self, i: usize) -> u32 {
        u32::from(u16::from_be_bytes([self.0[i], self.0[i + 1]]))
    }
    fn be32(&self, i: usize) -> u32 {
        u32::from_be_bytes([self.0[i], self.0[i + 1], self.0[i + 2], self.0[i + 3]])
    }
    fn be64(&self, i: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.0[i..i + 8]);
        u64::from_be_bytes(a)
    }
    /// The 3-bit protection field in byte 1 (RDPROTECT, WRPROTECT, VRPROTECT, ORPROTECT).
    fn no_protection(&self) -> Result<(), Sense> {
        if self.0[1] >> 5 != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(7)));
        }
        Ok(())
    }
}

/// The CDB length of a 10-, 12- or 16-byte command, from its opcode's group code (SPC-4
/// 4.2.5.1: group 1 and 2 are 10 bytes, 5 is 12, 4 is 16).
fn length_of_group(opcode: u8) -> u8 {
    match opcode >> 5 {
        1 | 2 => 10,
        5 => 12,
        _ => 16,
    }
}

fn block_io(b: &Bytes, cdb_bytes: u8) -> Result<BlockIo, Sense> {
    let (lba, blocks) = match cdb_bytes {
        6 => {
            let lba = u64::from(b.u8(1) & 0x1F) << 16 | u64::from(b.be16(2));
            let len = u32::from(b.u8(4));
            return Ok(BlockIo {
                lba,
                blocks: if len == 0 { 256 } else { len },
                dpo: false,
                fua: false,
                cdb_bytes,
            });
        }
        10 => (u64::from(b.be32(2)), b.be16(7)),
        12 => (u64::from(b.be32(2)), b.be32(6)),
        _ => (b.be64(2), b.be32(10)),
    };
    b.no_protection()?;
    Ok(BlockIo { lba, blocks, dpo: b.bit(1, 0x10), fua: b.bit(1, 0x08), cdb_bytes })
}

fn byte_check(b: &Bytes) -> Result<ByteCheck, Sense> {
    match (b.u8(1) >> 1) & 0x03 {
        0 => Ok(ByteCheck::Medium),
        1 => Ok(ByteCheck::Compare),
        3 => Ok(ByteCheck::CompareOneBlock),
        _ => Err(Sense::invalid_field_in_cdb(1, Some(2))),
    }
}

fn range(b: &Bytes, sixteen: bool) -> BlockRange {
    if sixteen {
        BlockRange { lba: b.be64(2), blocks: b.be32(10) }
    } else {
        BlockRange { lba: u64::from(b.be32(2)), blocks: b.be16(7) }
    }
}

/// SANITIZE: reserved bits and bytes, the service action, and the PARAMETER LIST LENGTH the
/// service action requires (SBC-4 table 65: zero except for OVERWRITE, which needs more than
/// the 4-byte header).
fn sanitize(b: &Bytes) -> Result<SanitizeCdb, Sense> {
    use opcode as op;
    if b.bit(1, 0x40) {
        return Err(Sense::invalid_field_in_cdb(1, Some(6)));
    }
    if let Some(i) = (2..=6).find(|&i| b.u8(i) != 0) {
        return Err(Sense::invalid_field_in_cdb(i as u16, None));
    }
    let service_action = b.u8(1) & 0x1F;
    let parameter_list_length = b.be16(7);
    match service_action {
        op::SA_SANITIZE_OVERWRITE if parameter_list_length <= 4 => {
            return Err(Sense::invalid_field_in_cdb(7, None));
        }
        op::SA_SANITIZE_OVERWRITE => {}
        op::SA_SANITIZE_BLOCK_ERASE | op::SA_SANITIZE_EXIT_FAILURE_MODE => {
            if parameter_list_length != 0 {
                return Err(Sense::invalid_field_in_cdb(7, None));
            }
        }
        // CRYPTOGRAPHIC ERASE needs user data stored encrypted under a key the LU can
        // destroy; ferrite volumes are not, so it is an unsupported service action.
        _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
    }
    Ok(SanitizeCdb {
        immed: b.bit(1, 0x80),
        ause: b.bit(1, 0x20),
        service_action,
        parameter_list_length,
    })
}

/// Decodes `cdb`. Unknown opcodes and service actions give INVALID COMMAND OPERATION CODE
/// (or INVALID FIELD IN CDB pointing at the service action).
pub fn parse(cdb: &[u8]) -> Result<Command, Sense> {
    if cdb.is_empty() {
        return Err(Sense::invalid_opcode());
    }
    let b = Bytes::new(cdb);
    match parse_block_command(&b)? {
        Some(cmd) => Ok(cmd),
        None => parse_other_command(&b),
    }
}

/// The commands that read, write, verify, synchronise or deallocate blocks; `None` for any
/// other operation code.
fn parse_block_command(b: &Bytes) -> Result<Option<Command>, Sense> {
    use opcode as op;
    let cmd = match b.u8(0) {
        op::READ_6 => Command::Read(block_io(b, 6)?),
        op::READ_10 => Command::Read(block_io(b, 10)?),
        op::READ_12 => Command::Read(block_io(b, 12)?),
        op::READ_16 => Command::Read(block_io(b, 16)?),
        op::WRITE_6 => Command::Write(block_io(b, 6)?),
        op::WRITE_10 => Command::Write(block_io(b, 10)?),
        op::WRITE_12 => Command::Write(block_io(b, 12)?),
        op::WRITE_16 => Command::Write(block_io(b, 16)?),
        op::WRITE_AND_VERIFY_10 | op::WRITE_AND_VERIFY_12 | op::WRITE_AND_VERIFY_16 => {
            let io = block_io(b, length_of_group(b.u8(0)))?;
            let check = match byte_check(b)? {
                ByteCheck::CompareOneBlock => return Err(Sense::invalid_field_in_cdb(1, Some(2))),
                other => other,
            };
            Command::WriteAndVerify(BlockIo { fua: false, ..io }, check)
        }
        op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
            let io = block_io(b, length_of_group(b.u8(0)))?;
            Command::Verify(BlockIo { fua: false, ..io }, byte_check(b)?)
        }
        op::ORWRITE_16 => Command::OrWrite(block_io(b, 16)?),
        op::COMPARE_AND_WRITE => {
            b.no_protection()?;
            Command::CompareAndWrite(BlockIo {
                lba: b.be64(2),
                blocks: u32::from(b.u8(13)),
                dpo: b.bit(1, 0x10),
                fua: b.bit(1, 0x08),
                cdb_bytes: 16,
            })
        }
        op::PRE_FETCH_10 => Command::PreFetch(range(b, false)),
        op::PRE_FETCH_16 => Command::PreFetch(range(b, true)),
        op::SYNCHRONIZE_CACHE_10 => Command::SynchronizeCache(range(b, false)),
        op::SYNCHRONIZE_CACHE_16 => Command::SynchronizeCache(range(b, true)),
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
            b.no_protection()?;
            let sixteen = b.u8(0) == op::WRITE_SAME_16;
            let r = range(b, sixteen);
            Command::WriteSame(WriteSameCdb {
                lba: r.lba,
                blocks: r.blocks,
                unmap: b.bit(1, 0x08),
                anchor: b.bit(1, 0x10),
                ndob: sixteen && b.bit(1, 0x01),
                cdb_bytes: if sixteen { 16 } else { 10 },
            })
        }
        op::UNMAP => Command::Unmap { anchor: b.bit(1, 0x01), parameter_list_length: b.be16(7) },
        op::SANITIZE => Command::Sanitize(sanitize(b)?),
        _ => return Ok(None),
    };
    Ok(Some(cmd))
}

/// Every command other than [`parse_block_command`]'s: status, inquiry, mode pages,
/// capacity, reservations, LUN and opcode reports.
fn parse_other_command(b: &Bytes) -> Result<Command, Sense> {
    use opcode as op;
    let cmd = match b.u8(0) {
        op::TEST_UNIT_READY => Command::TestUnitReady,
        op::REQUEST_SENSE => {
            Command::RequestSense { desc: b.bit(1, 0x01), allocation_length: u32::from(b.u8(4)) }
        }
        op::INQUIRY => {
            if b.bit(1, 0x02) {
                return Err(Sense::invalid_field_in_cdb(1, Some(1)));
            }
            Command::Inquiry {
                evpd: b.bit(1, 0x01),
                page_code: b.u8(2),
                allocation_length: b.be16(3),
            }
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => {
            let ten = b.u8(0) == op::MODE_SENSE_10;
            Command::ModeSense(ModeSenseCdb {
                ten,
                dbd: b.bit(1, 0x08),
                llbaa: ten && b.bit(1, 0x10),
                page_control: b.u8(2) >> 6,
                page_code: b.u8(2) & 0x3F,
                subpage_code: b.u8(3),
                allocation_length: if ten { b.be16(7) } else { u32::from(b.u8(4)) },
            })
        }
        op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
            let ten = b.u8(0) == op::MODE_SELECT_10;
            Command::ModeSelect(ModeSelectCdb {
                ten,
                pf: b.bit(1, 0x10),
                sp: b.bit(1, 0x01),
                parameter_list_length: if ten { b.be16(7) } else { u32::from(b.u8(4)) },
            })
        }
        op::START_STOP_UNIT => Command::StartStopUnit {
            immed: b.bit(1, 0x01),
            power_condition: b.u8(4) >> 4,
            loej: b.bit(4, 0x02),
            start: b.bit(4, 0x01),
        },
        op::RESERVE_6 | op::RELEASE_6 | op::RESERVE_10 | op::RELEASE_10 => {
            let ten = matches!(b.u8(0), op::RESERVE_10 | op::RELEASE_10);
            if ten && b.bit(1, 0x10) {
                // Third-party reservations are not supported.
                return Err(Sense::invalid_field_in_cdb(1, Some(4)));
            }
            if ten && b.bit(1, 0x02) {
                return Err(Sense::invalid_field_in_cdb(1, Some(1)));
            }
            if matches!(b.u8(0), op::RESERVE_6 | op::RESERVE_10) {
                Command::Reserve
            } else {
                Command::Release
            }
        }
        op::READ_CAPACITY_10 => Command::ReadCapacity10 { pmi: b.bit(8, 0x01), lba: b.be32(2) },
        op::SERVICE_ACTION_IN_16 => match b.u8(1) & 0x1F {
            op::SA_READ_CAPACITY_16 => Command::ReadCapacity16 { allocation_length: b.be32(10) },
            op::SA_GET_LBA_STATUS => {
                Command::GetLbaStatus { lba: b.be64(2), allocation_length: b.be32(10) }
            }
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
        },
        op::READ_DEFECT_DATA_10 | op::READ_DEFECT_DATA_12 => {
            let twelve = b.u8(0) == op::READ_DEFECT_DATA_12;
            let flags_at: u16 = if twelve { 1 } else { 2 };
            let format = b.u8(usize::from(flags_at)) & 0x07;
            // 0: short block, 3: long block, 4: bytes from index, 5: physical sector,
            // 6: vendor specific; 1, 2 and 7 are reserved.
            if matches!(format, 1 | 2 | 7) {
                return Err(Sense::invalid_field_in_cdb(flags_at, Some(2)));
            }
            Command::ReadDefectData {
                twelve,
                req_plist: b.bit(usize::from(flags_at), 0x10),
                req_glist: b.bit(usize::from(flags_at), 0x08),
                format,
                allocation_length: if twelve { b.be32(6) } else { b.be16(7) },
            }
        }
        op::PERSISTENT_RESERVE_IN => Command::PersistentReserveIn {
            service_action: b.u8(1) & 0x1F,
            allocation_length: b.be16(7),
        },
        op::PERSISTENT_RESERVE_OUT => Command::PersistentReserveOut {
            service_action: b.u8(1) & 0x1F,
            scope: b.u8(2) >> 4,
            pr_type: b.u8(2) & 0x0F,
            parameter_list_length: b.be32(5),
        },
        op::REPORT_LUNS => Command::ReportLuns { select: b.u8(2), allocation_length: b.be32(6) },
        op::MAINTENANCE_IN => match b.u8(1) & 0x1F {
            op::SA_REPORT_SUPPORTED_OPCODES => Command::ReportSupportedOpcodes {
                rctd: b.bit(2, 0x80),
                options: b.u8(2) & 0x07,
                opcode: b.u8(3),
                service_action: b.be16(4) as u16,
                allocation_length: b.be32(6),
            },
            op::SA_REPORT_SUPPORTED_TMFS => {
                Command::ReportSupportedTmfs { repd: b.bit(2, 0x80), allocation_length: b.be32(6) }
            }
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
        },
        _ => return Err(Sense::invalid_opcode()),
    };
    Ok(cmd)
}

impl Command {
    /// Data-Out bytes this command consumes with `block_bytes`-byte logical blocks.
    #[must_use]
    pub fn data_out_bytes(&self, block_bytes: u32) -> u64 {
        let bs = u64::from(block_bytes);
        match *self {
            Command::Write(io) | Command::OrWrite(io) | Command::WriteAndVerify(io, _) => {
                u64::from(io.blocks) * bs
            }
            Command::CompareAndWrite(io) => 2 * u64::from(io.blocks) * bs,
            Command::Verify(io, ByteCheck::Compare) => u64::from(io.blocks) * bs,
            Command::Verify(io, ByteCheck::CompareOneBlock) => {
                if io.blocks == 0 {
                    0
                } else {
                    bs
                }
            }
            Command::WriteSame(ws) => {
                if ws.ndob {
                    0
                } else {
                    bs
                }
            }
            Command::Unmap { parameter_list_length, .. }
            | Command::PersistentReserveOut { parameter_list_length, .. } => {
                u64::from(parameter_list_length)
            }
            Command::ModeSelect(ms) => u64::from(ms.parameter_list_length),
            Command::Sanitize(s) => u64::from(s.parameter_list_length),
            _ => 0,
        }
    }

    /// True for the commands that write only the Data-Out the initiator sends when its
    /// expected data transfer length is shorter than the CDB's transfer length (WRITE and
    /// WRITE AND VERIFY; parameter lists and COMPARE AND WRITE are all or nothing).
    #[must_use]
    pub fn truncates_data_out(&self) -> bool {
        matches!(self, Command::Write(_) | Command::WriteAndVerify(..))
    }

    /// True when the Data-Out length must equal the initiator's expected data transfer length
    /// exactly (a mismatch is an error rather than a residual).
    #[must_use]
    pub fn requires_exact_data_out(&self) -> bool {
        matches!(self, Command::CompareAndWrite(_) | Command::WriteSame(_))
    }

    /// Direction of the data transfer.
    #[must_use]
    pub fn direction(&self, block_bytes: u32) -> super::status::DataDirection {
        use super::status::DataDirection;
        if self.data_out_bytes(block_bytes) > 0 {
            return DataDirection::Out;
        }
        match self {
            Command::RequestSense { .. }
            | Command::Inquiry { .. }
            | Command::ModeSense(_)
            | Command::ReadCapacity10 { .. }
            | Command::ReadCapacity16 { .. }
            | Command::GetLbaStatus { .. }
            | Command::ReadDefectData { .. }
            | Command::Read(_)
            | Command::PersistentReserveIn { .. }
            | Command::ReportLuns { .. }
            | Command::ReportSupportedOpcodes { .. }
            | Command::ReportSupportedTmfs { .. } => DataDirection::In,
            _ => DataDirection::None,
        }
    }

    /// How the command is treated by the reservation conflict tables (SPC-4 5.13.1).
    #[must_use]
    pub fn access(&self) -> Access {
        match self {
            Command::Inquiry { .. }
            | Command::RequestSense { .. }
            | Command::ReportLuns { .. }
            | Command::ReportSupportedOpcodes { .. }
            | Command::ReportSupportedTmfs { .. }
            | Command::PersistentReserveIn { .. }
            | Command::PersistentReserveOut { .. }
            | Command::ReadCapacity10 { .. }
            | Command::ReadCapacity16 { .. }
            | Command::TestUnitReady
            | Command::Reserve
            | Command::Release => Access::Always,
            Command::Read(_)
            | Command::Verify(..)
            | Command::PreFetch(_)
            | Command::GetLbaStatus { .. }
            | Command::ReadDefectData { .. }
            | Command::ModeSense(_) => Access::Read,
            Command::Write(_)
            | Command::WriteAndVerify(..)
            | Command::OrWrite(_)
            | Command::CompareAndWrite(_)
            | Command::SynchronizeCache(_)
            | Command::WriteSame(_)
            | Command::Unmap { .. }
            | Command::Sanitize(_)
            | Command::ModeSelect(_)
            | Command::StartStopUnit { .. } => Access::Write,
        }
    }
}

#[cfg(test)]
mod tests;
