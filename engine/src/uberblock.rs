//! `Uberblock`: the root of the pool's Merkle tree, written into a ring of slots in every
//! label after each txg (docs/format.md §Uberblock ring). At import the newest uberblock whose
//! checksum verifies wins; a torn uberblock write therefore falls back to the previous txg.

use bytemuck::{Pod, Zeroable};

use crate::block_pointer::BlockPointer;
use crate::error::{PoolError, PoolResult};
use crate::format::{check_version, Checksum, FORMAT_VERSION, LABEL_BYTES};
use crate::label::LABEL_HEADER_BYTES;
use crate::record::{sealed_image, sealed_record, unseal, Unsealed};

/// "FERRUBER".
pub const UBERBLOCK_MAGIC: u64 = u64::from_le_bytes(*b"FERRUBER");

/// Bytes of the structure itself.
pub const UBERBLOCK_BYTES: usize = 512;

/// Bytes of one ring slot (the structure, zero padded to one sector).
pub const UBERBLOCK_SLOT_BYTES: u64 = 4096;

/// Slots in the ring of each label.
pub const UBERBLOCK_RING_SLOTS: u64 = 32;

const _: () =
    assert!(LABEL_HEADER_BYTES as u64 + UBERBLOCK_RING_SLOTS * UBERBLOCK_SLOT_BYTES <= LABEL_BYTES);

/// The uberblock.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct Uberblock {
    /// [`UBERBLOCK_MAGIC`].
    pub magic: u64,
    /// Format version that wrote it.
    pub format_version: u32,
    /// Devices in the pool when it was written.
    pub device_count: u32,
    /// The txg this uberblock commits.
    pub txg: u64,
    /// Pool identity (must match the labels).
    pub pool_guid: u64,
    /// Monotonic counter of uberblock writes (diagnostics).
    pub sequence: u64,
    /// Pointer to the pool root object of this txg.
    pub root: BlockPointer,
    /// Reserved, zero.
    pub reserved: [u64; 49],
    /// xxh3-128 of every byte before this field.
    pub checksum: Checksum,
}

sealed_record!(Uberblock, UBERBLOCK_MAGIC, UBERBLOCK_BYTES);

/// Byte offset of the ring slot for `txg`, relative to the start of a label.
#[must_use]
pub fn slot_offset_bytes(txg: u64) -> u64 {
    LABEL_HEADER_BYTES as u64 + (txg % UBERBLOCK_RING_SLOTS) * UBERBLOCK_SLOT_BYTES
}

impl Uberblock {
    /// A new uberblock for `txg` pointing at `root`.
    #[must_use]
    pub fn new(pool_guid: u64, txg: u64, device_count: u32, root: BlockPointer) -> Uberblock {
        Uberblock {
            magic: UBERBLOCK_MAGIC,
            format_version: FORMAT_VERSION,
            device_count,
            txg,
            pool_guid,
            sequence: txg,
            root,
            ..Zeroable::zeroed()
        }
    }

    /// The 4 KiB slot image with the checksum set.
    #[must_use]
    pub fn encode_slot(self) -> Vec<u8> {
        sealed_image(self, UBERBLOCK_SLOT_BYTES as usize)
    }

    /// Decodes a slot. `Ok(None)` for an empty, foreign or damaged slot (which import skips).
    ///
    /// # Errors
    /// [`PoolError::NotAPool`] for a slot shorter than the structure,
    /// [`PoolError::IncompatibleVersion`] for a valid uberblock of another format version.
    pub fn decode_slot(slot: &[u8]) -> PoolResult<Option<Uberblock>> {
        let ub: Uberblock = match unseal(slot) {
            Ok(ub) => ub,
            Err(Unsealed::TooShort) => {
                return Err(PoolError::NotAPool("uberblock slot too short".into()))
            }
            Err(Unsealed::Magic | Unsealed::Checksum) => return Ok(None),
        };
        check_version(ub.format_version)?;
        Ok(Some(ub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DocumentedImage;

    #[test]
    fn slot_round_trips_and_torn_slot_is_skipped() {
        let ub = Uberblock::new(9, 5, 1, BlockPointer::HOLE);
        let mut slot = ub.encode_slot();
        let back = Uberblock::decode_slot(&slot).expect("ok").expect("valid");
        assert_eq!(back.txg, 5);
        slot[40] ^= 1;
        assert!(Uberblock::decode_slot(&slot).expect("ok").is_none());
    }

    #[test]
    fn ring_slots_rotate() {
        assert_ne!(slot_offset_bytes(1), slot_offset_bytes(2));
        assert_eq!(slot_offset_bytes(1), slot_offset_bytes(1 + UBERBLOCK_RING_SLOTS));
    }

    /// The slot image, byte for byte: the fields at their documented offsets
    /// (docs/format.md §Uberblock ring), zeros elsewhere, the checksum over the first 496.
    #[test]
    fn slot_bytes_are_pinned() {
        let root =
            BlockPointer { offset_bytes: 0x8000, birth_txg: 5, device: 1, ..BlockPointer::HOLE };
        let slot = Uberblock::new(0xfeed, 5, 2, root).encode_slot();
        let mut fields = DocumentedImage::default();
        fields.bytes(b"FERRUBER").u32(FORMAT_VERSION).u32(2).u64(5).u64(0xfeed).u64(5);
        // The root pointer: offset_bytes, birth_txg, then device after 32 bytes of zeros.
        fields.u64(0x8000).u64(5).zeros(32).u16(1);
        let (want, sum) = fields.sealed(496, 4096);
        assert_eq!(slot, want);
        assert_eq!(sum, [0xf116_011e_0937_1e44, 0x8d33_b11f_6451_c262], "the image's checksum");
    }
}
