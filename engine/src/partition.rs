//! Partitions: a volume's LBA space cut into fixed stripes dealt round-robin to a fixed number
//! of partitions (DESIGN §2, docs/format.md §Volumes). Each partition has its own block-tree
//! root, its own dirty set per txg and its own lock, so one shard owning a partition never
//! contends with another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use drivers::buffer::{IoBuf, SharedBuf};

use crate::block_pointer::BlockPointer;
use crate::units::{Lba, PartitionId, TxgId, VolumeBlock};

/// Fixed shape of a volume's block space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeLayout {
    /// Logical block size seen by the initiator (512 or 4096).
    pub logical_block_bytes: u32,
    /// Size of a data block (4 KiB to 128 KiB, a power of two).
    pub volblock_bytes: u32,
    /// Bytes of one stripe (a multiple of `volblock_bytes`).
    pub stripe_bytes: u32,
    /// Number of partitions.
    pub partition_count: u32,
    /// Volume size (a multiple of `logical_block_bytes`).
    pub capacity_bytes: u64,
}

/// Where a byte of the volume lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockAddress {
    /// Partition.
    pub partition: PartitionId,
    /// Block index inside the partition's tree.
    pub index: u64,
}

impl VolumeLayout {
    /// Data blocks per stripe.
    #[must_use]
    pub fn blocks_per_stripe(&self) -> u64 {
        u64::from(self.stripe_bytes / self.volblock_bytes)
    }

    /// Volume blocks (capacity rounded up to whole data blocks).
    #[must_use]
    pub fn volume_blocks(&self) -> u64 {
        self.capacity_bytes.div_ceil(u64::from(self.volblock_bytes))
    }

    /// Leaves a partition's tree must address.
    #[must_use]
    pub fn blocks_per_partition(&self) -> u64 {
        let stripes = self.capacity_bytes.div_ceil(u64::from(self.stripe_bytes));
        stripes.div_ceil(u64::from(self.partition_count)) * self.blocks_per_stripe()
    }

    /// The partition and tree index of volume block `block`.
    #[must_use]
    pub fn address(&self, block: VolumeBlock) -> BlockAddress {
        let block = block.get();
        let bps = self.blocks_per_stripe();
        let stripe = block / bps;
        let parts = u64::from(self.partition_count);
        BlockAddress {
            partition: PartitionId::new(
                usize::try_from(stripe % parts).expect("partition index fits"),
            ),
            index: (stripe / parts) * bps + block % bps,
        }
    }

    /// The volume block at `addr` (inverse of [`VolumeLayout::address`]).
    #[must_use]
    pub fn volume_block(&self, addr: BlockAddress) -> VolumeBlock {
        let bps = self.blocks_per_stripe();
        let stripe_in_part = addr.index / bps;
        let stripe = stripe_in_part * u64::from(self.partition_count) + addr.partition.get() as u64;
        VolumeBlock::new(stripe * bps + addr.index % bps)
    }

    /// The volume block that holds logical block `lba`.
    #[must_use]
    pub fn block_of(&self, lba: Lba) -> VolumeBlock {
        VolumeBlock::new(lba.get() / self.lbas_per_block())
    }

    /// The first logical block of volume block `block`.
    #[must_use]
    pub fn first_lba(&self, block: VolumeBlock) -> Lba {
        Lba::new(block.get() * self.lbas_per_block())
    }

    /// Logical blocks per data block.
    #[must_use]
    pub fn lbas_per_block(&self) -> u64 {
        u64::from(self.volblock_bytes / self.logical_block_bytes)
    }

