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
//! With `FERRITE_TXG_TRACE` set in the environment every sync prints its phases (tree
//! updates, data writes, metadata, space maps and root) and every failed sync its reason.

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
use crate::vdev::BlockReadError;
use crate::volume::VolumeShared;

/// Largest coalesced device write of a sync.
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
    index: usize,
    set: Arc<DirtySet>,
    root: BlockPointer,
    height: u8,
    target_height: u8,
}

/// A partition's new tree.
struct PartResult {
    volume: Arc<VolumeShared>,
    index: usize,
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

/// The pointer to a data block of `v` logical bytes stored as `s` at `extent`.
fn data_pointer(extent: &Extent, txg: u64, s: &StoredForm, v: u64) -> BlockPointer {
    BlockPointer {
        offset_bytes: extent.offset_bytes,
        birth_txg: txg,
        checksum: s.checksum,
        fill_blocks: 1,
        logical_bytes: u32::try_from(v).expect("volblock fits"),
        physical_bytes: u32::try_from(extent.len_bytes).expect("block fits"),
        device: extent.device,
        kind: BlockKind::Data as u8,
        level: 0,
        checksum_type: CHECKSUM_XXH3_128,
        compression: s.compression,
        ..BlockPointer::HOLE
    }
}

/// What dedup makes of one block.
enum DedupDecision {
    /// Written as a plain block.
    Plain,
    /// Already stored there: one more reference.
    Hit(Extent, Fingerprint),
    /// Written, and entered in the table.
    New(Fingerprint),
}

/// Estimate of the in-memory dedup table during a partition's sync (measured at its start,
/// then grown by a generous per-entry figure for each new entry).
struct DedupBudget {
    memory_bytes: u64,
}

/// Bytes a new entry is assumed to add to the in-memory table (an upper bound).
const DEDUP_ENTRY_ESTIMATE_BYTES: u64 = 96;

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

/// A dataset's directory entry.
fn directory_entry(d: &DatasetMeta) -> DirectoryEntry {
    DirectoryEntry {
        object: d.object.bp,
        id: d.phys.id,
        parent_id: d.phys.parent_id,
        kind: d.phys.kind,
        reserved: 0,
        reserved2: 0,
        name: d.phys.name,
    }
}

/// Blocks of a tree born after `after_txg` (the tree's own blocks when `after_txg` is the
/// dataset's previous snapshot txg). Subtrees born at or before it are shared and skipped.
pub(crate) async fn blocks_born_after(
    pool: &Pool,
    root: BlockPointer,
    after_txg: u64,
) -> PoolResult<Vec<BlockPointer>> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(bp) = stack.pop() {
        if bp.is_hole() || bp.birth_txg <= after_txg {
            continue;
        }
        if bp.level > 0 {
            let children =
                load_indirect(&pool.devs, pool.cache.view(0), &bp).await.map_err(read_err)?;
            stack.extend(children.iter().filter(|c| !c.is_hole()).copied());
        }
        out.push(bp);
    }
    Ok(out)
}

