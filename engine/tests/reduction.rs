//! Data reduction on pool volumes: compression round trips, the 1/8 rule, zero blocks as
//! holes, the `compression` property and the logical/physical figures.

mod common;

use common::{device, reactor, read_at, write_at, Rng};
use drivers::buffer::IoBuf;
use engine::block_volume::BlockVolume;
use engine::compress::Compression;
use engine::ddt::DedupMode;
use engine::units::{BlockCount, Lba};
use engine::{CreateOptions, Pool, PoolTunables, VolumeOptions};

const BLOCK: usize = 64 * 1024;

fn options() -> CreateOptions {
    CreateOptions { guid: Some(11), log_chain_bytes: 1 << 20, ..CreateOptions::default() }
}

fn volume(compression: Compression) -> VolumeOptions {
    VolumeOptions {
        capacity_bytes: 16 << 20,
        partition_count: 4,
        volblock_bytes: BLOCK as u32,
        compression,
        ..VolumeOptions::default()
    }
}

/// Bytes no compressor shrinks (xorshift).
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(2).wrapping_add(1));
    (0..len).map(|_| (rng.next() >> 24) as u8).collect()
}

/// About 2:1: every 64 random bytes are followed by a copy of themselves.
fn half_compressible(len: usize, seed: u64) -> Vec<u8> {
    random(len / 2, seed).chunks(64).flat_map(|c| c.iter().chain(c).copied()).collect()
}

/// Writes volume block `block` (of [`BLOCK`] bytes).
async fn write(vol: &dyn BlockVolume, block: u64, data: &[u8]) {
    write_at(vol, block * (BLOCK as u64 / 512), data).await;
}

/// Reads volume block `block`.
async fn read(vol: &dyn BlockVolume, block: u64) -> Vec<u8> {
    read_at(vol, block * (BLOCK as u64 / 512), BLOCK).await
}

#[test]
fn compressible_incompressible_and_zero_blocks_round_trip() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        let vol = pool.create_volume("vol", &volume(Compression::Lz4)).await.expect("volume");
        let compressible = half_compressible(BLOCK, 1);
        let incompressible = random(BLOCK, 2);
        write(&vol, 0, &compressible).await;
        write(&vol, 1, &incompressible).await;
        write(&vol, 2, &vec![0u8; BLOCK]).await;
        pool.sync_txg().await.expect("sync");
        let f = pool.reduction_figures("vol").expect("figures");
        assert_eq!(f.logical_bytes, 2 * BLOCK as u64, "the zero block is a hole");
        // Incompressible: stored raw (64 KiB). Compressible: at most 36 KiB (about half).
        assert!(f.physical_bytes <= (BLOCK + 36 * 1024) as u64, "physical {}", f.physical_bytes);
        assert!(f.physical_bytes >= BLOCK as u64 + 4096, "physical {}", f.physical_bytes);
        let status = vol.lba_status(Lba::new(2 * (BLOCK as u64 / 512))).await.expect("status");
        assert!(!status.mapped, "all-zero block is unmapped");
        pool.export().await.expect("export");
        drop(vol);
        drop(pool);
        let pool = common::import(&dev).await;
        let vol = pool.open_volume("vol").expect("open");
        assert_eq!(read(&vol, 0).await, compressible);
        assert_eq!(read(&vol, 1).await, incompressible);
        assert_eq!(read(&vol, 2).await, vec![0u8; BLOCK]);
        assert_eq!(pool.reduction_figures("vol").expect("figures"), f);
    });
}

#[test]
fn compression_off_stores_raw_and_property_applies_to_new_writes() {
    common::with_new_pool(64, options(), |pool, _dev| async move {
        let vol = pool.create_volume("vol", &volume(Compression::Off)).await.expect("volume");
        let data = half_compressible(BLOCK, 5);
        write(&vol, 0, &data).await;
        pool.sync_txg().await.expect("sync");
        let f = pool.reduction_figures("vol").expect("figures");
        assert_eq!((f.logical_bytes, f.physical_bytes), (BLOCK as u64, BLOCK as u64));

        pool.set_compression("vol", Compression::Lz4).await.expect("set");
        assert_eq!(pool.volume_properties("vol").expect("props").compression, Compression::Lz4);
        write(&vol, 1, &data).await;
        pool.sync_txg().await.expect("sync");
        let f = pool.reduction_figures("vol").expect("figures");
        assert_eq!(f.logical_bytes, 2 * BLOCK as u64);
        assert!(f.physical_bytes < (BLOCK + BLOCK * 7 / 8) as u64, "second block compressed");
        assert!(f.compression_ratio() > 1.1);

        pool.set_compression("vol", Compression::Off).await.expect("set");
        write(&vol, 2, &data).await;
        pool.sync_txg().await.expect("sync");
        // Blocks written under every setting read back.
        for b in 0..3 {
            assert_eq!(read(&vol, b).await, data, "block {b}");
        }
    });
}

