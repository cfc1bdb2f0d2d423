//! The pool: devices, allocator, cache, metadata, txg state and intent log, and its life
//! cycle — create, import, export (docs/format.md for what is on disk).
//!
//! State that crosses partitions is kept small and named here: the allocator (one lock per
//! allocation group), the txg coordinator ([`TxgState`] and the sync lock), the metadata lock
//! (datasets, used by metadata operations and the sync only), the intent-log chains (one lock
//! each) and the read cache (one lock per slice). Everything else is per partition.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use bytemuck::Zeroable;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;

use crate::allocator::{AgLayout, Allocator};
use crate::async_lock::{AsyncMutex, WaitList};
use crate::block_pointer::{BlockKind, BlockPointer};
use crate::block_tree::height_for;
use crate::cache::BlockCache;
use crate::dataset::{
    decode_dataset, decode_deadlist, decode_directory, name_field, DatasetKind, DatasetPhys,
    PartitionRoot, DATASET_FLAG_THICK, DATASET_MAGIC,
};
use crate::ddt::Ddt;
use crate::error::{PoolError, PoolResult};
use crate::format::{data_area, label_offset_bytes, LABEL_BYTES, LABEL_COUNT, SECTOR_BYTES};
use crate::label::{DeviceConfig, DeviceRole, Label, LABEL_HEADER_BYTES, MAX_DEVICES};
use crate::meta::{DatasetMeta, DeadList, Meta};
use crate::object::{read_object, StoredObject};
use crate::partition::VolumeLayout;
use crate::pool_root::{LogChainPhys, PoolRootPhys, MAX_LOG_CHAINS};
use crate::rewind::RewindReport;
use crate::space_map::SpaceMap;
use crate::uberblock::{slot_offset_bytes, Uberblock, UBERBLOCK_RING_SLOTS, UBERBLOCK_SLOT_BYTES};
use crate::vdev::{BlockReadError, DeviceSet};
use crate::volume::{PoolVolume, VolumeShared};
use crate::zil::Zil;

/// Default [`PoolTunables::thin_overcommit_factor`].
pub const DEFAULT_THIN_OVERCOMMIT_FACTOR: u64 = 20;

/// Space of a pool as the operator sees it: thick reservations count as used from the
/// moment they are made, so `free_bytes` is what a new volume can really get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolSpace {
    /// Bytes of data space.
    pub capacity_bytes: u64,
    /// Allocated bytes plus the unused part of thick reservations.
    pub used_bytes: u64,
    /// `capacity_bytes - used_bytes`.
    pub free_bytes: u64,
    /// The unused part of thick volumes' reservations (included in `used_bytes`).
    pub reserved_unused_bytes: u64,
    /// Sum of the volumes' sizes (thin and thick).
    pub provisioned_bytes: u64,
}

/// Settings that apply while a pool is imported (not stored on disk).
#[derive(Debug, Clone)]
pub struct PoolTunables {
    /// Read-cache budget, shared by the shards' parts of the cache (one per shard, see
    /// `shards`).
    pub cache_bytes: u64,
    /// Keep data blocks read from the devices in the cache (indirect blocks are always
    /// cached). Off, every data read goes to the device, as with ZFS `primarycache=metadata`.
    pub cache_data_blocks: bool,
    /// Dirty data at which the background syncer starts a txg.
    pub dirty_sync_bytes: u64,
    /// Dirty data at which writers are throttled (they wait for a txg sync).
    pub dirty_limit_bytes: u64,
    /// Longest time between txg syncs when the background syncer runs.
    pub sync_interval: Duration,
    /// Shards that write to the pool: the intent-log chains are divided among them at
    /// runtime (see `zil::Zil`); a shard alone uses every chain.
    pub shards: usize,
    /// Memory budget of the dedup table: past it, volumes stop taking new entries.
    pub dedup_table_bytes: u64,
    /// Lookups a volume makes before its dedup hit rate is judged.
    pub dedup_min_lookups: u64,
    /// Hit rate (percent) below which a volume stops taking new dedup entries.
    pub dedup_min_hit_percent: u64,
    /// Dedup-table log bytes below which a txg never checkpoints the table.
    pub dedup_checkpoint_min_log_bytes: u64,
    /// Dedup-table log objects after which a txg checkpoints whatever their size.
    pub dedup_max_log_objects: usize,
    /// Whole blocks of a durable write (FUA, or write cache off) at least this large are
    /// written to their place in the pool at once and logged by reference; smaller ones are
    /// copied into the log block. Volumes with compression or dedup always log inline.
    pub log_block_ref_min_bytes: u64,
    /// Hand each write (and COMPARE AND WRITE) to the shard that owns its partition. Off
    /// (the default), the shard that received a write applies it under the partition's
    /// mutex; txg syncs run on the owners either way. Off because it measures faster on the
    /// machines measured so far: on 2 vCPUs, in-process 4K random writes on two shards ran at
    /// 586 000–682 000 IOPS handed over against 981 000–993 000 applied in place
    /// (docs/architecture.md).
    pub write_handoff: bool,
    /// How far the volumes' sizes together may exceed the pool's data space: creating or
    /// growing a volume (or cloning one) past `thin_overcommit_factor` × capacity is refused
    /// with the figures. Thick volumes count too (they also reserve their size).
    pub thin_overcommit_factor: u64,
    /// Claim the pool for this importer (exclusive device locks, owner record, heartbeat;
    /// see `owner.rs`). `None` (the default) claims nothing: tests and tools that open a pool
    /// they made themselves.
    pub owner: Option<crate::owner::OwnerClaim>,
}

