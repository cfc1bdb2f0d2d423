//! Transaction groups: the coordinator that turns dirty partitions into a new, durable pool
//! state (docs/format.md §Txg sync).
//!
//! One sync runs at a time (the sync lock). Its coordinator *quiesces* (bumps the open txg and
//! freezes every partition's open dirty set, under each partition's lock), then hands every
//! shard the frozen partitions it owns (`crate::route`): each shard's syncer writes its data
//! blocks copy-on-write at places allocated from its own allocation groups, in large coalesced
//! writes, and rewrites its touched indirect blocks bottom-up. The coordinator then writes the
//! dataset objects, the directory and the changed space maps,
//! then the pool root; flushes every device; writes the uberblock into every label's ring and
//! flushes again. Only then are the new roots installed in memory, the txg's frees released to
//! the allocator and the intent log trimmed.
//!
//! Syncs are started by [`Pool::sync_txg`] (tests, the simulator, metadata operations), by a
//! writer throttled past the dirty limit, by `flush` after async writes, and by the background
//! syncer ([`Pool::start_syncer`]) on an interval, past the dirty threshold, or when an
//! intent-log chain is half full.
//!
//! The sync is a sequence of [`TxgPhase`]s: this module quiesces and coordinates, and each
//! phase has its own module (`data.rs`, `metadata.rs`, `space.rs`); write admission and the
//! throttle live in `admission.rs`.
//!
//! With `FERRITE_TXG_TRACE` set in the environment every sync prints the time of its phases
//! (tree updates, data writes, metadata, space maps and root), its device writes and the
//! shape of the free space its data was placed in. A failed sync is always logged
//! with its phase, and suspends the pool.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use drivers::buffer::SharedBuf;

use crate::block_pointer::{BlockKind, BlockPointer, Extent, CHECKSUM_XXH3_128};
use crate::block_tree::{load_indirect, prefetch_paths, PendingWrite, TreeUpdate};
use crate::compress::{compress_block, Compression, COMPRESSION_LZ4, COMPRESSION_OFF};
use crate::copy_stats::{self, CopyPath};
use crate::dataset::{encode_dataset, DatasetKind, DirectoryEntry, PartitionRoot};
use crate::ddt::{
    bp_fingerprint, fingerprint, is_dedup, mark_dedup, DedupMode, Fingerprint,
    DEDUP_STOPPED_BUDGET, DEDUP_STOPPED_HIT_RATE,
};
use crate::error::{PoolError, PoolResult};
use crate::format::{checksum, MAX_BLOCK_BYTES, SECTOR_BYTES};
use crate::meta::{DatasetMeta, DeadList, Meta, MetaOp};
use crate::object::{write_object, write_object_from, ObjectPlan, StoredObject};
use crate::partition::{DirtyBlock, DirtySet};
use crate::pool::{lock, write_uberblocks, Pool};
use crate::pool_root::{PoolRootPhys, POOL_ROOT_MAGIC};
use crate::uberblock::Uberblock;
use crate::units::{PartitionId, ShardId, TxgId};
use crate::vdev::BlockReadError;
use crate::volume::VolumeShared;

/// Largest coalesced device write of a sync.
mod admission;
mod data;
mod metadata;
mod space;

pub(crate) use metadata::blocks_born_after;

/// Where the txg machine is. The open txg takes writes until a coordinator quiesces it; the
/// sync then runs its phases in this order (data in `data.rs`, metadata in `metadata.rs`,
/// space maps, root and uberblock in `space.rs`) and the txg is synced once its uberblock is
/// on every device; the next txg is open from the moment of the quiesce. A failed phase
/// suspends the pool, which then stays in that phase, and the error log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TxgPhase {
    /// No sync runs: the open txg takes writes.
    Open = 0,
    /// The open txg's dirty sets are being frozen.
    Quiescing = 1,
    /// Data and indirect blocks are being written, each shard its own partitions.
    SyncingData = 2,
    /// Kills, operations, deadlists, dataset objects and the directory.
    SyncingMetadata = 3,
    /// Dedup table, space maps, pool root, flushes and the uberblock.
    SyncingSpace = 4,
    /// The uberblock is durable; the new state is being installed in memory.
    Synced = 5,
}

