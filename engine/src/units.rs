//! Units that are costly to mix: a logical-block address and a count of blocks, a volume
//! block and a logical block, a txg and any other counter, a shard and a partition.
//!
//! Each is a `#[repr(transparent)]` wrapper over its integer with an explicit constructor
//! (`new`) and accessor (`get`): no `Deref` or `From<u64>` lets a bare integer back in
//! unnoticed. Arithmetic exists only where it means something (`Lba + BlockCount -> Lba`,
//! `Lba - Lba -> BlockCount`); the `checked_` forms are for values that come from outside.
//! On-disk structures keep their plain integers (their layout is the format): code converts
//! at their boundary. Every method is `#[inline]` (and `const` where it can be), so a newtype
//! compiles to the same code as its integer.

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
    pub fn checked_add(self, blocks: BlockCount) -> Option<Lba> {
        self.0.checked_add(blocks.0).map(Lba)
    }

    /// Blocks from `earlier` up to this address, or `None` when `earlier` is past it.
    #[inline]
    #[must_use]
    pub fn checked_blocks_since(self, earlier: Lba) -> Option<BlockCount> {
        self.0.checked_sub(earlier.0).map(BlockCount)
    }

    /// Byte offset of this address with `block_bytes` per logical block.
    #[inline]
    #[must_use]
    pub const fn offset_bytes(self, block_bytes: u64) -> u64 {
        self.0 * block_bytes
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

/// `impl $trait<$rhs> for $lhs` with `Output = $out`, applying `$op` to the raw values; and the
/// matching assignment operator when the output is the left-hand type.
macro_rules! arithmetic {
    ($lhs:ident $op:tt $rhs:ident -> $out:ident, $trait:ident::$method:ident) => {
        impl $trait<$rhs> for $lhs {
            type Output = $out;
            #[inline]
            fn $method(self, rhs: $rhs) -> $out {
                $out(self.0 $op rhs.0)
            }
        }
    };
    ($lhs:ident $op:tt $rhs:ident, $trait:ident::$method:ident) => {
        impl $trait<$rhs> for $lhs {
            #[inline]
            fn $method(&mut self, rhs: $rhs) {
                self.0 $op rhs.0;
            }
        }
    };
}

// An address plus a count is an address; two addresses differ by a count; counts add up.
arithmetic!(Lba + BlockCount -> Lba, Add::add);
arithmetic!(Lba += BlockCount, AddAssign::add_assign);
arithmetic!(Lba - Lba -> BlockCount, Sub::sub);
arithmetic!(BlockCount + BlockCount -> BlockCount, Add::add);
arithmetic!(BlockCount += BlockCount, AddAssign::add_assign);
arithmetic!(BlockCount - BlockCount -> BlockCount, Sub::sub);

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
    pub fn checked_prev(self) -> Option<TxgId> {
        self.0.checked_sub(1).map(TxgId)
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
        let (mut at, mut n) = (a, BlockCount::new(2));
        at += n;
        n += BlockCount::new(3);
        assert_eq!((at, n), (Lba::new(12), BlockCount::new(5)));
        assert_eq!(n - BlockCount::new(1) + BlockCount::new(2), BlockCount::new(6));
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
