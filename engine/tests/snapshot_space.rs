//! Snapshot listings with many snapshots, and the limits on what a volume may be: names and
//! thin overcommit.

mod common;

use common::{block, device, reactor, Rng};
use engine::block_volume::BlockVolume;
use engine::compress::Compression;
use engine::dataset::NAME_RULE;
use engine::ddt::DedupMode;
use engine::units::Lba;
use engine::{CreateOptions, Pool, PoolError, PoolTunables, PoolVolume, VolumeOptions};

fn options(tunables: PoolTunables) -> CreateOptions {
    CreateOptions { guid: Some(11), log_chain_bytes: 1 << 20, tunables, ..CreateOptions::default() }
}

/// Checks that the one-pass listing of `volume` gives, for every snapshot, exactly what the
/// full computation for that snapshot alone gives, and that the listing taken in slices gives
/// the same. Returns how many snapshots it checked.
async fn check_listing(pool: &Pool, volume: &str) -> usize {
    let listed = pool.snapshot_space_list(volume).expect("list");
    let sliced = pool.snapshot_space_list_in_slices(volume).await.expect("sliced list");
    assert_eq!(sliced, listed, "{volume}: the sliced listing differs from the one-piece one");
    let names = pool.snapshots(volume).expect("snapshots");
    assert_eq!(listed.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), names);
    for s in &listed {
        let full = pool.destroy_would_free(&[s.name.as_str()]).expect("figure");
        assert_eq!(s.destroy_frees_bytes, full, "{}", s.name);
    }
    listed.len()
}

/// Volume "v" of `capacity_bytes`, in two partitions.
async fn volume_v(pool: &Pool, capacity_bytes: u64) -> PoolVolume {
    let options = VolumeOptions { capacity_bytes, partition_count: 2, ..VolumeOptions::default() };
    pool.create_volume("v", &options).await.expect("volume")
}

#[test]
fn listing_figures_equal_the_full_computation_over_a_random_history() {
    let seeds: u64 =
        std::env::var("FERRITE_SNAPSHOT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    for seed in 1..=seeds {
        let r = reactor();
        r.block_on(async {
            let pool = Pool::create(vec![device(256)], None, options(PoolTunables::default()))
                .await
                .expect("create");
            let plain = VolumeOptions {
                capacity_bytes: 8 << 20,
                partition_count: 2,
                ..VolumeOptions::default()
            };
            let dedup = VolumeOptions {
                dedup: DedupMode::On,
                compression: Compression::Off,
                ..plain.clone()
            };
            let mut volumes = vec![
                ("a".to_string(), pool.create_volume("a", &plain).await.expect("a")),
                ("d".to_string(), pool.create_volume("d", &dedup).await.expect("d")),
            ];
            let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
            let mut taken = 0u64;
            let mut nonzero = 0usize;
            for step in 0..160 {
                let v = rng.below(volumes.len() as u64) as usize;
                let (name, vol) = (volumes[v].0.clone(), volumes[v].1.clone());
                match rng.below(10) {
                    0..=5 => {
                        for _ in 0..1 + rng.below(6) {
                            let lba = rng.below(256) * 8;
                            common::write_buf(&vol, lba, block(rng.below(12)), false).await;
                        }
                        if rng.below(3) == 0 {
                            pool.sync_txg().await.expect("sync");
                        }
                    }
                    6 | 7 => {
                        taken += 1;
                        pool.snapshot(&name, &format!("s{taken}")).await.expect("snapshot");
                    }
                    8 => {
                        let snaps = pool.snapshots(&name).expect("snapshots");
                        if !snaps.is_empty() {
                            let pick = &snaps[rng.below(snaps.len() as u64) as usize];
                            // Refused while a clone depends on it; that is part of the history.
                            let _ = pool.destroy_snapshot(pick).await;
                        }
                    }
                    _ => {
                        let snaps = pool.snapshots(&name).expect("snapshots");
                        if volumes.len() < 4 && !snaps.is_empty() {
                            let pick = &snaps[rng.below(snaps.len() as u64) as usize];
                            let clone_name = format!("c{step}");
                            let clone =
                                pool.clone_snapshot(pick, &clone_name).await.expect("clone");
                            volumes.push((clone_name, clone));
                        }
                    }
                }
                if step % 20 == 19 {
                    pool.sync_txg().await.expect("sync");
                    for (name, _) in &volumes {
                        check_listing(&pool, name).await;
                    }
                }
            }
            pool.sync_txg().await.expect("sync");
            let mut checked = 0;
            for (name, _) in &volumes {
                checked += check_listing(&pool, name).await;
                nonzero += pool
                    .snapshot_space_list(name)
                    .expect("list")
                    .iter()
                    .filter(|s| s.destroy_frees_bytes > 0)
                    .count();
            }
            assert!(checked >= 5, "seed {seed}: the history kept only {checked} snapshots");
            assert!(nonzero > 0, "seed {seed}: no snapshot held blocks of its own");
            pool.export().await.expect("export");
        });
    }
}