impl TxgPhase {
    const ALL: [TxgPhase; 6] = [
        TxgPhase::Open,
        TxgPhase::Quiescing,
        TxgPhase::SyncingData,
        TxgPhase::SyncingMetadata,
        TxgPhase::SyncingSpace,
        TxgPhase::Synced,
    ];

    /// The phase a sync may enter from this one.
    #[must_use]
    pub fn next(self) -> TxgPhase {
        TxgPhase::ALL[(self as usize + 1) % TxgPhase::ALL.len()]
    }

    /// Lower-case name, as logs and errors print it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            TxgPhase::Open => "open",
            TxgPhase::Quiescing => "quiescing",
            TxgPhase::SyncingData => "syncing data",
            TxgPhase::SyncingMetadata => "syncing metadata",
            TxgPhase::SyncingSpace => "syncing space maps and root",
            TxgPhase::Synced => "synced",
        }
    }
}

const MAX_WRITE_BYTES: u64 = 1 << 20;
/// Device writes a sync keeps in flight.
const WRITE_CONCURRENCY: usize = 32;
/// Most buffers in one vectored write (well under IOV_MAX).
const MAX_RUN_SEGMENTS: usize = 512;

fn read_err(e: BlockReadError) -> PoolError {
    match e {
        BlockReadError::Io(io) => PoolError::Io(io),
        BlockReadError::Checksum => {
            PoolError::Corrupt("block failed its checksum during sync".into())
        }
    }
}

/// The shortest free run a sync still looks for when it places data blocks. It starts at
/// [`LONG_RUN_BYTES`] and only shrinks during a sync (each shrink follows one failed search of
/// every group), so a fragmented pool costs a few scans per txg, not one per block.
struct RunSearch {
    min_bytes: u64,
    /// Where the partition being synced allocates: its shard's groups first.
    hint: crate::allocator::Hint,
}

/// Blocks a sync places (or copies into write buffers) between yields to the shard's other
/// tasks, so intent-log commits and reads are not held up for a whole tree update.
const YIELD_EVERY_BLOCKS: usize = 512;

/// Bytes of finished partitions' blocks a sync gathers before it writes them while it goes on
/// with the next partitions' trees.
const OVERLAP_WRITE_BYTES: u64 = 4 << 20;
/// Such batches in flight at once (each keeps up to [`WRITE_CONCURRENCY`] device writes).
const OVERLAP_BATCHES: usize = 2;

/// Data runs a sync first looks for: long enough that the device sees large writes.
const LONG_RUN_BYTES: u64 = 1 << 20;

/// One partition frozen for this sync.
struct PartWork {
    volume: Arc<VolumeShared>,
    index: PartitionId,
    set: Arc<DirtySet>,
    root: BlockPointer,
    height: u8,
    target_height: u8,
}

/// A partition's new tree.
struct PartResult {
    volume: Arc<VolumeShared>,
    index: PartitionId,
    root: BlockPointer,
    height: u8,
    data_bytes: u64,
    /// Data blocks written into the new tree.
    added: DataFigures,
}

/// What one shard's part of a sync produced.
struct ShardSync {
    results: Vec<PartResult>,
    kills: Vec<(u64, Vec<BlockPointer>)>,
    /// Data blocks written.
    data_blocks: u64,
    /// The shortest data run the shard's search settled on.
    run_min: u64,
    /// When the shard finished its trees (its last writes were then still in flight).
    trees_done: std::time::Instant,
}

impl ShardSync {
    fn merge(&mut self, other: ShardSync) {
        self.results.extend(other.results);
        self.kills.extend(other.kills);
        self.data_blocks += other.data_blocks;
        self.run_min = self.run_min.min(other.run_min);
        self.trees_done = self.trees_done.max(other.trees_done);
    }
}

/// Logical and stored bytes of a set of data blocks.
#[derive(Debug, Default, Clone, Copy)]
struct DataFigures {
    logical_bytes: u64,
    physical_bytes: u64,
}

/// A dirty data block in the form it is stored in.
struct StoredForm {
    data: SharedBuf,
    checksum: crate::format::Checksum,
    len_bytes: u64,
    compression: u8,
    /// Dedup fingerprint of the stored form, when the volume dedups.
    fingerprint: Option<Fingerprint>,
}