    /// Checks the layout's invariants.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.check().is_ok()
    }

    /// Like [`VolumeLayout::is_valid`], with one line naming the first limit not met.
    ///
    /// # Errors
    /// The limit, in words the operator gave it (sizes in bytes).
    pub fn check(&self) -> Result<(), String> {
        let v = self.volblock_bytes;
        let lb = self.logical_block_bytes;
        if lb != 512 && lb != 4096 {
            return Err(format!("block size {lb} must be 512 or 4096"));
        }
        if !v.is_power_of_two() || !(4096..=128 * 1024).contains(&v) {
            return Err(format!(
                "volume block size {v} must be a power of two from 4096 to 131072"
            ));
        }
        if v < lb {
            return Err(format!("volume block size {v} is smaller than the block size {lb}"));
        }
        if self.stripe_bytes < v || !self.stripe_bytes.is_multiple_of(v) {
            return Err(format!(
                "stripe size {} must be a multiple of the volume block size {v}",
                self.stripe_bytes
            ));
        }
        if !(1..=1024).contains(&self.partition_count) {
            return Err(format!("{} partitions: must be 1 to 1024", self.partition_count));
        }
        if self.capacity_bytes == 0 || !self.capacity_bytes.is_multiple_of(u64::from(lb)) {
            return Err(format!(
                "volume size {} bytes must be a positive multiple of the block size {lb}",
                self.capacity_bytes
            ));
        }
        Ok(())
    }
}

/// The content of one dirty data block.
///
/// The bytes are a shared view of the buffer the data arrived in (a whole-block piece of a
/// write), or of a buffer of its own (a merged sub-block write); the txg syncer checksums them
/// in place (on a CPU worker, with compression and fingerprints) and writes them from that
/// memory.
#[derive(Debug, Clone)]
pub struct BlockData {
    /// Exactly `volblock_bytes`.
    pub bytes: SharedBuf,
    /// Where the bytes were already written (a durable write logged by reference): the
    /// sync takes this place into the tree instead of writing the block again.
    pub written_at: Option<crate::block_pointer::Extent>,
}

impl BlockData {
    /// Wraps `bytes`.
    #[must_use]
    pub fn new(bytes: SharedBuf) -> BlockData {
        BlockData { bytes, written_at: None }
    }

    /// Wraps `bytes`, already written at `extent`.
    #[must_use]
    pub fn written(bytes: SharedBuf, extent: crate::block_pointer::Extent) -> BlockData {
        BlockData { bytes, written_at: Some(extent) }
    }

    /// A block holding a copy of `bytes` in a buffer of its own (tests, replay).
    #[must_use]
    pub fn copied(bytes: &[u8]) -> BlockData {
        BlockData::new(SharedBuf::new(IoBuf::from_slice(bytes)))
    }
}

impl AsRef<[u8]> for BlockData {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A data block changed in a txg.
#[derive(Debug, Clone)]
pub enum DirtyBlock {
    /// New content.
    Data(Arc<BlockData>),
    /// Now a hole (unmapped, or written with zeros).
    Zero,
}

/// The changes of one partition in one txg.
#[derive(Debug, Default)]
pub struct DirtySet {
    /// Blocks written, in tree-index order. Applied after `punches`.
    pub blocks: BTreeMap<u64, DirtyBlock>,
    /// Ranges `[start, end)` of tree indices unmapped; applied first.
    pub punches: Vec<(u64, u64)>,
    /// Bytes of data held by `blocks`.
    pub data_bytes: u64,
}

impl DirtySet {
    /// True when nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.punches.is_empty()
    }

    /// The block's state in this set, if it changed here.
    #[must_use]
    pub fn get(&self, index: u64) -> Option<DirtyBlock> {
        if let Some(b) = self.blocks.get(&index) {
            return Some(b.clone());
        }
        self.punches.iter().any(|&(s, e)| index >= s && index < e).then_some(DirtyBlock::Zero)
    }

    /// Records `block` at `index`; returns the change in held data bytes.
    pub fn put(&mut self, index: u64, block: DirtyBlock) -> i64 {
        let new_bytes = match &block {
            DirtyBlock::Data(d) => d.bytes.len() as i64,
            DirtyBlock::Zero => 0,
        };
        let old_bytes = match self.blocks.insert(index, block) {
            Some(DirtyBlock::Data(d)) => d.bytes.len() as i64,
            _ => 0,
        };
        self.data_bytes = (self.data_bytes as i64 + new_bytes - old_bytes) as u64;
        new_bytes - old_bytes
    }