#[test]
fn figures_follow_overwrites_unmaps_and_snapshots() {
    common::with_new_pool(64, options(), |pool, _dev| async move {
        let vol = pool.create_volume("vol", &volume(Compression::Lz4)).await.expect("volume");
        for b in 0..4 {
            write(&vol, b, &half_compressible(BLOCK, b + 10)).await;
        }
        pool.sync_txg().await.expect("sync");
        let full = pool.reduction_figures("vol").expect("figures");
        assert_eq!(full.logical_bytes, 4 * BLOCK as u64);
        pool.snapshot("vol", "s").await.expect("snapshot");
        // Overwrite one block with incompressible data, unmap another.
        write(&vol, 0, &random(BLOCK, 99)).await;
        vol.unmap(Lba::new(BLOCK as u64 / 512), BlockCount::new(BLOCK as u64 / 512))
            .await
            .expect("unmap");
        pool.sync_txg().await.expect("sync");
        let after = pool.reduction_figures("vol").expect("figures");
        assert_eq!(after.logical_bytes, 3 * BLOCK as u64);
        let one = full.physical_bytes / 4;
        assert!(after.physical_bytes > full.physical_bytes - 2 * one, "raw block replaced one");
        // The snapshot keeps the figures of its point in time.
        assert_eq!(pool.reduction_figures("vol@s").expect("snapshot figures"), full);
        pool.rollback("vol@s").await.expect("rollback");
        assert_eq!(pool.reduction_figures("vol").expect("figures"), full);
        let pool_figures = pool.pool_reduction_figures();
        assert_eq!(pool_figures, full);
    });
}

fn dedup_volume(dedup: DedupMode) -> VolumeOptions {
    VolumeOptions { dedup, compression: Compression::Off, ..volume(Compression::Off) }
}

#[test]
fn dedup_across_volumes_and_snapshots_accounts_space_exactly() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        let a = pool.create_volume("a", &dedup_volume(DedupMode::On)).await.expect("a");
        let b = pool.create_volume("b", &dedup_volume(DedupMode::Verify)).await.expect("b");
        pool.sync_txg().await.expect("sync");
        let baseline = pool.free_bytes();
        let blocks: Vec<Vec<u8>> = (0..4).map(|i| random(BLOCK, 100 + i)).collect();
        // a: blocks 0..4, then the same four again; b: the same eight.
        for vol in [&a, &b] {
            for i in 0..8u64 {
                write(vol, i, &blocks[(i % 4) as usize]).await;
            }
        }
        pool.sync_txg().await.expect("sync");
        let t = pool.dedup_table_figures();
        let block = BLOCK as u64;
        assert_eq!(t.entries, 4);
        assert_eq!(t.stored_bytes, 4 * block, "one copy of each block");
        assert_eq!(t.referenced_bytes, 16 * block);
        assert!((t.dedup_ratio() - 4.0).abs() < 1e-9);
        let activity = pool.dedup_activity("b").expect("activity");
        assert_eq!((activity.lookups, activity.hits), (8, 8));
        // Only one copy of the data was allocated (plus metadata, which is not data-sized).
        let used = baseline - pool.free_bytes();
        assert!(used >= 4 * block && used < 5 * block, "used {used}");

        pool.snapshot("a", "s").await.expect("snapshot");
        // Overwrite a with other data and destroy b: the snapshot keeps a's references.
        for i in 0..8u64 {
            write(&a, i, &random(BLOCK, 500 + i)).await;
        }
        pool.sync_txg().await.expect("sync");
        // b still references the snapshot's data blocks: destroying it would free only the
        // tree blocks it holds.
        let trees = pool.destroy_would_free(&["a@s"]).expect("estimate");
        assert!(trees < block, "{trees}");
        drop(b);
        pool.destroy_volume("b").await.expect("destroy b");
        pool.sync_txg().await.expect("sync");
        // Now the snapshot's 8 references are the last ones to the 4 blocks.
        assert_eq!(pool.destroy_would_free(&["a@s"]).expect("estimate"), trees + 4 * block);
        // The snapshot's 8 references to the 4 old blocks, and a's 8 new unique blocks.
        let t = pool.dedup_table_figures();
        assert_eq!((t.entries, t.stored_bytes, t.referenced_bytes), (12, 12 * block, 16 * block));
        pool.destroy_snapshot("a@s").await.expect("destroy snapshot");
        pool.sync_txg().await.expect("sync");
        let t = pool.dedup_table_figures();
        assert_eq!((t.entries, t.stored_bytes, t.referenced_bytes), (8, 8 * block, 8 * block));
        let used = baseline - pool.free_bytes();
        assert!(used >= 8 * block && used < 9 * block, "used {used}");
        drop(a);
        pool.destroy_volume("a").await.expect("destroy a");
        pool.sync_txg().await.expect("sync");
        pool.sync_txg().await.expect("sync");
        assert_eq!(pool.dedup_table_figures().stored_bytes, 0);
        let leftover = baseline.abs_diff(pool.free_bytes());
        assert!(leftover < block, "space not returned: {leftover} bytes");
        pool.export().await.expect("export");
        let report = common::inspect_clean(&dev).await;
        assert_eq!(report.dedup_entries, 0);
    });
}

