//! Units that are costly to mix: a logical-block address and a count of blocks, a volume
//! block and a logical block, a txg and any other counter, a shard and a partition.
//!
//! Each is a `#[repr(transparent)]` wrapper over its integer with an explicit constructor
//! (`new`) and accessor (`get`): no `Deref` or `From<u64>` lets a bare integer back in
//! unnoticed. Arithmetic exists only where it means something (`Lba + BlockCount -> Lba`,
//! `Lba - Lba -> BlockCount`); the `checked_` forms are for values that come from outside.
//! On-disk structures keep their plain integers (their layout is the format): code converts
//! at their boundary. Every method is an `#[inline]` `const fn`, so a newtype compiles to the
//! same code as its integer.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

macro_rules! unit {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($inner);

        impl $name {
            /// Wraps a raw value.
            #[inline]
            #[must_use]
            pub const fn new(value: $inner) -> $name {
                $name(value)
            }

            /// The raw value.
            #[inline]
            #[must_use]
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

unit! {
    /// A logical-block address of a volume, in the volume's logical blocks (512 or 4096
    /// bytes), as SCSI counts them.
    Lba(u64)
}

unit! {
    /// A number of logical blocks.
    BlockCount(u64)
}

unit! {
    /// The index of a data block of a pool volume (`volblock_bytes` each, several logical
    /// blocks): the unit the volume's partitions and trees address, distinct from an [`Lba`].
    VolumeBlock(u64)
}

unit! {
    /// A transaction group: the number of a pool sync (each sync commits the next one).
    TxgId(u64)
}

unit! {
    /// An I/O shard (one reactor thread), counted from 0.
    ShardId(usize)
}

unit! {
    /// A partition of a volume (the volume's stripes are dealt round-robin to its
    /// partitions), counted from 0.
    PartitionId(usize)
}

impl Lba {
    /// The address `blocks` past this one, or `None` past `u64::MAX`.
    #[inline]
    #[must_use]
    pub const fn checked_add(self, blocks: BlockCount) -> Option<Lba> {
        match self.0.checked_add(blocks.0) {
            Some(v) => Some(Lba(v)),
            None => None,
        }
    }

    /// Blocks from `earlier` up to this address, or `None` when `earlier` is past it.
    #[inline]
    #[must_use]
    pub const fn checked_blocks_since(self, earlier: Lba) -> Option<BlockCount> {
        match self.0.checked_sub(earlier.0) {
            Some(v) => Some(BlockCount(v)),
            None => None,
        }
    }

    /// Byte offset of this address with `block_bytes` per logical block.
    #[inline]
    #[must_use]
    pub const fn offset_bytes(self, block_bytes: u64) -> u64 {
        self.0 * block_bytes
    }
}

impl Add<BlockCount> for Lba {
    type Output = Lba;
    #[inline]
    fn add(self, blocks: BlockCount) -> Lba {
        Lba(self.0 + blocks.0)
    }
}

impl AddAssign<BlockCount> for Lba {
    #[inline]
    fn add_assign(&mut self, blocks: BlockCount) {
        self.0 += blocks.0;
    }
}

impl Sub for Lba {
    type Output = BlockCount;
    #[inline]
    fn sub(self, earlier: Lba) -> BlockCount {
        BlockCount(self.0 - earlier.0)
    }
}

impl BlockCount {
    /// No blocks.
    pub const ZERO: BlockCount = BlockCount(0);

    /// Bytes in this many blocks of `block_bytes`, or `None` past `u64::MAX`.
    #[inline]
    #[must_use]
    pub const fn checked_bytes(self, block_bytes: u64) -> Option<u64> {
        self.0.checked_mul(block_bytes)
    }
}

impl Add for BlockCount {
    type Output = BlockCount;
    #[inline]
    fn add(self, other: BlockCount) -> BlockCount {
        BlockCount(self.0 + other.0)
    }
}

impl AddAssign for BlockCount {
    #[inline]
    fn add_assign(&mut self, other: BlockCount) {
        self.0 += other.0;
    }
}

impl Sub for BlockCount {
    type Output = BlockCount;
    #[inline]
    fn sub(self, other: BlockCount) -> BlockCount {
        BlockCount(self.0 - other.0)
    }
}

impl TxgId {
    /// The txg after this one.
    #[inline]
    #[must_use]
    pub const fn next(self) -> TxgId {
        TxgId(self.0 + 1)
    }

    /// The txg before this one, or `None` before the first.
    #[inline]
    #[must_use]
    pub const fn checked_prev(self) -> Option<TxgId> {
        match self.0.checked_sub(1) {
            Some(v) => Some(TxgId(v)),
            None => None,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Lba>() == 8 && std::mem::size_of::<TxgId>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lba_arithmetic_is_between_an_address_and_a_count() {
        let a = Lba::new(10);
        assert_eq!(a + BlockCount::new(5), Lba::new(15));
        assert_eq!(Lba::new(15) - a, BlockCount::new(5));
        assert_eq!(Lba::new(u64::MAX).checked_add(BlockCount::new(1)), None);
        assert_eq!(a.checked_blocks_since(Lba::new(11)), None);
        assert_eq!(a.checked_blocks_since(Lba::new(4)), Some(BlockCount::new(6)));
        assert_eq!(a.offset_bytes(512), 5120);
        assert_eq!(BlockCount::new(u64::MAX).checked_bytes(2), None);
    }

    #[test]
    fn units_print_as_their_number() {
        assert_eq!(Lba::new(7).to_string(), "7");
        assert_eq!(TxgId::new(3).next().to_string(), "4");
        assert_eq!(TxgId::new(0).checked_prev(), None);
        assert_eq!(ShardId::new(2).get(), 2);
        assert_eq!(PartitionId::new(1).get(), 1);
    }
}
