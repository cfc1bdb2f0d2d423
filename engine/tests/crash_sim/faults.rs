//! Targeted fault scenarios of the pool engine on [`FaultDevice`]s: an intent-log batch whose
//! write fails, a log block that fails its checksum at replay, and blocks damaged at rest or
//! torn silently on write. Each asserts what ferrite promises: a failed write is reported,
//! later acknowledged writes stay durable, and damage is caught by checksums (an error),
//! never returned as data.

use std::sync::Arc;

use drivers::blockdev::fault::{Fault, FaultDevice, FaultRule, OpKind, PowerCutMode, Trigger};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::executor::{Reactor, ReactorConfig};
use engine::block_volume::BlockVolume;
use engine::units::Lba;
use engine::{CreateOptions, Pool, PoolTunables, PoolVolume, VolumeOptions};

use crate::model::{block_bytes, decode_block};

const LOGICAL: usize = 4096;
const LBAS: usize = 64;

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    Reactor::new(&ReactorConfig { buffer_count: 4, buffer_bytes: 4096, ..ReactorConfig::default() })
        .expect("reactor")
        .block_on(f)
}

fn memory() -> Arc<dyn BlockDevice> {
    Arc::new(MemoryDevice::new(32 << 20, 512))
}

fn wrap(inner: &Arc<dyn BlockDevice>, durable: bool, rules: Vec<FaultRule>) -> Arc<FaultDevice> {
    crate::wrap_device(Arc::clone(inner), 5, durable, rules)
}

/// `fault` on the `n`-th request of kind `op` (counted from the device's creation).
fn on_nth(op: OpKind, n: u64, fault: Fault) -> Vec<FaultRule> {
    vec![FaultRule::new(op, Trigger::Nth(n), fault)]
}

fn as_devices(devs: &[&Arc<FaultDevice>]) -> Vec<Arc<dyn BlockDevice>> {
    devs.iter().map(|d| Arc::clone(*d) as Arc<dyn BlockDevice>).collect()
}

fn volume_options() -> VolumeOptions {
    VolumeOptions {
        capacity_bytes: (LBAS * LOGICAL) as u64,
        logical_block_bytes: LOGICAL as u32,
        volblock_bytes: 4096,
        partition_count: 2,
        ..VolumeOptions::default()
    }
}

async fn create(data: &Arc<FaultDevice>, log: Option<&Arc<FaultDevice>>) -> Arc<Pool> {
    let options =
        CreateOptions { guid: Some(21), log_chain_bytes: 1 << 20, ..CreateOptions::default() };
    let log = log.map(|l| Arc::clone(l) as Arc<dyn BlockDevice>);
    let pool = Pool::create(as_devices(&[data]), log, options).await.expect("create");
    pool.create_volume("v", &volume_options()).await.expect("volume");
    pool
}

/// A pool on a data device and a log device with `log_rules` (both disarmed), and its
/// volume "v".
async fn pool_with_log(
    durable: bool,
    log_rules: Vec<FaultRule>,
) -> (Arc<FaultDevice>, Arc<FaultDevice>, Arc<Pool>, PoolVolume) {
    let data = wrap(&memory(), durable, Vec::new());
    let log = wrap(&memory(), durable, log_rules);
    let pool = create(&data, Some(&log)).await;
    let vol = pool.open_volume("v").expect("open");
    (data, log, pool, vol)
}

async fn write(vol: &PoolVolume, lba: usize, id: u64, fua: bool) -> Result<(), String> {
    let data = block_bytes(lba as u64, id, LOGICAL);
    vol.write(Lba::new(lba as u64), IoBuf::from_slice(&data), fua)
        .await
        .0
        .map_err(|e| e.to_string())
}

/// Reads one block: Ok(write id) or the read's error.
async fn read_id(vol: &PoolVolume, lba: usize) -> Result<u64, String> {
    let (res, buf) = vol.read(Lba::new(lba as u64), IoBuf::zeroed(LOGICAL)).await;
    res.map_err(|e| format!("read error: {e}"))?;
    decode_block(lba as u64, &buf).map_err(|e| format!("WRONG DATA: {e}"))
}

