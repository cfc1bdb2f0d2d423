//! Partition ownership: which shard runs the work of a volume partition.
//!
//! A shard that serves a [`ShardSet`] routes through it: partition `p` of volume `v` belongs to
//! shard `(31 v + p) mod n` of the set's `n` shards, and allocation group `g` to shard
//! `g mod n` ([`crate::allocator::group_owner`]). Reads and writes of a partition, and its part
//! of every txg sync, run on its owner; work for another shard's partition moves there by
//! message with its buffers. Ownership is a function of the shard count only, nothing on disk
//! records it, so changing the core count re-assigns partitions without a format change.
//!
//! A thread that serves no set (tests, the simulator, tools that open a pool on one reactor)
//! owns every partition.

use drivers::remote::{Remote, ShardSet};

use crate::units::{PartitionId, ShardId};

/// Where the current thread stands in the shard set it serves. Cheap: it holds no reference
/// to the set (looking it up touches no counter another shard writes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    here: usize,
    shards: usize,
}

/// The owner of partition `index` of volume `volume_id` among `shards` shards.
#[must_use]
pub fn partition_owner(volume_id: u64, index: PartitionId, shards: usize) -> ShardId {
    let key = (volume_id as usize).wrapping_mul(31).wrapping_add(index.get());
    ShardId::new(key % shards.max(1))
}

impl Route {
    /// The current thread's route, when it serves a set of more than one shard.
    pub(crate) fn current() -> Option<Route> {
        ShardSet::with_current(|set, here| Route { here, shards: set.len() })
            .filter(|r| r.shards > 1)
    }

    pub(crate) fn shards(self) -> usize {
        self.shards
    }

    pub(crate) fn here(self) -> ShardId {
        ShardId::new(self.here)
    }

    pub(crate) fn partition_owner(self, volume_id: u64, index: PartitionId) -> ShardId {
        partition_owner(volume_id, index, self.shards)
    }

    /// True when work for `shard` must be sent there: another shard that serves the set.
    pub(crate) fn is_remote(self, shard: ShardId) -> bool {
        shard.get() != self.here
            && ShardSet::with_current(|set, _| set.is_serving(shard.get())).unwrap_or(false)
    }

    /// Runs `make()` on shard `shard` of the current set ([`ShardSet::run_on`]).
    pub(crate) fn run_on<T, F, Fut>(self, shard: ShardId, make: F) -> Remote<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        ShardSet::with_current(|set, _| set.run_on(shard.get(), make))
            .unwrap_or_else(Remote::stopped)
    }
}

#[cfg(test)]
mod tests {
    use crate::units::{Lba, VolumeBlock};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use drivers::blockdev::memory::MemoryDevice;
    use drivers::blockdev::BlockDevice;
    use drivers::buffer::IoBuf;
    use drivers::executor::{self, ReactorConfig};
    use drivers::shard::start_shards;

    use super::*;
    use crate::allocator::group_owner;
    use crate::block_volume::BlockVolume;
    use crate::pool::{CreateOptions, Pool, VolumeOptions};
    use crate::volume::PoolVolume;

    const BLOCKS: u64 = 512;
    const BLOCK: usize = 4096;

    fn block_bytes(block: u64, round: u8) -> IoBuf {
        let mut data = vec![0u8; BLOCK];
        for (i, b) in data.iter_mut().enumerate() {
            *b =
                (block as u8).wrapping_mul(7).wrapping_add(round).wrapping_add((i % 253) as u8) | 1;
        }
        IoBuf::from_slice(&data)
    }