impl Pool {
    /// Adds `delta` bytes to the dirty-data count and wakes the syncer past its threshold.
    pub(crate) fn account_dirty(&self, delta: i64) {
        if delta >= 0 {
            let now = self.txg.dirty_bytes.fetch_add(delta.unsigned_abs(), Ordering::SeqCst)
                + delta.unsigned_abs();
            if now > self.tunables.dirty_sync_bytes {
                self.txg.kick.wake_all();
            }
        } else {
            let _ = self.txg.dirty_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(delta.unsigned_abs()))
            });
        }
    }

    /// Refuses a write of `len_bytes` when the pool is too full (the over-provisioning
    /// reserve and thick reservations are kept free).
    pub(crate) fn admit(
        &self,
        len_bytes: u64,
        thick: bool,
    ) -> Result<(), crate::block_volume::VolumeError> {
        let free = self.alloc.free_bytes();
        let dirty = self.txg.dirty_bytes.load(Ordering::Relaxed);
        let reserve = self.alloc.capacity_bytes() / 100 * u64::from(self.reserve_percent);
        let available = if thick {
            // A thick volume writes into its reservation; only the reserve is kept.
            free.saturating_sub(dirty).saturating_sub(reserve / 2)
        } else {
            free.saturating_sub(dirty)
                .saturating_sub(reserve)
                .saturating_sub(self.reserved_unused_bytes.load(Ordering::Relaxed))
        };
        if available < len_bytes.saturating_mul(2) {
            self.stats.no_space_errors.fetch_add(1, Ordering::Relaxed);
            return Err(crate::block_volume::VolumeError::NoSpace);
        }
        Ok(())
    }

    /// Makes a writer wait while dirty data is past its limit.
    ///
    /// A throttled writer waits for the sync in progress to release its data (the open txg
    /// keeps taking writes meanwhile, so the device never idles between txgs); it syncs the
    /// open txg itself only when no sync is running. Past the sync threshold a writer also
    /// yields to the shard's other tasks: a write-back write completes without waiting for
    /// I/O, so without a yield a stream of them would keep the syncer (and its I/O
    /// completions) from running until the hard limit stops them.
    pub(crate) async fn throttle(&self) -> PoolResult<()> {
        let limit = self.tunables.dirty_limit_bytes;
        let dirty = self.txg.dirty_bytes.load(Ordering::SeqCst);
        if dirty > limit {
            self.stats.throttled_writes.fetch_add(1, Ordering::Relaxed);
            while self.txg.dirty_bytes.load(Ordering::SeqCst) > limit {
                self.check_live()?;
                if self.txg.sync_lock.is_locked() {
                    // Taken (and released at once) when the running sync has finished.
                    drop(self.txg.sync_lock.lock().await);
                } else {
                    let open = self.txg.open_txg.load(Ordering::SeqCst);
                    self.ensure_durable(open).await?;
                }
            }
            self.check_live()?;
        } else if dirty > self.tunables.dirty_sync_bytes {
            drivers::executor::yield_now().await;
        }
        Ok(())
    }

    /// SYNCHRONIZE CACHE: every completed write becomes durable. Writes the intent log covers
    /// already are; others are covered by a txg sync.
    pub(crate) async fn flush_async_writes(&self) -> PoolResult<()> {
        self.check_live()?;
        let label = self.txg.async_label.load(Ordering::SeqCst);
        self.ensure_durable(label).await
    }

    /// Commits the open txg now and returns its number.
    ///
    /// # Errors
    /// A device error; the pool is then suspended.
    pub async fn sync_txg(&self) -> PoolResult<u64> {
        self.check_live()?;
        let _guard = self.txg.sync_lock.lock().await;
        self.sync_locked().await
    }

    /// Returns once txg `txg` is durable, syncing if needed.
    pub(crate) async fn ensure_durable(&self, txg: u64) -> PoolResult<()> {
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
    async fn sync_locked(&self) -> PoolResult<u64> {
        self.check_live()?;
        let _active = crate::pool::InProgress::new(&self.stats.txg_syncs_in_progress);
        match self.sync_once().await {
            Ok(txg) => Ok(txg),
            Err(e) => {
                if std::env::var_os("FERRITE_TXG_TRACE").is_some() {
                    log::info!(
                        "txg sync failed: {e} (free {} bytes, pending frees {} bytes)",
                        self.alloc.free_bytes(),
                        self.alloc.pending_free_bytes()
                    );
                }
                self.suspended.store(true, Ordering::SeqCst);
                self.txg.synced.wake_all();
                Err(e)
            }
        }
    }

    /// Freezes every partition's open set. Returns the work and the metadata operations.
    fn quiesce(&self, txg: u64) -> (Vec<PartWork>, Vec<MetaOp>) {
        let ops = std::mem::take(&mut lock(&self.meta).ops);
        self.txg.open_txg.store(txg + 1, Ordering::SeqCst);
        let heads: Vec<Arc<VolumeShared>> = lock(&self.heads).values().cloned().collect();
        let mut work = Vec::new();
        for volume in heads {
            for (index, m) in volume.partitions.iter().enumerate() {
                let mut p = lock(m);
                p.open_txg = txg + 1;
                if !p.open.is_empty() || p.target_height > p.height {
                    let set = Arc::new(std::mem::take(&mut p.open));
                    p.syncing = Some(Arc::clone(&set));
                    work.push(PartWork {
                        volume: Arc::clone(&volume),
                        index,
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

    /// Builds one partition's new tree; data and indirect writes are appended to `writes`.
    async fn sync_partition(
        &self,
        work: &PartWork,
        stored: Vec<StoredForm>,
        txg: u64,
        writes: &mut Vec<PendingWrite>,
        runs: &mut RunSearch,
        figures: &mut DataFigures,
    ) -> PoolResult<(BlockPointer, u8, Vec<BlockPointer>)> {
        let v = u64::from(work.volume.layout.volblock_bytes);
        let mut update = TreeUpdate::new(
            &self.devs,
            self.cache.for_partition(work.volume.id, work.index),
            work.root,
            work.height,
        );
        if work.target_height > work.height {
            update.deepen(work.target_height);
        }
        let mut punches = work.set.punches.clone();
        punches.sort_unstable();
        for (start, end) in punches {
            update.punch(start, end).await.map_err(read_err)?;
        }
        let dedup_mode = work.volume.dedup();
        let mut budget = DedupBudget {
            memory_bytes: if dedup_mode == DedupMode::Off { 0 } else { self.ddt.memory_bytes() },
        };
        // Raw blocks are carved from runs in whole blocks; once sizes vary, in sectors.
        let step = if stored.iter().all(|s| s.len_bytes == v) { v } else { SECTOR_BYTES };
        let mut unplaced: u64 = stored.iter().map(|s| s.len_bytes).sum();
        let mut stored = stored.into_iter();
        let mut run: Option<Extent> = None;
        for (placed, (index, block)) in work.set.blocks.iter().enumerate() {
            if placed % YIELD_EVERY_BLOCKS == YIELD_EVERY_BLOCKS - 1 {
                // Let the shard's writers and log commits run between slices of the sync.
                drivers::executor::yield_now().await;
            }
            let bp = match block {
                DirtyBlock::Zero => BlockPointer::HOLE,
                DirtyBlock::Data(d) => {
                    let s = stored.next().expect("one stored form per data block");
                    figures.logical_bytes += v;
                    figures.physical_bytes += s.len_bytes;
                    // A block a durable write put in place (logged by reference) joins the tree
                    // where it is, when stored plain; otherwise it is written like any other
                    // and its place is freed with this txg.
                    if let Some(at) = d.written_at {
                        if dedup_mode == DedupMode::Off
                            && s.compression == COMPRESSION_OFF
                            && s.len_bytes == at.len_bytes
                            && self.alloc.reclaim(&at, txg)
                        {
                            unplaced -= s.len_bytes;
                            self.stats.log_block_refs_adopted.fetch_add(1, Ordering::Relaxed);
                            update
                                .set_leaf(*index, data_pointer(&at, txg, &s, v))
                                .await
                                .map_err(read_err)?;
                            continue;
                        }
                    }
                    let decision = match dedup_mode {
                        DedupMode::Off => DedupDecision::Plain,
                        mode => self.dedup_decide(&work.volume, mode, &s, &mut budget).await,
                    };
                    if let DedupDecision::Hit(extent, fp) = decision {
                        unplaced -= s.len_bytes;
                        let mut bp = data_pointer(&extent, txg, &s, v);
                        mark_dedup(&mut bp, &fp);
                        bp
                    } else {
                        if run.is_none_or(|r| r.len_bytes < s.len_bytes) {
                            if let Some(rest) = run.filter(|r| r.len_bytes > 0) {
                                self.alloc.free(rest, txg);
                            }
                            run =
                                Some(self.allocate_data_run(unplaced, s.len_bytes, step, runs)?);
                        }
                        let r = run.as_mut().expect("run allocated");
                        let extent = Extent::new(r.device, r.offset_bytes, s.len_bytes);
                        r.offset_bytes += s.len_bytes;
                        r.len_bytes -= s.len_bytes;
                        unplaced -= s.len_bytes;
                        let mut bp = data_pointer(&extent, txg, &s, v);
                        if let DedupDecision::New(fp) = decision {
                            self.ddt.insert(fp, &extent);
                            self.ddt.remember_fresh(fp, s.data.clone());
                            mark_dedup(&mut bp, &fp);
                        }
                        writes.push(PendingWrite { extent, data: s.data, checksum: s.checksum });
                        bp
                    }
                }
            };
            update.set_leaf(*index, bp).await.map_err(read_err)?;
        }
        if let Some(rest) = run.filter(|r| r.len_bytes > 0) {
            self.alloc.free(rest, txg);
        }
        let height = update.height();
        let (root, killed, indirect_writes) = update.commit(&self.alloc, &mut runs.hint, txg)?;
        writes.extend(indirect_writes);
        Ok((root, height, killed))
    }

    /// A run for up to `want_bytes` of data blocks, at least `block_bytes` (the next block)
    /// long and cut in multiples of `step_bytes`, as long as free space allows.
    fn allocate_data_run(
        &self,
        want_bytes: u64,
        block_bytes: u64,
        step_bytes: u64,
        runs: &mut RunSearch,
    ) -> PoolResult<Extent> {
        let want = want_bytes.min(MAX_WRITE_BYTES).max(block_bytes);
        // Every run length is tried sparing the metadata slabs before any may take them.
        for &spare in self.alloc.data_passes(want) {
            let mut min_bytes = runs.min_bytes;
            loop {
                let min = min_bytes.min(want).max(block_bytes);
                let hint = &mut runs.hint;
                if let Some(run) = self.alloc.allocate_run_in(hint, min, want, step_bytes, spare) {
                    runs.min_bytes = min_bytes;
                    return Ok(run);
                }
                if min <= block_bytes {
                    break;
                }
                min_bytes = (min / 4).max(block_bytes);
            }
        }
        Err(PoolError::NoSpace)
    }

    /// Runs [`Pool::write_all`] for `writes` as a task of this shard.
    fn spawn_writes(
        &self,
        writes: Vec<PendingWrite>,
    ) -> drivers::executor::JoinHandle<PoolResult<()>> {
        let pool = self.arc();
        drivers::executor::spawn(async move { pool.write_all(writes).await })
    }

    /// Issues `writes` coalesced into large vectored device writes straight from the blocks'
    /// memory, verifying every block's checksum right before its write is issued.
    async fn write_all(&self, mut writes: Vec<PendingWrite>) -> PoolResult<()> {
        writes.sort_by_key(|w| (w.extent.device, w.extent.offset_bytes));
        let mut runs: Vec<(Extent, Vec<PendingWrite>)> = Vec::new();
        for w in writes {
            let len = usize::try_from(w.extent.len_bytes).expect("extent fits");
            assert_eq!(w.data.len(), len, "block length differs from its extent");
            match runs.last_mut() {
                Some((run, members))
                    if run.device == w.extent.device
                        && run.offset_bytes + run.len_bytes == w.extent.offset_bytes
                        && run.len_bytes + w.extent.len_bytes <= MAX_WRITE_BYTES
                        && members.len() < MAX_RUN_SEGMENTS =>
                {
                    run.len_bytes += w.extent.len_bytes;
                    members.push(w);
                }
                _ => runs.push((w.extent, vec![w])),
            }
        }
        // A pipeline with at most WRITE_CONCURRENCY device writes outstanding.
        let mut in_flight = std::collections::VecDeque::with_capacity(WRITE_CONCURRENCY);
        let mut first_err = None;
        let mut issued = 0usize;
        for (run, members) in runs {
            issued += members.len();
            if issued >= YIELD_EVERY_BLOCKS {
                issued = 0;
                drivers::executor::yield_now().await;
            }
            let members: Vec<SharedBuf> = members
                .into_iter()
                .map(|w| {
                    assert_eq!(
                        checksum(&w.data),
                        w.checksum,
                        "dirty block changed before its write"
                    );
                    w.data
                })
                .collect();
            copy_stats::io(CopyPath::SyncWrite);
            let pool = self.arc();
            in_flight.push_back(drivers::executor::spawn(async move {
                pool.devs.write_vectored(run.device, run.offset_bytes, members).await
            }));
            if in_flight.len() >= WRITE_CONCURRENCY {
                if let Some(h) = in_flight.pop_front() {
                    if let Err(e) = h.await {
                        first_err = first_err.or(Some(e));
                    }
                }
            }
            if first_err.is_some() {
                break;
            }
        }
        // Every write is awaited, also after an error, so none is left running.
        for h in in_flight {
            if let Err(e) = h.await {
                first_err = first_err.or(Some(e));
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Routes a pointer the dataset no longer references: freed when the dataset alone held
    /// it, kept on the deadlist when a snapshot (or the clone origin) still does.
    fn kill(&self, ds: &mut DatasetMeta, bp: BlockPointer, txg: u64) {
        if bp.birth_txg > ds.phys.prev_snap_txg {
            self.free_block(&bp, txg);
        } else {
            ds.deadlist.push(bp);
            ds.deadlist_dirty = true;
        }
    }

    /// Looks a block up in the dedup table: a hit (with equal bytes under `verify`) becomes one
    /// more reference; a miss becomes a new entry unless the volume stopped taking them.
    async fn dedup_decide(
        &self,
        volume: &VolumeShared,
        mode: DedupMode,
        s: &StoredForm,
        budget: &mut DedupBudget,
    ) -> DedupDecision {
        let bytes: &[u8] = &s.data;
        let fp = s.fingerprint.expect("store_forms fingerprints the blocks of a dedup volume");
        let state = &volume.dedup_state;
        state.lookups.fetch_add(1, Ordering::Relaxed);
        if let Some(hit) = self.ddt.lookup(&fp) {
            let same = mode != DedupMode::Verify || self.same_bytes(&fp, &hit.extent, bytes).await;
            if same && self.ddt.add_ref(&fp) {
                state.hits.fetch_add(1, Ordering::Relaxed);
                return DedupDecision::Hit(hit.extent, fp);
            }
            // Different bytes behind the same fingerprint (or a full count): kept apart.
            return DedupDecision::Plain;
        }
        if self.dedup_stopped(volume, budget) {
            return DedupDecision::Plain;
        }
        budget.memory_bytes += DEDUP_ENTRY_ESTIMATE_BYTES;
        DedupDecision::New(fp)
    }

    /// True when the block the table holds for `fp` at `extent` has exactly `bytes`.
    async fn same_bytes(&self, fp: &Fingerprint, extent: &Extent, bytes: &[u8]) -> bool {
        if let Some(fresh) = self.ddt.fresh(fp) {
            // Entered in this txg: its write may still be in flight.
            return &fresh[..] == bytes;
        }
        let len = usize::try_from(extent.len_bytes).expect("block fits");
        match self.devs.read(extent.device, extent.offset_bytes, len).await {
            Ok(buf) => &buf[..] == bytes,
            Err(_) => false,
        }
    }

    /// True when `volume` takes no new dedup entries: it stopped before, or stops now because
    /// the table reached its memory budget or the volume's hit rate does not pay for it.
    fn dedup_stopped(&self, volume: &VolumeShared, budget: &DedupBudget) -> bool {
        let mut stopped = lock(&volume.dedup_state.stopped);
        if stopped.is_some() {
            return true;
        }
        let lookups = volume.dedup_state.lookups.load(Ordering::Relaxed);
        let hits = volume.dedup_state.hits.load(Ordering::Relaxed);
        let t = &self.tunables;
        let (code, reason) = if budget.memory_bytes >= t.dedup_table_bytes {
            let reason = format!(
                "the dedup table reached its memory budget ({} of {} bytes)",
                budget.memory_bytes, t.dedup_table_bytes
            );
            (DEDUP_STOPPED_BUDGET, reason)
        } else if lookups >= t.dedup_min_lookups
            && hits.saturating_mul(100) < lookups.saturating_mul(t.dedup_min_hit_percent)
        {
            #[allow(clippy::cast_precision_loss)]
            let rate = hits as f64 * 100.0 / lookups as f64;
            let reason = format!(
                "hit rate {rate:.2}% is below {}% after {lookups} lookups",
                t.dedup_min_hit_percent
            );
            (DEDUP_STOPPED_HIT_RATE, reason)
        } else {
            return false;
        };
        *stopped = Some(reason.clone());
        drop(stopped);
        // The metadata lock is taken only after the volume's lock is released (property
        // changes take them in the other order). The dataset is written in this txg's metadata,
        // so the stop outlives an export.
        let mut meta = lock(&self.meta);
        let name = meta.datasets.get_mut(&volume.id).map(|ds| {
            ds.phys.dedup_stopped = code;
            ds.dirty = true;
            ds.name()
        });
        meta.dirty = true;
        drop(meta);
        log::warn!(
            "pool {} volume {}: dedup stops taking new entries: {reason}",
            self.name,
            name.unwrap_or_default()
        );
        true
    }

    /// Frees a data or metadata block the durable state no longer references; a deduplicated
    /// block loses one reference and is freed with its last.
    fn free_block(&self, bp: &BlockPointer, txg: u64) {
        if !is_dedup(bp) {
            self.alloc.free(bp.extent(), txg);
            return;
        }
        match self.ddt.release(&bp_fingerprint(bp)) {
            Ok(Some(extent)) => self.alloc.free(extent, txg),
            Ok(None) => {}
            // Without an entry the block's other references are unknown: it is kept
            // (leaked, which ferrite-inspect reports), never freed under a live reference.
            Err(e) => log::error!("pool {}: {e}; block kept", self.name),
        }
    }

    /// Stores this txg's dedup-table changes: a log object of the changed entries, or, when
    /// the log has grown as large as what it saves, a checkpoint (the partitions changed since
    /// the last one, rewritten copy-on-write, and the log dropped); then a new index.
    async fn write_ddt(&self, txg: u64) -> PoolResult<()> {
        self.ddt.clear_fresh();
        let changes = self.ddt.take_changes();
        if changes.is_empty() {
            return Ok(());
        }
        let t = &self.tunables;
        let due = self.ddt.checkpoint_due(
            changes.len() as u64,
            t.dedup_checkpoint_min_log_bytes,
            t.dedup_max_log_objects,
        );
        if due {
            for old in self.ddt.take_log() {
                self.free_object(&old, txg);
            }
            for (i, bytes, old) in self.ddt.take_dirty() {
                self.free_object(&old, txg);
                let obj = if bytes.is_empty() {
                    StoredObject::none()
                } else {
                    self.write_ddt_object(BlockKind::DedupTable, txg, &bytes).await?
                };
                self.ddt.set_object(i, obj);
            }
        } else {
            let obj = self.write_ddt_object(BlockKind::DedupLog, txg, &changes).await?;
            self.ddt.push_log(obj);
        }
        let pointers = self.ddt.index_pointers();
        let obj = self
            .write_ddt_object(BlockKind::DedupIndex, txg, bytemuck::cast_slice(&pointers))
            .await?;
        let old = self.ddt.replace_index(obj);
        self.free_object(&old, txg);
        Ok(())
    }

    async fn write_ddt_object(
        &self,
        kind: BlockKind,
        txg: u64,
        bytes: &[u8],
    ) -> PoolResult<StoredObject> {
        let mut hint = self.alloc.next_hint();
        let plan =
            ObjectPlan::allocate(&self.alloc, &mut hint, bytes.len()).ok_or(PoolError::NoSpace)?;
        write_object(&self.devs, plan, kind, txg, bytes).await.map_err(read_err)
    }

    fn free_object(&self, object: &StoredObject, txg: u64) {
        for e in &object.extents {
            self.alloc.free(*e, txg);
        }
    }

    /// One txg sync.
    async fn sync_once(&self) -> PoolResult<u64> {
        let txg = self.txg.open_txg.load(Ordering::SeqCst);
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
        let synced = self.sync_on_owners(work, txg, run_min).await?;
        let t1 = synced.trees_done;
        self.txg.data_run_bytes.store(synced.run_min, Ordering::Relaxed);
        let device_writes = self.devs.stats.writes.load(Ordering::Relaxed) - device_writes;
        let (results, kills, data_blocks) = (synced.results, synced.kills, synced.data_blocks);
        let t2 = std::time::Instant::now();

        // Metadata: kills, operations, dataset objects, directory.
        let mut installs: Vec<(Arc<VolumeShared>, usize, BlockPointer, u8)> = Vec::new();
        let mut destroyed_volumes = Vec::new();
        self.apply_metadata(txg, &results, kills, &ops, &mut installs, &mut destroyed_volumes)
            .await?;
        let t3 = std::time::Instant::now();
        self.write_ddt(txg).await?;
        self.commit_space_and_root(txg).await?;
        if trace {
            let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
            let t4 = std::time::Instant::now();
            log::info!(
                "txg {txg}: {partitions} partitions, {data_blocks} blocks in {device_writes} device writes; trees {:.1} ms, writes {:.1} ms, \
                 metadata {:.1} ms, space+root {:.1} ms",
                ms(t0, t1),
                ms(t1, t2),
                ms(t2, t3),
                ms(t3, t4)
            );
        }

        // Durable: install the new state in memory.
        for r in &results {
            let mut p = lock(&r.volume.partitions[r.index]);
            p.root = r.root;
            p.height = r.height;
            p.syncing = None;
            drop(p);
            self.account_dirty(-(r.data_bytes as i64));
        }
        for (volume, index, bytes) in discarded {
            lock(&volume.partitions[index]).syncing = None;
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
        self.txg.durable_txg.store(txg, Ordering::SeqCst);
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
        txg: u64,
        run_min: u64,
    ) -> PoolResult<ShardSync> {
        let Some(route) = crate::route::Route::current() else {
            return self.sync_partitions(work, txg, run_min, crate::allocator::Hint::any(0)).await;
        };
        let shards = route.shards();
        let mut by_owner: Vec<Vec<PartWork>> = (0..shards).map(|_| Vec::new()).collect();
        for w in work {
            by_owner[route.partition_owner(w.volume.id, w.index)].push(w);
        }
        let mut remote = Vec::new();
        let mut local = Vec::new();
        for (shard, part) in by_owner.into_iter().enumerate() {
            if part.is_empty() {
                continue;
            }
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
        txg: u64,
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
            let start = (w.volume.id as usize).wrapping_mul(31).wrapping_add(w.index) % groups;
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
                v[r.index] =
                    PartitionRoot { root: r.root, height: u64::from(r.height), reserved: [0; 7] };
            }
        }
        roots
    }

    /// Applies kills and metadata operations, then rewrites deadlists, dataset objects and the
    /// directory. The metadata lock is held only between the (async) object writes.
    #[allow(clippy::too_many_lines)]
    async fn apply_metadata(
        &self,
        txg: u64,
        results: &[PartResult],
        kills: Vec<(u64, Vec<BlockPointer>)>,
        ops: &[MetaOp],
        installs: &mut Vec<(Arc<VolumeShared>, usize, BlockPointer, u8)>,
        destroyed_volumes: &mut Vec<u64>,
    ) -> PoolResult<()> {
        let mut head_roots = self.head_roots(results);
        let heads: Vec<Arc<VolumeShared>> = lock(&self.heads).values().cloned().collect();
        // Blocks that rollbacks and volume destroys free (walks need device reads, so they run
        // before the metadata lock is taken).
        let mut op_frees: Vec<BlockPointer> = Vec::new();
        for op in ops {
            if let MetaOp::Rollback { volume_id, .. } | MetaOp::DestroyVolume { volume_id } = op {
                let prev =
                    lock(&self.meta).datasets.get(volume_id).map_or(0, |d| d.phys.prev_snap_txg);
                for root in head_roots.get(volume_id).cloned().unwrap_or_default() {
                    op_frees.extend(blocks_born_after(self, root.root, prev).await?);
                }
            }
        }
        // Round A: kills and operations; deadlists to write.
        let mut deadlist_jobs = Vec::new();
        {
            let mut meta = lock(&self.meta);
            for r in results {
                if let Some(ds) = meta.datasets.get_mut(&r.volume.id) {
                    ds.phys.logical_bytes += r.added.logical_bytes;
                    ds.phys.physical_bytes += r.added.physical_bytes;
                }
            }
            for (id, killed) in kills {
                let Some(ds) = meta.datasets.get_mut(&id) else { continue };
                ds.dirty = true;
                for bp in killed {
                    if bp.block_kind() == Some(BlockKind::Data) {
                        ds.phys.logical_bytes =
                            ds.phys.logical_bytes.saturating_sub(u64::from(bp.logical_bytes));
                        ds.phys.physical_bytes =
                            ds.phys.physical_bytes.saturating_sub(u64::from(bp.physical_bytes));
                    }
                    self.kill(ds, bp, txg);
                }
            }
            for bp in op_frees {
                self.free_block(&bp, txg);
            }
            for op in ops {
                self.apply_op(
                    &mut meta,
                    op,
                    txg,
                    &mut head_roots,
                    &heads,
                    installs,
                    destroyed_volumes,
                )?;
            }
            for ds in meta.datasets.values_mut().filter(|d| d.deadlist_dirty) {
                let prev = std::mem::take(&mut ds.deadlist_object);
                ds.deadlist_dirty = false;
                ds.dirty = true;
                if ds.deadlist.is_empty() {
                    self.free_object(&prev, txg);
                    continue;
                }
                // A deadlist that only grew keeps its stored chunks: only the tail (copied
                // out from there) and a new chunk index are written.
                let all: &[u8] = bytemuck::cast_slice(ds.deadlist.entries());
                let stored = ds.deadlist.stored_prefix_bytes(&prev.bp);
                let chunk = MAX_BLOCK_BYTES as usize;
                let plan =
                    self.plan_rewrite(all.len(), &prev, |i| (i + 1) * chunk <= stored, txg)?;
                let from = plan.kept_prefix_bytes();
                let tail = all[from..].to_vec();
                deadlist_jobs.push((ds.phys.id, ds.deadlist.len(), plan, from, tail));
            }
        }
        let mut written = Vec::new();
        for (id, entries, plan, from, tail) in deadlist_jobs {
            written.push((
                id,
                entries,
                write_object_from(&self.devs, plan, BlockKind::DeadList, txg, from, &tail)
                    .await
                    .map_err(read_err)?,
            ));
        }
        // Round B: dataset objects to write.
        let mut dataset_jobs = Vec::new();
        {
            let mut meta = lock(&self.meta);
            for (id, entries, obj) in written {
                if let Some(ds) = meta.datasets.get_mut(&id) {
                    ds.deadlist.mark_stored(entries, obj.bp);
                    ds.deadlist_object = obj;
                }
            }
            for ds in meta.datasets.values_mut().filter(|d| d.dirty) {
                ds.phys.deadlist = ds.deadlist_object.bp;
                let roots = match ds.kind() {
                    DatasetKind::Volume => match head_roots.get(&ds.phys.id) {
                        Some(r) => r.clone(),
                        // Created after this sync started: the next txg writes it.
                        None => continue,
                    },
                    DatasetKind::Snapshot => ds.roots.clone(),
                };
                let bytes = encode_dataset(&ds.phys, &roots);
                self.free_object(&ds.object, txg);
                ds.object = StoredObject::none();
                ds.dirty = false;
                let mut hint = self.alloc.next_hint();
                let plan = ObjectPlan::allocate(&self.alloc, &mut hint, bytes.len())
                    .ok_or(PoolError::NoSpace)?;
                dataset_jobs.push((ds.phys.id, plan, bytes));
            }
            if !dataset_jobs.is_empty() {
                meta.dirty = true;
            }
        }
        let mut written = Vec::new();
        for (id, plan, bytes) in dataset_jobs {
            written.push((
                id,
                write_object(&self.devs, plan, BlockKind::Dataset, txg, &bytes)
                    .await
                    .map_err(read_err)?,
            ));
        }
        // Round C: the directory.
        let job = {
            let mut meta = lock(&self.meta);
            let rewritten: Vec<u64> = written.iter().map(|(id, _)| *id).collect();
            for (id, obj) in written {
                if let Some(ds) = meta.datasets.get_mut(&id) {
                    ds.object = obj;
                }
            }
            self.plan_directory(&mut meta, &rewritten, txg)?
        };
        if let Some((plan, bytes)) = job {
            let obj = write_object(&self.devs, plan, BlockKind::Directory, txg, &bytes)
                .await
                .map_err(read_err)?;
            let mut meta = lock(&self.meta);
            meta.directory = obj;
            meta.directory_bytes = bytes;
        }
        Ok(())
    }

    /// The directory's next version when it must be rewritten: the entries of the datasets
    /// whose objects moved (`rewritten`) are patched in place when no dataset came or went
    /// since the last version, else every entry is laid out again. Only the chunks whose
    /// bytes changed are planned for writing; the rest of the previous version is kept.
    fn plan_directory(
        &self,
        meta: &mut Meta,
        rewritten: &[u64],
        txg: u64,
    ) -> PoolResult<Option<(ObjectPlan, Vec<u8>)>> {
        if !meta.dirty {
            return Ok(None);
        }
        meta.dirty = false;
        let size = std::mem::size_of::<DirectoryEntry>();
        let chunk = MAX_BLOCK_BYTES as usize;
        let old = std::mem::take(&mut meta.directory);
        let mut bytes = std::mem::take(&mut meta.directory_bytes);
        let slots: Option<Vec<(usize, DirectoryEntry)>> =
            meta.directory_slots.as_ref().and_then(|slots| {
                rewritten
                    .iter()
                    .map(|id| Some((*slots.get(id)?, directory_entry(meta.datasets.get(id)?))))
                    .collect()
            });
        let changed: Option<HashSet<usize>> = match slots {
            Some(slots) if slots.iter().all(|(slot, _)| (slot + 1) * size <= bytes.len()) => {
                let mut changed = HashSet::new();
                for (slot, entry) in slots {
                    let at = slot * size;
                    bytes[at..at + size].copy_from_slice(bytemuck::bytes_of(&entry));
                    changed.insert(at / chunk);
                    changed.insert((at + size - 1) / chunk);
                }
                Some(changed)
            }
            _ => None,
        };
        let plan = if let Some(changed) = changed {
            self.plan_rewrite(bytes.len(), &old, |i| !changed.contains(&i), txg)?
        } else {
            let entries: Vec<DirectoryEntry> = meta
                .datasets
                .values()
                .filter(|d| !d.object.bp.is_hole())
                .map(directory_entry)
                .collect();
            if entries.len() != meta.datasets.len() {
                meta.dirty = true;
            }
            meta.set_directory_slots(&entries);
            let old_bytes = std::mem::replace(&mut bytes, bytemuck::cast_slice(&entries).to_vec());
            let same = |i: usize| {
                let range = i * chunk..(i + 1) * chunk;
                old_bytes.get(range.clone()).is_some_and(|o| bytes.get(range) == Some(o))
            };
            self.plan_rewrite(bytes.len(), &old, same, txg)?
        };
        Ok(Some((plan, bytes)))
    }

    /// Plans the new version (`len_bytes`) of object `prev`, keeping the chunks `unchanged`
    /// names; frees in `txg` what it does not keep and counts what it keeps.
    fn plan_rewrite(
        &self,
        len_bytes: usize,
        prev: &StoredObject,
        unchanged: impl Fn(usize) -> bool,
        txg: u64,
    ) -> PoolResult<ObjectPlan> {
        let mut hint = self.alloc.next_hint();
        let plan = ObjectPlan::allocate_reusing(&self.alloc, &mut hint, len_bytes, prev, unchanged)
            .ok_or(PoolError::NoSpace)?;
        for e in plan.released(prev) {
            self.alloc.free(e, txg);
        }
        self.stats.metadata_chunks_kept.fetch_add(plan.kept_chunks() as u64, Ordering::Relaxed);
        Ok(plan)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_op(
        &self,
        meta: &mut Meta,
        op: &MetaOp,
        txg: u64,
        head_roots: &mut HashMap<u64, Vec<PartitionRoot>>,
        heads: &[Arc<VolumeShared>],
        installs: &mut Vec<(Arc<VolumeShared>, usize, BlockPointer, u8)>,
        destroyed_volumes: &mut Vec<u64>,
    ) -> PoolResult<()> {
        // Every operation may rewrite deadlists (rollback, destroy): sliced readers start over.
        meta.generation += 1;
        match op {
            MetaOp::Snapshot { volume_id, snapshot_id, name } => {
                let Some(roots) = head_roots.get(volume_id).cloned() else { return Ok(()) };
                let Some(head) = meta.datasets.get_mut(volume_id) else { return Ok(()) };
                let mut phys = head.phys;
                phys.id = *snapshot_id;
                phys.kind = DatasetKind::Snapshot as u32;
                phys.parent_id = *volume_id;
                phys.origin_id = 0;
                phys.creation_txg = txg;
                phys.reservation_bytes = 0;
                phys.flags = 0;
                phys.deadlist = BlockPointer::HOLE;
                phys.name = crate::dataset::name_field(name)?;
                let deadlist = head.deadlist.take();
                head.deadlist_dirty = true;
                head.phys.prev_snap_txg = txg;
                head.dirty = true;
                meta.insert(DatasetMeta {
                    phys,
                    roots,
                    object: StoredObject::none(),
                    deadlist,
                    deadlist_object: StoredObject::none(),
                    dirty: true,
                    deadlist_dirty: true,
                });
                meta.dirty = true;
            }
            MetaOp::Rollback { volume_id, snapshot_id } => {
                let Some(snap) = meta.datasets.get(snapshot_id).cloned() else { return Ok(()) };
                let Some(volume) = heads.iter().find(|h| h.id == *volume_id) else { return Ok(()) };
                for (index, snap_root) in snap.roots.iter().enumerate() {
                    let height = u8::try_from(snap_root.height).unwrap_or(1);
                    installs.push((Arc::clone(volume), index, snap_root.root, height));
                }
                head_roots.insert(*volume_id, snap.roots.clone());
                if let Some(head) = meta.datasets.get_mut(volume_id) {
                    // The head references the snapshot's blocks again.
                    head.phys.logical_bytes = snap.phys.logical_bytes;
                    head.phys.physical_bytes = snap.phys.physical_bytes;
                    head.deadlist.clear();
                    head.deadlist_dirty = true;
                    head.dirty = true;
                }
            }
            MetaOp::DestroyVolume { volume_id } => {
                let Some(ds) = meta.remove(*volume_id) else { return Ok(()) };
                head_roots.remove(volume_id);
                self.free_object(&ds.object, txg);
                self.free_object(&ds.deadlist_object, txg);
                destroyed_volumes.push(*volume_id);
                meta.dirty = true;
            }
            MetaOp::DestroySnapshot { snapshot_id } => {
                self.destroy_snapshot_in_sync(meta, *snapshot_id, txg);
            }
        }
        Ok(())
    }

    /// Destroys a snapshot: blocks only it held are freed, its deadlist moves to the next
    /// dataset in its volume's timeline.
    fn destroy_snapshot_in_sync(&self, meta: &mut Meta, snapshot_id: u64, txg: u64) {
        let Some(snap) = meta.datasets.get(&snapshot_id).cloned() else { return };
        let parent = snap.phys.parent_id;
        let (before, after) = meta.snapshot_neighbours(&snap);
        let origin_txg = meta
            .datasets
            .get(&parent)
            .and_then(|v| meta.datasets.get(&v.phys.origin_id))
            .map_or(0, |o| o.phys.creation_txg);
        let prev_txg = before
            .and_then(|id| meta.datasets.get(&id))
            .map_or(origin_txg, |d| d.phys.creation_txg);
        let next_id = after.unwrap_or(parent);
        let Some(next) = meta.datasets.get_mut(&next_id) else { return };
        let mut keep = Vec::with_capacity(next.deadlist.len());
        for &bp in next.deadlist.take().entries() {
            if bp.birth_txg > prev_txg {
                self.free_block(&bp, txg);
            } else {
                keep.push(bp);
            }
        }
        keep.extend(snap.deadlist.iter().copied());
        next.deadlist = DeadList::from(keep);
        next.deadlist_dirty = true;
        next.dirty = true;
        if next_id == parent && next.phys.prev_snap_txg == snap.phys.creation_txg {
            next.phys.prev_snap_txg = prev_txg;
        }
        self.free_object(&snap.object, txg);
        self.free_object(&snap.deadlist_object, txg);
        meta.remove(snapshot_id);
        meta.dirty = true;
    }

    /// Space maps, space-map table, pool root, flushes and the uberblock.
    async fn commit_space_and_root(&self, txg: u64) -> PoolResult<()> {
        let (old_table, old_root, directory, next_id) = {
            let mut meta = lock(&self.meta);
            (
                std::mem::take(&mut meta.space_map_table),
                std::mem::take(&mut meta.root),
                meta.directory.bp,
                meta.next_id,
            )
        };
        self.free_object(&old_table, txg);
        self.free_object(&old_root, txg);
        let groups = self.alloc.group_count();
        let table_len = groups * std::mem::size_of::<BlockPointer>();
        let root_len = std::mem::size_of::<PoolRootPhys>();
        let mut hint = self.alloc.next_hint();
        let table_plan =
            ObjectPlan::allocate(&self.alloc, &mut hint, table_len).ok_or(PoolError::NoSpace)?;
        let root_plan =
            ObjectPlan::allocate(&self.alloc, &mut hint, root_len).ok_or(PoolError::NoSpace)?;
        // Relocate the space map of every group that changed, until no unrelocated group is
        // dirty (relocating one may dirty another).
        let mut plans: Vec<(usize, ObjectPlan)> = Vec::new();
        let mut relocated = HashSet::new();
        loop {
            let dirty: Vec<usize> =
                self.alloc.dirty_groups().into_iter().filter(|g| !relocated.contains(g)).collect();
            if dirty.is_empty() {
                break;
            }
            for g in dirty {
                relocated.insert(g);
                let (old, len) = {
                    let group = self.alloc.group(g);
                    (
                        std::mem::take(&mut group.space_map_extents.clone()),
                        group.units().div_ceil(8),
                    )
                };
                for e in old {
                    self.alloc.free(e, txg);
                }
                let len = usize::try_from(len).expect("space map fits").next_multiple_of(4096);
                let plan =
                    ObjectPlan::allocate(&self.alloc, &mut hint, len).ok_or(PoolError::NoSpace)?;
                plans.push((g, plan));
            }
        }
        for (g, plan) in plans {
            let image = self.alloc.group(g).persist_image();
            let stored = write_object(&self.devs, plan, BlockKind::SpaceMap, txg, &image)
                .await
                .map_err(read_err)?;
            let mut group = self.alloc.group(g);
            group.space_map = stored.bp;
            group.space_map_extents = stored.extents;
            group.dirty = false;
        }
        let table: Vec<BlockPointer> = (0..groups).map(|g| self.alloc.group(g).space_map).collect();
        let table_obj = write_object(
            &self.devs,
            table_plan,
            BlockKind::SpaceMapTable,
            txg,
            bytemuck::cast_slice(&table),
        )
        .await
        .map_err(read_err)?;
        let mut root = PoolRootPhys {
            magic: POOL_ROOT_MAGIC,
            txg,
            next_dataset_id: next_id,
            next_record_sequence: self.txg.next_record_sequence.load(Ordering::SeqCst),
            ag_count: u32::try_from(groups).expect("group count fits"),
            log_chain_count: 0,
            reserve_percent: self.reserve_percent,
            reserved0: 0,
            directory,
            space_map_table: table_obj.bp,
            ..bytemuck::Zeroable::zeroed()
        };
        let chains = self.zil.heads_for(txg);
        root.log_chain_count = u32::try_from(chains.len()).expect("chains fit");
        root.ddt_index = self.ddt.index_bp();
        root.log_chains[..chains.len()].copy_from_slice(&chains);
        let root_obj = write_object(
            &self.devs,
            root_plan,
            BlockKind::PoolRoot,
            txg,
            bytemuck::bytes_of(&root),
        )
        .await
        .map_err(read_err)?;
        {
            let mut meta = lock(&self.meta);
            meta.space_map_table = table_obj;
            meta.root = root_obj.clone();
        }
        self.devs.flush_all().await?;
        let device_count = u32::try_from(self.device_configs.len()).expect("devices fit");
        let ub = Uberblock::new(self.guid, txg, device_count, root_obj.bp);
        write_uberblocks(&self.devs, &self.device_configs, ub).await?;
        self.devs.flush_all().await?;
        Ok(())
    }

    /// Recomputes the unused part of thick volumes' reservations.
    pub(crate) fn refresh_reservations(&self) {
        let total = self.unused_reservation_bytes();
        self.reserved_unused_bytes.store(total, Ordering::Relaxed);
    }

    /// The part of thick volumes' reservations their data does not use yet.
    pub(crate) fn unused_reservation_bytes(&self) -> u64 {
        let meta = lock(&self.meta);
        let heads = lock(&self.heads);
        // Only volumes reserve: walk the open heads, not every snapshot.
        heads
            .iter()
            .filter_map(|(id, h)| Some((meta.datasets.get(id)?, h)))
            .filter(|(d, _)| d.kind() == DatasetKind::Volume && d.phys.reservation_bytes > 0)
            .map(|(d, h)| d.phys.reservation_bytes.saturating_sub(h.referenced_bytes()))
            .sum()
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
