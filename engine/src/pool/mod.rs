//! The pool: devices, allocator, cache, metadata, txg state and intent log, and its life
//! cycle — create, import, export (docs/format.md for what is on disk).
//!
//! State that crosses partitions is kept small and named here: the allocator (one lock per
//! allocation group), the txg coordinator ([`TxgState`] and the sync lock), the metadata lock
//! (datasets, used by metadata operations and the sync only), the intent-log chains (one lock
//! each) and the read cache (one lock per slice). Everything else is per partition.
//!
//! This module holds the pool's types and its accessors; the life cycle (create, import,
//! export) is in `lifecycle.rs`, loading a txg's metadata in `load.rs`, device labels and
//! uberblock rings in `labels.rs`, volume create/open/grow in `volumes.rs`, and the space
//! figures and the overcommit check in `space.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use crate::allocator::Allocator;
use crate::async_lock::{AsyncMutex, WaitList};
use crate::block_pointer::{BlockKind, BlockPointer};
use crate::cache::BlockCache;
use crate::ddt::Ddt;
use crate::error::{PoolError, PoolResult};
use crate::label::DeviceConfig;
use crate::meta::Meta;
use crate::rewind::RewindReport;
use crate::units::TxgId;
use crate::vdev::Stripe;
use crate::volume::VolumeShared;
use crate::zil::Zil;

pub use health::{DeviceHealth, GroupHealth};

mod health;
mod labels;
mod lifecycle;
mod load;
mod space;
mod volumes;

pub(crate) use labels::{open_devices, read_uberblocks, write_uberblocks};
pub(crate) use load::Loaded;
pub(crate) use volumes::volume_name_field;

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
    /// Bandwidth a scrub may take, bytes per second (0: unlimited).
    pub scrub_rate_bytes_per_s: u64,
    /// Time from the end of one scrub to the start of the next that
    /// [`Pool::start_scrub_service`] schedules (`None`: none scheduled).
    pub scrub_interval: Option<Duration>,
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
            scrub_rate_bytes_per_s: crate::scrub::DEFAULT_SCRUB_RATE,
            scrub_interval: Some(crate::scrub::DEFAULT_SCRUB_INTERVAL),
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
    /// The vdev tree: every device I/O goes through it (`vdev/`).
    pub(crate) devs: Stripe,
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
    /// The current or last scrub (see `scrub/`).
    pub(crate) scrub: Mutex<Option<Arc<crate::scrub::Scrub>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
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
    pub fn durable_txg(&self) -> TxgId {
        TxgId::new(self.txg.durable_txg.load(Ordering::SeqCst))
    }

    /// The txg receiving new changes.
    pub(crate) fn open_txg(&self) -> TxgId {
        TxgId::new(self.txg.open_txg.load(Ordering::SeqCst))
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