/// Data bytes of a set below which its stored forms are computed on the syncer's thread
/// (handing them to the CPU workers costs more than it saves).
const PARALLEL_FORMS_MIN_BYTES: usize = 256 << 10;

/// The stored form of one data block and its checksum: compressed when `compression` is on
/// and it saves an eighth of the block, raw (the block's own buffer, checksummed in place)
/// otherwise; with its fingerprint when `fingerprints` is set.
fn store_form(
    d: &crate::partition::BlockData,
    compression: Compression,
    logical_bytes: u32,
    fingerprints: bool,
    scratch: &mut Vec<u8>,
) -> StoredForm {
    let packed = match compression {
        Compression::Lz4 => compress_block(&d.bytes, scratch),
        Compression::Off => None,
    };
    let mut form = match packed {
        Some(bytes) => StoredForm {
            checksum: checksum(&bytes),
            len_bytes: bytes.len() as u64,
            data: SharedBuf::new(bytes),
            compression: COMPRESSION_LZ4,
            fingerprint: None,
        },
        None => StoredForm {
            checksum: checksum(&d.bytes),
            len_bytes: d.bytes.len() as u64,
            data: d.bytes.clone(),
            compression: COMPRESSION_OFF,
            fingerprint: None,
        },
    };
    if fingerprints {
        form.fingerprint = Some(fingerprint(form.compression, logical_bytes, &form.data));
    }
    form
}

/// The stored forms of a partition set's data blocks, in the order of `set.blocks`:
/// compressed when the volume compresses and the block saves an eighth of its size, raw
/// otherwise, with their dedup fingerprints when `fingerprints` is set.
///
/// Checksums, compression and fingerprints are pure CPU work. A set large enough to pay for it
/// is cut into jobs of about [`FORMS_JOB_BYTES`] that run on the CPU workers (`offload`), so
/// the syncing shard goes on with its other tasks, and with the trees and writes of earlier
/// partitions, meanwhile. Forms, checksums and fingerprints are the same either way.
enum Forms {
    Ready(Vec<StoredForm>),
    Pending(Vec<crate::offload::Offloaded<Vec<StoredForm>>>),
}

/// Data bytes of one stored-forms job on the CPU workers.
const FORMS_JOB_BYTES: usize = 1 << 20;

/// Data bytes of partitions whose stored forms a sync computes ahead of the partition whose
/// tree it builds.
const FORMS_AHEAD_BYTES: usize = 64 << 20;

impl Forms {
    /// Starts the forms of `set`; returns them and the set's data bytes.
    fn start(
        set: &DirtySet,
        compression: Compression,
        logical_bytes: u32,
        fingerprints: bool,
    ) -> (Forms, usize) {
        let blocks: Vec<Arc<crate::partition::BlockData>> = set
            .blocks
            .values()
            .filter_map(|b| match b {
                DirtyBlock::Data(d) => Some(Arc::clone(d)),
                DirtyBlock::Zero => None,
            })
            .collect();
        let data_bytes: usize = blocks.iter().map(|d| d.bytes.len()).sum();
        let work = move |slice: &[Arc<crate::partition::BlockData>]| -> Vec<StoredForm> {
            let mut scratch = Vec::new();
            slice
                .iter()
                .map(|d| store_form(d, compression, logical_bytes, fingerprints, &mut scratch))
                .collect()
        };
        // Unit tests shorten fingerprints through a thread-local (`ddt::SHORT_FINGERPRINT_BYTES`)
        // that other threads would not see, so they compute every form on this thread.
        if cfg!(test) || data_bytes < PARALLEL_FORMS_MIN_BYTES {
            return (Forms::Ready(work(&blocks)), data_bytes);
        }
        let per_block = (data_bytes / blocks.len().max(1)).max(1);
        let per_job = (FORMS_JOB_BYTES / per_block).max(1);
        let jobs = blocks
            .chunks(per_job)
            .map(|slice| {
                let slice = slice.to_vec();
                crate::offload::run(move || work(&slice))
            })
            .collect();
        (Forms::Pending(jobs), data_bytes)
    }