impl Default for PoolTunables {
    fn default() -> Self {
        PoolTunables {
            cache_bytes: 256 << 20,
            cache_data_blocks: true,
            dirty_sync_bytes: 64 << 20,
            dirty_limit_bytes: 256 << 20,
            sync_interval: Duration::from_secs(5),
            shards: 1,
            dedup_table_bytes: 1 << 30,
            dedup_min_lookups: 1 << 16,
            dedup_min_hit_percent: 2,
            dedup_checkpoint_min_log_bytes: crate::ddt::DDT_MIN_CHECKPOINT_LOG_BYTES,
            dedup_max_log_objects: crate::ddt::DDT_MAX_LOG_OBJECTS,
            log_block_ref_min_bytes: 32 * 1024,
            write_handoff: false,
            thin_overcommit_factor: DEFAULT_THIN_OVERCOMMIT_FACTOR,
            owner: None,
        }
    }
}

/// Settings fixed when a pool is created.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Pool name.
    pub name: String,
    /// Percent of the data space kept free (over-provisioning reserve).
    pub reserve_percent: u32,
    /// Intent-log chains (one per shard is natural).
    pub log_chains: u32,
    /// Size of each chain's region when the log lives in the pool.
    pub log_chain_bytes: u64,
    /// Pool identity; `None` derives one from the clock (tests pass a fixed value).
    pub guid: Option<u64>,
    /// Runtime settings.
    pub tunables: PoolTunables,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            name: "pool".into(),
            reserve_percent: 10,
            log_chains: 2,
            log_chain_bytes: 64 << 20,
            guid: None,
            tunables: PoolTunables::default(),
        }
    }
}

/// Settings of a new volume.
#[derive(Debug, Clone)]
pub struct VolumeOptions {
    /// Size in bytes (a multiple of the logical block size).
    pub capacity_bytes: u64,
    /// Logical block size, 512 or 4096.
    pub logical_block_bytes: u32,
    /// Data block size, 4 KiB to 128 KiB.
    pub volblock_bytes: u32,
    /// Partitions (fixed for the volume's life).
    pub partition_count: u32,
    /// Stripe size of the partitioning.
    pub stripe_bytes: u32,
    /// Reserve the whole size at creation.
    pub thick: bool,
    /// `compression` property (changeable later with [`Pool::set_compression`]).
    pub compression: crate::compress::Compression,
    /// `dedup` property (changeable later with [`Pool::set_dedup`]).
    pub dedup: crate::ddt::DedupMode,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            capacity_bytes: 1 << 30,
            logical_block_bytes: 512,
            volblock_bytes: 4096,
            partition_count: 64,
            stripe_bytes: 1 << 20,
            thick: false,
            compression: crate::compress::Compression::default(),
            dedup: crate::ddt::DedupMode::default(),
        }
    }
}