    async fn wait_for(counter: &AtomicUsize, n: usize) {
        while counter.load(Ordering::SeqCst) < n {
            executor::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits, after this shard's step, until `phase` counts `n` steps (both shards').
    async fn step(phase: &AtomicUsize, n: usize) {
        phase.fetch_add(1, Ordering::SeqCst);
        wait_for(phase, n).await;
    }

    /// Shard 0's pool: one 16 MiB volume of 8 partitions, writes handed to their owners.
    async fn create_volume() -> PoolVolume {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(512 << 20, 512));
        let options = CreateOptions {
            guid: Some(11),
            log_chain_bytes: 1 << 20,
            tunables: crate::pool::PoolTunables {
                write_handoff: true,
                shards: 2,
                ..Default::default()
            },
            ..CreateOptions::default()
        };
        let pool = Pool::create(vec![dev], None, options).await.expect("create");
        let volume = VolumeOptions {
            capacity_bytes: 16 << 20,
            partition_count: 8,
            ..VolumeOptions::default()
        };
        pool.create_volume("vol", &volume).await.expect("volume")
    }

    /// Phase 1: shard `shard` writes its half of the blocks (some FUA); shard 0 also writes
    /// two blocks either side of a 1 MiB stripe boundary: two partitions with different
    /// owners, one request.
    async fn write_half(vol: &PoolVolume, shard: usize) {
        let lbas = (BLOCK / 512) as u64;
        for block in (0..BLOCKS).filter(|b| b % 2 == shard as u64) {
            let fua = block % 7 == 0;
            let (res, _) = vol.write(Lba::new(block * lbas), block_bytes(block, 1), fua).await;
            res.expect("write");
        }
        if shard == 0 {
            let start = 256 - 1;
            let mut both = block_bytes(start, 1).to_vec();
            both.extend_from_slice(&block_bytes(start + 1, 1));
            let (res, _) = vol.write(Lba::new(start * lbas), IoBuf::from_slice(&both), true).await;
            res.expect("spanning write");
        }
    }

