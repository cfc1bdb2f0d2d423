//! The limits the logical unit advertises in the Block Limits VPD page and enforces: one
//! place, so that what is advertised is exactly what is executed.

/// Largest READ/WRITE/VERIFY transfer, in bytes.
pub const MAX_TRANSFER_BYTES: u32 = 8 << 20;
/// Largest COMPARE AND WRITE, in blocks (the CDB field is one byte).
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u8 = 255;
/// Largest total LBA count of one UNMAP.
pub const MAX_UNMAP_LBA_COUNT: u32 = 1 << 20;
/// Most block descriptors in one UNMAP.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// Largest WRITE SAME, in bytes of the range it covers: bounds how long one command runs
/// (it is executed in `PIECE_BYTES` pieces with a yield between them).
pub const MAX_WRITE_SAME_BYTES: u64 = 16 << 20;
/// Bytes handled between two yields of a long WRITE SAME or UNMAP.
pub const PIECE_BYTES: u64 = 8 << 20;
/// Most LBA status descriptors one GET LBA STATUS returns.
pub const MAX_LBA_STATUS_DESCRIPTORS: usize = 64;
/// Attempts of the ORWRITE read-modify-compare-and-write loop before giving up with BUSY.
pub const ORWRITE_ATTEMPTS: u32 = 16;

/// Largest transfer in blocks of `block_bytes`.
#[must_use]
pub fn max_transfer_blocks(block_bytes: u32) -> u32 {
    MAX_TRANSFER_BYTES / block_bytes.max(1)
}

/// Blocks of `block_bytes` handled between two yields.
#[must_use]
pub fn piece_blocks(block_bytes: u32) -> u64 {
    (PIECE_BYTES / u64::from(block_bytes.max(1))).max(1)
}

/// Largest WRITE SAME in blocks of `block_bytes` (the Block Limits MAXIMUM WRITE SAME LENGTH).
#[must_use]
pub fn max_write_same_blocks(block_bytes: u32) -> u64 {
    (MAX_WRITE_SAME_BYTES / u64::from(block_bytes.max(1))).max(1)
}