/// Counters of the pool.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Txgs committed.
    pub txgs: AtomicU64,
    /// Data blocks written by txg syncs.
    pub data_blocks_written: AtomicU64,
    /// Intent-log blocks written.
    pub log_blocks_written: AtomicU64,
    /// Intent-log records written.
    pub log_records_written: AtomicU64,
    /// Intent-log commits (device flushes of the log).
    pub log_commits: AtomicU64,
    /// Records replayed at import.
    pub log_records_replayed: AtomicU64,
    /// Of those, records that pointed at a block written in place ([`crate::zil::RECORD_WRITE_BLOCK`]).
    pub log_block_refs_replayed: AtomicU64,
    /// Durable writes of whole blocks written in place and logged by reference.
    pub log_block_refs_written: AtomicU64,
    /// Of those, blocks a txg sync took into their tree where they lay (not written again).
    pub log_block_refs_adopted: AtomicU64,
    /// Chunks of large directory and deadlist objects a txg sync kept from the object's
    /// previous version instead of writing them again (only what changed is written).
    pub metadata_chunks_kept: AtomicU64,
    /// Writers that waited for a txg because dirty data passed its limit.
    pub throttled_writes: AtomicU64,
    /// Writes refused for lack of space.
    pub no_space_errors: AtomicU64,
    /// Parts of txg syncs handed to the shard that owns their partitions.
    pub shard_syncs: AtomicU64,
    /// Txg syncs running now (0 or 1); read by the crash simulator to place its power cuts.
    pub txg_syncs_in_progress: AtomicU64,
    /// Intent-log batches being written now (device writes up to the log flush); read by the
    /// crash simulator to place its power cuts.
    pub log_writes_in_progress: AtomicU64,
}

/// Counts one activity in a [`PoolStats`] gauge while it lives.
pub(crate) struct InProgress<'a>(&'a AtomicU64);

impl<'a> InProgress<'a> {
    pub(crate) fn new(gauge: &'a AtomicU64) -> InProgress<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        InProgress(gauge)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The txg coordinator's shared state.
#[derive(Default)]
pub struct TxgState {
    /// Txg receiving new changes.
    pub open_txg: AtomicU64,
    /// Newest txg whose uberblock is durable.
    pub durable_txg: AtomicU64,
    /// Held by the txg sync.
    pub sync_lock: AsyncMutex,
    /// Data bytes in dirty sets not yet durable.
    pub dirty_bytes: AtomicU64,
    /// Newest txg holding a completed write that the intent log does not cover.
    pub async_label: AtomicU64,
    /// Woken after every txg commit.
    pub synced: WaitList,
    /// Woken when dirty data passes the sync threshold, and at export.
    pub kick: WaitList,
    /// Next intent-log record sequence number.
    pub next_record_sequence: AtomicU64,
    /// Set when an intent-log chain is half full: the background syncer then commits a txg
    /// (which lets the chain be trimmed) before writers find the chain full.
    pub sync_requested: AtomicBool,
    /// Shortest data run the last sync looked for (see `txg/mod.rs`).
    pub data_run_bytes: AtomicU64,
    /// The sync's phase ([`crate::txg::TxgPhase`] as a byte).
    pub phase: std::sync::atomic::AtomicU8,
}

/// A ferrite pool.
pub struct Pool {
    pub(crate) guid: u64,
    pub(crate) name: String,
    pub(crate) tunables: PoolTunables,
    pub(crate) reserve_percent: u32,
    pub(crate) devs: DeviceSet,
    pub(crate) device_configs: Vec<DeviceConfig>,
    pub(crate) alloc: Allocator,
    pub(crate) cache: BlockCache,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) ddt: Ddt,
    pub(crate) heads: Mutex<BTreeMap<u64, Arc<VolumeShared>>>,
    pub(crate) txg: TxgState,
    pub(crate) zil: Zil,
    /// Counters.
    pub stats: PoolStats,
    pub(crate) suspended: AtomicBool,
    pub(crate) reserved_unused_bytes: AtomicU64,
    pub(crate) self_ref: Weak<Pool>,
    /// Set by an import that passed over newer uberblocks.
    pub(crate) rewind: Mutex<Option<RewindReport>>,
    /// This importer's claim on the pool, when it took one (see `owner.rs`).
    pub(crate) ownership: OnceLock<Arc<crate::owner::Ownership>>,
}

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

fn ag_layouts(configs: &[DeviceConfig]) -> Vec<AgLayout> {
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let devs = DeviceSet::new(devices);
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
            1,
            0,
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
        devs: DeviceSet,
        device_configs: Vec<DeviceConfig>,
        alloc: Allocator,
        meta: Meta,
        ddt: Ddt,
        zil: Zil,
        open_txg: u64,
        durable_txg: u64,
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
            txg.open_txg.store(open_txg, Ordering::SeqCst);
            txg.durable_txg.store(durable_txg, Ordering::SeqCst);
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
            next_txg,
            ub.txg,
            loaded.root.next_record_sequence,
        );
        *lock(&pool.rewind) = rewind;
        if let Some(claim) = &claim {
            claim.attach(&pool);
        }
        pool.open_heads();
        pool.replay_log(ub.txg).await?;
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

