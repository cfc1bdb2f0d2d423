//! The data phase of a txg sync: each shard's frozen partitions become stored blocks
//! (compressed, deduplicated, checksummed), placed in runs from the shard's allocation groups
//! and written in large coalesced writes, with the touched indirect blocks rewritten bottom-up.

use super::*;
use crate::units::TxgId;

/// The pointer to a data block of `v` logical bytes stored as `s` at `extent`.
fn data_pointer(extent: &Extent, txg: TxgId, s: &StoredForm, v: u64) -> BlockPointer {
    BlockPointer {
        offset_bytes: extent.offset_bytes,
        birth_txg: txg.get(),
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

impl Pool {
    /// Builds one partition's new tree; data and indirect writes are appended to `writes`.
    pub(super) async fn sync_partition(
        &self,
        work: &PartWork,
        stored: Vec<StoredForm>,
        txg: TxgId,
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
    pub(super) fn allocate_data_run(
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
    pub(super) fn spawn_writes(
        &self,
        writes: Vec<PendingWrite>,
    ) -> drivers::executor::JoinHandle<PoolResult<()>> {
        let pool = self.arc();
        drivers::executor::spawn(async move { pool.write_all(writes).await })
    }

    /// Issues `writes` coalesced into large vectored device writes straight from the blocks'
    /// memory, verifying every block's checksum right before its write is issued.
    pub(super) async fn write_all(&self, mut writes: Vec<PendingWrite>) -> PoolResult<()> {
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
    pub(super) fn kill(&self, ds: &mut DatasetMeta, bp: BlockPointer, txg: TxgId) {
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
    pub(super) async fn same_bytes(&self, fp: &Fingerprint, extent: &Extent, bytes: &[u8]) -> bool {
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
    pub(super) fn free_block(&self, bp: &BlockPointer, txg: TxgId) {
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
    pub(super) async fn write_ddt(&self, txg: TxgId) -> PoolResult<()> {
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

    pub(super) async fn write_ddt_object(
        &self,
        kind: BlockKind,
        txg: TxgId,
        bytes: &[u8],
    ) -> PoolResult<StoredObject> {
        let mut hint = self.alloc.next_hint();
        let plan =
            ObjectPlan::allocate(&self.alloc, &mut hint, bytes.len()).ok_or(PoolError::NoSpace)?;
        write_object(&self.devs, plan, kind, txg, bytes).await.map_err(read_err)
    }
}
