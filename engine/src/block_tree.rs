//! The block tree of one partition: a radix tree of indirect blocks (arrays of
//! [`BlockPointer`]) over the partition's data blocks (docs/format.md §Block trees).
//!
//! Lookups walk cached, verified indirect blocks. A txg sync collects its changes in a
//! [`TreeUpdate`]: it copies the indirect blocks on the paths it touches, sets leaves, punches
//! ranges, and then rewrites the touched indirect blocks bottom-up at new places (never in
//! place), producing a new root and the list of pointers it killed.

use std::collections::BTreeMap;
use std::sync::Arc;

use drivers::buffer::{IoBuf, SharedBuf};

use crate::allocator::Allocator;
use crate::block_pointer::{BlockKind, BlockPointer, Extent, CHECKSUM_XXH3_128};
use crate::cache::{BlockKey, CacheView, CachedBlock};
use crate::format::checksum;
use crate::units::TxgId;
use crate::vdev::{BlockReadError, Stripe};

/// Bytes of an indirect block.
pub const INDIRECT_BYTES: usize = 8192;
/// Pointers per indirect block.
pub const FANOUT: usize = INDIRECT_BYTES / std::mem::size_of::<BlockPointer>();
/// log2 of [`FANOUT`].
pub const FANOUT_SHIFT: u32 = FANOUT.trailing_zeros();

const _: () = assert!(FANOUT.is_power_of_two());

/// Levels of indirect blocks needed for `blocks` leaves (at least 1).
#[must_use]
pub fn height_for(blocks: u64) -> u8 {
    let mut height = 1u8;
    while height < 8 && (FANOUT as u64).pow(u32::from(height)) < blocks {
        height += 1;
    }
    height
}

/// Slot of the child covering leaf `index` inside its level-`level` ancestor.
#[must_use]
pub fn slot(index: u64, level: u8) -> usize {
    ((index >> (FANOUT_SHIFT * (u32::from(level) - 1))) & (FANOUT as u64 - 1)) as usize
}

/// Decodes an indirect block image.
///
/// # Errors
/// [`BlockReadError::Checksum`] when the image has the wrong size.
pub fn decode_indirect(bytes: &[u8]) -> Result<Arc<[BlockPointer]>, BlockReadError> {
    if bytes.len() < INDIRECT_BYTES {
        return Err(BlockReadError::Checksum);
    }
    Ok(bytes[..INDIRECT_BYTES]
        .chunks_exact(std::mem::size_of::<BlockPointer>())
        .map(bytemuck::pod_read_unaligned)
        .collect())
}

/// Outcome of a lookup against cached indirect blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// The leaf pointer (a hole when unmapped).
    Leaf(BlockPointer),
    /// This indirect block must be read (and cached) first.
    Need(BlockPointer),
}

/// Walks from `root` (of a tree of `height`) to leaf `index` through the cache.
#[must_use]
pub fn walk_cached(cache: CacheView<'_>, root: &BlockPointer, height: u8, index: u64) -> Walk {
    let mut bp = *root;
    let mut level = height;
    while level >= 1 {
        if bp.is_hole() {
            return Walk::Leaf(BlockPointer::HOLE);
        }
        match cache.get(&BlockKey::of(&bp)) {
            Some(CachedBlock::Indirect(ptrs)) => bp = ptrs[slot(index, level)],
            _ => return Walk::Need(bp),
        }
        level -= 1;
    }
    Walk::Leaf(bp)
}

/// Reads, verifies and caches an indirect block.
///
/// # Errors
/// The read or verification failure.
pub async fn load_indirect(
    devs: &Stripe,
    cache: CacheView<'_>,
    bp: &BlockPointer,
) -> Result<Arc<[BlockPointer]>, BlockReadError> {
    let key = BlockKey::of(bp);
    if let Some(CachedBlock::Indirect(p)) = cache.get(&key) {
        return Ok(p);
    }
    if bp.block_kind() != Some(BlockKind::Indirect) {
        return Err(BlockReadError::Checksum);
    }
    let buf = devs.read_block(bp).await?;
    let ptrs = decode_indirect(&buf)?;
    cache.insert(key, CachedBlock::Indirect(Arc::clone(&ptrs)));
    Ok(ptrs)
}

/// Walks to leaf `index`, reading indirect blocks as needed.
///
/// # Errors
/// A read or verification failure of an indirect block.
pub async fn lookup(
    devs: &Stripe,
    cache: CacheView<'_>,
    root: &BlockPointer,
    height: u8,
    index: u64,
) -> Result<BlockPointer, BlockReadError> {
    lookup_at(devs, cache, root, height, (0, index)).await
}

