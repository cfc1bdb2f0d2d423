//! The read cache: S3-FIFO (a small probationary FIFO, a main FIFO with reinsertion, and a
//! ghost FIFO of recently evicted keys), split into slices with their own lock and an equal
//! share of the memory budget.
//!
//! Keys name a block by where it lives *and* when it was born, so a location reused after a
//! free can never hit a stale entry. Values are verified block contents: data blocks and
//! decoded indirect blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use drivers::buffer::SharedBuf;

use crate::block_pointer::BlockPointer;

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
    /// Lookups that found / missed the block, counted under the slice lock (no counter
    /// shared by every shard on the read path).
    hits: u64,
    misses: u64,
}

impl Slice {
    fn evict(&mut self, budget: u64) {
        let small_target = budget / 10;
        while self.small_bytes + self.main_bytes > budget {
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

/// Cache statistics, summed over the slices.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the block.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Bytes charged to the cache.
    pub used_bytes: u64,
}

/// The sliced S3-FIFO cache.
pub struct BlockCache {
    slices: Vec<Mutex<Slice>>,
    slice_budget_bytes: u64,
}

impl BlockCache {
    /// A cache of `budget_bytes` split into `slices` slices (at least one).
    #[must_use]
    pub fn new(budget_bytes: u64, slices: usize) -> BlockCache {
        let slices = slices.max(1);
        BlockCache {
            slices: (0..slices).map(|_| Mutex::new(Slice::default())).collect(),
            slice_budget_bytes: budget_bytes / slices as u64,
        }
    }

    fn slice(&self, key: &BlockKey) -> std::sync::MutexGuard<'_, Slice> {
        let h = (key.offset_bytes / 4096) ^ u64::from(key.device).rotate_left(40);
        let i = usize::try_from(h % self.slices.len() as u64).unwrap_or(0);
        self.slices[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks a block up.
    #[must_use]
    pub fn get(&self, key: &BlockKey) -> Option<CachedBlock> {
        let mut s = self.slice(key);
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

    /// Inserts a verified block.
    pub fn insert(&self, key: BlockKey, value: CachedBlock) {
        let charge = value.charge_bytes();
        if charge > self.slice_budget_bytes {
            return;
        }
        let budget = self.slice_budget_bytes;
        let mut s = self.slice(&key);
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

    /// Hits, misses and bytes used, summed over the slices (each locked in turn).
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let mut out = CacheStats::default();
        for m in &self.slices {
            let s = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            out.hits += s.hits;
            out.misses += s.misses;
            out.used_bytes += s.small_bytes + s.main_bytes;
        }
        out
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
        let cache = BlockCache::new(64 * 1024, 1);
        let data = SharedBuf::new(IoBuf::zeroed(4096));
        cache.insert(key(0), CachedBlock::Data(data.clone()));
        for _ in 0..3 {
            assert!(cache.get(&key(0)).is_some());
        }
        for i in 1..100 {
            cache.insert(key(i), CachedBlock::Data(data.clone()));
            let _ = cache.get(&key(0));
        }
        assert!(cache.used_bytes() <= 64 * 1024);
        assert!(cache.get(&key(0)).is_some(), "a hot block survives a scan");
        assert!(cache.get(&key(1)).is_none(), "a one-hit block is evicted");
        let stats = cache.stats();
        assert_eq!(stats.hits, 3 + 99 + 1);
        assert_eq!(stats.misses, 1);
    }

    #[test]
    fn birth_is_part_of_the_key() {
        let cache = BlockCache::new(1 << 20, 2);
        cache.insert(key(5), CachedBlock::Data(SharedBuf::new(IoBuf::from_slice(&[1u8; 10]))));
        let reborn = BlockKey { birth_txg: 2, ..key(5) };
        assert!(cache.get(&reborn).is_none());
    }
}