    /// Unmaps `[start, end)`; returns the change in held data bytes.
    pub fn punch(&mut self, start: u64, end: u64) -> i64 {
        let mut delta = 0;
        let keys: Vec<u64> = self.blocks.range(start..end).map(|(k, _)| *k).collect();
        for k in keys {
            if let Some(DirtyBlock::Data(d)) = self.blocks.remove(&k) {
                delta -= d.bytes.len() as i64;
            }
        }
        self.data_bytes = (self.data_bytes as i64 + delta) as u64;
        // Merge with an overlapping or adjacent range to keep the list short.
        for r in &mut self.punches {
            if start <= r.1 && end >= r.0 {
                r.0 = r.0.min(start);
                r.1 = r.1.max(end);
                return delta;
            }
        }
        self.punches.push((start, end));
        delta
    }
}

/// What a [`DirtySet`] says about a range of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeChange {
    /// The set changes none of the blocks.
    Untouched,
    /// Every block of the range is a hole in this set.
    AllHoles,
    /// Every block of the range holds new data in this set.
    AllData,
    /// Some blocks change, not all to holes.
    Mixed,
}

impl DirtySet {
    /// How this set changes the blocks `[start, end)`.
    #[must_use]
    pub fn range_change(&self, start: u64, end: u64) -> RangeChange {
        let mut blocks = self.blocks.range(start..end).peekable();
        let punched = self.punches.iter().any(|&(s, e)| s < end && e > start);
        if blocks.peek().is_none() && !punched {
            return RangeChange::Untouched;
        }
        let covered = self.punches.iter().any(|&(s, e)| s <= start && e >= end);
        let in_range: Vec<&DirtyBlock> = blocks.map(|(_, b)| b).collect();
        if covered && in_range.iter().all(|b| matches!(b, DirtyBlock::Zero)) {
            RangeChange::AllHoles
        } else if !punched
            && in_range.len() as u64 == end - start
            && in_range.iter().all(|b| matches!(b, DirtyBlock::Data(_)))
        {
            RangeChange::AllData
        } else {
            RangeChange::Mixed
        }
    }
}

/// In-memory state of one partition of a volume.
#[derive(Debug)]
pub struct PartitionState {
    /// Root of the last synced tree.
    pub root: BlockPointer,
    /// Levels of indirect blocks of the tree at `root`.
    pub height: u8,
    /// Levels the tree must have after the next sync (grown volumes).
    pub target_height: u8,
    /// Changes of the open txg.
    pub open: DirtySet,
    /// Txg the open changes belong to.
    pub open_txg: TxgId,
    /// Changes being synced (frozen).
    pub syncing: Option<Arc<DirtySet>>,
    /// Bumped by every change, for optimistic compare-and-write.
    pub version: u64,
}

impl PartitionState {
    /// A partition with a synced tree at `root`.
    #[must_use]
    pub fn new(root: BlockPointer, height: u8, open_txg: TxgId) -> PartitionState {
        PartitionState {
            root,
            height,
            target_height: height,
            open: DirtySet::default(),
            open_txg,
            syncing: None,
            version: 0,
        }
    }

    /// The block's newest unsynced state, if any.
    #[must_use]
    pub fn dirty(&self, index: u64) -> Option<DirtyBlock> {
        self.open.get(index).or_else(|| self.syncing.as_ref().and_then(|s| s.get(index)))
    }

    /// Makes `change` to the open set as one change of the partition: bumps the version and
    /// takes the change's record sequence number from `sequences` (the pool's), under the
    /// partition's lock that the caller holds, so sequence numbers order the partition's
    /// changes. The caller adds the returned `delta_bytes` to the pool's dirty bytes.
    pub fn change_open(
        &mut self,
        sequences: &AtomicU64,
        change: impl FnOnce(&mut DirtySet) -> i64,
    ) -> OpenChange {
        let delta_bytes = change(&mut self.open);
        self.version += 1;
        let sequence = sequences.fetch_add(1, Ordering::SeqCst);
        OpenChange { delta_bytes, sequence, label_txg: self.open_txg }
    }

    /// Puts `block` at `index` in the open set, as one change (see
    /// [`PartitionState::change_open`]).
    pub fn put_open(&mut self, index: u64, block: DirtyBlock, sequences: &AtomicU64) -> OpenChange {
        self.change_open(sequences, |open| open.put(index, block))
    }
}