/// Walks to the pointer at `place` = (level, index among that level's pointers; level 0 for a
/// data block), reading indirect blocks as needed; a hole above it gives a hole.
///
/// # Errors
/// A read or verification failure of an indirect block.
pub async fn lookup_at(
    devs: &Stripe,
    cache: CacheView<'_>,
    root: &BlockPointer,
    height: u8,
    (level, index): (u8, u64),
) -> Result<BlockPointer, BlockReadError> {
    let leaf = index << (FANOUT_SHIFT * u32::from(level));
    let mut bp = *root;
    let mut at = height;
    while at > level {
        if bp.is_hole() {
            return Ok(BlockPointer::HOLE);
        }
        let ptrs = load_indirect(devs, cache, &bp).await?;
        bp = ptrs[slot(leaf, at)];
        at -= 1;
    }
    Ok(bp)
}

/// Data blocks under `root` (a tree of `height` levels) among the leaves `[start, end)`. Reads
/// only the indirect blocks whose span the range cuts; a pointer wholly inside the range counts
/// by its `fill_blocks`, a hole counts nothing.
///
/// # Errors
/// The first indirect block that cannot be read or fails its checksum.
pub async fn filled_in_range(
    devs: &Stripe,
    cache: CacheView<'_>,
    root: &BlockPointer,
    height: u8,
    start: u64,
    end: u64,
) -> Result<u64, BlockReadError> {
    let mut total = 0;
    // (pointer, its level, first leaf it covers)
    let mut stack = vec![(*root, height, 0u64)];
    while let Some((bp, level, base)) = stack.pop() {
        let span = 1u64 << (FANOUT_SHIFT * u32::from(level));
        if bp.is_hole() || base >= end || base.saturating_add(span) <= start {
            continue;
        }
        if level == 0 || (base >= start && base + span <= end) {
            total += bp.fill_blocks;
            continue;
        }
        let ptrs = load_indirect(devs, cache, &bp).await?;
        let child_span = span >> FANOUT_SHIFT;
        for (i, child) in ptrs.iter().enumerate() {
            let child_base = base + i as u64 * child_span;
            if child_base < end && child_base + child_span > start {
                stack.push((*child, level - 1, child_base));
            }
        }
    }
    Ok(total)
}

/// Indirect-block reads a prefetch keeps in flight.
const PREFETCH_DEPTH: usize = 64;

/// Reads (and caches) the indirect blocks on the paths from `root` (a tree of `height`
/// levels) to the leaves `indices` (sorted), level by level with up to [`PREFETCH_DEPTH`]
/// reads in flight, so that a txg sync does not read them one at a time. Failures are left
/// for the caller, which reads the same blocks again and reports them.
pub async fn prefetch_paths(
    devs: &Stripe,
    cache: CacheView<'_>,
    root: BlockPointer,
    height: u8,
    indices: &[u64],
) {
    let mut level = height;
    // (block index at `level`, pointer) of the blocks to read at this level.
    let mut frontier: Vec<(u64, BlockPointer)> = vec![(0, root)];
    while level >= 1 && !frontier.is_empty() {
        let mut loaded: std::collections::HashMap<u64, Arc<[BlockPointer]>> =
            std::collections::HashMap::with_capacity(frontier.len());
        for chunk in frontier.chunks(PREFETCH_DEPTH) {
            let reads = chunk.iter().map(|(_, bp)| load_indirect(devs, cache, bp)).collect();
            for ((index, _), res) in chunk.iter().zip(crate::join::join_all(reads).await) {
                if let Ok(ptrs) = res {
                    loaded.insert(*index, ptrs);
                }
            }
        }
        if level == 1 {
            break;
        }
        let shift = FANOUT_SHIFT * u32::from(level - 1);
        let mut next: Vec<(u64, BlockPointer)> = Vec::new();
        for &leaf in indices {
            let child = leaf >> shift;
            if next.last().is_some_and(|(c, _)| *c == child) {
                continue;
            }
            if let Some(ptrs) = loaded.get(&(child >> FANOUT_SHIFT)) {
                let bp = ptrs[slot(leaf, level)];
                if !bp.is_hole() {
                    next.push((child, bp));
                }
            }
        }
        frontier = next;
        level -= 1;
    }
}

/// A block write produced by a sync: where and what.
pub struct PendingWrite {
    /// Where.
    pub extent: Extent,
    /// The bytes (exactly `extent.len_bytes` long), written from this memory.
    pub data: SharedBuf,
    /// Their checksum, verified again right before the write.
    pub checksum: crate::format::Checksum,
}

