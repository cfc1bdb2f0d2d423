//! The read cache: S3-FIFO (a small probationary FIFO, a main FIFO with reinsertion, and a
//! ghost FIFO of recently evicted keys), split per shard, within one memory budget.
//!
//! A volume partition's blocks (data and indirect) are cached in the part of the shard that
//! owns the partition ([`crate::route`]), whichever shard reads them: a block is cached once,
//! and one session reading a whole volume uses every part. Each part has an equal share of the
//! budget and is cut into slices by block address, each with its own lock and share, so a
//! shard reading another shard's partition rarely meets that shard on a lock, and no counter
//! is shared: a hit or an insert touches one slice. A thread that serves no shard set (one
//! reactor, tests, tools), and trees that belong to no partition, use part 0.
//!
//! Keys name a block by where it lives *and* when it was born, so a location reused after a
//! free can never hit a stale entry; nothing is ever invalidated. Values are verified block
//! contents: data blocks and decoded indirect blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use drivers::buffer::SharedBuf;

use crate::block_pointer::BlockPointer;
use crate::pool::lock;
use crate::route::Route;
use crate::units::PartitionId;

/// Lock slices of the whole cache, divided among the parts (at least one each): many more than
/// shards, so shards reading at random rarely meet on one lock, and few enough that a slice's
/// share of the budget holds many of the largest (128 KiB) blocks.
const SLICES: usize = 64;

/// Identity of a cached block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Device index.
    pub device: u16,
    /// Byte offset.
    pub offset_bytes: u64,
    /// Birth txg.
    pub birth_txg: u64,
}

impl BlockKey {
    /// Key of the block behind `bp`.
    #[must_use]
    pub fn of(bp: &BlockPointer) -> BlockKey {
        BlockKey { device: bp.device, offset_bytes: bp.offset_bytes, birth_txg: bp.birth_txg }
    }
}

/// A cached, verified block.
#[derive(Debug, Clone)]
pub enum CachedBlock {
    /// Volume data (`logical_bytes` long): a view of the I/O buffer it was read and verified
    /// in, shared with the readers that send it.
    Data(SharedBuf),
    /// An indirect block's pointers.
    Indirect(Arc<[BlockPointer]>),
}

impl CachedBlock {
    fn charge_bytes(&self) -> u64 {
        let payload = match self {
            CachedBlock::Data(d) => d.len(),
            CachedBlock::Indirect(p) => p.len() * std::mem::size_of::<BlockPointer>(),
        };
        payload as u64 + 64
    }
}

struct Entry {
    value: CachedBlock,
    freq: u8,
    in_main: bool,
}

#[derive(Default)]
struct Slice {
    map: HashMap<BlockKey, Entry>,
    small: VecDeque<BlockKey>,
    main: VecDeque<BlockKey>,
    ghost: VecDeque<BlockKey>,
    ghost_set: HashSet<BlockKey>,
    small_bytes: u64,
    main_bytes: u64,
    /// Lookups that found / missed the block, counted under the part's lock (no counter
    /// shared by every shard on the read path).
    hits: u64,
    misses: u64,
}

impl Slice {
    fn bytes(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    /// Evicts until the slice holds at most `budget` bytes; the small FIFO is kept near a
    /// tenth of the budget.
    fn evict(&mut self, budget: u64) {
        let small_target = budget / 10;
        while self.bytes() > budget {
            if self.small_bytes > small_target || self.main.is_empty() {
                let Some(key) = self.small.pop_front() else { break };
                let Some(e) = self.map.get_mut(&key) else { continue };
                let charge = e.value.charge_bytes();
                self.small_bytes -= charge;
                if e.freq > 0 {
                    e.freq = 0;
                    e.in_main = true;
                    self.main.push_back(key);
                    self.main_bytes += charge;
                } else {
                    self.map.remove(&key);
                    self.ghost.push_back(key);
                    self.ghost_set.insert(key);
                    let ghost_limit = self.main.len().max(16);
                    while self.ghost.len() > ghost_limit {
                        if let Some(old) = self.ghost.pop_front() {
                            self.ghost_set.remove(&old);
                        }
                    }
                }
            } else {
                let Some(key) = self.main.pop_front() else { break };
                let Some(e) = self.map.get_mut(&key) else { continue };
                if e.freq > 0 {
                    e.freq -= 1;
                    self.main.push_back(key);
                } else {
                    let charge = e.value.charge_bytes();
                    self.map.remove(&key);
                    self.main_bytes -= charge;
                }
            }
        }
    }
}

/// Cache statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the block.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Bytes charged to the cache.
    pub used_bytes: u64,
}

