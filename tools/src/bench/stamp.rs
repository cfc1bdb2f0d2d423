//! Verify stamps: with `--verify`, every 4 KiB block written carries its LBA, a generation and
//! a 64-bit checksum; reads check all three, so torn, lost, misdirected and rotted blocks are caught.
//!
//! Layout of one 4 KiB verify block (little-endian):
//!
//! | bytes   | field                                                     |
//! |---------|-----------------------------------------------------------|
//! | 0..8    | magic `FERBENCH`                                          |
//! | 8..16   | LBA of the block's first byte, in 512-byte sectors        |
//! | 16..24  | generation                                                |
//! | 24..32  | checksum of the whole block with this field taken as zero |
//! | 32..4096| pattern derived from (LBA, generation)                    |

use super::prng::splitmix64;

/// Size of one stamped unit; I/O sizes must be multiples of it when verifying.
pub const VERIFY_BLOCK_BYTES: usize = 4096;
/// Sector size the stamped LBA is counted in.
pub const SECTOR_BYTES: u64 = 512;
const MAGIC: [u8; 8] = *b"FERBENCH";
const CHECKSUM_RANGE: std::ops::Range<usize> = 24..32;

/// Why a block failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampError {
    /// No stamp at all (never written with --verify, or overwritten by something else).
    BadMagic,
    /// The stored checksum does not match the contents.
    ChecksumMismatch { stored: u64, computed: u64 },
    /// A valid stamp of another block (misdirected write or read).
    LbaMismatch { found: u64 },
    /// A valid stamp of an older or newer generation (lost write).
    GenerationMismatch { found: u64 },
}

impl std::fmt::Display for StampError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StampError::BadMagic => write!(f, "no verify stamp (bad magic)"),
            StampError::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")
            }
            StampError::LbaMismatch { found } => {
                write!(f, "block carries the stamp of lba {found}")
            }
            StampError::GenerationMismatch { found } => write!(f, "block has generation {found}"),
        }
    }
}

/// Four independent multiply-xor lanes over the block's 64-bit words (the checksum field read
/// as zero), folded at the end: not cryptographic, but every single-bit and burst error in a
/// block changes it, and it costs well under a microsecond per 4 KiB.
fn block_checksum(block: &[u8]) -> u64 {
    const PRIME: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lanes: [u64; 4] = [1, 2, 3, 4];
    for (i, chunk) in block.chunks_exact(32).enumerate() {
        for (j, (lane, word)) in lanes.iter_mut().zip(chunk.chunks_exact(8)).enumerate() {
            // The checksum field is the fourth word of the first 32 bytes.
            let is_checksum_field = i * 32 + j * 8 == CHECKSUM_RANGE.start;
            let value = if is_checksum_field { 0 } else { u64_at(word, 0) };
            *lane = (*lane ^ value).wrapping_mul(PRIME).rotate_left(29);
        }
    }
    let mut folded = block.len() as u64;
    for lane in lanes {
        folded = (folded ^ lane).wrapping_mul(PRIME).rotate_left(31);
    }
    folded ^ (folded >> 32)
}

