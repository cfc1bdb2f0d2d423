//! Data reduction on pool volumes: compression round trips, the 1/8 rule, zero blocks as
//! holes, the `compression` property and the logical/physical figures.

mod common;

use std::sync::Arc;

use common::{device, reactor};
use drivers::buffer::IoBuf;
use engine::block_volume::BlockVolume;
use engine::compress::Compression;
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
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// About 2:1: every 64 random bytes are followed by a copy of themselves.
fn half_compressible(len: usize, seed: u64) -> Vec<u8> {
    random(len / 2, seed).chunks(64).flat_map(|c| c.iter().chain(c).copied()).collect()
}

async fn write(vol: &dyn BlockVolume, block: u64, data: &[u8]) {
    let (res, _) = vol.write(block * (BLOCK as u64 / 512), IoBuf::from_slice(data), false).await;
    res.expect("write");
}

async fn read(vol: &dyn BlockVolume, block: u64) -> Vec<u8> {
    let (res, buf) = vol.read(block * (BLOCK as u64 / 512), IoBuf::zeroed(BLOCK)).await;
    res.expect("read");
    buf.to_vec()
}

#[test]
fn compressible_incompressible_and_zero_blocks_round_trip() {
    let r = reactor();
    let dev = device(64);
    r.block_on(async {
        let pool = Pool::create(vec![Arc::clone(&dev)], None, options()).await.expect("create");
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
        let status = vol.lba_status(2 * (BLOCK as u64 / 512)).await.expect("status");
        assert!(!status.mapped, "all-zero block is unmapped");
        pool.export().await.expect("export");
        drop(vol);
        drop(pool);
        let pool =
            Pool::import(vec![Arc::clone(&dev)], PoolTunables::default()).await.expect("import");
        let vol = pool.open_volume("vol").expect("open");
        assert_eq!(read(&vol, 0).await, compressible);
        assert_eq!(read(&vol, 1).await, incompressible);
        assert_eq!(read(&vol, 2).await, vec![0u8; BLOCK]);
        assert_eq!(pool.reduction_figures("vol").expect("figures"), f);
    });
}

#[test]
fn compression_off_stores_raw_and_property_applies_to_new_writes() {
    let r = reactor();
    r.block_on(async {
        let pool = Pool::create(vec![device(64)], None, options()).await.expect("create");
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
    let r = reactor();
    r.block_on(async {
        let pool = Pool::create(vec![device(64)], None, options()).await.expect("create");
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
        vol.unmap(BLOCK as u64 / 512, BLOCK as u64 / 512).await.expect("unmap");
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
