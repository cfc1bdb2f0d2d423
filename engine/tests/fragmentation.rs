//! A pool whose free space snapshots and random overwrites have cut into small pieces still
//! commits its txgs: the allocator keeps whole 128 KiB slabs for metadata chunks.

mod common;

use common::{block, device, reactor, Rng};
use engine::block_volume::BlockVolume;
use engine::units::Lba;
use engine::{CreateOptions, PoolTunables, VolumeOptions};

/// Rounds of 4K random overwrites of a volume, its newest snapshot destroyed and taken again
/// before each round: every round's first overwrites are kept for the snapshot, the next ones
/// freed at random, so free space ends in 4 KiB holes between kept blocks, while the head's
/// deadlist needs whole 128 KiB chunks in every txg. Every write and txg must succeed, the
/// free space must have been cut up (no free slab outside the spare ones), and the last
/// contents must read back.
#[test]
fn txgs_commit_in_a_pool_cut_into_small_free_runs() {
    const VOLUME_BLOCKS: u64 = 24_576; // 96 MiB
    const WRITES_PER_ROUND: u64 = 60_000;
    let r = reactor();
    r.block_on(async {
        let options = CreateOptions {
            guid: Some(31),
            log_chain_bytes: 1 << 20,
            tunables: PoolTunables::default(),
            ..CreateOptions::default()
        };
        let pool = engine::Pool::create(vec![device(320)], None, options).await.expect("create");
        let opts = VolumeOptions { capacity_bytes: VOLUME_BLOCKS * 4096, ..Default::default() };
        let vol = pool.create_volume("v", &opts).await.expect("volume");
        for i in 0..VOLUME_BLOCKS {
            let (res, _) = vol.write(Lba::new(i * 8), block(i), false).await;
            res.expect("prefill");
        }
        pool.sync_txg().await.expect("prefill txg");
        let spare = pool.spare_slabs();
        assert!(spare > 0, "the pool keeps no slabs for metadata");
        let mut last = vec![0u64; VOLUME_BLOCKS as usize];
        for (i, v) in last.iter_mut().enumerate() {
            *v = i as u64;
        }
        let mut rng = Rng(0x5eed_f00d);
        let mut least_free_slabs = u64::MAX;
        for round in 0..8u64 {
            if round > 0 {
                pool.destroy_snapshot("v@newest").await.expect("destroy");
            }
            pool.snapshot("v", "newest").await.expect("snapshot");
            for n in 0..WRITES_PER_ROUND {
                let index = rng.below(VOLUME_BLOCKS);
                let value = (round + 1) << 32 | n;
                let (res, _) = vol.write(Lba::new(index * 8), block(value), false).await;
                res.unwrap_or_else(|e| panic!("round {round} write {n}: {e:?}"));
                last[index as usize] = value;
                if n % 4096 == 4095 {
                    pool.sync_txg()
                        .await
                        .unwrap_or_else(|e| panic!("round {round} txg after write {n}: {e}"));
                    least_free_slabs = least_free_slabs.min(pool.free_slabs());
                }
            }
            pool.sync_txg().await.unwrap_or_else(|e| panic!("round {round} last txg: {e}"));
        }
        let space = pool.space_summary();
        println!(
            "free {} of {} bytes; fewest free slabs seen {least_free_slabs} (spare {spare})",
            space.free_bytes, space.capacity_bytes
        );
        assert!(
            least_free_slabs <= spare + 16,
            "the free space was never cut up: {least_free_slabs} free slabs, {spare} spare"
        );
        assert!(space.free_bytes > space.capacity_bytes / 5, "the pool filled up instead");
        for (i, v) in last.iter().enumerate() {
            let (res, buf) =
                vol.read(Lba::new(i as u64 * 8), drivers::buffer::IoBuf::zeroed(4096)).await;
            res.expect("read");
            assert_eq!(buf.to_vec(), block(*v).to_vec(), "block {i}");
        }
    });
}