fn u64_at(block: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&block[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Stamps one verify block located at `offset_bytes`.
///
/// # Panics
/// When `block` is not exactly [`VERIFY_BLOCK_BYTES`] long (a programmer error).
pub fn stamp_block(block: &mut [u8], offset_bytes: u64, generation: u64) {
    assert_eq!(block.len(), VERIFY_BLOCK_BYTES, "verify block size");
    let lba = offset_bytes / SECTOR_BYTES;
    block[0..8].copy_from_slice(&MAGIC);
    block[8..16].copy_from_slice(&lba.to_le_bytes());
    block[16..24].copy_from_slice(&generation.to_le_bytes());
    block[CHECKSUM_RANGE].fill(0);
    let mut state = lba ^ generation.rotate_left(32);
    for word in block[32..].chunks_exact_mut(8) {
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let checksum = block_checksum(block);
    block[CHECKSUM_RANGE].copy_from_slice(&checksum.to_le_bytes());
}

/// Checks one verify block read from `offset_bytes`. With `expected_generation` the
/// generation must match too; without it any generation is accepted.
///
/// # Errors
/// The first problem found, in order: magic, checksum, LBA, generation.
pub fn check_block(
    block: &[u8],
    offset_bytes: u64,
    expected_generation: Option<u64>,
) -> Result<(), StampError> {
    assert_eq!(block.len(), VERIFY_BLOCK_BYTES, "verify block size");
    if block[0..8] != MAGIC {
        return Err(StampError::BadMagic);
    }
    let stored = u64_at(block, CHECKSUM_RANGE.start);
    let computed = block_checksum(block);
    if stored != computed {
        return Err(StampError::ChecksumMismatch { stored, computed });
    }
    let found = u64_at(block, 8);
    if found != offset_bytes / SECTOR_BYTES {
        return Err(StampError::LbaMismatch { found });
    }
    let generation = u64_at(block, 16);
    match expected_generation {
        Some(expected) if expected != generation => {
            Err(StampError::GenerationMismatch { found: generation })
        }
        _ => Ok(()),
    }
}

/// Stamps every verify block of an I/O buffer written at `offset_bytes`.
pub fn stamp_buffer(buf: &mut [u8], offset_bytes: u64, generation: u64) {
    for (i, block) in buf.chunks_exact_mut(VERIFY_BLOCK_BYTES).enumerate() {
        stamp_block(block, offset_bytes + (i * VERIFY_BLOCK_BYTES) as u64, generation);
    }
}

/// Checks every verify block of a buffer read from `offset_bytes`; returns the offset and the
/// problem of the first bad block.
///
/// # Errors
/// `(offset_bytes_of_bad_block, problem)`.
pub fn check_buffer(
    buf: &[u8],
    offset_bytes: u64,
    expected_generation: Option<u64>,
) -> Result<(), (u64, StampError)> {
    for (i, block) in buf.chunks_exact(VERIFY_BLOCK_BYTES).enumerate() {
        let at = offset_bytes + (i * VERIFY_BLOCK_BYTES) as u64;
        check_block(block, at, expected_generation).map_err(|e| (at, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(offset: u64, generation: u64) -> Vec<u8> {
        let mut block = vec![0u8; VERIFY_BLOCK_BYTES];
        stamp_block(&mut block, offset, generation);
        block
    }

    #[test]
    fn stamp_round_trips() {
        let block = stamped(8192, 3);
        assert_eq!(check_block(&block, 8192, Some(3)), Ok(()));
        assert_eq!(check_block(&block, 8192, None), Ok(()));
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_mismatch() {
        let mut block = stamped(4096, 1);
        block[1000] ^= 0x10;
        assert!(matches!(
            check_block(&block, 4096, Some(1)),
            Err(StampError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn misdirected_block_is_an_lba_mismatch() {
        let block = stamped(4096, 1);
        assert_eq!(check_block(&block, 8192, None), Err(StampError::LbaMismatch { found: 8 }));
    }

    #[test]
    fn stale_generation_is_reported_only_when_expected() {
        let block = stamped(0, 1);
        assert_eq!(
            check_block(&block, 0, Some(2)),
            Err(StampError::GenerationMismatch { found: 1 })
        );
        assert_eq!(check_block(&block, 0, None), Ok(()));
    }

    #[test]
    fn zeros_have_no_stamp() {
        let block = vec![0u8; VERIFY_BLOCK_BYTES];
        assert_eq!(check_block(&block, 0, None), Err(StampError::BadMagic));
    }

    #[test]
    fn buffer_check_names_the_bad_block() {
        let mut buf = vec![0u8; 4 * VERIFY_BLOCK_BYTES];
        stamp_buffer(&mut buf, 1 << 20, 9);
        assert_eq!(check_buffer(&buf, 1 << 20, Some(9)), Ok(()));
        buf[2 * VERIFY_BLOCK_BYTES + 77] ^= 1;
        let (at, err) = check_buffer(&buf, 1 << 20, Some(9)).expect_err("must fail");
        assert_eq!(at, (1 << 20) + 2 * VERIFY_BLOCK_BYTES as u64);
        assert!(matches!(err, StampError::ChecksumMismatch { .. }));
    }
}