    pub(crate) async fn load(
        devs: &DeviceSet,
        configs: &[DeviceConfig],
        ub: &Uberblock,
    ) -> PoolResult<Loaded> {
        let (bytes, root_object) =
            read_object(devs, &ub.root).await.map_err(corrupt("pool root", &ub.root))?;
        let root = PoolRootPhys::decode(&bytes)?;
        let alloc = Allocator::new(ag_layouts(configs));
        if root.ag_count as usize != alloc.group_count() {
            return Err(PoolError::Corrupt("allocation group count".into()));
        }
        let (table, table_object) = read_object(devs, &root.space_map_table)
            .await
            .map_err(corrupt("space map table", &root.space_map_table))?;
        let pointers = crate::dataset::decode_deadlist(&table)?;
        if pointers.len() != alloc.group_count() {
            return Err(PoolError::Corrupt("space map table length".into()));
        }
        for (i, bp) in pointers.iter().enumerate() {
            let units = alloc.layout(i).len_bytes / SECTOR_BYTES;
            let (image, stored) = read_object(devs, bp)
                .await
                .map_err(corrupt(&format!("space map of allocation group {i}"), bp))?;
            let map = SpaceMap::decode(units, &image)
                .ok_or_else(|| PoolError::Corrupt(format!("space map {i}")))?;
            alloc.load_group(i, map, *bp, stored.extents);
        }
        let (dir_bytes, directory) = read_object(devs, &root.directory)
            .await
            .map_err(corrupt("directory", &root.directory))?;
        let entries = decode_directory(&dir_bytes)?;
        let mut meta = Meta {
            next_id: root.next_dataset_id,
            directory,
            directory_bytes: dir_bytes,
            space_map_table: table_object,
            root: root_object,
            ..Meta::default()
        };
        // Datasets load LOAD_WINDOW at a time: a pool with tens of thousands of snapshots
        // waits for the device's latency once per window, not once per dataset.
        for window in entries.chunks(LOAD_WINDOW) {
            let loads = window.iter().map(|entry| load_dataset(devs, entry)).collect();
            for loaded in crate::join::join_all(loads).await {
                meta.insert(loaded?);
            }
        }
        meta.set_directory_slots(&entries);
        let ddt = Ddt::default();
        if !root.ddt_index.is_hole() {
            let (bytes, index_object) = read_object(devs, &root.ddt_index)
                .await
                .map_err(corrupt("dedup index", &root.ddt_index))?;
            let pointers = decode_deadlist(&bytes)?;
            if pointers.len() < crate::ddt::DDT_PARTITIONS {
                return Err(PoolError::Corrupt("dedup index length".into()));
            }
            let (checkpoints, log) = pointers.split_at(crate::ddt::DDT_PARTITIONS);
            for (i, bp) in checkpoints.iter().enumerate().filter(|(_, bp)| !bp.is_hole()) {
                let (bytes, stored) =
                    read_object(devs, bp).await.map_err(corrupt("dedup table", bp))?;
                ddt.load_part(i, &bytes, stored)?;
            }
            for bp in log {
                let (bytes, stored) =
                    read_object(devs, bp).await.map_err(corrupt("dedup log", bp))?;
                ddt.replay_log(&bytes, stored)?;
            }
            ddt.set_index(index_object);
        }
        Ok(Loaded { root, alloc, meta, ddt })
    }

    /// Builds the in-memory volumes of every head dataset after import.
    fn open_heads(&self) {
        let meta = lock(&self.meta);
        let open_txg = self.txg.open_txg.load(Ordering::SeqCst);
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

    /// Pool name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pool identity.
    #[must_use]
    pub fn guid(&self) -> u64 {
        self.guid
    }

    /// Newest durable txg.
    #[must_use]
    pub fn durable_txg(&self) -> u64 {
        self.txg.durable_txg.load(Ordering::SeqCst)
    }

    /// Read-cache hits, misses and bytes used (each shard's part locked in turn).
    #[must_use]
    pub fn cache_stats(&self) -> crate::cache::CacheStats {
        self.cache.stats()
    }

    /// Blocks that failed their checksum on read.
    #[must_use]
    pub fn checksum_errors(&self) -> u64 {
        self.devs.stats.checksum_errors.load(Ordering::Relaxed)
    }

    /// The read cache.
    #[must_use]
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Bytes of data space.
    #[must_use]
    pub fn capacity_bytes(&self) -> u64 {
        self.alloc.capacity_bytes()
    }

    /// Bytes free now (frees waiting for their txg not counted).
    #[must_use]
    pub fn free_bytes(&self) -> u64 {
        self.alloc.free_bytes()
    }

    pub(crate) fn arc(&self) -> Arc<Pool> {
        self.self_ref.upgrade().expect("a pool is only used through its Arc")
    }

    /// True once a txg sync failed (or the pool was exported): it accepts no more changes.
    #[must_use]
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
    }

