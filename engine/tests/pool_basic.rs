//! Pool life cycle and data path on memory devices.

mod common;

use std::sync::Arc;

use common::{crash_copy, device, memory_device, reactor, read_at};
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use engine::block_volume::{BlockVolume, CompareOutcome, VolumeError};
use engine::inspect::InspectReport;
use engine::txg::TxgPhase;
use engine::units::{BlockCount, Lba, TxgId};
use engine::{CreateOptions, Pool, PoolError, PoolTunables, VolumeOptions};

fn options() -> CreateOptions {
    CreateOptions { guid: Some(7), log_chain_bytes: 1 << 20, ..CreateOptions::default() }
}

fn small_volume() -> VolumeOptions {
    VolumeOptions { capacity_bytes: 16 << 20, partition_count: 4, ..VolumeOptions::default() }
}

fn pattern(seed: u8, len: usize) -> IoBuf {
    IoBuf::from_slice(&common::pattern(seed, len))
}

/// Commits what is pending, then checks the space exactly: inspect finds the pool clean with
/// nothing leaked and nothing doubly allocated, and the pool's free space is its capacity less
/// exactly what inspect reaches from the newest uberblock (every block freed is free again).
async fn assert_space_exact(pool: &Pool, dev: &Arc<dyn BlockDevice>) -> InspectReport {
    pool.sync_txg().await.expect("sync");
    let report = engine::inspect::inspect(vec![Arc::clone(dev)]).await.expect("inspect");
    assert_eq!(report.leaked_bytes(), 0, "leaked: {report}");
    assert_eq!(report.overlapping_blocks, 0, "doubly allocated: {report}");
    assert_eq!(report.unallocated_live_blocks, 0, "live but free: {report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.capacity_bytes, pool.capacity_bytes());
    assert_eq!(pool.free_bytes(), report.capacity_bytes - report.live_bytes, "{report}");
    report
}

#[test]
fn write_read_sync_export_import() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        common::write_buf(&vol, 8, pattern(1, 8192), false).await;
        // Sub-block write inside the same 4 KiB block.
        common::write_buf(&vol, 9, pattern(9, 512), false).await;
        let mut want = pattern(1, 8192).to_vec();
        want[512..1024].copy_from_slice(&pattern(9, 512));
        assert_eq!(read_at(&vol, 8, 8192).await, want);
        // The sub-block write replaced a block: the old one is free again.
        let report = assert_space_exact(&pool, &dev).await;
        assert_eq!(report.datasets[0].referenced_bytes, 8192);
        assert_eq!(read_at(&vol, 8, 8192).await, want);
        assert_eq!(read_at(&vol, 0, 4096).await, vec![0u8; 4096], "unwritten reads zero");
        pool.export().await.expect("export");
        drop(vol);
        drop(pool);
        let pool = common::import(&dev).await;
        let vol = pool.open_volume("vol").expect("open");
        assert_eq!(read_at(&vol, 8, 8192).await, want);
        let status = vol.lba_status(Lba::new(0)).await.expect("status");
        assert!(!status.mapped);
        assert_eq!(status.run_blocks, 8);
    });
}