#[test]
fn dedup_counts_survive_export_and_inspect_matches_them() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        let vol = pool.create_volume("v", &dedup_volume(DedupMode::On)).await.expect("v");
        let data = half_compressible(BLOCK, 9);
        pool.set_compression("v", Compression::Lz4).await.expect("compression");
        for i in 0..6u64 {
            write(&vol, i, &data).await;
        }
        pool.sync_txg().await.expect("sync");
        pool.snapshot("v", "s").await.expect("snapshot");
        let clone = pool.clone_snapshot("v@s", "c").await.expect("clone");
        write(&clone, 7, &data).await;
        pool.sync_txg().await.expect("sync");
        let before = pool.dedup_table_figures();
        assert_eq!(before.entries, 1);
        assert!(before.stored_bytes < BLOCK as u64, "the deduplicated block is compressed");
        pool.export().await.expect("export");
        drop((vol, clone, pool));
        let report = common::inspect_clean(&dev).await;
        assert_eq!((report.dedup_entries, report.dedup_references), (1, 7));
        let pool = common::import(&dev).await;
        let after = pool.dedup_table_figures();
        assert_eq!(
            (after.entries, after.stored_bytes, after.referenced_bytes),
            (before.entries, before.stored_bytes, before.referenced_bytes)
        );
        let vol = pool.open_volume("v").expect("v");
        for i in 0..6u64 {
            assert_eq!(read(&vol, i).await, data);
        }
        assert_eq!(read(&pool.open_volume("c").expect("c"), 7).await, data);
    });
}