    /// Phase 2: shard `shard` reads the other's blocks, one request per block (counted in
    /// `checked`).
    async fn read_other_half(vol: &PoolVolume, shard: usize, checked: &AtomicU64) {
        let lbas = (BLOCK / 512) as u64;
        for block in (0..BLOCKS).filter(|b| b % 2 != shard as u64) {
            let (res, buf) = vol.read(Lba::new(block * lbas), IoBuf::zeroed(BLOCK)).await;
            res.expect("read");
            assert_eq!(&buf[..], &block_bytes(block, 1)[..], "block {block}");
            checked.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every block, read in one request for the whole range.
    async fn read_whole(vol: &PoolVolume) {
        let segments = vol.read_segments(Lba::new(0), BLOCKS as usize * BLOCK).await.expect("read");
        let whole: Vec<u8> = segments.iter().flat_map(|s| s.iter().copied()).collect();
        for block in 0..BLOCKS {
            let at = block as usize * BLOCK;
            assert_eq!(&whole[at..at + BLOCK], &block_bytes(block, 1)[..], "block {block}");
        }
    }

    /// Shard 0, phase 3: a txg sync, synced by both shards; every data block of a partition
    /// lies in an allocation group its owner owns.
    async fn sync_and_check_placement(vol: &PoolVolume) {
        let pool = Arc::clone(vol.pool());
        pool.sync_txg().await.expect("sync");
        assert!(pool.stats.shard_syncs.load(Ordering::Relaxed) > 0);
        let layout = vol.layout();
        let groups = pool.alloc.group_count();
        assert!(groups >= 4, "{groups} allocation groups");
        for block in 0..BLOCKS {
            let addr = layout.address(VolumeBlock::new(block));
            let (root, height) = {
                let p = crate::pool::lock(vol.shared().partition(addr.partition));
                (p.root, p.height)
            };
            let cache = pool.cache.for_partition(vol.id(), addr.partition);
            let bp = crate::block_tree::lookup(&pool.devs, cache, &root, height, addr.index)
                .await
                .expect("lookup");
            assert!(!bp.is_hole(), "block {block}");
            let extent = bp.extent();
            let group = (0..groups)
                .find(|&g| {
                    let l = pool.alloc.layout(g);
                    l.device == extent.device
                        && extent.offset_bytes >= l.start_bytes
                        && extent.offset_bytes < l.start_bytes + l.len_bytes
                })
                .expect("extent in a group");
            assert_eq!(
                group_owner(group, 2),
                partition_owner(vol.id(), addr.partition, 2),
                "block {block} (partition {}) lies in group {group}",
                addr.partition
            );
        }
    }

    /// Shard 0, phase 5: each data block is cached once, in the part of its partition's
    /// owner, though both shards read it; then the pool is exported.
    async fn check_cache_parts(vol: &PoolVolume) {
        let pool = Arc::clone(vol.pool());
        let parts = pool.cache().part_stats();
        assert_eq!(parts.len(), 2, "{parts:?}");
        let layout = vol.layout();
        for (shard, part) in parts.iter().enumerate() {
            let owned = (0..BLOCKS)
                .filter(|&b| {
                    let p = layout.address(VolumeBlock::new(b)).partition;
                    partition_owner(vol.id(), p, 2) == ShardId::new(shard)
                })
                .count() as u64;
            assert!(owned > 0);
            let data = owned * BLOCK as u64;
            assert!(part.used_bytes >= data, "{parts:?}");
            assert!(part.used_bytes < data + (BLOCKS / 4) * BLOCK as u64);
        }
        pool.export().await.expect("export");
    }

    /// What shard `shard` does in the test below, phase by phase in step with the other.
    async fn run_shard(
        shard: usize,
        set: Arc<ShardSet>,
        volume: Arc<OnceLock<PoolVolume>>,
        phase: Arc<AtomicUsize>,
        checked: Arc<AtomicU64>,
    ) {
        let server = executor::spawn(Arc::clone(&set).serve(shard));
        while !(set.is_serving(0) && set.is_serving(1)) {
            executor::sleep(Duration::from_millis(1)).await;
        }
        if shard == 0 {
            let _ = volume.set(create_volume().await);
        }
        while volume.get().is_none() {
            executor::sleep(Duration::from_millis(1)).await;
        }
        let vol = volume.get().expect("volume").clone();
        write_half(&vol, shard).await;
        step(&phase, 2).await;
        read_other_half(&vol, shard, &checked).await;
        read_whole(&vol).await;
        step(&phase, 4).await;
        if shard == 0 {
            sync_and_check_placement(&vol).await;
        }
        step(&phase, 6).await;
        // After the sync, reads come back right from the new trees on both shards, each
        // through its own part of the read cache.
        read_whole(&vol).await;
        step(&phase, 8).await;
        if shard == 0 {
            check_cache_parts(&vol).await;
        }
        step(&phase, 10).await;
        server.abort();
    }

    /// Every shard writes half the blocks (some FUA, one write spanning two partitions owned
    /// by different shards) and reads back the other half; then a txg sync. Requests went to
    /// the owning shards, each shard synced its own partitions, and every data block of a
    /// partition lies in an allocation group its owner owns.
    #[test]
    fn partitions_are_served_and_synced_by_their_owning_shards() {
        let set = ShardSet::new(2);
        let volume: Arc<OnceLock<PoolVolume>> = Arc::new(OnceLock::new());
        let phase = Arc::new(AtomicUsize::new(0));
        let checked = Arc::new(AtomicU64::new(0));
        let config = ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() };
        let handles = {
            let (set, volume, phase, checked) =
                (Arc::clone(&set), Arc::clone(&volume), Arc::clone(&phase), Arc::clone(&checked));
            start_shards(2, &config, false, move |shard, _| {
                let (set, volume, phase, checked) = (
                    Arc::clone(&set),
                    Arc::clone(&volume),
                    Arc::clone(&phase),
                    Arc::clone(&checked),
                );
                run_shard(shard, set, volume, phase, checked)
            })
            .expect("shards")
        };
        for h in handles {
            h.join().expect("no panic").expect("reactor");
        }
        assert_eq!(checked.load(Ordering::SeqCst), BLOCKS);
        assert!(
            set.received(0) > 0 && set.received(1) > 0,
            "{} / {}",
            set.received(0),
            set.received(1)
        );
    }
}