#[test]
fn lba_status_reports_whole_runs_from_dirty_sets_and_trees() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        // 16 MiB of 512-byte LBAs: 32768 LBAs, 1 MiB (2048-LBA) stripes over 4 partitions.
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        let stripe = 2048u64;
        common::write_buf(&vol, 3 * stripe, pattern(5, 1 << 20), false).await;
        // One 4 KiB block inside stripe 5, at its third block.
        common::write_buf(&vol, 5 * stripe + 16, pattern(6, 4096), false).await;
        for synced in [false, true] {
            let at = |lba| vol.lba_status(lba);
            let s = at(Lba::new(0)).await.expect("status");
            assert_eq!((s.mapped, s.run_blocks), (false, 3 * stripe), "synced={synced}");
            let s = at(Lba::new(3 * stripe)).await.expect("status");
            assert_eq!((s.mapped, s.run_blocks), (true, stripe), "synced={synced}");
            let s = at(Lba::new(4 * stripe)).await.expect("status");
            assert_eq!((s.mapped, s.run_blocks), (false, stripe + 16), "synced={synced}");
            let s = at(Lba::new(5 * stripe + 24)).await.expect("status");
            assert_eq!((s.mapped, s.run_blocks), (false, 32768 - 5 * stripe - 24));
            pool.sync_txg().await.expect("sync");
        }
        // A whole-volume unmap is one run, before and after its sync.
        vol.unmap(Lba::new(0), BlockCount::new(32768)).await.expect("unmap");
        for _ in 0..2 {
            let s = vol.lba_status(Lba::new(0)).await.expect("status");
            assert_eq!((s.mapped, s.run_blocks), (false, 32768));
            pool.sync_txg().await.expect("sync");
        }
        // Every data and indirect block of the volume is free again.
        let report = assert_space_exact(&pool, &dev).await;
        assert_eq!((report.datasets[0].data_blocks, report.datasets[0].indirect_blocks), (0, 0));
    });
}

#[test]
fn unmap_and_compare_and_write() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        common::write_buf(&vol, 0, pattern(3, 1 << 20), false).await;
        pool.sync_txg().await.expect("sync");
        vol.unmap(Lba::new(1), BlockCount::new(2046)).await.expect("unmap");
        let got = read_at(&vol, 0, 1 << 20).await;
        assert_eq!(&got[..512], &pattern(3, 512)[..]);
        assert!(got[512..(1 << 20) - 512].iter().all(|b| *b == 0));
        // 254 whole blocks unmapped are free again; the two partial ones are rewritten.
        let report = assert_space_exact(&pool, &dev).await;
        assert_eq!(report.datasets[0].referenced_bytes, 2 * 4096);
        let got2 = read_at(&vol, 0, 1 << 20).await;
        assert_eq!(got, got2);
        let cmp = IoBuf::from_slice(&got[..512]);
        let outcome =
            vol.compare_and_write(Lba::new(0), cmp, pattern(77, 512), true).await.expect("caw");
        assert_eq!(outcome, CompareOutcome::Written);
        let outcome = vol
            .compare_and_write(Lba::new(0), pattern(1, 512), pattern(78, 512), false)
            .await
            .expect("caw");
        assert!(matches!(outcome, CompareOutcome::Miscompare { .. }));
        assert_eq!(read_at(&vol, 0, 512).await, pattern(77, 512).to_vec());
    });
}

#[test]
fn flipped_byte_in_a_data_block_is_a_medium_error() {
    let r = reactor();
    let (mem, dev) = memory_device(64);
    r.block_on(async {
        let tunables = PoolTunables { cache_bytes: 0, ..PoolTunables::default() };
        let pool = common::create(&dev, CreateOptions { tunables, ..options() }).await;
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        // Neighbours on both sides, written in the same txg.
        common::write_buf(&vol, 0, pattern(4, 64 << 10), false).await;
        let data = pattern(5, 4096);
        common::write_buf(&vol, 16, IoBuf::from_slice(&data), false).await;
        pool.sync_txg().await.expect("sync");
        // Find the block on the device by its content and flip one byte.
        let size = 64u64 << 20;
        let mut found = None;
        let mut buf = vec![0u8; 4096];
        let mut off = 0;
        while off < size {
            mem.read_into(&mut buf, off).expect("scan");
            if buf[..] == data[..] {
                found = Some(off);
                break;
            }
            off += 4096;
        }
        let off = found.expect("data block on device");
        buf[100] ^= 0x40;
        mem.write_from(&buf, off).expect("corrupt");
        let before = pool.checksum_errors();
        let (res, _) = vol.read(Lba::new(16), IoBuf::zeroed(4096)).await;
        assert_eq!(res, Err(VolumeError::Medium { lba: Lba::new(16) }));
        assert!(pool.checksum_errors() > before);
        // The pool's one device carries the error in its own CKSUM column.
        let health = pool.device_health();
        assert_eq!(health.len(), 1);
        assert_eq!(
            (health[0].kind.as_str(), health[0].role, health[0].state),
            ("disk", "data", "ONLINE")
        );
        let device = &health[0].devices[0];
        assert_eq!((device.checksum_errors, device.read_errors, device.write_errors), (1, 0, 0));
        assert_eq!((device.state, device.repaired_bytes), ("ONLINE", 0));
        // Inspect reads its neighbours in the same request and blames this block alone.
        let report = engine::inspect::inspect(vec![Arc::clone(&dev)]).await.expect("inspect");
        assert_eq!(report.checksum_errors.len(), 1, "{report}");
        assert!(report.checksum_errors[0].ends_with(&format!("offset {off}")), "{report}");
        assert!(!report.is_clean());
    });
}