/// Cuts the power of `data` and `log` (dropping every unflushed write), restarts them and
/// imports the pool: its devices, the pool and volume "v".
async fn cut_and_import(
    data: &Arc<FaultDevice>,
    log: &Arc<FaultDevice>,
) -> (Vec<Arc<dyn BlockDevice>>, Arc<Pool>, PoolVolume) {
    for d in [data, log] {
        d.power_cut(PowerCutMode::DropAll).await.expect("cut");
        d.restart();
    }
    let devices = as_devices(&[data, log]);
    let pool = Pool::import(devices.clone(), PoolTunables::default()).await.expect("import");
    let vol = pool.open_volume("v").expect("open");
    (devices, pool, vol)
}

async fn inspect_clean(devices: Vec<Arc<dyn BlockDevice>>) {
    let report = engine::inspect::inspect(devices).await.expect("inspect");
    assert!(
        report.is_clean()
            && report.leaked_bytes() == 0
            && report.overlapping_blocks == 0
            && report.unallocated_live_blocks == 0,
        "inspect is not exactly clean ({} bytes leaked):\n{report}",
        report.leaked_bytes()
    );
}

#[test]
fn a_failed_log_batch_fails_its_write_and_later_acknowledged_writes_survive_a_cut() {
    for durable in [false, true] {
        run(async {
            let log_fails = vec![FaultRule::new(OpKind::Write, Trigger::Always, Fault::Error)];
            let (data, log, pool, vol) = pool_with_log(durable, log_fails).await;
            write(&vol, 0, 1, true).await.expect("FUA write before the fault");
            log.set_armed(true);
            let failed = write(&vol, 1, 2, true).await;
            log.set_armed(false);
            assert!(failed.is_err(), "a FUA write whose log batch failed is not acknowledged");
            assert_eq!(log.faults_injected(), 1, "exactly the one log batch failed");
            // The failed block may sit in the chain: later commits must not depend on it.
            write(&vol, 2, 3, true).await.expect("FUA write after the failed batch");
            write(&vol, 3, 4, true).await.expect("second FUA write after the failed batch");
            assert!(!pool.is_suspended(), "a log write error does not suspend the pool");
            let (devices, pool, vol) = cut_and_import(&data, &log).await;
            assert_eq!(read_id(&vol, 0).await, Ok(1), "durable={durable}");
            let lba1 = read_id(&vol, 1).await;
            assert!(matches!(lba1, Ok(0 | 2)), "failed write: old or new, got {lba1:?}");
            assert_eq!(read_id(&vol, 2).await, Ok(3), "durable={durable}");
            assert_eq!(read_id(&vol, 3).await, Ok(4), "durable={durable}");
            pool.export().await.expect("export");
            inspect_clean(devices).await;
        });
    }
}

#[test]
fn a_log_block_failing_its_checksum_ends_replay_there_and_is_never_applied() {
    for durable in [false, true] {
        run(async {
            // Flips one bit of what the log device stores while armed (the write succeeds).
            let flip = Fault::FlipBit { offset_bytes: None, bit: None };
            let log_flips = vec![FaultRule::new(OpKind::Write, Trigger::Always, flip)];
            let (data, log, _pool, vol) = pool_with_log(durable, log_flips).await;
            write(&vol, 0, 1, true).await.expect("FUA write A");
            log.set_armed(true);
            write(&vol, 1, 2, true).await.expect("FUA write B (its log block is damaged)");
            log.set_armed(false);
            assert_eq!(log.stats().bit_flips, 1);
            write(&vol, 2, 3, true).await.expect("FUA write C");
            let (devices, pool, vol) = cut_and_import(&data, &log).await;
            assert_eq!(read_id(&vol, 0).await, Ok(1), "A, before the damaged block, is replayed");
            assert_eq!(read_id(&vol, 1).await, Ok(0), "B's damaged record is not applied");
            assert_eq!(read_id(&vol, 2).await, Ok(0), "replay stops at the damaged block");
            assert_eq!(
                pool.stats.log_records_replayed.load(std::sync::atomic::Ordering::Relaxed),
                1
            );
            pool.export().await.expect("export");
            inspect_clean(devices).await;
        });
    }
}

/// Writes every LBA (FUA and not), syncs, rewrites half of them, syncs again and exports.
async fn fill(pool: &Arc<Pool>) {
    let vol = pool.open_volume("v").expect("open");
    for lba in 0..LBAS {
        write(&vol, lba, 1 + lba as u64, lba % 3 == 0).await.expect("write");
    }
    pool.sync_txg().await.expect("sync");
    for lba in (0..LBAS).step_by(2) {
        write(&vol, lba, 1000 + lba as u64, false).await.expect("rewrite");
    }
    pool.sync_txg().await.expect("sync");
}

