//! Block compression (docs/format.md §Compressed blocks).
//!
//! A data block is compressed with LZ4 at sync time and stored compressed only when that saves
//! at least an eighth of its size once rounded up to whole sectors; otherwise it is stored raw.
//! The block is compressed in independent chunks of [`CHUNK_BYTES`], and the compressor gives
//! up as soon as the output passes the largest size still worth storing, or when the first
//! chunk does not shrink at all (data that is already compressed or encrypted), so
//! incompressible data costs little CPU.
//!
//! A stored compressed block is one 4-byte little-endian length per chunk, the chunks' LZ4
//! streams one after the other, and zero padding to a whole number of sectors. The block's
//! checksum covers that stored form, so a read verifies it before the decompressor sees a byte.

use drivers::buffer::IoBuf;

use crate::format::SECTOR_BYTES;
use crate::record::stored_enum;

/// [`crate::block_pointer::BlockPointer::compression`] of a raw block.
pub const COMPRESSION_OFF: u8 = 0;
/// [`crate::block_pointer::BlockPointer::compression`] of an LZ4 block.
pub const COMPRESSION_LZ4: u8 = 1;

/// Bytes of input compressed as one independent LZ4 stream.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// Bytes of one chunk's length in the header.
const LENGTH_BYTES: usize = 4;

stored_enum! {
    /// A volume's `compression` property.
    #[derive(Default)]
    pub enum Compression: u8, from_u8 {
        /// Blocks are stored as written.
        Off = 0,
        /// Blocks are LZ4-compressed when that saves an eighth of their size.
        #[default]
        Lz4 = 1,
    }
}

impl Compression {
    /// Parses `off` or `lz4`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "off" => Some(Compression::Off),
            "lz4" | "on" => Some(Compression::Lz4),
            _ => None,
        }
    }

    /// The property value as a user writes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Compression::Off => "off",
            Compression::Lz4 => "lz4",
        }
    }
}

/// Largest stored size of a compressed block of `logical_bytes`: at least an eighth smaller,
/// in whole sectors. Zero when no sector count qualifies (a one-sector block).
#[must_use]
pub fn max_stored_bytes(logical_bytes: usize) -> usize {
    let limit = logical_bytes - logical_bytes / 8;
    limit / SECTOR_BYTES as usize * SECTOR_BYTES as usize
}

fn chunk_count(logical_bytes: usize) -> usize {
    logical_bytes.div_ceil(CHUNK_BYTES)
}

/// Compresses `data` into its stored form (sector padded), or `None` when that would not save
/// an eighth of its size. `scratch` is reused between calls to avoid an allocation per block.
#[must_use]
pub fn compress_block(data: &[u8], scratch: &mut Vec<u8>) -> Option<IoBuf> {
    let max = max_stored_bytes(data.len());
    let header = chunk_count(data.len()) * LENGTH_BYTES;
    if max <= header {
        return None;
    }
    let chunk_max = lz4_flex::block::get_maximum_output_size(CHUNK_BYTES.min(data.len()));
    // Streams go straight into `scratch` after the header; the stored block is allocated only
    // once the block has proved worth it, so a given-up block costs no allocation.
    if scratch.len() < max + chunk_max {
        scratch.resize(max + chunk_max, 0);
    }
    let mut at = header;
    for (i, chunk) in data.chunks(CHUNK_BYTES).enumerate() {
        let len = lz4_flex::block::compress_into(chunk, &mut scratch[at..at + chunk_max]).ok()?;
        if at + len > max || (i == 0 && len >= chunk.len()) {
            return None;
        }
        let len32 = u32::try_from(len).ok()?;
        scratch[i * LENGTH_BYTES..(i + 1) * LENGTH_BYTES].copy_from_slice(&len32.to_le_bytes());
        at += len;
    }
    let stored = at.next_multiple_of(SECTOR_BYTES as usize);
    // `stored` <= `max` <= the scratch length: pad there, then copy once.
    scratch[at..stored].fill(0);
    Some(IoBuf::from_slice(&scratch[..stored]))
}

/// Why a stored block could not be decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressError;