    /// The forms, once computed (counted in the copy statistics on this thread).
    async fn get(self) -> Vec<StoredForm> {
        let forms = match self {
            Forms::Ready(forms) => forms,
            Forms::Pending(jobs) => {
                let mut forms = Vec::new();
                for job in jobs {
                    forms.extend(job.await);
                }
                forms
            }
        };
        for f in forms.iter().filter(|f| f.compression == COMPRESSION_LZ4) {
            copy_stats::record(CopyPath::Compression, usize::try_from(f.len_bytes).unwrap_or(0));
        }
        forms
    }
}

/// The stored forms of a sync's partitions, started in order up to [`FORMS_AHEAD_BYTES`] of
/// data ahead of the partition whose tree is being built.
struct FormsAhead<'a> {
    work: &'a [PartWork],
    started: std::collections::VecDeque<(Forms, usize)>,
    next: usize,
    ahead_bytes: usize,
}

impl<'a> FormsAhead<'a> {
    fn new(work: &'a [PartWork]) -> FormsAhead<'a> {
        let mut ahead = FormsAhead {
            work,
            started: std::collections::VecDeque::new(),
            next: 0,
            ahead_bytes: 0,
        };
        ahead.fill();
        ahead
    }

    /// Starts the forms of the next partition to be taken and of later ones while under the
    /// bound.
    fn fill(&mut self) {
        let current = self.next - self.started.len();
        while self.next < self.work.len()
            && (self.next <= current || self.ahead_bytes < FORMS_AHEAD_BYTES)
        {
            let w = &self.work[self.next];
            let (forms, bytes) = Forms::start(
                &w.set,
                w.volume.compression(),
                w.volume.layout.volblock_bytes,
                w.volume.dedup() != DedupMode::Off,
            );
            self.started.push_back((forms, bytes));
            self.ahead_bytes += bytes;
            self.next += 1;
        }
    }

    /// The forms of the next partition, in order, starting more behind it.
    fn take(&mut self) -> Forms {
        self.fill();
        let (forms, bytes) = self.started.pop_front().expect("forms started for this partition");
        self.ahead_bytes -= bytes;
        forms
    }
}

impl Pool {
    /// Commits the open txg now and returns its number.
    ///
    /// # Errors
    /// A device error; the pool is then suspended.
    pub async fn sync_txg(&self) -> PoolResult<TxgId> {
        self.check_live()?;
        let _guard = self.txg.sync_lock.lock().await;
        self.sync_locked().await
    }

    /// Returns once txg `txg` is durable, syncing if needed.
    pub(crate) async fn ensure_durable(&self, txg: TxgId) -> PoolResult<()> {
        if self.durable_txg() >= txg {
            return Ok(());
        }
        let _guard = self.txg.sync_lock.lock().await;
        if self.durable_txg() >= txg {
            return Ok(());
        }
        self.check_live()?;
        self.sync_locked().await.map(|_| ())
    }

    /// One txg sync, under the sync lock. Refused once the pool is suspended, also for a caller
    /// that was already waiting for the lock when the sync before it failed: the failed txg's
    /// frozen changes were never installed, so a later txg would be built on the last durable
    /// trees without them (losing writes a flush or the intent log had acknowledged, whose
    /// log records that txg then trims) and would record the failed txg's blocks allocated
    /// with nothing pointing at them.
    async fn sync_locked(&self) -> PoolResult<TxgId> {
        self.check_live()?;
        let _active = crate::pool::InProgress::new(&self.stats.txg_syncs_in_progress);
        match self.sync_once().await {
            Ok(txg) => {
                self.enter_phase(TxgPhase::Open);
                Ok(txg)
            }
            Err(e) => {
                // The suspended pool keeps the phase it failed in (`Pool::txg_phase`).
                let phase = self.txg_phase();
                log::error!(
                    "pool {}: txg {} failed while {}: {e} ({} bytes free, {} bytes of frees \
                     pending); the pool is suspended",
                    self.name,
                    self.txg.open_txg.load(Ordering::SeqCst).saturating_sub(1),
                    phase.name(),
                    self.alloc.free_bytes(),
                    self.alloc.pending_free_bytes()
                );
                self.suspended.store(true, Ordering::SeqCst);
                self.txg.synced.wake_all();
                Err(e)
            }
        }
    }

    /// The sync's phase now.
    #[must_use]
    pub fn txg_phase(&self) -> TxgPhase {
        let byte = self.txg.phase.load(Ordering::SeqCst);
        TxgPhase::ALL.get(usize::from(byte)).copied().unwrap_or(TxgPhase::Open)
    }