    pub(crate) fn check_live(&self) -> PoolResult<()> {
        if self.suspended.load(Ordering::SeqCst) {
            Err(PoolError::Suspended)
        } else {
            Ok(())
        }
    }

    /// Creates a volume and commits it.
    ///
    /// # Errors
    /// [`PoolError::AlreadyExists`], [`PoolError::InvalidConfig`] for a bad layout,
    /// [`PoolError::NoSpace`] when a thick volume's reservation does not fit.
    pub async fn create_volume(
        &self,
        name: &str,
        options: &VolumeOptions,
    ) -> PoolResult<PoolVolume> {
        self.check_live()?;
        let layout = VolumeLayout {
            logical_block_bytes: options.logical_block_bytes,
            volblock_bytes: options.volblock_bytes,
            stripe_bytes: options.stripe_bytes,
            partition_count: options.partition_count,
            capacity_bytes: options.capacity_bytes,
        };
        layout.check().map_err(PoolError::InvalidConfig)?;
        let field = name_field(name)?;
        if name.contains('@') {
            return Err(PoolError::InvalidConfig("volume names cannot contain '@'".into()));
        }
        let shared = {
            let mut meta = lock(&self.meta);
            if meta.find(name).is_some() {
                return Err(PoolError::AlreadyExists(name.into()));
            }
            if options.thick && self.unreserved_bytes(&meta) < options.capacity_bytes {
                return Err(PoolError::NoSpace);
            }
            self.check_overcommit(&meta, name, options.capacity_bytes)?;
            let id = meta.next_id;
            meta.next_id += 1;
            let height = height_for(layout.blocks_per_partition());
            let phys = DatasetPhys {
                magic: DATASET_MAGIC,
                id,
                kind: DatasetKind::Volume as u32,
                partition_count: layout.partition_count,
                volblock_bytes: layout.volblock_bytes,
                logical_block_bytes: layout.logical_block_bytes,
                stripe_bytes: u64::from(layout.stripe_bytes),
                capacity_bytes: layout.capacity_bytes,
                creation_txg: self.txg.open_txg.load(Ordering::SeqCst),
                reservation_bytes: if options.thick { options.capacity_bytes } else { 0 },
                flags: if options.thick { DATASET_FLAG_THICK } else { 0 },
                compression: options.compression as u8,
                dedup: options.dedup as u8,
                name: field,
                ..Zeroable::zeroed()
            };
            let roots = vec![
                PartitionRoot { height: u64::from(height), ..Zeroable::zeroed() };
                layout.partition_count as usize
            ];
            let shared = Arc::new(VolumeShared::new(
                &phys,
                &roots,
                self.txg.open_txg.load(Ordering::SeqCst),
            ));
            meta.insert(DatasetMeta {
                phys,
                roots: Vec::new(),
                object: StoredObject::none(),
                deadlist: DeadList::default(),
                deadlist_object: StoredObject::none(),
                dirty: true,
                deadlist_dirty: false,
            });
            meta.dirty = true;
            lock(&self.heads).insert(id, Arc::clone(&shared));
            shared
        };
        self.sync_txg().await?;
        Ok(PoolVolume::new(self.arc(), shared))
    }

