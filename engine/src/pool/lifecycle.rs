//! The pool's life cycle: create (devices, labels, log chains, first txg), import (the
//! newest uberblock that loads, then intent-log replay) and export.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use drivers::blockdev::BlockDevice;

use super::labels::write_labels;
use super::{lock, open_devices, CreateOptions, Pool, PoolStats, PoolTunables, TxgState};
use crate::allocator::{AgLayout, Allocator};
use crate::cache::BlockCache;
use crate::dataset::DatasetKind;
use crate::ddt::Ddt;
use crate::error::{PoolError, PoolResult};
use crate::format::{data_area, LABEL_BYTES, SECTOR_BYTES};
use crate::label::{DeviceConfig, DeviceRole, MAX_DEVICES};
use crate::meta::Meta;
use crate::pool_root::{LogChainPhys, MAX_LOG_CHAINS};
use crate::rewind::RewindReport;
use crate::units::TxgId;
use crate::vdev::Stripe;
use crate::volume::VolumeShared;
use crate::zil::Zil;

fn ag_bytes_for(data_bytes: u64) -> u64 {
    // At most ~256 groups per device, at least 64 MiB each: large enough for an intent-log
    // chain region of 32 MiB inside one group, and few enough space maps that a txg of
    // random writes does not rewrite hundreds of them.
    let target = (data_bytes / 256).max(64 << 20);
    target.next_power_of_two()
}

fn make_guid(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        xxhash_rust::xxh3::xxh3_64(&nanos.to_le_bytes()) | 1
    })
}

pub(super) fn ag_layouts(configs: &[DeviceConfig]) -> Vec<AgLayout> {
    let mut layouts = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        if DeviceRole::from_u32(c.role) != Some(DeviceRole::Data) || c.ag_bytes == 0 {
            continue;
        }
        let (start, end) = data_area(c.size_bytes);
        let mut at = start;
        while at + SECTOR_BYTES * 16 <= end {
            let len = (end - at).min(c.ag_bytes) / SECTOR_BYTES * SECTOR_BYTES;
            layouts.push(AgLayout {
                device: u16::try_from(i).expect("at most 32 devices"),
                start_bytes: at,
                len_bytes: len,
            });
            at += len;
        }
    }
    layouts
}