/// Changes to one tree during a txg sync.
pub struct TreeUpdate<'a> {
    devs: &'a Stripe,
    cache: CacheView<'a>,
    height: u8,
    root: BlockPointer,
    blocks: BTreeMap<(u8, u64), Vec<BlockPointer>>,
    /// Pointers no longer referenced by the new tree (leaves and indirect blocks).
    pub killed: Vec<BlockPointer>,
}

impl<'a> TreeUpdate<'a> {
    /// Starts an update of the tree at `root` with `height` levels.
    #[must_use]
    pub fn new(devs: &'a Stripe, cache: CacheView<'a>, root: BlockPointer, height: u8) -> Self {
        TreeUpdate { devs, cache, height, root, blocks: BTreeMap::new(), killed: Vec::new() }
    }

    async fn load_copy(&self, bp: &BlockPointer) -> Result<Vec<BlockPointer>, BlockReadError> {
        if bp.is_hole() {
            return Ok(vec![BlockPointer::HOLE; FANOUT]);
        }
        Ok(load_indirect(self.devs, self.cache, bp).await?.to_vec())
    }

    /// Makes the level-`level` block with index `index` (and its ancestors) modifiable.
    async fn ensure_path(&mut self, level: u8, index: u64) -> Result<(), BlockReadError> {
        if !self.blocks.contains_key(&(self.height, 0)) {
            let root = self.root;
            let copy = self.load_copy(&root).await?;
            self.blocks.insert((self.height, 0), copy);
        }
        let mut l = self.height;
        while l > level {
            let child_level = l - 1;
            let child_index = index >> (FANOUT_SHIFT * u32::from(child_level - level));
            if !self.blocks.contains_key(&(child_level, child_index)) {
                let parent = &self.blocks[&(l, child_index >> FANOUT_SHIFT)];
                let bp = parent[(child_index & (FANOUT as u64 - 1)) as usize];
                let copy = self.load_copy(&bp).await?;
                self.blocks.insert((child_level, child_index), copy);
            }
            l = child_level;
        }
        Ok(())
    }

    /// Points leaf `index` at `bp` (a data block or a hole), killing the old leaf.
    ///
    /// # Errors
    /// A read failure of an indirect block on the path.
    pub async fn set_leaf(&mut self, index: u64, bp: BlockPointer) -> Result<(), BlockReadError> {
        self.ensure_path(1, index >> FANOUT_SHIFT).await?;
        let block = self.blocks.get_mut(&(1, index >> FANOUT_SHIFT)).expect("path loaded");
        let s = slot(index, 1);
        let old = std::mem::replace(&mut block[s], bp);
        if !old.is_hole() {
            self.killed.push(old);
        }
        Ok(())
    }

    /// Kills every block under `bp` and `bp` itself.
    async fn kill_subtree(&mut self, bp: BlockPointer) -> Result<(), BlockReadError> {
        let mut stack = vec![bp];
        while let Some(bp) = stack.pop() {
            if bp.is_hole() {
                continue;
            }
            if bp.level > 0 {
                let children = load_indirect(self.devs, self.cache, &bp).await?;
                stack.extend(children.iter().filter(|c| !c.is_hole()).copied());
            }
            self.killed.push(bp);
        }
        Ok(())
    }

    /// Turns leaves `[start, end)` into holes.
    ///
    /// # Errors
    /// A read failure of an indirect block.
    pub async fn punch(&mut self, start: u64, end: u64) -> Result<(), BlockReadError> {
        // Work list of (level, index) blocks overlapping the range, top-down.
        let mut work = vec![(self.height, 0u64)];
        while let Some((level, index)) = work.pop() {
            let span = 1u64 << (FANOUT_SHIFT * u32::from(level));
            let base = index * span;
            if base >= end || base + span <= start {
                continue;
            }
            self.ensure_path(level, index).await?;
            let child_span = span >> FANOUT_SHIFT;
            for s in 0..FANOUT as u64 {
                let cs = base + s * child_span;
                let ce = cs + child_span;
                if ce <= start || cs >= end {
                    continue;
                }
                let slot_index = usize::try_from(s).expect("slot fits");
                let child = self.blocks[&(level, index)][slot_index];
                if cs >= start && ce <= end {
                    let child_index = index * FANOUT as u64 + s;
                    self.kill_subtree_at(level - 1, child_index, child).await?;
                    self.blocks.get_mut(&(level, index)).expect("loaded")[slot_index] =
                        BlockPointer::HOLE;
                } else if level > 1 && !child.is_hole() {
                    work.push((level - 1, index * FANOUT as u64 + s));
                }
            }
        }
        Ok(())
    }