/// One change to a partition's open set, made by [`PartitionState::change_open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct OpenChange {
    /// Change in the data bytes the open set holds.
    pub delta_bytes: i64,
    /// The change's intent-log record sequence number.
    pub sequence: u64,
    /// Txg the change belongs to (its records' label).
    pub label_txg: TxgId,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> VolumeLayout {
        VolumeLayout {
            logical_block_bytes: 512,
            volblock_bytes: 8192,
            stripe_bytes: 1 << 20,
            partition_count: 4,
            capacity_bytes: 10 << 20,
        }
    }

    #[test]
    fn addresses_are_a_bijection() {
        let l = layout();
        assert!(l.is_valid());
        let mut seen = std::collections::HashSet::new();
        for block in 0..l.volume_blocks() {
            let a = l.address(VolumeBlock::new(block));
            assert!(a.partition.get() < 4);
            assert!(a.index < l.blocks_per_partition());
            assert!(seen.insert((a.partition, a.index)));
            assert_eq!(l.volume_block(a), VolumeBlock::new(block));
        }
        // Consecutive stripes land in consecutive partitions.
        assert_eq!(l.address(VolumeBlock::new(128)).partition, PartitionId::new(1));
    }

    #[test]
    fn range_change_sees_untouched_punched_and_mixed_ranges() {
        let mut set = DirtySet::default();
        assert_eq!(set.range_change(0, 10), RangeChange::Untouched);
        set.punch(0, 100);
        assert_eq!(set.range_change(10, 20), RangeChange::AllHoles);
        assert_eq!(set.range_change(90, 110), RangeChange::Mixed);
        assert_eq!(set.range_change(100, 110), RangeChange::Untouched);
        set.put(15, DirtyBlock::Zero);
        assert_eq!(set.range_change(10, 20), RangeChange::AllHoles);
        set.put(16, DirtyBlock::Data(Arc::new(BlockData::copied(&[1u8; 512]))));
        assert_eq!(set.range_change(10, 20), RangeChange::Mixed);
        assert_eq!(set.range_change(17, 20), RangeChange::AllHoles);
        assert_eq!(set.range_change(16, 17), RangeChange::Mixed, "punched, then written");
        set.put(200, DirtyBlock::Data(Arc::new(BlockData::copied(&[1u8; 512]))));
        assert_eq!(set.range_change(200, 201), RangeChange::AllData);
        assert_eq!(set.range_change(200, 202), RangeChange::Mixed);
    }

    #[test]
    fn open_changes_bump_the_version_and_take_sequences_in_order() {
        let mut p = PartitionState::new(BlockPointer::default(), 1, TxgId::new(7));
        let sequences = AtomicU64::new(40);
        let block = DirtyBlock::Data(Arc::new(BlockData::copied(&[1u8; 4096])));
        let first = p.put_open(3, block, &sequences);
        assert_eq!(first, OpenChange { delta_bytes: 4096, sequence: 40, label_txg: TxgId::new(7) });
        let second = p.change_open(&sequences, |open| open.punch(0, 10));
        assert_eq!(
            second,
            OpenChange { delta_bytes: -4096, sequence: 41, label_txg: TxgId::new(7) }
        );
        assert_eq!((p.version, sequences.load(Ordering::SeqCst)), (2, 42));
        assert!(matches!(p.dirty(3), Some(DirtyBlock::Zero)));
    }

    #[test]
    fn punch_removes_blocks_and_merges_ranges() {
        let mut d = DirtySet::default();
        d.put(5, DirtyBlock::Data(Arc::new(BlockData::copied(&[1u8; 4096]))));
        assert_eq!(d.data_bytes, 4096);
        d.punch(0, 10);
        d.punch(10, 20);
        assert_eq!(d.data_bytes, 0);
        assert_eq!(d.punches, vec![(0, 20)]);
        assert!(matches!(d.get(15), Some(DirtyBlock::Zero)));
        assert!(d.get(25).is_none());
    }
}