    /// Moves the txg machine to `phase`, the one after the current.
    fn enter_phase(&self, phase: TxgPhase) {
        debug_assert_eq!(self.txg_phase().next(), phase, "txg phase out of order");
        self.txg.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// Freezes every partition's open set. Returns the work and the metadata operations.
    fn quiesce(&self, txg: TxgId) -> (Vec<PartWork>, Vec<MetaOp>) {
        let ops = std::mem::take(&mut lock(&self.meta).ops);
        self.txg.open_txg.store(txg.next().get(), Ordering::SeqCst);
        let heads: Vec<Arc<VolumeShared>> = lock(&self.heads).values().cloned().collect();
        let mut work = Vec::new();
        for volume in heads {
            for (index, m) in volume.partitions.iter().enumerate() {
                let mut p = lock(m);
                p.open_txg = txg.next();
                if !p.open.is_empty() || p.target_height > p.height {
                    let set = Arc::new(std::mem::take(&mut p.open));
                    p.syncing = Some(Arc::clone(&set));
                    work.push(PartWork {
                        volume: Arc::clone(&volume),
                        index: PartitionId::new(index),
                        set,
                        root: p.root,
                        height: p.height,
                        target_height: p.target_height,
                    });
                }
            }
        }
        (work, ops)
    }

    /// One txg sync.
    async fn sync_once(&self) -> PoolResult<TxgId> {
        let txg = self.open_txg();
        self.enter_phase(TxgPhase::Quiescing);
        let (mut work, ops) = self.quiesce(txg);

        // Rollbacks and destroys drop the frozen changes of their volumes.
        let dropped: HashSet<u64> = ops
            .iter()
            .filter_map(|op| match op {
                MetaOp::Rollback { volume_id, .. } | MetaOp::DestroyVolume { volume_id } => {
                    Some(*volume_id)
                }
                _ => None,
            })
            .collect();
        let mut discarded = Vec::new();
        work.retain(|w| {
            if dropped.contains(&w.volume.id) {
                discarded.push((Arc::clone(&w.volume), w.index, w.set.data_bytes));
                false
            } else {
                true
            }
        });

        let trace = std::env::var_os("FERRITE_TXG_TRACE").is_some();
        let t0 = std::time::Instant::now();
        let partitions = work.len();
        // Start from twice the run length the previous sync settled on, so a fragmented pool
        // does not rescan every group for long runs at every txg.
        let run_min = (self.txg.data_run_bytes.load(Ordering::Relaxed) * 2)
            .clamp(SECTOR_BYTES, LONG_RUN_BYTES);
        let device_writes = self.devs.stats.writes.load(Ordering::Relaxed);
        self.enter_phase(TxgPhase::SyncingData);
        let synced = self.sync_on_owners(work, txg, run_min).await?;
        let t1 = synced.trees_done;
        self.txg.data_run_bytes.store(synced.run_min, Ordering::Relaxed);
        let device_writes = self.devs.stats.writes.load(Ordering::Relaxed) - device_writes;
        let (results, kills, data_blocks) = (synced.results, synced.kills, synced.data_blocks);
        let t2 = std::time::Instant::now();

        // Metadata: kills, operations, dataset objects, directory.
        let mut installs: Vec<(Arc<VolumeShared>, usize, BlockPointer, u8)> = Vec::new();
        let mut destroyed_volumes = Vec::new();
        self.enter_phase(TxgPhase::SyncingMetadata);
        self.apply_metadata(txg, &results, kills, &ops, &mut installs, &mut destroyed_volumes)
            .await?;
        let t3 = std::time::Instant::now();
        self.enter_phase(TxgPhase::SyncingSpace);
        self.write_ddt(txg).await?;
        self.commit_space_and_root(txg).await?;
        self.enter_phase(TxgPhase::Synced);
        if trace {
            let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
            let t4 = std::time::Instant::now();
            log::info!(
                "txg {txg}: {partitions} partitions, {data_blocks} blocks in {device_writes} device writes; trees {:.1} ms, writes {:.1} ms, \
                 metadata {:.1} ms, space+root {:.1} ms; {}",
                ms(t0, t1),
                ms(t1, t2),
                ms(t2, t3),
                ms(t3, t4),
                self.free_space_trace()
            );
        }

        // Durable: install the new state in memory.
        for r in &results {
            let mut p = lock(r.volume.partition(r.index));
            p.root = r.root;
            p.height = r.height;
            p.syncing = None;
            drop(p);
            self.account_dirty(-(r.data_bytes as i64));
        }
        for (volume, index, bytes) in discarded {
            lock(volume.partition(index)).syncing = None;
            self.account_dirty(-(bytes as i64));
        }
        for (volume, index, root, height) in installs {
            let mut p = lock(&volume.partitions[index]);
            p.root = root;
            p.height = height;
            p.target_height = p.target_height.max(height);
        }
        for id in destroyed_volumes {
            lock(&self.heads).remove(&id);
        }
        self.txg.durable_txg.store(txg.get(), Ordering::SeqCst);
        self.alloc.txg_durable(txg);
        self.zil.trim(txg);
        self.refresh_reservations();
        self.stats.txgs.fetch_add(1, Ordering::Relaxed);
        self.stats.data_blocks_written.fetch_add(data_blocks, Ordering::Relaxed);
        self.txg.synced.wake_all();
        Ok(txg)
    }

    /// Syncs the frozen partitions, each on the shard that owns it: the coordinator hands
    /// every other shard its partitions by message and syncs its own meanwhile. Each shard
    /// builds its partitions' trees, allocates from its own allocation groups and writes its
    /// data and indirect blocks; all of it is on the devices when this returns. Without a
    /// shard set (or with one shard) the coordinator syncs everything.
    async fn sync_on_owners(
        &self,
        work: Vec<PartWork>,
        txg: TxgId,
        run_min: u64,
    ) -> PoolResult<ShardSync> {
        let Some(route) = crate::route::Route::current() else {
            return self.sync_partitions(work, txg, run_min, crate::allocator::Hint::any(0)).await;
        };
        let shards = route.shards();
        let mut by_owner: Vec<Vec<PartWork>> = (0..shards).map(|_| Vec::new()).collect();
        for w in work {
            by_owner[route.partition_owner(w.volume.id, w.index).get()].push(w);
        }
        let mut remote = Vec::new();
        let mut local = Vec::new();
        for (shard, part) in by_owner.into_iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            let shard = ShardId::new(shard);
            if !route.is_remote(shard) {
                local.extend(part);
                continue;
            }
            let pool = self.arc();
            let hint = crate::allocator::Hint::owned(0, shard, shards);
            remote.push(route.run_on(shard, move || async move {
                pool.sync_partitions(part, txg, run_min, hint).await
            }));
            self.stats.shard_syncs.fetch_add(1, Ordering::Relaxed);
        }
        let hint = crate::allocator::Hint::owned(0, route.here(), shards);
        let mut all = self.sync_partitions(local, txg, run_min, hint).await;
        // Every shard's part is awaited, also after an error, so no write is left running.
        for r in remote {
            // A shard that stopped serving before it ran its part fails the sync.
            let part = r.await.unwrap_or(Err(PoolError::Io(drivers::error::IoError::Canceled)));
            all = match (all, part) {
                (Ok(mut a), Ok(b)) => {
                    a.merge(b);
                    Ok(a)
                }
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            };
        }
        all
    }

