//! `Uberblock`: the root of the pool's Merkle tree, written into a ring of slots in every
//! label after each txg (docs/format.md §Uberblock ring). At import the newest uberblock whose
//! checksum verifies wins; a torn uberblock write therefore falls back to the previous txg.

use bytemuck::{Pod, Zeroable};

use crate::block_pointer::BlockPointer;
use crate::error::{PoolError, PoolResult};
use crate::format::{check_version, checksum, Checksum, FORMAT_VERSION, LABEL_BYTES};
use crate::label::LABEL_HEADER_BYTES;

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
    pub reserved: [u64; 32],
    /// Reserved, zero.
    pub reserved2: [u64; 16],
    /// Reserved, zero.
    pub reserved3: u64,
    /// xxh3-128 of every byte before this field.
    pub checksum: Checksum,
}

const _: () = assert!(std::mem::size_of::<Uberblock>() == UBERBLOCK_BYTES);

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

    fn body_checksum(&self) -> Checksum {
        checksum(&bytemuck::bytes_of(self)[..UBERBLOCK_BYTES - 16])
    }

    /// The 4 KiB slot image with the checksum set.
    #[must_use]
    pub fn encode_slot(mut self) -> Vec<u8> {
        self.checksum = self.body_checksum();
        let mut slot = vec![0u8; UBERBLOCK_SLOT_BYTES as usize];
        slot[..UBERBLOCK_BYTES].copy_from_slice(bytemuck::bytes_of(&self));
        slot
    }

    /// Decodes a slot. `Ok(None)` for an empty, foreign or damaged slot (which import skips).
    ///
    /// # Errors
    /// [`PoolError::IncompatibleVersion`] for a valid uberblock of another format version.
    pub fn decode_slot(slot: &[u8]) -> PoolResult<Option<Uberblock>> {
        if slot.len() < UBERBLOCK_BYTES {
            return Err(PoolError::NotAPool("uberblock slot too short".into()));
        }
        let ub: Uberblock = bytemuck::pod_read_unaligned(&slot[..UBERBLOCK_BYTES]);
        if ub.magic != UBERBLOCK_MAGIC || ub.checksum != ub.body_checksum() {
            return Ok(None);
        }
        check_version(ub.format_version)?;
        Ok(Some(ub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let root = BlockPointer {
            offset_bytes: 0x8000,
            birth_txg: 5,
            checksum: [0x1111, 0x2222],
            fill_blocks: 3,
            logical_bytes: 4096,
            physical_bytes: 4096,
            device: 1,
            kind: crate::block_pointer::BlockKind::PoolRoot as u8,
            checksum_type: crate::block_pointer::CHECKSUM_XXH3_128,
            ..BlockPointer::HOLE
        };
        let slot = Uberblock::new(0xfeed, 5, 2, root).encode_slot();
        let mut want = vec![0u8; 4096];
        let fields: [(usize, &[u8]); 15] = [
            (0, b"FERRUBER"),
            (8, &FORMAT_VERSION.to_le_bytes()),
            (12, &2u32.to_le_bytes()),
            (16, &5u64.to_le_bytes()),
            (24, &0xfeedu64.to_le_bytes()),
            (32, &5u64.to_le_bytes()),
            (40, &0x8000u64.to_le_bytes()),
            (48, &5u64.to_le_bytes()),
            (56, &0x1111u64.to_le_bytes()),
            (64, &0x2222u64.to_le_bytes()),
            (72, &3u64.to_le_bytes()),
            (80, &4096u32.to_le_bytes()),
            (84, &4096u32.to_le_bytes()),
            (88, &1u16.to_le_bytes()),
            (90, &[3, 0, 1, 0]),
        ];
        for (at, bytes) in fields {
            want[at..at + bytes.len()].copy_from_slice(bytes);
        }
        let sum = checksum(&want[..496]);
        want[496..504].copy_from_slice(&sum[0].to_le_bytes());
        want[504..512].copy_from_slice(&sum[1].to_le_bytes());
        assert_eq!(slot, want);
        assert_eq!(sum, [0x69e3_0a58_304c_e2b8, 0x23d7_d1a0_3580_0176], "the image's checksum");
    }
}
