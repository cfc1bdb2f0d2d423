//! Scrub of an in-process pool on a memory device: what it finds, what it examines, and the
//! liveness re-check that keeps blocks replaced meanwhile out of the report.

use std::sync::Arc;

use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::executor::{Reactor, ReactorConfig};

use super::walk::{check, Found};
use super::{DatasetRef, Scrub, ScrubState, ScrubStatus};
use crate::block_pointer::BlockPointer;
use crate::block_tree::lookup;
use crate::block_volume::BlockVolume;
use crate::compress::Compression;
use crate::pool::lock;
use crate::units::{Lba, PartitionId};
use crate::{CreateOptions, Pool, PoolVolume, VolumeOptions};

pub(super) fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
        .expect("reactor")
}

/// Blocks of volume `v` written before the snapshot.
const BLOCKS: u64 = 300;

/// A pool on a 64 MiB memory device with volume `v` (one partition, 4 KiB blocks, no
/// compression): blocks 0..BLOCKS written, snapshot `v@s`, then blocks 0 and 1 overwritten,
/// all synced. Block 0 of `v@s` and block 1 of `v` are then held by that dataset alone.
async fn setup() -> (Arc<MemoryDevice>, Arc<Pool>, PoolVolume) {
    let mem = Arc::new(MemoryDevice::new(64 << 20, 512));
    let dev: Arc<dyn BlockDevice> = Arc::clone(&mem) as Arc<dyn BlockDevice>;
    let options = CreateOptions { guid: Some(7), log_chain_bytes: 1 << 20, ..Default::default() };
    let pool = Pool::create(vec![dev], None, options).await.expect("create");
    let plain = VolumeOptions { compression: Compression::Off, ..VolumeOptions::default() };
    let one_partition = VolumeOptions { capacity_bytes: 4 << 20, partition_count: 1, ..plain };
    let vol = pool.create_volume("v", &one_partition).await.expect("volume");
    for i in 0..BLOCKS {
        write(&vol, i, i + 1).await;
    }
    pool.sync_txg().await.expect("sync");
    pool.snapshot("v", "s").await.expect("snapshot");
    for i in 0..2 {
        write(&vol, i, 1000 + i).await;
    }
    for _ in 0..3 {
        pool.sync_txg().await.expect("sync");
    }
    (mem, pool, vol)
}

pub(super) async fn write(vol: &PoolVolume, block: u64, value: u64) {
    let mut data = vec![0u8; 4096];
    for (k, chunk) in data.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&(value * 4096 + k as u64).to_le_bytes());
    }
    let (res, _) = vol.write(Lba::new(block * 8), IoBuf::from_slice(&data), false).await;
    res.expect("write");
}

/// The dataset named `name`, as the walk sees it, and its partition 0 root now.
fn dataset(pool: &Pool, name: &str) -> (DatasetRef, BlockPointer, u8) {
    let meta = lock(&pool.meta);
    let ds = meta.datasets.values().find(|d| d.name() == name).expect("dataset");
    let snapshot = ds.kind() == crate::dataset::DatasetKind::Snapshot;
    let (root, height) = if snapshot {
        (ds.roots[0].root, u8::try_from(ds.roots[0].height).expect("height"))
    } else {
        let shared = lock(&pool.heads).get(&ds.phys.id).cloned().expect("head");
        let p = lock(shared.partition(PartitionId::new(0)));
        (p.root, p.height)
    };
    let r = DatasetRef {
        id: ds.phys.id,
        name: ds.name(),
        snapshot,
        lineage: if snapshot { ds.phys.parent_id } else { ds.phys.id },
        origin_id: 0,
        creation_txg: ds.phys.creation_txg,
    };
    (r, root, height)
}

/// Data block `index` of dataset `name`.
pub(super) async fn data_block(pool: &Pool, name: &str, index: u64) -> BlockPointer {
    let (ds, root, height) = dataset(pool, name);
    let cache = pool.cache.for_partition(ds.id, PartitionId::new(0));
    lookup(&pool.devs, cache, &root, height, index).await.expect("lookup")
}

/// Flips one byte of the block behind `bp` on the device.
pub(super) fn corrupt(mem: &MemoryDevice, bp: &BlockPointer) {
    let mut sector = [0u8; 512];
    mem.read_into(&mut sector, bp.offset_bytes).expect("read");
    sector[100] ^= 0xff;
    mem.write_from(&sector, bp.offset_bytes).expect("write");
}

async fn scrub(pool: &Pool) -> ScrubStatus {
    let job = pool.start_scrub().expect("start");
    job.run(pool).await;
    job.status()
}