impl Pool {
    /// Creates a pool on `data_devices` (striped), with the intent log on `log_device` when
    /// given (otherwise in the pool), and commits its first txg.
    ///
    /// # Errors
    /// [`PoolError::InvalidConfig`] for too many or too small devices, a device error.
    pub async fn create(
        data_devices: Vec<Arc<dyn BlockDevice>>,
        log_device: Option<Arc<dyn BlockDevice>>,
        options: CreateOptions,
    ) -> PoolResult<Arc<Pool>> {
        let count = data_devices.len() + usize::from(log_device.is_some());
        if data_devices.is_empty() || count > MAX_DEVICES {
            return Err(PoolError::InvalidConfig(format!(
                "a pool needs 1 to {MAX_DEVICES} devices, got {count}"
            )));
        }
        crate::dataset::check_name("pool", &options.name).map_err(PoolError::InvalidConfig)?;
        if options.reserve_percent > 50 {
            return Err(PoolError::InvalidConfig("reserve above 50 %".into()));
        }
        let chains = options.log_chains.clamp(1, MAX_LOG_CHAINS as u32);
        let guid = make_guid(options.guid);
        let mut configs = Vec::new();
        let mut devices: Vec<Arc<dyn BlockDevice>> = Vec::new();
        for (role, dev) in data_devices
            .into_iter()
            .map(|d| (DeviceRole::Data, d))
            .chain(log_device.into_iter().map(|d| (DeviceRole::Log, d)))
        {
            let size = dev.info().size_bytes / SECTOR_BYTES * SECTOR_BYTES;
            if size < 4 * LABEL_BYTES + (8 << 20) {
                return Err(PoolError::InvalidConfig(format!(
                    "device {} is too small ({size} bytes; at least 9 MiB)",
                    dev.info().name
                )));
            }
            let (start, end) = data_area(size);
            let ag = if role == DeviceRole::Data { ag_bytes_for(end - start) } else { 0 };
            configs.push(DeviceConfig {
                guid: guid ^ xxhash_rust::xxh3::xxh3_64(&(configs.len() as u64).to_le_bytes()),
                size_bytes: size,
                ag_bytes: ag,
                role: role as u32,
                reserved: 0,
            });
            devices.push(dev);
        }
        let alloc = Allocator::new(ag_layouts(&configs));
        let mut chain_phys = Vec::new();
        let log_index = configs.iter().position(|c| c.role == DeviceRole::Log as u32);
        if let Some(li) = log_index {
            let (start, end) = data_area(configs[li].size_bytes);
            let each = (end - start) / u64::from(chains) / SECTOR_BYTES * SECTOR_BYTES;
            for c in 0..u64::from(chains) {
                chain_phys.push(LogChainPhys {
                    region_offset_bytes: start + c * each,
                    region_bytes: each,
                    device: u16::try_from(li).expect("device index fits"),
                    ..LogChainPhys::default()
                });
            }
        } else {
            let max_chain = (alloc.capacity_bytes() / 16 / u64::from(chains))
                .min(configs[0].ag_bytes / 2)
                / SECTOR_BYTES
                * SECTOR_BYTES;
            let each = options.log_chain_bytes.min(max_chain).max(SECTOR_BYTES * 64);
            let mut hint = crate::allocator::Hint::any(0);
            for _ in 0..chains {
                let extent = alloc.allocate(&mut hint, each).ok_or(PoolError::NoSpace)?;
                hint.group += 1;
                chain_phys.push(LogChainPhys {
                    region_offset_bytes: extent.offset_bytes,
                    region_bytes: extent.len_bytes,
                    device: extent.device,
                    ..LogChainPhys::default()
                });
            }
        }
        let devs = Stripe::new(devices);
        let owner = options.tunables.owner.as_ref();
        let claim =
            crate::owner::claim_if_asked(&devs, &configs, guid, &options.name, owner).await?;
        write_labels(&devs, &configs, guid, &options.name).await?;
        let pool = Pool::assemble(
            guid,
            options.name.clone(),
            options.tunables.clone(),
            options.reserve_percent,
            devs,
            configs,
            alloc,
            Meta { next_id: 1, dirty: true, ..Meta::default() },
            Ddt::default(),
            Zil::new(guid, &chain_phys, options.tunables.shards),
            TxgId::new(1),
            TxgId::new(0),
            1,
        );
        if let Some(claim) = &claim {
            claim.attach(&pool);
        }
        pool.sync_txg().await?;
        Ok(pool)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        guid: u64,
        name: String,
        tunables: PoolTunables,
        reserve_percent: u32,
        devs: Stripe,
        device_configs: Vec<DeviceConfig>,
        alloc: Allocator,
        meta: Meta,
        ddt: Ddt,
        zil: Zil,
        open_txg: TxgId,
        durable_txg: TxgId,
        next_record_sequence: u64,
    ) -> Arc<Pool> {
        let cache = BlockCache::new(tunables.cache_bytes, tunables.shards);
        // A quarter of the writers' reserve (at most 1/32 of the pool) stays in whole slabs
        // for metadata: admission keeps data within the rest.
        let capacity = alloc.capacity_bytes();
        alloc.set_metadata_spare_bytes(
            (capacity / 100 * u64::from(reserve_percent) / 4).min(capacity / 32),
        );
        Arc::new_cyclic(|weak| {
            let txg = TxgState::default();
            txg.data_run_bytes.store(1 << 20, Ordering::Relaxed);
            txg.open_txg.store(open_txg.get(), Ordering::SeqCst);
            txg.durable_txg.store(durable_txg.get(), Ordering::SeqCst);
            txg.next_record_sequence.store(next_record_sequence, Ordering::SeqCst);
            Pool {
                guid,
                name,
                tunables,
                reserve_percent,
                devs,
                device_configs,
                alloc,
                cache,
                meta: Mutex::new(meta),
                ddt,
                heads: Mutex::new(BTreeMap::new()),
                txg,
                zil,
                stats: PoolStats::default(),
                suspended: AtomicBool::new(false),
                reserved_unused_bytes: AtomicU64::new(0),
                self_ref: weak.clone(),
                rewind: Mutex::new(None),
                ownership: OnceLock::new(),
                scrub: Mutex::new(None),
            }
        })
    }

