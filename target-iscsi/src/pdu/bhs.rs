//! The Basic Header Segment (RFC 7143 §11.2.1), the opcode table, the sequence numbers every
//! status PDU carries, and the header checks the PDU parsers share.

use std::fmt;

use bytemuck::{Pod, Zeroable};

use super::{Opcode, PduError, BHS_LEN, MAX_DATA_SEGMENT_LENGTH};

/// The 48-byte Basic Header Segment exactly as it is on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Bhs {
    /// Raw header bytes, big-endian fields.
    pub bytes: [u8; BHS_LEN],
}

const _: () = assert!(core::mem::size_of::<Bhs>() == BHS_LEN);
const _: () = assert!(core::mem::align_of::<Bhs>() == 1);

// Byte offsets of the BHS fields that several PDUs carry at the same place (RFC 7143 §11),
// each named once so that a parser and its encoder read and write the same bytes. A field only
// one PDU family carries is named in that family's file.

/// LUN (8 bytes).
pub(super) const LUN: usize = 8;
/// Initiator Task Tag (4 bytes).
pub(super) const ITT: usize = 16;
/// Target Transfer Tag (4 bytes; the SNACK Tag of an R-Data SNACK).
pub(super) const TTT: usize = 20;
/// CID of a Login or Logout Request (2 bytes).
pub(super) const CID: usize = 20;
/// CmdSN of an initiator PDU (4 bytes).
pub(super) const CMD_SN: usize = 24;
/// ExpStatSN of an initiator PDU (4 bytes).
pub(super) const EXP_STAT_SN: usize = 28;
/// StatSN of a target PDU (4 bytes).
pub(super) const STAT_SN: usize = 24;
/// ExpCmdSN of a target PDU (4 bytes).
pub(super) const EXP_CMD_SN: usize = 28;
/// MaxCmdSN of a target PDU (4 bytes).
pub(super) const MAX_CMD_SN: usize = 32;
/// ExpDataSN of a Task Management Request or a SCSI Response (4 bytes).
pub(super) const EXP_DATA_SN: usize = 36;
/// Residual Count of a SCSI Response or a final Data-In (4 bytes).
pub(super) const RESIDUAL_COUNT: usize = 44;
/// Response of a SCSI, Task Management or Logout Response (1 byte).
pub(super) const RESPONSE: usize = 2;
/// SCSI status of a SCSI Response or a final Data-In (1 byte).
pub(super) const STATUS: usize = 3;