#[test]
fn table_budget_stops_new_entries_with_the_reason_and_old_entries_keep_working() {
    let r = reactor();
    r.block_on(async {
        let tunables = PoolTunables { dedup_table_bytes: 64 << 10, ..PoolTunables::default() };
        let dev = device(256);
        let pool = common::create(&dev, CreateOptions { tunables, ..options() }).await;
        let opts = VolumeOptions {
            volblock_bytes: 4096,
            capacity_bytes: 64 << 20,
            ..dedup_volume(DedupMode::On)
        };
        let vol = pool.create_volume("v", &opts).await.expect("v");
        let first = random(4096, 1);
        common::write_buf(&vol, 0, IoBuf::from_slice(&first), false).await;
        pool.sync_txg().await.expect("sync");
        // Unique blocks until the table is past its budget.
        let unique: Vec<u8> = random(4096 * 2048, 2);
        common::write_buf(&vol, 8, IoBuf::from_slice(&unique), false).await;
        pool.sync_txg().await.expect("sync");
        let activity = pool.dedup_activity("v").expect("activity");
        let reason = activity.stopped.expect("dedup stopped");
        assert!(reason.contains("memory budget"), "{reason}");
        let entries = pool.dedup_table_figures().entries;
        assert!(entries > 1 && entries < 2049, "{entries} entries");
        // The first block's entry still serves hits.
        let hits = activity.hits;
        common::write_buf(&vol, 20_000, IoBuf::from_slice(&first), false).await;
        pool.sync_txg().await.expect("sync");
        assert_eq!(pool.dedup_activity("v").expect("activity").hits, hits + 1);
        assert_eq!(pool.dedup_table_figures().entries, entries, "no new entries");
        // The stop is part of the volume: it outlives an export.
        pool.export().await.expect("export");
        drop((vol, pool));
        let pool = common::import(&dev).await;
        let reason = pool.dedup_activity("v").expect("activity").stopped.expect("still stopped");
        assert!(reason.contains("memory budget") && reason.contains("import"), "{reason}");
        // Setting the property again lets the volume take entries again, also after import.
        pool.set_dedup("v", DedupMode::On).await.expect("set");
        assert!(pool.dedup_activity("v").expect("activity").stopped.is_none());
        pool.export().await.expect("export");
        drop(pool);
        let pool = common::import(&dev).await;
        assert!(pool.dedup_activity("v").expect("activity").stopped.is_none());
    });
}

#[test]
fn low_hit_rate_stops_new_entries_with_the_reason() {
    let r = reactor();
    r.block_on(async {
        let tunables = PoolTunables {
            dedup_min_lookups: 64,
            dedup_min_hit_percent: 10,
            ..PoolTunables::default()
        };
        let dev = device(64);
        let pool = common::create(&dev, CreateOptions { tunables, ..options() }).await;
        let vol = pool.create_volume("v", &dedup_volume(DedupMode::On)).await.expect("v");
        for i in 0..100u64 {
            write(&vol, i, &random(BLOCK, 1000 + i)).await;
        }
        pool.sync_txg().await.expect("sync");
        let activity = pool.dedup_activity("v").expect("activity");
        let reason = activity.stopped.expect("dedup stopped");
        assert!(reason.contains("hit rate"), "{reason}");
        // The 64th lookup is the first one judged: 63 entries were taken before it.
        assert_eq!(pool.dedup_table_figures().entries, 63, "entries taken before the cut-off");
        for i in 0..100u64 {
            assert_eq!(read(&vol, i).await, random(BLOCK, 1000 + i));
        }
        pool.export().await.expect("export");
        drop((vol, pool));
        let pool = Pool::import(vec![dev], PoolTunables::default()).await.expect("import");
        let reason = pool.dedup_activity("v").expect("activity").stopped.expect("still stopped");
        assert!(reason.contains("hit rate"), "{reason}");
    });
}

/// Writes `count` unique 4 KiB blocks (seeded) from 4 KiB block `first` in one command.
async fn write_unique_4k(vol: &dyn BlockVolume, first: u64, count: usize, seed: u64) {
    write_at(vol, first * 8, &random(4096 * count, seed)).await;
}