/// Creates the pool on `dev`, arms `dev`'s faults when `arm` is set, runs [`fill`] and
/// exports the pool. Returns the device's writes before the fill and during it.
async fn fill_pool(dev: &Arc<FaultDevice>, arm: bool) -> (u64, u64) {
    let pool = create(dev, None).await;
    if arm {
        dev.set_armed(true);
    }
    let before = dev.stats().ops_of(OpKind::Write);
    fill(&pool).await;
    let during = dev.stats().ops_of(OpKind::Write) - before;
    pool.export().await.expect("export");
    (before, during)
}

/// Values `lba` held at some durable point of [`fill`] (a damaged uberblock makes import fall
/// back to an older txg, which is allowed; anything else is not).
fn allowed(lba: usize, id: u64) -> bool {
    id == 0 || id == 1 + lba as u64 || (lba.is_multiple_of(2) && id == 1000 + lba as u64)
}

/// Imports `devices` and reads every LBA: each read returns a value [`allowed`] or fails. Returns Ok(reads that failed) or Err(what was wrong); `Ok(None)` when import refused.
async fn read_back(devices: Vec<Arc<dyn BlockDevice>>) -> Result<Option<usize>, String> {
    let Ok(pool) = Pool::import(devices, PoolTunables::default()).await else { return Ok(None) };
    let Ok(vol) = pool.open_volume("v") else { return Ok(None) };
    let mut errors = 0;
    for lba in 0..LBAS {
        match read_id(&vol, lba).await {
            Ok(id) if allowed(lba, id) => {}
            Ok(id) => return Err(format!("LBA {lba}: write {id}, never written there")),
            Err(e) if e.starts_with("WRONG") => return Err(format!("LBA {lba}: {e}")),
            Err(_) => errors += 1,
        }
    }
    Ok(Some(errors))
}

#[test]
fn a_bit_flipped_on_any_read_is_caught_by_checksums_never_returned() {
    run(async {
        let mem = memory();
        fill_pool(&wrap(&mem, false, Vec::new()), false).await;
        // Flip a bit in the n-th read of an import and full read-back: this sweeps labels,
        // uberblocks, the root, dataset and space-map blocks, tree nodes and data blocks.
        let reads = {
            let probe = wrap(&mem, false, Vec::new());
            assert_eq!(read_back(as_devices(&[&probe])).await, Ok(Some(0)));
            probe.stats().ops_of(OpKind::Read)
        };
        let (mut caught, mut refused) = (0, 0);
        for n in 1..=reads {
            let flip = Fault::FlipBit { offset_bytes: None, bit: None };
            let dev = wrap(&mem, false, on_nth(OpKind::Read, n, flip));
            dev.set_armed(true);
            match read_back(as_devices(&[&dev])).await {
                Ok(Some(0)) => {}
                Ok(Some(_)) => caught += 1,
                Ok(None) => refused += 1,
                Err(e) => panic!("flip in read {n} of {reads} returned as data: {e}"),
            }
        }
        eprintln!("{reads} reads: a flip failed reads {caught} times, import {refused} times");
        assert!(caught > 0, "no flipped read failed a read");
    });
}

#[test]
fn a_silently_torn_write_is_caught_by_checksums_never_returned() {
    run(async {
        // Count the writes of a fill.
        let (first, count) = fill_pool(&wrap(&memory(), false, Vec::new()), false).await;
        let mut caught = 0;
        for n in first + 1..=first + count {
            let mem = memory();
            let dev =
                wrap(&mem, false, on_nth(OpKind::Write, n, Fault::TornWrite { silent: true }));
            fill_pool(&dev, true).await;
            let dev = wrap(&mem, false, Vec::new());
            match read_back(as_devices(&[&dev])).await {
                Ok(Some(0)) => {}
                Ok(Some(_)) => {
                    caught += 1;
                    let report =
                        engine::inspect::inspect(as_devices(&[&dev])).await.expect("inspect");
                    assert!(
                        !report.checksum_errors.is_empty(),
                        "reads failed after a torn write {n}, inspect must say where:\n{report}"
                    );
                }
                Ok(None) => caught += 1,
                Err(e) => panic!("torn write {n} returned as data: {e}"),
            }
        }
        eprintln!("{count} writes torn one at a time: {caught} caught by checksums");
        assert!(caught > 0, "no torn write was caught");
    });
}