#[test]
fn a_clean_pool_scrubs_with_no_errors_and_examines_every_allocated_byte_once() {
    reactor().block_on(async {
        let (_mem, pool, _vol) = setup().await;
        let s = scrub(&pool).await;
        assert_eq!(s.state, ScrubState::Finished);
        assert_eq!((s.errors, s.repaired_bytes), (0, 0), "{:?}", s.bad_blocks);
        // Every allocated byte (the intent-log regions aside), and each once: a block
        // shared by the snapshot and the volume counted twice would pass the allocation.
        assert_eq!(s.examined_bytes, s.to_examine_bytes);
        assert!(s.examined_bytes > BLOCKS * 4096, "{s:?}");
        assert!(s.blocks > BLOCKS, "{s:?}");
    });
}

#[test]
fn a_scrub_finds_the_bad_snapshot_only_block_and_the_bad_live_block_with_their_datasets() {
    reactor().block_on(async {
        let (mem, pool, _vol) = setup().await;
        let snap_only = data_block(&pool, "v@s", 0).await;
        let live_only = data_block(&pool, "v", 1).await;
        assert!(!snap_only.same_block(&data_block(&pool, "v", 0).await), "block 0 was rewritten");
        corrupt(&mem, &snap_only);
        corrupt(&mem, &live_only);
        let s = scrub(&pool).await;
        assert_eq!(s.state, ScrubState::Finished);
        assert_eq!(s.errors, 2, "{:?}", s.bad_blocks);
        let mut found: Vec<(String, u64)> =
            s.bad_blocks.iter().map(|b| (b.dataset.clone(), b.offset_bytes)).collect();
        found.sort();
        let mut want = vec![
            ("v".to_string(), live_only.offset_bytes),
            ("v@s".to_string(), snap_only.offset_bytes),
        ];
        want.sort();
        assert_eq!(found, want);
        assert!(s.bad_blocks.iter().all(|b| b.reason == "checksum"));
        assert_eq!(s.examined_bytes, s.to_examine_bytes);
        // A second start while none runs is accepted; the pool keeps one scrub at a time.
        let again = pool.start_scrub().expect("restart");
        assert!(pool.start_scrub().is_err(), "a second scrub while one runs");
        pool.stop_scrub().expect("stop");
        again.run(&pool).await;
        assert_eq!(pool.scrub_status().expect("status").state, ScrubState::Stopped);
        assert!(pool.pause_scrub().is_err(), "pause with none running");
    });
}

#[test]
fn a_bad_block_replaced_during_the_scrub_is_not_reported() {
    reactor().block_on(async {
        let (mem, pool, vol) = setup().await;
        let (ds, root, _) = dataset(&pool, "v");
        let old = data_block(&pool, "v", 1).await;
        corrupt(&mem, &old);
        let found = Found::Tree { ds: &ds, partition: 0, level: 0, index: 1, root };
        // Still where the walk found it: reported.
        let job = Scrub::new(0, 0);
        assert!(!check(&pool, &job, &old, &found).await);
        assert_eq!(job.status().errors, 1);
        // Overwritten (and synced) after the walk read its tree: the same bad block is no
        // longer referenced there, so it is not an error.
        write(&vol, 1, 2000).await;
        pool.sync_txg().await.expect("sync");
        let job = Scrub::new(0, 0);
        assert!(!check(&pool, &job, &old, &found).await);
        assert_eq!(job.status().errors, 0, "{:?}", job.status().bad_blocks);
        // A destroyed snapshot's blocks are no longer referenced either.
        let snap_old = data_block(&pool, "v@s", 0).await;
        let (snap, snap_root, _) = dataset(&pool, "v@s");
        corrupt(&mem, &snap_old);
        pool.destroy_snapshot("v@s").await.expect("destroy");
        let found = Found::Tree { ds: &snap, partition: 0, level: 0, index: 0, root: snap_root };
        assert!(!check(&pool, &job, &snap_old, &found).await);
        assert_eq!(job.status().errors, 0);
    });
}

#[test]
fn a_clone_is_walked_past_its_origin_only() {
    reactor().block_on(async {
        let (mem, pool, _vol) = setup().await;
        let clone = pool.clone_snapshot("v@s", "c").await.expect("clone");
        write(&clone, 7, 3000).await;
        pool.sync_txg().await.expect("sync");
        pool.snapshot("c", "t").await.expect("snapshot of the clone");
        write(&clone, 8, 3001).await;
        for _ in 0..3 {
            pool.sync_txg().await.expect("sync");
        }
        // Blocks the clone shares with its origin are checked once, with the origin.
        let clean = scrub(&pool).await;
        assert_eq!((clean.state, clean.errors), (ScrubState::Finished, 0));
        assert_eq!(clean.examined_bytes, clean.to_examine_bytes);
        // Its own blocks are checked, and named with the clone or its snapshot.
        let in_snapshot = data_block(&pool, "c@t", 7).await;
        let in_head = data_block(&pool, "c", 8).await;
        corrupt(&mem, &in_snapshot);
        corrupt(&mem, &in_head);
        let s = scrub(&pool).await;
        let mut found: Vec<String> = s.bad_blocks.iter().map(|b| b.dataset.clone()).collect();
        found.sort();
        assert_eq!(found, ["c", "c@t"], "{:?}", s.bad_blocks);
    });
}
