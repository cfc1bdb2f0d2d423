//! `BlockPointer`: where a block lives and how to verify it (docs/format.md §Block pointer).
//!
//! Every block is referenced by exactly one pointer that carries its xxh3-128 checksum, so the
//! pointers form a Merkle tree from the uberblock down: a torn, lost or misdirected write shows
//! up as a checksum mismatch on the next read. A zeroed pointer is a hole.

use bytemuck::{Pod, Zeroable};

use crate::format::Checksum;
use crate::record::stored_enum;

stored_enum! {
    /// What a block holds. Stored in [`BlockPointer::kind`].
    pub enum BlockKind: u8, from_u8 {
        /// Nothing (a hole).
        None = 0,
        /// Volume data (level 0 of a partition tree).
        Data = 1,
        /// An indirect block of a partition tree: an array of block pointers.
        Indirect = 2,
        /// The pool root object.
        PoolRoot = 3,
        /// The dataset directory.
        Directory = 4,
        /// One dataset (volume, snapshot): header and partition roots.
        Dataset = 5,
        /// The table of space-map pointers, one per allocation group.
        SpaceMapTable = 6,
        /// One allocation group's allocation bitmap.
        SpaceMap = 7,
        /// A list of extents freed in the txg (applied once it is durable).
        FreeList = 8,
        /// A deadlist: block pointers killed in a dataset but still held by a snapshot.
        DeadList = 9,
        /// An index of a metadata object cut into chunks (array of chunk pointers).
        ChunkIndex = 10,
        /// One partition of the dedup table (array of `DdtEntryPhys`).
        DedupTable = 11,
        /// The dedup table's index (one pointer per partition, then the table log's objects).
        DedupIndex = 12,
        /// One txg's dedup-table changes (array of `DdtEntryPhys`, refcount 0 for a removal).
        DedupLog = 13,
    }
}

/// Checksum algorithm id stored in [`BlockPointer::checksum_type`].
pub const CHECKSUM_XXH3_128: u8 = 1;

/// A pointer to one block, 64 bytes on disk.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default)]
pub struct BlockPointer {
    /// Byte offset on the device (a multiple of 4096).
    pub offset_bytes: u64,
    /// Txg in which the block was written.
    pub birth_txg: u64,
    /// xxh3-128 of the `physical_bytes` stored.
    pub checksum: Checksum,
    /// Data blocks at and below this pointer (1 for a data block, 0 for a hole).
    pub fill_blocks: u64,
    /// Size of the block's content before compression.
    pub logical_bytes: u32,
    /// Bytes stored on the device (a multiple of 4096); 0 for a hole.
    pub physical_bytes: u32,
    /// Index of the device in the pool configuration.
    pub device: u16,
    /// [`BlockKind`] as u8.
    pub kind: u8,
    /// Level in its tree: 0 for data, n for an indirect block n levels above data.
    pub level: u8,
    /// Checksum algorithm ([`CHECKSUM_XXH3_128`]).
    pub checksum_type: u8,
    /// Compression (0 = none; reserved for later formats).
    pub compression: u8,
    /// Flag bits: for data, `ddt::BP_FLAG_DEDUP`; for a chunk index, the kind of its chunks.
    pub flags: u16,
    /// The checksum's last 8 bytes for checksum type `ddt::CHECKSUM_BLAKE3_192`; zero for
    /// xxh3-128, whose 16 bytes fit in `checksum`.
    pub checksum_tail: u64,
}

const _: () = assert!(std::mem::size_of::<BlockPointer>() == 64);

impl BlockPointer {
    /// The hole pointer: reads as zeros, owns no space.
    pub const HOLE: BlockPointer = BlockPointer {
        offset_bytes: 0,
        birth_txg: 0,
        checksum: [0, 0],
        fill_blocks: 0,
        logical_bytes: 0,
        physical_bytes: 0,
        device: 0,
        kind: 0,
        level: 0,
        checksum_type: 0,
        compression: 0,
        flags: 0,
        checksum_tail: 0,
    };

    /// True for a hole (no block behind the pointer).
    #[must_use]
    pub fn is_hole(&self) -> bool {
        self.physical_bytes == 0
    }

    /// Decoded kind (None for an unknown value).
    #[must_use]
    pub fn block_kind(&self) -> Option<BlockKind> {
        BlockKind::from_u8(self.kind)
    }

    /// The extent this block occupies.
    #[must_use]
    pub fn extent(&self) -> Extent {
        Extent::new(self.device, self.offset_bytes, u64::from(self.physical_bytes))
    }

    /// True when both point at the same written block (same place, same birth, same content).
    #[must_use]
    pub fn same_block(&self, other: &BlockPointer) -> bool {
        self.device == other.device
            && self.offset_bytes == other.offset_bytes
            && self.birth_txg == other.birth_txg
            && self.checksum == other.checksum
    }
}

/// A run of bytes on one device.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Extent {
    /// Byte offset (multiple of 4096).
    pub offset_bytes: u64,
    /// Length (multiple of 4096).
    pub len_bytes: u64,
    /// Device index.
    pub device: u16,
    /// Reserved, zero.
    pub reserved: [u8; 6],
}

const _: () = assert!(std::mem::size_of::<Extent>() == 24);

impl Extent {
    /// An extent on `device`.
    #[must_use]
    pub fn new(device: u16, offset_bytes: u64, len_bytes: u64) -> Extent {
        Extent { offset_bytes, len_bytes, device, reserved: [0; 6] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_pointer_is_a_hole() {
        let bp: BlockPointer = Zeroable::zeroed();
        assert!(bp.is_hole());
        assert_eq!(bp, BlockPointer::HOLE);
    }

    #[test]
    fn kinds_round_trip() {
        for v in 0..=12u8 {
            assert_eq!(BlockKind::from_u8(v).map(|k| k as u8), Some(v));
        }
        assert_eq!(BlockKind::from_u8(200), None);
    }

    #[test]
    fn pointer_bytes_round_trip() {
        let bp = BlockPointer {
            offset_bytes: 8192,
            birth_txg: 7,
            checksum: [1, 2],
            fill_blocks: 1,
            logical_bytes: 4096,
            physical_bytes: 4096,
            device: 1,
            kind: BlockKind::Data as u8,
            ..BlockPointer::HOLE
        };
        let bytes = bytemuck::bytes_of(&bp).to_vec();
        let back: BlockPointer = bytemuck::pod_read_unaligned(&bytes);
        assert_eq!(back, bp);
    }
}
