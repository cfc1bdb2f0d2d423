//! Constants of the on-disk format (docs/format.md) and the block checksum.
//!
//! Every on-disk structure is a `#[repr(C)]` little-endian `bytemuck::Pod` type with a
//! compile-time size assertion; this module holds what they share.

// Every on-disk structure is read and written with bytemuck casts of little-endian fields.
#[cfg(not(target_endian = "little"))]
compile_error!("ferrite's on-disk format is little-endian: build it for a little-endian target");

use crate::error::{PoolError, PoolResult};

/// Version of the on-disk format this build reads and writes. Bump it on every incompatible
/// change and describe the change in docs/format.md.
pub const FORMAT_VERSION: u32 = 4;

/// Allocation unit and the alignment of every block on a device.
pub const SECTOR_BYTES: u64 = 4096;

/// Size of one label (header + uberblock ring + reserved space).
pub const LABEL_BYTES: u64 = 256 * 1024;

/// Labels at the front of every device (two more sit at the end).
pub const FRONT_LABELS: u64 = 2;

/// Total labels per device.
pub const LABEL_COUNT: u64 = 4;

/// Bytes at the front and at the back of a device that belong to labels.
pub const LABEL_AREA_BYTES: u64 = FRONT_LABELS * LABEL_BYTES;

/// Largest block ever written (volblocksize limit and metadata chunk size).
pub const MAX_BLOCK_BYTES: u64 = 128 * 1024;

/// Byte offset of label `index` (0..4) on a device of `device_bytes`.
#[must_use]
pub fn label_offset_bytes(index: u64, device_bytes: u64) -> u64 {
    assert!(index < LABEL_COUNT, "label index out of range");
    if index < FRONT_LABELS {
        index * LABEL_BYTES
    } else {
        let end = device_bytes / SECTOR_BYTES * SECTOR_BYTES;
        end - (LABEL_COUNT - index) * LABEL_BYTES
    }
}

/// The usable data area `[start, end)` of a device, between the label areas.
#[must_use]
pub fn data_area(device_bytes: u64) -> (u64, u64) {
    let end = device_bytes / SECTOR_BYTES * SECTOR_BYTES;
    (LABEL_AREA_BYTES, end.saturating_sub(LABEL_AREA_BYTES))
}

/// A 128-bit block checksum (xxh3-128), stored as two little-endian words.
pub type Checksum = [u64; 2];

/// xxh3-128 of `data`.
#[must_use]
pub fn checksum(data: &[u8]) -> Checksum {
    let h = xxhash_rust::xxh3::xxh3_128(data);
    #[allow(clippy::cast_possible_truncation)]
    [h as u64, (h >> 64) as u64]
}

/// Refuses a structure written by another format version, naming both versions.
///
/// # Errors
/// [`PoolError::IncompatibleVersion`] when `found` differs from [`FORMAT_VERSION`].
pub fn check_version(found: u32) -> PoolResult<()> {
    if found == FORMAT_VERSION {
        Ok(())
    } else {
        Err(PoolError::IncompatibleVersion { found, supported: FORMAT_VERSION })
    }
}

/// Copies `name` into a fixed, zero-padded field; `None` when it does not fit or is empty.
#[must_use]
pub fn encode_name<const N: usize>(name: &str) -> Option<[u8; N]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > N || bytes.contains(&0) {
        return None;
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Some(out)
}

/// Reads a zero-padded name field (lossy on invalid UTF-8, which a checksummed block never has
/// unless written so).
#[must_use]
pub fn decode_name(field: &[u8]) -> String {
    let len = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sit_at_both_ends() {
        let dev = 64 << 20;
        assert_eq!(label_offset_bytes(0, dev), 0);
        assert_eq!(label_offset_bytes(1, dev), LABEL_BYTES);
        assert_eq!(label_offset_bytes(3, dev), dev - LABEL_BYTES);
        assert_eq!(label_offset_bytes(2, dev), dev - 2 * LABEL_BYTES);
        assert_eq!(data_area(dev), (2 * LABEL_BYTES, dev - 2 * LABEL_BYTES));
    }

    #[test]
    fn checksum_differs_on_one_bit() {
        let mut a = vec![0u8; 4096];
        let c0 = checksum(&a);
        a[100] ^= 1;
        assert_ne!(c0, checksum(&a));
    }

    #[test]
    fn version_mismatch_names_both_versions() {
        let err = check_version(FORMAT_VERSION + 1).expect_err("must refuse");
        let msg = err.to_string();
        assert!(msg.contains(&(FORMAT_VERSION + 1).to_string()));
        assert!(msg.contains(&FORMAT_VERSION.to_string()));
    }

    #[test]
    fn names_round_trip_and_reject_overlong() {
        let f: [u8; 8] = encode_name("vol").expect("fits");
        assert_eq!(decode_name(&f), "vol");
        assert!(encode_name::<4>("toolong").is_none());
        assert!(encode_name::<4>("").is_none());
    }
}