    /// Imports the pool on `devices` (every data device and the log device, in any order):
    /// picks the newest valid uberblock whose metadata loads, loads it, replays the intent
    /// log. When newer uberblocks were passed over, [`Pool::rewind_report`] says which and why.
    ///
    /// # Errors
    /// [`PoolError::IncompatibleVersion`] naming both versions, [`PoolError::NotAPool`],
    /// [`PoolError::DeviceMismatch`], [`PoolError::Corrupt`], or a device error.
    pub async fn import(
        devices: Vec<Arc<dyn BlockDevice>>,
        tunables: PoolTunables,
    ) -> PoolResult<Arc<Pool>> {
        let (guid, name, configs, devs) = open_devices(devices).await?;
        let owner = tunables.owner.as_ref();
        let claim = crate::owner::claim_if_asked(&devs, &configs, guid, &name, owner).await?;
        let shards = tunables.shards;
        let chosen = crate::rewind::load_newest(&devs, &configs, guid).await?;
        let rewind = chosen.rewind_report();
        let (ub, loaded) = (chosen.ub, chosen.loaded);
        let scan = loaded.root.scan;
        // After a rewind the next txg is numbered past every uberblock passed over, so the
        // first commit supersedes them: a later import never goes back to that branch.
        let next_txg = rewind.as_ref().map_or(ub.txg, RewindReport::newest_txg) + 1;
        let pool = Pool::assemble(
            guid,
            name,
            tunables,
            loaded.root.reserve_percent,
            devs,
            configs,
            loaded.alloc,
            loaded.meta,
            loaded.ddt,
            Zil::new(guid, loaded.root.chains(), shards),
            TxgId::new(next_txg),
            TxgId::new(ub.txg),
            loaded.root.next_record_sequence,
        );
        *lock(&pool.rewind) = rewind;
        pool.load_scan_record(&scan);
        if let Some(claim) = &claim {
            claim.attach(&pool);
        }
        pool.open_heads();
        pool.replay_log(TxgId::new(ub.txg)).await?;
        Ok(pool)
    }

    /// The uberblocks import passed over (see [`RewindReport`]), until
    /// [`Pool::clear_rewind_report`]. `None` when the pool was opened at its newest txg.
    #[must_use]
    pub fn rewind_report(&self) -> Option<RewindReport> {
        lock(&self.rewind).clone()
    }

    /// Forgets the rewind report (the operator has seen it); returns it.
    pub fn clear_rewind_report(&self) -> Option<RewindReport> {
        lock(&self.rewind).take()
    }

    /// Builds the in-memory volumes of every head dataset after import.
    fn open_heads(&self) {
        let meta = lock(&self.meta);
        let open_txg = self.open_txg();
        let mut heads = lock(&self.heads);
        for ds in meta.datasets.values().filter(|d| d.kind() == DatasetKind::Volume) {
            heads.insert(ds.phys.id, Arc::new(VolumeShared::new(&ds.phys, &ds.roots, open_txg)));
        }
    }

    /// Commits every change so far, then refuses further changes.
    ///
    /// # Errors
    /// The txg sync's error.
    pub async fn export(&self) -> PoolResult<()> {
        self.sync_txg().await?;
        self.suspended.store(true, Ordering::SeqCst);
        self.txg.kick.wake_all();
        if let Some(ownership) = self.ownership.get() {
            ownership.release().await?;
        }
        Ok(())
    }
}