#[test]
fn dedup_table_changes_are_logged_per_txg_and_checkpointed() {
    common::with_new_pool(256, options(), |pool, dev| async move {
        let opts = VolumeOptions {
            volblock_bytes: 4096,
            capacity_bytes: 64 << 20,
            ..dedup_volume(DedupMode::On)
        };
        let vol = pool.create_volume("v", &opts).await.expect("v");
        // 8192 entries: 320 KiB of checkpoints. A first txg's log would be as large as the
        // table, so it checkpoints.
        write_unique_4k(&vol, 0, 8192, 3).await;
        pool.sync_txg().await.expect("sync");
        let t = pool.dedup_table_figures();
        assert_eq!((t.entries, t.log_objects, t.log_bytes), (8192, 0, 0));
        let checkpoints = t.disk_bytes;
        assert!(checkpoints >= 8192 * 40, "{t:?}");

        // One block overwritten per txg: each txg logs its two changed entries (one removed,
        // one new) in one sector and leaves the checkpoints alone.
        for i in 0..3u64 {
            write_unique_4k(&vol, i, 1, 10 + i).await;
            pool.sync_txg().await.expect("sync");
            let t = pool.dedup_table_figures();
            assert_eq!((t.entries, t.log_objects, t.log_bytes), (8192, i + 1, (i + 1) * 4096));
            assert!(t.disk_bytes - t.log_bytes <= checkpoints + 4096, "checkpoints rewritten");
        }
        let before = pool.dedup_table_figures();
        pool.export().await.expect("export");
        drop((vol, pool));
        let report = common::inspect_clean(&dev).await;
        assert_eq!((report.dedup_entries, report.dedup_references), (8192, 8192));

        // Import replays the log over the checkpoints.
        let pool = common::import(&dev).await;
        let after = pool.dedup_table_figures();
        assert_eq!(
            (after.entries, after.stored_bytes, after.referenced_bytes, after.log_objects),
            (before.entries, before.stored_bytes, before.referenced_bytes, before.log_objects)
        );
        let vol = pool.open_volume("v").expect("v");
        // 2000 blocks overwritten: 4000 changed entries (160 KB) still log.
        write_unique_4k(&vol, 100, 2000, 20).await;
        pool.sync_txg().await.expect("sync");
        let t = pool.dedup_table_figures();
        assert_eq!((t.entries, t.log_objects), (8192, 4));
        // 2000 more: the log would reach the size of the table, so this txg checkpoints and
        // frees the log.
        write_unique_4k(&vol, 4000, 2000, 21).await;
        pool.sync_txg().await.expect("sync");
        let t = pool.dedup_table_figures();
        assert_eq!((t.entries, t.log_objects, t.log_bytes), (8192, 0, 0));
        pool.export().await.expect("export");
        drop((vol, pool));
        let report = common::inspect_clean(&dev).await;
        assert_eq!((report.dedup_entries, report.dedup_references), (8192, 8192));
        let pool = Pool::import(vec![dev], PoolTunables::default()).await.expect("import");
        let vol = pool.open_volume("v").expect("v");
        let (res, buf) = vol.read(Lba::new(4000 * 8), IoBuf::zeroed(4096 * 2000)).await;
        res.expect("read");
        assert_eq!(buf.to_vec(), random(4096 * 2000, 21));
        let (res, buf) = vol.read(Lba::new(8), IoBuf::zeroed(4096)).await;
        res.expect("read");
        assert_eq!(buf.to_vec(), random(4096, 11));
    });
}

#[test]
fn a_large_partition_set_is_compressed_and_fingerprinted_on_every_core_exactly_as_serially() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        let opts = VolumeOptions { dedup: DedupMode::On, ..volume(Compression::Lz4) };
        let vol = pool.create_volume("v", &opts).await.expect("v");
        // 16 blocks of 64 KiB in the first 1 MiB stripe: one partition's set of 1 MiB, past
        // the size from which the sync spreads compression and fingerprints over threads.
        // Blocks 8..16 repeat blocks 0..8.
        let unique: Vec<Vec<u8>> = (0..8).map(|i| half_compressible(BLOCK, 40 + i)).collect();
        for i in 0..16u64 {
            write(&vol, i, &unique[(i % 8) as usize]).await;
        }
        pool.sync_txg().await.expect("sync");
        // Every stored form is what the plain compressor makes of its block, and equal blocks
        // got equal fingerprints: 8 entries, each referenced twice.
        let mut scratch = Vec::new();
        let expected: u64 = unique
            .iter()
            .map(|b| engine::compress::compress_block(b, &mut scratch).map_or(BLOCK, |c| c.len()))
            .map(|n| n as u64)
            .sum();
        let t = pool.dedup_table_figures();
        assert_eq!(t.entries, 8);
        assert_eq!(t.stored_bytes, expected, "stored bytes of the 8 unique blocks");
        assert!(expected < 8 * BLOCK as u64 * 3 / 4, "the blocks compressed: {expected}");
        assert_eq!(t.referenced_bytes, 2 * expected);
        assert_eq!(pool.dedup_activity("v").expect("activity").hits, 8);
        drop(vol);
        pool.export().await.expect("export");
        common::inspect_clean(&dev).await;
        let pool = common::import(&dev).await;
        let vol = pool.open_volume("v").expect("open");
        for i in 0..16u64 {
            assert!(read(&vol, i).await == unique[(i % 8) as usize], "block {i}");
        }
        pool.export().await.expect("export");
    });
}