#[test]
fn thousands_of_snapshots_list_in_order_and_destroy_from_the_middle() {
    common::with_new_pool(256, options(PoolTunables::default()), |pool, _dev| async move {
        let vol = volume_v(&pool, 8 << 20).await;
        let mut expected = Vec::new();
        for batch in 0..20u64 {
            common::write_buf(&vol, batch * 8, block(batch + 100), false).await;
            let names: Vec<String> = (0..100).map(|i| format!("b{batch}-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            pool.snapshot_many("v", &refs).await.expect("snapshots");
            expected.extend(names.iter().map(|n| format!("v@{n}")));
        }
        assert_eq!(pool.snapshots("v").expect("snapshots"), expected);
        assert!(matches!(
            pool.snapshot_many("v", &["new", "b3-7"]).await,
            Err(PoolError::AlreadyExists(_))
        ));
        assert!(pool.snapshots("v").expect("snapshots").len() == 2000, "none of a refused batch");
        // Destroying from the middle keeps the order and the figures right.
        for n in (0..2000).step_by(7) {
            pool.destroy_snapshot(&expected[n]).await.expect("destroy");
        }
        let kept: Vec<String> = expected
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 7 != 0)
            .map(|(_, s)| s.clone())
            .collect();
        assert_eq!(pool.snapshots("v").expect("snapshots"), kept);
        assert_eq!(check_listing(&pool, "v").await, kept.len());
        pool.export().await.expect("export");
    });
}

#[test]
fn a_listing_in_slices_sees_one_state_while_snapshots_change_under_it() {
    common::with_new_pool(64, options(PoolTunables::default()), |pool, _dev| async move {
        let vol = volume_v(&pool, 4 << 20).await;
        // Each snapshot holds blocks of its own (overwritten after it), and the head's
        // deadlist is not empty when the listing starts.
        for n in 0..40u64 {
            for lba in 0..6u64 {
                common::write_buf(&vol, lba * 8, block(n * 10 + lba), false).await;
            }
            pool.snapshot("v", &format!("s{n}")).await.expect("snapshot");
        }
        for lba in 0..6u64 {
            common::write_buf(&vol, lba * 8, block(999 + lba), false).await;
        }
        pool.sync_txg().await.expect("sync");
        let before = pool.snapshot_space_list("v").expect("list");
        assert!(before.iter().any(|s| s.destroy_frees_bytes > 0));
        // A sliced listing, one unit per slice, while another task takes a snapshot (which
        // moves the head's deadlist to it): whatever pass completes describes one state,
        // before or after, never the old snapshots with the new head.
        let changer = {
            let pool = std::sync::Arc::clone(&pool);
            drivers::executor::spawn(async move {
                pool.snapshot("v", "late").await.expect("late snapshot");
            })
        };
        let sliced = pool.snapshot_space_list_in_slices_of("v", 1).await.expect("sliced");
        changer.await;
        let after = pool.snapshot_space_list("v").expect("list");
        assert!(
            sliced == before || sliced == after,
            "the sliced listing mixes states: {} rows, before {} rows, after {} rows",
            sliced.len(),
            before.len(),
            after.len()
        );
        assert_ne!(before, after);
        pool.export().await.expect("export");
    });
}

#[test]
fn large_deadlists_and_directories_write_only_their_changed_chunks() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    let r = reactor();
    r.block_on(async {
        let dev = device(256);
        let pool = common::create(&dev, options(PoolTunables::default())).await;
        let vol = volume_v(&pool, 32 << 20).await;
        let kept = |pool: &Pool| pool.stats.metadata_chunks_kept.load(Ordering::Relaxed);
        for lba in 0..4000u64 {
            common::write_buf(&vol, lba * 8, block(lba), false).await;
        }
        pool.snapshot("v", "base").await.expect("snapshot");
        // Overwrites of 800 blocks in each of five txgs: the head's deadlist (64-byte block
        // pointers) grows past two 128 KiB chunks of 2,048 entries, and each txg keeps the
        // whole chunks the one before wrote. Then the same again after snapshot "mid": the blocks
        // written in between go to the deadlist.
        for (round, value) in (0..10u64).map(|r| (r % 5, if r < 5 { 10_000 } else { 40_000 })) {
            if round == 0 && value == 40_000 {
                pool.snapshot("v", "mid").await.expect("snapshot");
            }
            for lba in round * 800..(round + 1) * 800 {
                common::write_buf(&vol, lba * 8, block(lba + value), false).await;
            }
            pool.sync_txg().await.expect("sync");
        }
        let kept_by_deadlists = kept(&pool);
        assert!(kept_by_deadlists > 0, "no deadlist chunk was kept over appending txgs");
        // 1,500 snapshots in batches: the directory spans three chunks (192-byte entries).
        for batch in 0..6u64 {
            common::write_buf(&vol, batch * 8, block(batch + 20_000), false).await;
            let names: Vec<String> = (0..250).map(|i| format!("b{batch}-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            pool.snapshot_many("v", &refs).await.expect("snapshots");
        }
        // Destroying "mid" frees the blocks only it held from the next snapshot's deadlist
        // (about 4,000 entries in two chunks) and moves its own there: no chunk of that deadlist
        // may be kept as it was.
        pool.destroy_snapshot("v@mid").await.expect("destroy");
        // Txgs that only move the head's object patch its entry in the first chunk and keep
        // the second (whole, unchanged) one; the last of them is the one import reads.
        let kept_by_snapshots = kept(&pool);
        for round in 0..2u64 {
            common::write_buf(&vol, 3800 * 8, block(round + 30_000), false).await;
            pool.sync_txg().await.expect("sync");
        }
        assert!(kept(&pool) > kept_by_snapshots, "no directory chunk was kept");
        let listed = pool.snapshot_space_list("v").expect("list");
        let base = pool.destroy_would_free(&["v@base"]).expect("figure");
        assert!(base > 0);
        drop(vol);
        pool.export().await.expect("export");

        let report = engine::inspect::inspect(vec![Arc::clone(&dev)]).await.expect("inspect");
        assert_eq!(report.leaked_bytes(), 0, "{report}");
        assert!(report.is_clean(), "{report}");
        let pool = common::import(&dev).await;
        assert_eq!(pool.snapshot_space_list("v").expect("list"), listed);
        assert_eq!(pool.destroy_would_free(&["v@base"]).expect("figure"), base);
        let vol = pool.open_volume("v").expect("open");
        for lba in [0u64, 5, 6, 799, 2500, 3799, 3800, 3999] {
            let (res, buf) =
                vol.read(Lba::new(lba * 8), drivers::buffer::IoBuf::zeroed(4096)).await;
            res.expect("read");
            let want = match lba {
                0..=5 => lba + 20_000,
                3800 => 30_001,
                _ => lba + 40_000,
            };
            assert_eq!(&buf[..], &block(want)[..], "lba {lba}");
        }
        // The first txg after import keeps chunks of the directory it read at import.
        common::write_buf(&vol, 3500 * 8, block(1), false).await;
        pool.snapshot("v", "after-import").await.expect("snapshot");
        assert!(kept(&pool) > 0, "no chunk read at import was kept");
        drop(vol);
        pool.export().await.expect("export");
        common::inspect_clean(&dev).await;
    });
}

#[test]
fn names_outside_the_rule_are_refused_with_the_rule() {
    common::with_new_pool(64, options(PoolTunables::default()), |pool, _dev| async move {
        let small = VolumeOptions {
            capacity_bytes: 1 << 20,
            partition_count: 1,
            ..VolumeOptions::default()
        };
        for bad in ["a\nb", "a\u{1b}[2J", ".hidden", "sp ace", ""] {
            match pool.create_volume(bad, &small).await {
                Err(PoolError::InvalidConfig(m)) => assert!(m.contains(NAME_RULE), "{m}"),
                other => panic!("{bad:?}: {:?}", other.map(|_| ())),
            }
        }
        pool.create_volume("ok", &small).await.expect("volume");
        for bad in ["x\ny", "x\u{1b}y", ".s"] {
            match pool.snapshot("ok", bad).await {
                Err(PoolError::InvalidConfig(m)) => assert!(m.contains(NAME_RULE), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let bad_pool = CreateOptions { name: "tank\n".into(), ..options(PoolTunables::default()) };
        match Pool::create(vec![device(64)], None, bad_pool).await {
            Err(PoolError::InvalidConfig(m)) => assert!(m.contains(NAME_RULE), "{m}"),
            other => panic!("pool name: {:?}", other.map(|_| ())),
        }
        // Geometry errors are one line naming the limit, not a dump of the layout.
        let odd = VolumeOptions { capacity_bytes: 1000, ..small.clone() };
        match pool.create_volume("odd", &odd).await {
            Err(PoolError::InvalidConfig(m)) => {
                assert!(m.contains("multiple of the block size 512"), "{m}");
                assert!(!m.contains("VolumeLayout") && !m.contains('{'), "{m}");
            }
            other => panic!("odd size: {:?}", other.map(|_| ())),
        }
        pool.export().await.expect("export");
    });
}

#[test]
fn thin_volumes_overcommit_only_up_to_the_factor() {
    let r = reactor();
    r.block_on(async {
        let tunables = PoolTunables { thin_overcommit_factor: 3, ..PoolTunables::default() };
        let pool = Pool::create(vec![device(64)], None, options(tunables)).await.expect("create");
        let capacity = pool.capacity_bytes();
        let limit = 3 * capacity;
        let thin = |bytes: u64| VolumeOptions {
            capacity_bytes: bytes / 512 * 512,
            partition_count: 4,
            ..VolumeOptions::default()
        };
        let first = limit / 2 / (1 << 20) * (1 << 20);
        pool.create_volume("a", &thin(first)).await.expect("within the factor");
        match pool.create_volume("b", &thin(limit - first + (1 << 20))).await {
            Err(PoolError::InvalidConfig(m)) => {
                assert!(m.contains(&format!("{limit} bytes")), "{m}");
                assert!(m.contains("3 x"), "{m}");
            }
            other => panic!("past the factor: {:?}", other.map(|_| ())),
        }
        pool.create_volume("b", &thin(limit - first)).await.expect("up to the factor");
        assert!(matches!(
            pool.grow_volume("b", limit - first + (1 << 20)).await,
            Err(PoolError::InvalidConfig(_))
        ));
        pool.snapshot("a", "s").await.expect("snapshot");
        assert!(matches!(pool.clone_snapshot("a@s", "c").await, Err(PoolError::InvalidConfig(_))));
        assert_eq!(pool.space_summary().provisioned_bytes, limit);
        pool.export().await.expect("export");
    });
}

#[test]
fn thick_reservations_count_as_used_and_not_free() {
    common::with_new_pool(128, options(PoolTunables::default()), |pool, _dev| async move {
        let before = pool.space_summary();
        assert_eq!(before.used_bytes + before.free_bytes, before.capacity_bytes);
        let thick = VolumeOptions {
            capacity_bytes: 32 << 20,
            partition_count: 4,
            thick: true,
            ..VolumeOptions::default()
        };
        let vol = pool.create_volume("t", &thick).await.expect("thick");
        let after = pool.space_summary();
        // The volume's blocks are not written yet: the whole reservation is unused.
        assert_eq!(after.reserved_unused_bytes, 32 << 20);
        assert!(after.free_bytes + (32 << 20) <= before.free_bytes, "{before:?} {after:?}");
        assert!(after.used_bytes >= before.used_bytes + (32 << 20), "{before:?} {after:?}");
        common::write_buf(&vol, 0, block(1), false).await;
        pool.sync_txg().await.expect("sync");
        let written = pool.space_summary();
        assert_eq!(written.reserved_unused_bytes, (32 << 20) - 4096);
        pool.export().await.expect("export");
    });
}