    /// Syncs `work` on this shard: stored forms on the CPU workers, trees, allocation from
    /// `owner`'s groups first, and the device writes, all awaited before it returns.
    async fn sync_partitions(
        &self,
        work: Vec<PartWork>,
        txg: TxgId,
        run_min: u64,
        owner: crate::allocator::Hint,
    ) -> PoolResult<ShardSync> {
        let mut out = ShardSync {
            results: Vec::with_capacity(work.len()),
            kills: Vec::with_capacity(work.len()),
            data_blocks: 0,
            run_min,
            trees_done: std::time::Instant::now(),
        };
        let mut writes = Vec::new();
        let mut runs = RunSearch { min_bytes: run_min, hint: owner };
        let groups = self.alloc.group_count().max(1);
        // Stored forms are computed on the CPU workers ahead of the partition being synced.
        let mut forms = FormsAhead::new(&work);
        for w in &work {
            let indices: Vec<u64> = w.set.blocks.keys().copied().collect();
            let cache = self.cache.for_partition(w.volume.id, w.index);
            prefetch_paths(&self.devs, cache, w.root, w.height, &indices).await;
        }
        // Data and indirect blocks of finished partitions are written while the trees of the
        // next ones are built, so the device does not idle through the tree updates. Every
        // write is awaited before the metadata that references it, and before an error returns.
        let mut issued = std::collections::VecDeque::new();
        let mut failed = None;
        for w in &work {
            let stored = forms.take().get().await;
            let mut added = DataFigures::default();
            // Each partition starts at its own place among the shard's groups.
            let start =
                (w.volume.id as usize).wrapping_mul(31).wrapping_add(w.index.get()) % groups;
            runs.hint = crate::allocator::Hint::owned(start, owner.shard, owner.shards);
            match self.sync_partition(w, stored, txg, &mut writes, &mut runs, &mut added).await {
                Ok((root, height, killed)) => {
                    out.kills.push((w.volume.id, killed));
                    out.results.push(PartResult {
                        volume: Arc::clone(&w.volume),
                        index: w.index,
                        root,
                        height,
                        data_bytes: w.set.data_bytes,
                        added,
                    });
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if writes.iter().map(|w| w.extent.len_bytes).sum::<u64>() >= OVERLAP_WRITE_BYTES {
                out.data_blocks += writes.iter().filter(|w| w.extent.len_bytes > 0).count() as u64;
                issued.push_back(self.spawn_writes(std::mem::take(&mut writes)));
                while issued.len() > OVERLAP_BATCHES {
                    if let Some(h) = issued.pop_front() {
                        if let Err(e) = h.await {
                            failed = failed.or(Some(e));
                        }
                    }
                }
            }
        }
        out.trees_done = std::time::Instant::now();
        if failed.is_none() {
            out.data_blocks += writes.iter().filter(|w| w.extent.len_bytes > 0).count() as u64;
            issued.push_back(self.spawn_writes(writes));
        }
        for h in issued {
            if let Err(e) = h.await {
                failed = failed.or(Some(e));
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        out.run_min = runs.min_bytes;
        Ok(out)
    }

    /// Roots of every head after this txg's partition updates.
    fn head_roots(&self, results: &[PartResult]) -> HashMap<u64, Vec<PartitionRoot>> {
        let heads: Vec<Arc<VolumeShared>> = lock(&self.heads).values().cloned().collect();
        let mut roots: HashMap<u64, Vec<PartitionRoot>> = heads
            .iter()
            .map(|h| {
                let r = h
                    .partitions
                    .iter()
                    .map(|p| {
                        let p = lock(p);
                        PartitionRoot {
                            root: p.root,
                            height: u64::from(p.height),
                            reserved: [0; 7],
                        }
                    })
                    .collect();
                (h.id, r)
            })
            .collect();
        for r in results {
            if let Some(v) = roots.get_mut(&r.volume.id) {
                v[r.index.get()] =
                    PartitionRoot { root: r.root, height: u64::from(r.height), reserved: [0; 7] };
            }
        }
        roots
    }

    /// Spawns the background syncer on the current shard (the one that imported the pool):
    /// it commits a txg every `sync_interval`, or sooner when dirty data passes
    /// `dirty_sync_bytes`, until the pool is exported.
    ///
    /// # Panics
    /// When no reactor runs on this thread.
    pub fn start_syncer(self: &Arc<Self>) -> drivers::executor::JoinHandle<()> {
        let pool = Arc::clone(self);
        drivers::executor::spawn(async move {
            loop {
                let interval = drivers::executor::sleep(pool.tunables.sync_interval);
                let kicked = pool.txg.kick.wait_until(|| {
                    pool.suspended.load(Ordering::SeqCst)
                        || pool.txg.sync_requested.load(Ordering::SeqCst)
                        || pool.txg.dirty_bytes.load(Ordering::SeqCst)
                            > pool.tunables.dirty_sync_bytes
                });
                crate::join::select2(interval, kicked).await;
                if pool.suspended.load(Ordering::SeqCst) {
                    return;
                }
                pool.txg.sync_requested.store(false, Ordering::SeqCst);
                let _ = pool.sync_txg().await;
            }
        })
    }
}