    /// Opens volume `name`.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn open_volume(&self, name: &str) -> PoolResult<PoolVolume> {
        self.check_live()?;
        let meta = lock(&self.meta);
        let ds = meta.find(name).ok_or_else(|| PoolError::NotFound(name.into()))?;
        if ds.kind() != DatasetKind::Volume {
            return Err(PoolError::NotFound(name.into()));
        }
        let shared = lock(&self.heads)
            .get(&ds.phys.id)
            .cloned()
            .ok_or_else(|| PoolError::NotFound(name.into()))?;
        Ok(PoolVolume::new(self.arc(), shared))
    }

    /// Names of every dataset (volumes, and snapshots as `volume@snapshot`).
    #[must_use]
    pub fn list(&self) -> Vec<String> {
        lock(&self.meta).datasets.values().map(DatasetMeta::name).collect()
    }

    /// Grows volume `name` to `capacity_bytes`.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::InvalidConfig`] when shrinking.
    pub async fn grow_volume(&self, name: &str, capacity_bytes: u64) -> PoolResult<()> {
        self.check_live()?;
        {
            let mut meta = lock(&self.meta);
            let unreserved = self.unreserved_bytes(&meta);
            if let Some(current) = meta.find(name).filter(|d| d.kind() == DatasetKind::Volume) {
                let extra = capacity_bytes.saturating_sub(current.phys.capacity_bytes);
                self.check_overcommit(&meta, name, extra)?;
            }
            let ds = meta
                .datasets
                .values_mut()
                .find(|d| d.name() == name && d.kind() == DatasetKind::Volume)
                .ok_or_else(|| PoolError::NotFound(name.into()))?;
            let mut layout = ds.phys.layout();
            if capacity_bytes < layout.capacity_bytes
                || !capacity_bytes.is_multiple_of(u64::from(layout.logical_block_bytes))
            {
                return Err(PoolError::InvalidConfig("volumes only grow, by whole blocks".into()));
            }
            let extra = capacity_bytes - layout.capacity_bytes;
            if ds.phys.flags & DATASET_FLAG_THICK != 0 {
                if unreserved < extra {
                    return Err(PoolError::NoSpace);
                }
                ds.phys.reservation_bytes = capacity_bytes;
            }
            layout.capacity_bytes = capacity_bytes;
            ds.phys.capacity_bytes = capacity_bytes;
            ds.dirty = true;
            let id = ds.phys.id;
            meta.dirty = true;
            if let Some(shared) = lock(&self.heads).get(&id) {
                shared.grow(&layout);
            }
        }
        self.sync_txg().await?;
        Ok(())
    }

    /// Sum of the sizes of the pool's volumes.
    pub(crate) fn provisioned_bytes(meta: &Meta) -> u64 {
        meta.datasets
            .values()
            .filter(|d| d.kind() == DatasetKind::Volume)
            .map(|d| d.phys.capacity_bytes)
            .sum()
    }

    /// Refuses adding `extra_bytes` of volume size (for volume `name`) when the volumes
    /// together would exceed [`PoolTunables::thin_overcommit_factor`] × the pool's capacity.
    pub(crate) fn check_overcommit(
        &self,
        meta: &Meta,
        name: &str,
        extra_bytes: u64,
    ) -> PoolResult<()> {
        let factor = self.tunables.thin_overcommit_factor;
        let capacity = self.alloc.capacity_bytes();
        let limit = capacity.saturating_mul(factor);
        let after = Self::provisioned_bytes(meta).saturating_add(extra_bytes);
        if after > limit {
            return Err(PoolError::InvalidConfig(format!(
                "volume {name}: volumes would total {after} bytes, over the overcommit limit of \
                 {factor} x the pool's {capacity} bytes = {limit} bytes (thin_overcommit_factor)"
            )));
        }
        Ok(())
    }

    /// Whole free 128 KiB slabs of the data devices now (see
    /// [`Allocator::set_metadata_spare_bytes`]).
    #[must_use]
    pub fn free_slabs(&self) -> u64 {
        self.alloc.free_slabs()
    }

    /// Free slabs kept for metadata: data takes none of them while others are free.
    #[must_use]
    pub fn spare_slabs(&self) -> u64 {
        self.alloc.spare_slabs()
    }

    /// Capacity, used and free space with thick reservations counted as used, and the
    /// volumes' total size.
    #[must_use]
    pub fn space_summary(&self) -> PoolSpace {
        let reserved_unused_bytes = self.unused_reservation_bytes();
        let capacity_bytes = self.alloc.capacity_bytes();
        let free_bytes = self.alloc.free_bytes().saturating_sub(reserved_unused_bytes);
        PoolSpace {
            capacity_bytes,
            used_bytes: capacity_bytes - free_bytes.min(capacity_bytes),
            free_bytes,
            reserved_unused_bytes,
            provisioned_bytes: Self::provisioned_bytes(&lock(&self.meta)),
        }
    }

    /// Bytes writers may still dirty: free space minus the reserve, dirty data and unused
    /// reservations of thick volumes.
    pub(crate) fn unreserved_bytes(&self, meta: &Meta) -> u64 {
        let reserve = self.alloc.capacity_bytes() / 100 * u64::from(self.reserve_percent);
        let reservations: u64 = meta
            .datasets
            .values()
            .filter(|d| d.kind() == DatasetKind::Volume && d.phys.reservation_bytes > 0)
            .map(|d| {
                let used = lock(&self.heads).get(&d.phys.id).map_or(0, |h| h.referenced_bytes());
                d.phys.reservation_bytes.saturating_sub(used)
            })
            .sum();
        self.alloc
            .free_bytes()
            .saturating_sub(reserve)
            .saturating_sub(self.txg.dirty_bytes.load(Ordering::Relaxed))
            .saturating_sub(reservations)
    }
}