    /// Kills the subtree whose root is the block (`level`, `index`) with on-disk pointer
    /// `old`: through its modified copy when there is one (so leaves replaced earlier in this
    /// update are not killed twice), else through the blocks on disk.
    async fn kill_subtree_at(
        &mut self,
        level: u8,
        index: u64,
        old: BlockPointer,
    ) -> Result<(), BlockReadError> {
        let mut stack = vec![(level, index, old)];
        while let Some((level, index, old)) = stack.pop() {
            if level == 0 {
                if !old.is_hole() {
                    self.killed.push(old);
                }
                continue;
            }
            match self.blocks.remove(&(level, index)) {
                Some(copy) => {
                    for (s, child) in copy.into_iter().enumerate() {
                        stack.push((level - 1, index * FANOUT as u64 + s as u64, child));
                    }
                    if !old.is_hole() {
                        self.killed.push(old);
                    }
                }
                None => self.kill_subtree(old).await?,
            }
        }
        Ok(())
    }

    /// Rewrites every modified indirect block bottom-up at newly allocated places. Returns the
    /// new root and the writes to issue.
    ///
    /// # Errors
    /// `None` inside when the pool is out of space.
    pub fn commit(
        mut self,
        alloc: &Allocator,
        hint: &mut crate::allocator::Hint,
        txg: TxgId,
    ) -> Result<(BlockPointer, Vec<BlockPointer>, Vec<PendingWrite>), crate::error::PoolError> {
        let mut writes = Vec::new();
        let mut new_root = self.root;
        for level in 1..=self.height {
            let keys: Vec<u64> =
                self.blocks.range((level, 0)..=(level, u64::MAX)).map(|(k, _)| k.1).collect();
            for index in keys {
                let ptrs = self.blocks.remove(&(level, index)).expect("key listed");
                let fill: u64 = ptrs.iter().map(|p| p.fill_blocks).sum();
                let new_bp = if ptrs.iter().all(BlockPointer::is_hole) {
                    BlockPointer::HOLE
                } else {
                    let extent = alloc
                        .allocate(hint, INDIRECT_BYTES as u64)
                        .ok_or(crate::error::PoolError::NoSpace)?;
                    let data =
                        SharedBuf::new(IoBuf::from_slice(bytemuck::cast_slice::<_, u8>(&ptrs)));
                    let sum = checksum(&data);
                    let bp = BlockPointer {
                        offset_bytes: extent.offset_bytes,
                        birth_txg: txg.get(),
                        checksum: sum,
                        fill_blocks: fill,
                        logical_bytes: INDIRECT_BYTES as u32,
                        physical_bytes: INDIRECT_BYTES as u32,
                        device: extent.device,
                        kind: BlockKind::Indirect as u8,
                        level,
                        checksum_type: CHECKSUM_XXH3_128,
                        ..BlockPointer::HOLE
                    };
                    self.cache.insert(BlockKey::of(&bp), CachedBlock::Indirect(ptrs.into()));
                    writes.push(PendingWrite { extent, data, checksum: sum });
                    bp
                };
                let old = if level == self.height {
                    std::mem::replace(&mut new_root, new_bp)
                } else {
                    let parent = self
                        .blocks
                        .get_mut(&(level + 1, index >> FANOUT_SHIFT))
                        .expect("parent of a modified block is modified");
                    std::mem::replace(&mut parent[(index & (FANOUT as u64 - 1)) as usize], new_bp)
                };
                if !old.is_hole() {
                    self.killed.push(old);
                }
            }
        }
        Ok((new_root, self.killed, writes))
    }
}

impl TreeUpdate<'_> {
    /// Adds levels on top of the tree so it has `new_height` levels (slot 0 of each new level
    /// points at the old root).
    pub fn deepen(&mut self, new_height: u8) {
        assert!(self.blocks.is_empty(), "deepen before any other change");
        let mut below_modified = false;
        while self.height < new_height {
            self.height += 1;
            if below_modified {
                self.blocks.insert((self.height, 0), vec![BlockPointer::HOLE; FANOUT]);
            } else if !self.root.is_hole() {
                // The old root stays referenced from slot 0 of the new top block, which has no
                // old version to kill.
                let mut top = vec![BlockPointer::HOLE; FANOUT];
                top[0] = self.root;
                self.blocks.insert((self.height, 0), top);
                self.root = BlockPointer::HOLE;
                below_modified = true;
            }
        }
    }

    /// Height after the update.
    #[must_use]
    pub fn height(&self) -> u8 {
        self.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_and_slots() {
        assert_eq!(height_for(1), 1);
        assert_eq!(height_for(FANOUT as u64), 1);
        assert_eq!(height_for(FANOUT as u64 + 1), 2);
        assert_eq!(slot(FANOUT as u64 + 3, 1), 3);
        assert_eq!(slot(FANOUT as u64 + 3, 2), 1);
    }
}