/// Decompresses a stored block of compression `kind` into exactly `logical_bytes`.
///
/// # Errors
/// [`DecompressError`] for an unknown kind, a bad length header, a malformed stream, or one
/// that does not produce exactly `logical_bytes`.
pub fn decompress_block(
    kind: u8,
    stored: &[u8],
    logical_bytes: usize,
) -> Result<IoBuf, DecompressError> {
    match kind {
        COMPRESSION_OFF => {
            stored.get(..logical_bytes).map(IoBuf::from_slice).ok_or(DecompressError)
        }
        COMPRESSION_LZ4 => {
            let mut out = IoBuf::zeroed(logical_bytes);
            let mut at = chunk_count(logical_bytes) * LENGTH_BYTES;
            for (i, dst) in out.chunks_mut(CHUNK_BYTES).enumerate() {
                let field: [u8; LENGTH_BYTES] = stored
                    .get(i * LENGTH_BYTES..(i + 1) * LENGTH_BYTES)
                    .and_then(|h| h.try_into().ok())
                    .ok_or(DecompressError)?;
                let len = u32::from_le_bytes(field) as usize;
                let end = at.checked_add(len).ok_or(DecompressError)?;
                let stream = stored.get(at..end).ok_or(DecompressError)?;
                match lz4_flex::block::decompress_into(stream, dst) {
                    Ok(n) if n == dst.len() => {}
                    _ => return Err(DecompressError),
                }
                at = end;
            }
            Ok(out)
        }
        _ => Err(DecompressError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn compressible_block_round_trips_and_saves_space() {
        let data: Vec<u8> = (0..128 * 1024).map(|i| (i % 7) as u8).collect();
        let mut scratch = Vec::new();
        let stored = compress_block(&data, &mut scratch).expect("compresses");
        assert!(stored.len() <= max_stored_bytes(data.len()));
        assert!(stored.len().is_multiple_of(4096));
        let back = decompress_block(COMPRESSION_LZ4, &stored, data.len()).expect("decompresses");
        assert_eq!(&back[..], &data[..]);
    }

    #[test]
    fn incompressible_block_is_refused() {
        let data = pseudo_random(64 * 1024, 7);
        assert!(compress_block(&data, &mut Vec::new()).is_none());
    }

    #[test]
    fn random_first_chunk_gives_up_at_once() {
        // The tail would compress, but the first chunk shows nothing to find: stored raw.
        let mut data = pseudo_random(CHUNK_BYTES, 9);
        data.resize(128 * 1024, 0);
        assert!(compress_block(&data, &mut Vec::new()).is_none());
    }

    #[test]
    fn one_sector_blocks_are_never_compressed() {
        assert_eq!(max_stored_bytes(4096), 0);
        assert!(compress_block(&[1u8; 4096], &mut Vec::new()).is_none());
        assert_eq!(max_stored_bytes(8192), 4096);
    }

    #[test]
    fn seven_eighths_rule_is_in_whole_sectors() {
        // 128 KiB: at most 112 KiB stored.
        assert_eq!(max_stored_bytes(128 * 1024), 112 * 1024);
        // Half compressible 128 KiB (each 1 KiB: 512 random bytes, 512 zeros): saves about
        // half, so it is stored compressed.
        let random = pseudo_random(64 * 1024, 3);
        let data: Vec<u8> =
            random.chunks(512).flat_map(|c| c.iter().copied().chain([0; 512])).collect();
        let stored = compress_block(&data, &mut Vec::new()).expect("compresses");
        assert!(stored.len() <= 68 * 1024, "stored {}", stored.len());
    }

    #[test]
    fn damaged_stream_is_an_error_not_a_panic() {
        let data: Vec<u8> = (0..32 * 1024).map(|i| (i % 13) as u8).collect();
        let mut stored = compress_block(&data, &mut Vec::new()).expect("compresses").to_vec();
        assert!(decompress_block(COMPRESSION_LZ4, &stored, data.len() + 1).is_err());
        stored[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decompress_block(COMPRESSION_LZ4, &stored, data.len()).is_err());
        assert!(decompress_block(9, &stored, data.len()).is_err());
        for b in stored.iter_mut().skip(8).take(64) {
            *b = 0xff;
        }
        stored[0..4].copy_from_slice(&64u32.to_le_bytes());
        assert!(decompress_block(COMPRESSION_LZ4, &stored, data.len()).is_err());
    }
}