#[test]
fn other_format_version_is_refused_naming_both() {
    let r = reactor();
    let (mem, dev) = memory_device(64);
    r.block_on(async {
        let pool = common::create(&dev, options()).await;
        pool.export().await.expect("export");
    });
    // Rewrite every label with another version (and a valid checksum).
    for l in 0..4u64 {
        let off = engine::format::label_offset_bytes(l, 64 << 20);
        let mut buf = vec![0u8; 4096];
        mem.read_into(&mut buf, off).expect("read label");
        let mut label: engine::label::Label = bytemuck::pod_read_unaligned(&buf);
        label.format_version = 99;
        mem.write_from(&label.encode(), off).expect("write label");
    }
    let err =
        r.block_on(Pool::import(vec![dev], PoolTunables::default())).err().expect("must refuse");
    assert!(matches!(err, PoolError::IncompatibleVersion { found: 99, .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("99") && msg.contains(&engine::format::FORMAT_VERSION.to_string()),
        "{msg}"
    );
}

#[test]
fn an_import_without_every_device_names_the_missing_one() {
    let r = reactor();
    let (a, b, log) = (device(64), device(32), device(16));
    r.block_on(async {
        let pool =
            Pool::create(vec![Arc::clone(&a), Arc::clone(&b)], Some(Arc::clone(&log)), options())
                .await
                .expect("create");
        pool.export().await.expect("export");
    });
    let import = |devices: Vec<Arc<dyn BlockDevice>>| {
        let err = r.block_on(Pool::import(devices, PoolTunables::default())).err();
        err.expect("must refuse").to_string()
    };
    let msg = import(vec![Arc::clone(&a), Arc::clone(&log)]);
    assert!(msg.contains("missing 1 of its 3 devices: device 1 (data, "), "{msg}");
    assert!(msg.contains(" MiB, guid 0x"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let msg = import(vec![Arc::clone(&b)]);
    assert!(msg.contains("missing 2 of its 3 devices: device 0 (data, "), "{msg}");
    assert!(msg.contains("device 2 (log, "), "{msg}");
    // A device given twice is not the missing one.
    let msg = import(vec![Arc::clone(&a), Arc::clone(&a), Arc::clone(&log)]);
    assert!(msg.contains("does not belong"), "{msg}");
    // All three, in any order, import.
    r.block_on(async {
        let pool = Pool::import(vec![log, b, a], PoolTunables::default()).await.expect("import");
        pool.export().await.expect("export");
    });
}

#[test]
fn snapshots_clones_rollback_and_space() {
    common::with_new_pool(64, options(), |pool, dev| async move {
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        common::write_buf(&vol, 0, pattern(1, 64 << 10), false).await;
        pool.snapshot("vol", "a").await.expect("snapshot");
        common::write_buf(&vol, 0, pattern(2, 32 << 10), false).await;
        pool.sync_txg().await.expect("sync");
        assert_eq!(pool.written_since("vol@a").await.expect("written"), 32 << 10);
        let freed = pool.destroy_would_free(&["vol@a"]).expect("figure");
        // The 8 overwritten data blocks and the two old indirect blocks above them (a
        // two-level tree) are held by the snapshot alone.
        assert_eq!(freed, (32 << 10) + 2 * 8192);
        let clone = pool.clone_snapshot("vol@a", "c").await.expect("clone");
        assert_eq!(read_at(&clone, 0, 64 << 10).await, pattern(1, 64 << 10).to_vec());
        common::write_buf(&clone, 0, pattern(3, 4096), true).await;
        assert!(matches!(pool.destroy_snapshot("vol@a").await, Err(PoolError::Busy(_))));
        pool.rollback("vol@a").await.expect("rollback");
        assert_eq!(read_at(&vol, 0, 64 << 10).await, pattern(1, 64 << 10).to_vec());
        let before = assert_space_exact(&pool, &dev).await;
        let free_before = pool.free_bytes();
        pool.destroy_volume("c").await.expect("destroy clone");
        pool.destroy_snapshot("vol@a").await.expect("destroy snapshot");
        let after = assert_space_exact(&pool, &dev).await;
        // Exactly what the trees and objects of the clone and the snapshot held is free.
        assert_eq!(pool.free_bytes() - free_before, before.live_bytes - after.live_bytes);
        let names: Vec<&str> = after.datasets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["vol"]);
        assert_eq!(read_at(&vol, 0, 64 << 10).await, pattern(1, 64 << 10).to_vec());
        let space = pool.space("vol").expect("space");
        assert_eq!(space.referenced_bytes, 64 << 10);
        assert_eq!(space.snapshot_count, 0);
    });
}

#[test]
fn writers_past_the_dirty_limit_complete_with_and_without_a_syncer() {
    let r = reactor();
    let dev = device(64);
    r.block_on(async {
        let tunables = PoolTunables {
            dirty_sync_bytes: 256 << 10,
            dirty_limit_bytes: 512 << 10,
            ..PoolTunables::default()
        };
        let pool = Pool::create(
            vec![Arc::clone(&dev)],
            None,
            CreateOptions { tunables: tunables.clone(), ..options() },
        )
        .await
        .expect("create");
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        let txgs = |p: &Pool| p.stats.txgs.load(std::sync::atomic::Ordering::Relaxed);
        // No syncer: a throttled writer commits the open txg itself.
        let before = txgs(&pool);
        for i in 0..32u64 {
            common::write_buf(&vol, i * 128, pattern(i as u8, 64 << 10), false).await;
        }
        assert!(pool.stats.throttled_writes.load(std::sync::atomic::Ordering::Relaxed) > 0);
        assert!(txgs(&pool) > before, "throttled writers synced");
        // With the syncer: throttled writers wait for its syncs.
        let syncer = pool.start_syncer();
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let vol = vol.clone();
                drivers::executor::spawn(async move {
                    for i in 0..16u64 {
                        let lba = (w * 16 + i) * 128 + 4096;
                        common::write_buf(&vol, lba, pattern((w + i) as u8, 64 << 10), false).await;
                    }
                })
            })
            .collect();
        for w in writers {
            w.await;
        }
        vol.flush().await.expect("flush");
        pool.export().await.expect("export");
        syncer.await;
        drop(vol);
        drop(pool);
        let pool = Pool::import(vec![Arc::clone(&dev)], tunables).await.expect("import");
        let vol = pool.open_volume("vol").expect("open");
        for i in 0..32u64 {
            assert_eq!(read_at(&vol, i * 128, 64 << 10).await, pattern(i as u8, 64 << 10).to_vec());
        }
        for w in 0..4u64 {
            for i in 0..16u64 {
                let lba = (w * 16 + i) * 128 + 4096;
                let want = pattern((w + i) as u8, 64 << 10).to_vec();
                assert_eq!(read_at(&vol, lba, 64 << 10).await, want);
            }
        }
    });
}

#[test]
fn one_shard_fills_both_log_chains_before_a_txg_and_replay_keeps_the_order() {
    let r = reactor();
    let (mem, dev) = memory_device(64);
    r.block_on(async {
        let opts = CreateOptions { log_chains: 2, log_chain_bytes: 1 << 20, ..options() };
        let pool = common::create(&dev, opts).await;
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        pool.sync_txg().await.expect("sync");
        let txgs = |p: &Pool| p.stats.txgs.load(std::sync::atomic::Ordering::Relaxed);
        let syncer = pool.start_syncer();
        let before = txgs(&pool);
        // One FUA write at a time: one record per 8 KiB log block. 96 of them are 3/4 of a
        // megabyte: past half of the first chain (where a txg used to be requested), but the
        // second chain still has room. Slots are overwritten across the switch.
        let mut want = [None; 40];
        for i in 0..96u64 {
            let slot = (i % 40) as usize;
            common::write_buf(&vol, slot as u64 * 8, pattern(i as u8, 4096), true).await;
            want[slot] = Some(i as u8);
        }
        // Give a requested sync time to run.
        drivers::executor::sleep(std::time::Duration::from_millis(100)).await;
        let blocks = pool.stats.log_blocks_written.load(std::sync::atomic::Ordering::Relaxed);
        assert!(blocks >= 96, "one log block per write ({blocks})");
        assert_eq!(txgs(&pool), before, "no txg while the second chain has room");
        // Crash now: import a copy of the device as it is.
        let copy: Arc<dyn BlockDevice> = crash_copy(&mem);
        pool.export().await.expect("export");
        syncer.await;
        drop(vol);
        drop(pool);
        let pool = Pool::import(vec![copy], PoolTunables::default()).await.expect("import");
        assert_eq!(pool.stats.log_records_replayed.load(std::sync::atomic::Ordering::Relaxed), 96);
        let vol = pool.open_volume("vol").expect("open");
        for (slot, seed) in want.iter().enumerate() {
            let seed = seed.expect("every slot written");
            assert_eq!(read_at(&vol, slot as u64 * 8, 4096).await, pattern(seed, 4096).to_vec());
        }
    });
}

#[test]
fn write_same_logs_the_pattern_once_per_stripe_run_and_is_replayed() {
    let r = reactor();
    let (mem, dev) = memory_device(64);
    r.block_on(async {
        let pool = common::create(&dev, options()).await;
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        pool.sync_txg().await.expect("sync");
        vol.set_write_cache(false);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let records_before = pool.stats.log_records_written.load(relaxed);
        // 5000 blocks of 512 bytes from LBA 3: a partial 4 KiB block at each end and whole
        // blocks across three 1 MiB stripes.
        let (res, _) = vol.write_same(Lba::new(3), BlockCount::new(5000), pattern(42, 512)).await;
        res.expect("write same");
        let records = pool.stats.log_records_written.load(relaxed) - records_before;
        assert!((3..=6).contains(&records), "{records} log records for one WRITE SAME");
        // Crash: import a copy of the device as it is.
        let pool =
            Pool::import(vec![crash_copy(&mem) as Arc<dyn BlockDevice>], PoolTunables::default())
                .await
                .expect("import");
        assert_eq!(pool.stats.log_records_replayed.load(relaxed), records);
        let vol = pool.open_volume("vol").expect("open");
        let got = read_at(&vol, 0, 5008 * 512).await;
        assert!(got[..3 * 512].iter().all(|b| *b == 0), "before the range");
        for lba in 3..5003 {
            let at = lba * 512;
            assert_eq!(&got[at..at + 512], &pattern(42, 512)[..], "LBA {lba}");
        }
        assert!(got[5003 * 512..].iter().all(|b| *b == 0), "after the range");
    });
}

/// FUA writes of whole 64 KiB blocks are written in place and logged by reference: the txg
/// sync takes them into the tree without writing them again (only blocks overwritten since
/// are written), a crash replays them from their places, and no space leaks either way.
#[test]
fn large_durable_writes_are_logged_by_reference_and_adopted_by_the_sync() {
    use std::sync::atomic::Ordering::Relaxed;
    let r = reactor();
    let (mem, dev) = memory_device(128);
    r.block_on(async {
        let pool = common::create(&dev, options()).await;
        let opts = VolumeOptions {
            volblock_bytes: 64 << 10,
            compression: engine::compress::Compression::Off,
            ..small_volume()
        };
        let vol = pool.create_volume("vol", &opts).await.expect("volume");
        pool.sync_txg().await.expect("sync");
        let lbas = 128u64; // 64 KiB of 512-byte LBAs.
                           // Eight whole blocks, FUA, in one request; then two of them again, write-back.
        let mut all = Vec::new();
        for b in 0..8u8 {
            all.extend_from_slice(&pattern(b + 1, 64 << 10));
        }
        common::write_buf(&vol, 0, IoBuf::from_slice(&all), true).await;
        assert_eq!(pool.stats.log_block_refs_written.load(Relaxed), 8);
        let log_copies = pool.stats.log_records_written.load(Relaxed);
        assert_eq!(log_copies, 8, "eight records of 32 bytes each");
        for b in [2u64, 5] {
            common::write_buf(&vol, b * lbas, pattern(b as u8 + 100, 64 << 10), false).await;
        }
        // The two blocks written in place and overwritten before the sync are free again.
        assert_space_exact(&pool, &dev).await;
        assert_eq!(
            pool.stats.log_block_refs_adopted.load(Relaxed),
            6,
            "the six blocks not overwritten join the tree where they lie"
        );
        let want = |b: u64| {
            if b == 2 || b == 5 {
                pattern(b as u8 + 100, 64 << 10)
            } else {
                pattern(b as u8 + 1, 64 << 10)
            }
        };
        for b in 0..8u64 {
            assert_eq!(read_at(&vol, b * lbas, 64 << 10).await, want(b).to_vec(), "block {b}");
        }
        // Eight more in place, then a crash before any txg.
        for b in 8..16u64 {
            common::write_buf(&vol, b * lbas, pattern(b as u8 + 1, 64 << 10), true).await;
        }
        let copy: Arc<dyn BlockDevice> = crash_copy(&mem);
        pool.export().await.expect("export");
        drop(vol);
        let report = engine::inspect::inspect(vec![Arc::clone(&dev)]).await.expect("inspect");
        assert!(report.is_clean(), "after export: {report:?}");
        let pool = common::import(&copy).await;
        assert_eq!(pool.stats.log_block_refs_replayed.load(Relaxed), 8);
        let vol = pool.open_volume("vol").expect("open");
        for b in 0..16u64 {
            let w = if b < 8 { want(b) } else { pattern(b as u8 + 1, 64 << 10) };
            assert_eq!(
                read_at(&vol, b * lbas, 64 << 10).await,
                w.to_vec(),
                "block {b} after replay"
            );
        }
        pool.export().await.expect("export");
        let report = engine::inspect::inspect(vec![copy]).await.expect("inspect");
        assert!(report.is_clean(), "after replay: {report:?}");
    });
}

/// What [`failed_sync_then_queued_sync`] saw.
struct QueuedSyncRun {
    /// The log device's writes before the syncs.
    writes: u64,
    first: Result<TxgId, PoolError>,
    second: Result<TxgId, PoolError>,
    /// The txg phase after both syncs.
    phase: TxgPhase,
    /// What LBA 0 holds after a re-import.
    lba0: Vec<u8>,
}

/// One run of [`sync_queued_behind_a_failed_sync_is_refused`]: a durable write, then two txg
/// syncs at once, the log device failing its write number `fail_at` (counted from its
/// creation).
fn failed_sync_then_queued_sync(fail_at: Option<u64>) -> QueuedSyncRun {
    use drivers::blockdev::fault::{
        Fault, FaultConfig, FaultDevice, FaultRule, Latency, OpKind, Trigger,
    };
    let r = reactor();
    // Device writes take a few scheduler turns, so the write below lands while the first
    // sync is writing its data.
    let slow = FaultConfig { latency: Latency::Yields(8), ..FaultConfig::default() };
    let data: Arc<dyn BlockDevice> = Arc::new(FaultDevice::new(device(64), slow.clone()));
    let rules = fail_at
        .map(|n| vec![FaultRule::new(OpKind::Write, Trigger::Nth(n), Fault::Error)])
        .unwrap_or_default();
    let fault = Arc::new(FaultDevice::new(device(16), FaultConfig { rules, ..slow }));
    let log: Arc<dyn BlockDevice> = Arc::clone(&fault) as Arc<dyn BlockDevice>;
    r.block_on(async move {
        let pool = Pool::create(vec![Arc::clone(&data)], Some(Arc::clone(&log)), options())
            .await
            .expect("create");
        let vol = pool.create_volume("vol", &small_volume()).await.expect("volume");
        common::write_buf(&vol, 0, pattern(1, 4096), false).await;
        pool.sync_txg().await.expect("sync");
        // Acknowledged durable through the intent log; the next txg covers it.
        common::write_buf(&vol, 0, pattern(2, 4096), true).await;
        let writes = fault.stats().ops_of(OpKind::Write);
        let (a, b) = (Arc::clone(&pool), Arc::clone(&pool));
        // Started in this order: the first sync freezes the open txg and waits for its device
        // writes; a write then gives the second sync (waiting for the sync lock) work on the
        // same partition, whose tree it would build anew.
        let first = drivers::executor::spawn(async move { a.sync_txg().await });
        let writer = vol.clone();
        let write = drivers::executor::spawn(async move {
            let (res, _) = writer.write(Lba::new(8), pattern(3, 4096), false).await;
            res
        });
        let second = drivers::executor::spawn(async move { b.sync_txg().await });
        write.await.expect("write while the first sync runs");
        let (first, second) = (first.await, second.await);
        let phase = pool.txg_phase();
        drop(vol);
        drop(pool);
        let pool = Pool::import(vec![data, log], PoolTunables::default()).await.expect("import");
        let vol = pool.open_volume("vol").expect("open");
        QueuedSyncRun { writes, first, second, phase, lba0: read_at(&vol, 0, 4096).await }
    })
}

/// A txg sync that was waiting for the sync lock while the sync before it failed is refused
/// (the pool is suspended): committing it would build on the last durable trees without the
/// failed txg's changes and trim the intent-log records that hold them, losing a write that
/// was acknowledged durable (LBA 0 read its older value after import).
#[test]
fn sync_queued_behind_a_failed_sync_is_refused() {
    // A run without faults counts the log device's writes up to the syncs; the real run fails
    // the next one, which the first sync makes (its uberblock write to the log device).
    let QueuedSyncRun { writes, first, second, phase, .. } = failed_sync_then_queued_sync(None);
    first.expect("first sync without faults");
    second.expect("second sync without faults");
    assert_eq!(phase, TxgPhase::Open, "no sync runs after both succeeded");
    let QueuedSyncRun { first, second, phase, lba0, .. } =
        failed_sync_then_queued_sync(Some(writes + 1));
    assert!(first.is_err(), "the first sync meets the log device's write error");
    // The uberblock write failed: the suspended pool keeps the phase it failed in.
    assert_eq!(phase, TxgPhase::SyncingSpace, "the failed sync's phase");
    assert!(
        matches!(second, Err(PoolError::Suspended)),
        "the queued sync must be refused, got {second:?}"
    );
    assert_eq!(lba0, pattern(2, 4096).to_vec(), "the acknowledged FUA write survives import");
}