/// Dataset objects read at once during import.
const LOAD_WINDOW: usize = 64;

/// Reads one dataset object of the directory, and its deadlist.
/// Maps a failed metadata read to an error naming the object and where its block lies (for
/// the import error and a rewind report).
fn corrupt(what: &str, bp: &BlockPointer) -> impl FnOnce(BlockReadError) -> PoolError {
    let what = format!(
        "{what} (device {} offset {}, written in txg {})",
        bp.device, bp.offset_bytes, bp.birth_txg
    );
    move |e| match e {
        BlockReadError::Io(io) => PoolError::Io(io),
        BlockReadError::Checksum => PoolError::Corrupt(format!("{what} failed its checksum")),
    }
}

async fn load_dataset(
    devs: &DeviceSet,
    entry: &crate::dataset::DirectoryEntry,
) -> PoolResult<DatasetMeta> {
    let dataset = format!("dataset {}", crate::format::decode_name(&entry.name));
    let (bytes, object) =
        read_object(devs, &entry.object).await.map_err(corrupt(&dataset, &entry.object))?;
    let (phys, roots) = decode_dataset(&bytes)?;
    let (deadlist, deadlist_object) = if phys.deadlist.is_hole() {
        (DeadList::default(), StoredObject::none())
    } else {
        let (bytes, stored) = read_object(devs, &phys.deadlist)
            .await
            .map_err(corrupt(&format!("deadlist of {dataset}"), &phys.deadlist))?;
        (DeadList::loaded(decode_deadlist(&bytes)?, phys.deadlist), stored)
    };
    Ok(DatasetMeta {
        phys,
        roots,
        object,
        deadlist,
        deadlist_object,
        dirty: false,
        deadlist_dirty: false,
    })
}

/// A pool's durable state as loaded from an uberblock.
pub(crate) struct Loaded {
    pub(crate) root: PoolRootPhys,
    pub(crate) alloc: Allocator,
    pub(crate) meta: Meta,
    pub(crate) ddt: Ddt,
}

/// Reads the labels of `devices`, checks they form one pool and orders them by index.
pub(crate) async fn open_devices(
    devices: Vec<Arc<dyn BlockDevice>>,
) -> PoolResult<(u64, String, Vec<DeviceConfig>, DeviceSet)> {
    let mut labels = Vec::new();
    for dev in &devices {
        labels.push(read_label(dev.as_ref()).await?);
    }
    let first = labels.first().ok_or_else(|| PoolError::NotAPool("no devices".into()))?;
    let guid = first.pool_guid;
    let configs = first.device_list().to_vec();
    if configs.len() != devices.len() {
        return Err(PoolError::DeviceMismatch(format!(
            "pool has {} devices, {} given",
            configs.len(),
            devices.len()
        )));
    }
    let mut ordered: Vec<Option<Arc<dyn BlockDevice>>> = vec![None; configs.len()];
    for (label, dev) in labels.iter().zip(devices) {
        let index = label.device_index as usize;
        if label.pool_guid != guid
            || index >= configs.len()
            || configs[index].guid != label.device_guid
            || ordered[index].is_some()
        {
            return Err(PoolError::DeviceMismatch(format!(
                "device {} does not belong to pool {guid:#x}",
                dev.info().name
            )));
        }
        ordered[index] = Some(dev);
    }
    let name = crate::format::decode_name(&first.pool_name);
    let devs =
        DeviceSet::new(ordered.into_iter().map(|d| d.expect("every index filled")).collect());
    Ok((guid, name, configs, devs))
}

async fn write_labels(
    devs: &DeviceSet,
    configs: &[DeviceConfig],
    guid: u64,
    name: &str,
) -> PoolResult<()> {
    let pool_name = crate::format::encode_name::<64>(name).ok_or_else(|| {
        PoolError::InvalidConfig(format!("pool name {name:?} is over 64 bytes, the label's limit"))
    })?;
    for (index, config) in configs.iter().enumerate() {
        for l in 0..LABEL_COUNT {
            let mut label = Label::new();
            label.label_index = u32::try_from(l).expect("4 labels");
            label.pool_guid = guid;
            label.device_guid = config.guid;
            label.device_index = u32::try_from(index).expect("32 devices");
            label.device_count = u32::try_from(configs.len()).expect("32 devices");
            label.device_role = config.role;
            label.device_bytes = config.size_bytes;
            label.ag_bytes = config.ag_bytes;
            label.create_txg = 1;
            label.pool_name = pool_name;
            label.devices[..configs.len()].copy_from_slice(configs);
            // Header plus an empty uberblock ring, in one write.
            let ring_end = slot_offset_bytes(UBERBLOCK_RING_SLOTS - 1) + UBERBLOCK_SLOT_BYTES;
            let mut image = IoBuf::zeroed(usize::try_from(ring_end).expect("label fits"));
            image[..LABEL_HEADER_BYTES].copy_from_slice(&label.encode());
            let offset = label_offset_bytes(l, config.size_bytes);
            let dev = u16::try_from(index).expect("32 devices");
            let (res, _) = devs.write(dev, offset, image).await;
            res?;
        }
    }
    devs.flush_all().await?;
    Ok(())
}