impl std::iter::Sum for CacheStats {
    fn sum<I: Iterator<Item = CacheStats>>(iter: I) -> CacheStats {
        iter.fold(CacheStats::default(), |a, b| CacheStats {
            hits: a.hits + b.hits,
            misses: a.misses + b.misses,
            used_bytes: a.used_bytes + b.used_bytes,
        })
    }
}

/// One shard's part of the cache.
struct Part {
    slices: Vec<Mutex<Slice>>,
}

impl Part {
    fn new(slices: usize) -> Part {
        Part { slices: (0..slices).map(|_| Mutex::default()).collect() }
    }

    fn slice(&self, key: &BlockKey) -> MutexGuard<'_, Slice> {
        let h = (key.offset_bytes / 4096) ^ u64::from(key.device).rotate_left(40);
        let i = usize::try_from(h % self.slices.len() as u64).unwrap_or(0);
        lock(&self.slices[i])
    }

    fn stats(&self) -> CacheStats {
        self.slices
            .iter()
            .map(|m| {
                let s = lock(m);
                CacheStats { hits: s.hits, misses: s.misses, used_bytes: s.bytes() }
            })
            .sum()
    }
}

/// The S3-FIFO cache, one part per shard.
pub struct BlockCache {
    parts: Vec<Part>,
    slice_budget_bytes: u64,
}

/// The part of the cache that one tree's blocks go to: a cheap, copyable handle.
#[derive(Clone, Copy)]
pub struct CacheView<'a> {
    cache: &'a BlockCache,
    part: usize,
}

impl CacheView<'_> {
    /// Looks a block up.
    #[must_use]
    pub fn get(self, key: &BlockKey) -> Option<CachedBlock> {
        self.cache.get_in(self.part, key)
    }

    /// Inserts a verified block.
    pub fn insert(self, key: BlockKey, value: CachedBlock) {
        self.cache.insert_in(self.part, key, value);
    }
}

impl BlockCache {
    /// A cache of `budget_bytes` with `parts` parts (at least one: the pool's shard count).
    #[must_use]
    pub fn new(budget_bytes: u64, parts: usize) -> BlockCache {
        let parts = parts.max(1);
        let slices = (SLICES / parts).max(1);
        BlockCache {
            parts: (0..parts).map(|_| Part::new(slices)).collect(),
            slice_budget_bytes: budget_bytes / (parts * slices) as u64,
        }
    }