impl fmt::Debug for Bhs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bhs(")?;
        for b in &self.bytes {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl Bhs {
    /// Wraps raw header bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; BHS_LEN]) -> Self {
        Self { bytes }
    }

    /// Reads a BHS from the front of `buf`; `None` if fewer than 48 bytes are there.
    #[must_use]
    pub fn from_slice(buf: &[u8]) -> Option<Self> {
        let head: &[u8; BHS_LEN] = buf.get(..BHS_LEN)?.try_into().ok()?;
        Some(Self { bytes: *head })
    }

    /// Raw opcode bits (byte 0, bits 0..6).
    #[must_use]
    pub const fn opcode_raw(&self) -> u8 {
        self.bytes[0] & 0x3f
    }

    /// The typed opcode, if it is one RFC 7143 defines.
    #[must_use]
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode_raw())
    }

    /// The I (immediate delivery) bit.
    #[must_use]
    pub const fn immediate(&self) -> bool {
        self.bytes[0] & 0x40 != 0
    }

    /// The F (final) bit, byte 1 bit 7.
    #[must_use]
    pub const fn final_bit(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }

    /// TotalAHSLength in 4-byte words.
    #[must_use]
    pub const fn total_ahs_length_words(&self) -> u8 {
        self.bytes[4]
    }

    /// TotalAHSLength in bytes.
    #[must_use]
    pub const fn total_ahs_length_bytes(&self) -> usize {
        self.bytes[4] as usize * 4
    }

    /// DataSegmentLength in bytes (without padding).
    #[must_use]
    pub const fn data_segment_length(&self) -> u32 {
        u32::from_be_bytes([0, self.bytes[5], self.bytes[6], self.bytes[7]])
    }

    /// Sets TotalAHSLength (in words) and DataSegmentLength; the length is clipped to 24 bits
    /// by an assertion because a larger value is a programming error.
    pub fn set_lengths(&mut self, total_ahs_length_words: u8, data_segment_length: u32) {
        assert!(data_segment_length <= MAX_DATA_SEGMENT_LENGTH, "DataSegmentLength > 2^24-1");
        self.bytes[4] = total_ahs_length_words;
        let dsl = data_segment_length.to_be_bytes();
        self.bytes[5..8].copy_from_slice(&dsl[1..4]);
    }

    /// The 8-byte LUN field (bytes 8..16), as the raw SAM LUN.
    #[must_use]
    pub fn lun(&self) -> u64 {
        self.u64_at(LUN)
    }

    /// Initiator Task Tag.
    #[must_use]
    pub fn itt(&self) -> u32 {
        self.u32_at(ITT)
    }

    /// Big-endian u16 at `offset` (a compile-time constant inside the header).
    #[must_use]
    pub fn u16_at(&self, offset: usize) -> u16 {
        u16::from_be_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    /// Big-endian u32 at `offset`.
    #[must_use]
    pub fn u32_at(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[offset..offset + 4]);
        u32::from_be_bytes(b)
    }

    /// Big-endian u64 at `offset`.
    #[must_use]
    pub fn u64_at(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[offset..offset + 8]);
        u64::from_be_bytes(b)
    }

    /// Writes a big-endian u16 at `offset`.
    pub fn set_u16(&mut self, offset: usize, v: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes a big-endian u32 at `offset`.
    pub fn set_u32(&mut self, offset: usize, v: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes a big-endian u64 at `offset`.
    pub fn set_u64(&mut self, offset: usize, v: u64) {
        self.bytes[offset..offset + 8].copy_from_slice(&v.to_be_bytes());
    }

    pub(super) fn with_opcode(opcode: Opcode, immediate: bool) -> Self {
        let mut bhs = Self::default();
        bhs.bytes[0] = opcode as u8 | if immediate { 0x40 } else { 0 };
        bhs
    }
}

/// Sequence numbers every target-to-initiator status PDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StatusSns {
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// [`expect_header`]: the F bit must be set.
pub(super) const FINAL: u8 = 1;
/// [`expect_header`]: TotalAHSLength must be 0.
pub(super) const NO_AHS: u8 = 2;
/// [`expect_header`]: DataSegmentLength must be 0.
pub(super) const NO_DATA: u8 = 4;

/// The checks a parser starts with, in this order: the opcode, then each rule of `rules`
/// ([`FINAL`], [`NO_AHS`], [`NO_DATA`]) that is set.
#[inline]
pub(super) fn expect_header(bhs: &Bhs, opcode: Opcode, rules: u8) -> Result<(), PduError> {
    expect_opcode(bhs, opcode)?;
    if rules & FINAL != 0 {
        require_final(bhs)?;
    }
    if rules & NO_AHS != 0 {
        no_ahs(bhs)?;
    }
    if rules & NO_DATA != 0 {
        no_data(bhs)?;
    }
    Ok(())
}

fn expect_opcode(bhs: &Bhs, opcode: Opcode) -> Result<(), PduError> {
    if bhs.opcode_raw() == opcode as u8 {
        Ok(())
    } else {
        Err(PduError::InvalidField("opcode does not match header type"))
    }
}

fn no_ahs(bhs: &Bhs) -> Result<(), PduError> {
    if bhs.total_ahs_length_words() == 0 {
        Ok(())
    } else {
        Err(PduError::UnexpectedSegment("AHS on a PDU that allows none"))
    }
}

fn no_data(bhs: &Bhs) -> Result<(), PduError> {
    if bhs.data_segment_length() == 0 {
        Ok(())
    } else {
        Err(PduError::UnexpectedSegment("data segment on a PDU that allows none"))
    }
}

fn require_final(bhs: &Bhs) -> Result<(), PduError> {
    if bhs.final_bit() {
        Ok(())
    } else {
        Err(PduError::InvalidField("F bit must be 1"))
    }
}

pub(super) fn data_limit(bhs: &Bhs, max_recv_data_segment_length: u32) -> Result<u32, PduError> {
    let dsl = bhs.data_segment_length();
    if dsl > max_recv_data_segment_length {
        return Err(PduError::DataSegmentTooLong {
            length_bytes: dsl,
            limit_bytes: max_recv_data_segment_length,
        });
    }
    Ok(dsl)
}