async fn read_label(dev: &dyn BlockDevice) -> PoolResult<Label> {
    let size = dev.info().size_bytes;
    let mut err = PoolError::NotAPool(format!("no valid label on {}", dev.info().name));
    for l in 0..LABEL_COUNT {
        if size < 4 * LABEL_BYTES {
            break;
        }
        let (res, buf) =
            dev.read(IoBuf::zeroed(LABEL_HEADER_BYTES), label_offset_bytes(l, size)).await;
        if res.is_err() {
            continue;
        }
        match Label::decode(&buf) {
            Ok(label) => return Ok(label),
            Err(e @ PoolError::IncompatibleVersion { .. }) => err = e,
            Err(_) => {}
        }
    }
    Err(err)
}

/// Every valid uberblock of the pool, newest first (duplicates across labels removed).
pub(crate) async fn read_uberblocks(
    devs: &DeviceSet,
    configs: &[DeviceConfig],
    guid: u64,
) -> PoolResult<Vec<Uberblock>> {
    let mut found: BTreeMap<u64, Uberblock> = BTreeMap::new();
    let mut version_err = None;
    for (index, config) in configs.iter().enumerate() {
        let dev = u16::try_from(index).expect("32 devices");
        for l in 0..LABEL_COUNT {
            let base = label_offset_bytes(l, config.size_bytes);
            let ring_len =
                usize::try_from(UBERBLOCK_RING_SLOTS * UBERBLOCK_SLOT_BYTES).expect("fits");
            let Ok(ring) = devs.read(dev, base + slot_offset_bytes(0), ring_len).await else {
                continue;
            };
            for slot in ring.chunks_exact(UBERBLOCK_SLOT_BYTES as usize) {
                match Uberblock::decode_slot(slot) {
                    Ok(Some(ub)) if ub.pool_guid == guid => {
                        found.entry(ub.txg).or_insert(ub);
                    }
                    Ok(_) => {}
                    Err(e) => version_err = Some(e),
                }
            }
        }
    }
    if found.is_empty() {
        return Err(version_err.unwrap_or_else(|| PoolError::NotAPool("no valid uberblock".into())));
    }
    Ok(found.into_values().rev().collect())
}

/// Writes the uberblock of `ub.txg` into its ring slot of every label of every device.
pub(crate) async fn write_uberblocks(
    devs: &DeviceSet,
    configs: &[DeviceConfig],
    ub: Uberblock,
) -> PoolResult<()> {
    let slot = ub.encode_slot();
    let mut writes = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        let dev = u16::try_from(index).expect("32 devices");
        for l in 0..LABEL_COUNT {
            let offset = label_offset_bytes(l, config.size_bytes) + slot_offset_bytes(ub.txg);
            writes.push(devs.write(dev, offset, IoBuf::from_slice(&slot)));
        }
    }
    for (res, _) in crate::join::join_all(writes).await {
        res?;
    }
    Ok(())
}

/// Space used by the kind of block a pointer refers to (for inspect and tests).
#[must_use]
pub fn block_kind_name(bp: &BlockPointer) -> &'static str {
    match bp.block_kind() {
        Some(BlockKind::Data) => "data",
        Some(BlockKind::Indirect) => "indirect",
        Some(BlockKind::PoolRoot) => "pool root",
        Some(BlockKind::Directory) => "directory",
        Some(BlockKind::Dataset) => "dataset",
        Some(BlockKind::SpaceMapTable) => "space map table",
        Some(BlockKind::SpaceMap) => "space map",
        Some(BlockKind::FreeList) => "free list",
        Some(BlockKind::DeadList) => "deadlist",
        Some(BlockKind::ChunkIndex) => "chunk index",
        Some(BlockKind::DedupTable) => "dedup table",
        Some(BlockKind::DedupIndex) => "dedup index",
        Some(BlockKind::DedupLog) => "dedup log",
        Some(BlockKind::None) | None => "unknown",
    }
}