    /// The part of shard `shard` (wrapping when the pool has fewer parts than shards).
    #[must_use]
    pub fn view(&self, shard: usize) -> CacheView<'_> {
        CacheView { cache: self, part: shard % self.parts.len() }
    }

    /// The part of the shard that owns partition `partition` of volume `volume_id` among the
    /// shards the calling thread serves (part 0 when it serves no set).
    #[must_use]
    pub fn for_partition(&self, volume_id: u64, partition: PartitionId) -> CacheView<'_> {
        self.view(Route::current().map_or(0, |r| r.partition_owner(volume_id, partition).get()))
    }

    fn get_in(&self, part: usize, key: &BlockKey) -> Option<CachedBlock> {
        let mut s = self.parts[part].slice(key);
        let found = s.map.get_mut(key).map(|e| {
            e.freq = (e.freq + 1).min(3);
            e.value.clone()
        });
        if found.is_some() {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
        found
    }

    fn insert_in(&self, part: usize, key: BlockKey, value: CachedBlock) {
        let charge = value.charge_bytes();
        let budget = self.slice_budget_bytes;
        if charge > budget {
            return;
        }
        let mut s = self.parts[part].slice(&key);
        if let Some(old) = s.map.remove(&key) {
            if old.in_main {
                s.main_bytes -= old.value.charge_bytes();
            } else {
                s.small_bytes -= old.value.charge_bytes();
            }
            s.small.retain(|k| *k != key);
            s.main.retain(|k| *k != key);
        }
        let in_main = s.ghost_set.remove(&key);
        if in_main {
            s.main.push_back(key);
            s.main_bytes += charge;
        } else {
            s.small.push_back(key);
            s.small_bytes += charge;
        }
        s.map.insert(key, Entry { value, freq: 0, in_main });
        s.evict(budget);
    }

    /// Bytes charged to the cache.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        self.stats().used_bytes
    }

    /// Hits, misses and bytes used, summed over the parts (each slice locked in turn).
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        self.parts.iter().map(Part::stats).sum()
    }

    /// Hits, misses and bytes used of each part (part `i` is shard `i`'s).
    #[must_use]
    pub fn part_stats(&self) -> Vec<CacheStats> {
        self.parts.iter().map(Part::stats).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::buffer::IoBuf;

    fn key(i: u64) -> BlockKey {
        BlockKey { device: 0, offset_bytes: i * 4096, birth_txg: 1 }
    }

    #[test]
    fn stays_within_budget_and_keeps_hot_blocks() {
        // Keys SLICES apart share a slice: one slice with a 64 KiB share.
        let slice_key = |i: u64| key(i * SLICES as u64);
        let cache = BlockCache::new(SLICES as u64 * 64 * 1024, 1);
        let cache = cache.view(0);
        let data = SharedBuf::new(IoBuf::zeroed(4096));
        cache.insert(slice_key(0), CachedBlock::Data(data.clone()));
        for _ in 0..3 {
            assert!(cache.get(&slice_key(0)).is_some());
        }
        for i in 1..100 {
            cache.insert(slice_key(i), CachedBlock::Data(data.clone()));
            let _ = cache.get(&slice_key(0));
        }
        assert!(cache.cache.used_bytes() <= 64 * 1024);
        assert!(cache.get(&slice_key(0)).is_some(), "a hot block survives a scan");
        assert!(cache.get(&slice_key(1)).is_none(), "a one-hit block is evicted");
        let stats = cache.cache.stats();
        assert_eq!(stats.hits, 3 + 99 + 1);
        assert_eq!(stats.misses, 1);
    }

    #[test]
    fn birth_is_part_of_the_key() {
        let cache = BlockCache::new(1 << 20, 2);
        let cache = cache.view(1);
        cache.insert(key(5), CachedBlock::Data(SharedBuf::new(IoBuf::from_slice(&[1u8; 10]))));
        let reborn = BlockKey { birth_txg: 2, ..key(5) };
        assert!(cache.get(&reborn).is_none());
    }

    fn block(len: usize) -> CachedBlock {
        CachedBlock::Data(SharedBuf::new(IoBuf::zeroed(len)))
    }

    #[test]
    fn each_part_keeps_within_its_share_of_the_budget() {
        let budget = SLICES as u64 * 64 * 1024;
        let cache = BlockCache::new(budget, 2);
        for i in 0..10_000 {
            cache.insert_in(0, key(i), block(4096));
        }
        let parts = cache.part_stats();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].used_bytes, 0);
        assert!(parts[0].used_bytes <= budget / 2, "{parts:?}");
        // Every slice is filled to within one block of its share.
        let slack = SLICES as u64 / 2 * 4160;
        assert!(parts[0].used_bytes > budget / 2 - slack, "{parts:?}");
        for i in 0..10_000 {
            cache.insert_in(1, key(i), block(4096));
        }
        let parts = cache.part_stats();
        assert!(parts[1].used_bytes <= budget / 2 && parts[1].used_bytes > budget / 2 - slack);
        assert!(cache.used_bytes() <= budget);
    }

    #[test]
    fn a_view_sees_only_its_own_part() {
        let cache = BlockCache::new(1 << 20, 2);
        cache.view(1).insert(key(7), block(4096));
        assert!(cache.view(1).get(&key(7)).is_some());
        assert!(cache.view(0).get(&key(7)).is_none());
        assert!(cache.view(3).get(&key(7)).is_some(), "shard 3 of a 2-part cache uses part 1");
        // Without a shard set, every partition is cached in part 0.
        assert_eq!(cache.for_partition(5, PartitionId::new(3)).part, 0);
        let parts = cache.part_stats();
        assert_eq!(parts[1].hits, 2);
        assert_eq!(parts[0].misses, 1);
    }
}
