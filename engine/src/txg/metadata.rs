//! The metadata phase of a txg sync: kills and metadata operations applied to the datasets,
//! then deadlists, dataset objects and the directory rewritten (only their changed chunks).

use super::*;
use crate::units::TxgId;

/// A deadlist to rewrite: dataset id, entries, the plan, the bytes kept from the stored
/// version, and the tail to write after them.
type DeadlistJob = (u64, usize, ObjectPlan, usize, Vec<u8>);

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
    after_txg: TxgId,
) -> PoolResult<Vec<BlockPointer>> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(bp) = stack.pop() {
        if bp.is_hole() || bp.birth_txg <= after_txg.get() {
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
    pub(super) fn free_object(&self, object: &StoredObject, txg: TxgId) {
        for e in &object.extents {
            self.alloc.free(*e, txg);
        }
    }

    /// Applies kills and metadata operations, then rewrites deadlists, dataset objects and the
    /// directory. The metadata lock is held only between the (async) object writes.
    pub(super) async fn apply_metadata(
        &self,
        txg: TxgId,
        results: &[PartResult],
        kills: Vec<(u64, Vec<BlockPointer>)>,
        ops: &[MetaOp],
        installs: &mut Vec<(Arc<VolumeShared>, usize, BlockPointer, u8)>,
        destroyed_volumes: &mut Vec<u64>,
    ) -> PoolResult<()> {
        let mut head_roots = self.head_roots(results);
        let heads: Vec<Arc<VolumeShared>> = lock(&self.heads).values().cloned().collect();
        let op_frees = self.op_frees(ops, &head_roots).await?;
        // Round A: kills and operations; deadlists to write.
        let deadlist_jobs = {
            let mut meta = lock(&self.meta);
            self.apply_kills(&mut meta, results, kills, txg);
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
            self.plan_deadlists(&mut meta, txg)?
        };
        let written = self.write_deadlists(deadlist_jobs, txg).await?;
        // Round B: dataset objects to write.
        let dataset_jobs = {
            let mut meta = lock(&self.meta);
            for (id, entries, obj) in written {
                if let Some(ds) = meta.datasets.get_mut(&id) {
                    ds.deadlist.mark_stored(entries, obj.bp);
                    ds.deadlist_object = obj;
                }
            }
            self.plan_dataset_objects(&mut meta, &head_roots, txg)?
        };
        let written = self.write_dataset_objects(dataset_jobs, txg).await?;
        // Round C: the directory.
        self.write_directory(written, txg).await
    }

    /// Blocks that rollbacks and volume destroys free. The walks need device reads, so they
    /// run before the metadata lock is taken.
    async fn op_frees(
        &self,
        ops: &[MetaOp],
        head_roots: &HashMap<u64, Vec<PartitionRoot>>,
    ) -> PoolResult<Vec<BlockPointer>> {
        let mut op_frees: Vec<BlockPointer> = Vec::new();
        for op in ops {
            if let MetaOp::Rollback { volume_id, .. } | MetaOp::DestroyVolume { volume_id } = op {
                let prev =
                    lock(&self.meta).datasets.get(volume_id).map_or(0, |d| d.phys.prev_snap_txg);
                for root in head_roots.get(volume_id).cloned().unwrap_or_default() {
                    op_frees.extend(blocks_born_after(self, root.root, TxgId::new(prev)).await?);
                }
            }
        }
        Ok(op_frees)
    }

    /// Adds the txg's written bytes to each volume's figures, then kills the blocks it
    /// replaced (freed, or put on the deadlist when a snapshot still holds them).
    fn apply_kills(
        &self,
        meta: &mut Meta,
        results: &[PartResult],
        kills: Vec<(u64, Vec<BlockPointer>)>,
        txg: TxgId,
    ) {
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
    }

    /// Plans the rewrite of every changed deadlist (an emptied one is freed).
    fn plan_deadlists(&self, meta: &mut Meta, txg: TxgId) -> PoolResult<Vec<DeadlistJob>> {
        let mut deadlist_jobs = Vec::new();
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
            let plan = self.plan_rewrite(all.len(), &prev, |i| (i + 1) * chunk <= stored, txg)?;
            let from = plan.kept_prefix_bytes();
            let tail = all[from..].to_vec();
            deadlist_jobs.push((ds.phys.id, ds.deadlist.len(), plan, from, tail));
        }
        Ok(deadlist_jobs)
    }

    /// Writes the planned deadlists: (dataset id, entries stored, object) for each.
    async fn write_deadlists(
        &self,
        deadlist_jobs: Vec<DeadlistJob>,
        txg: TxgId,
    ) -> PoolResult<Vec<(u64, usize, StoredObject)>> {
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
        Ok(written)
    }

    /// Frees the object of every dirty dataset and plans its new one: (id, plan, bytes).
    fn plan_dataset_objects(
        &self,
        meta: &mut Meta,
        head_roots: &HashMap<u64, Vec<PartitionRoot>>,
        txg: TxgId,
    ) -> PoolResult<Vec<(u64, ObjectPlan, Vec<u8>)>> {
        let mut dataset_jobs = Vec::new();
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
        Ok(dataset_jobs)
    }

    /// Writes the planned dataset objects: (dataset id, object) for each.
    async fn write_dataset_objects(
        &self,
        dataset_jobs: Vec<(u64, ObjectPlan, Vec<u8>)>,
        txg: TxgId,
    ) -> PoolResult<Vec<(u64, StoredObject)>> {
        let mut written = Vec::new();
        for (id, plan, bytes) in dataset_jobs {
            written.push((
                id,
                write_object(&self.devs, plan, BlockKind::Dataset, txg, &bytes)
                    .await
                    .map_err(read_err)?,
            ));
        }
        Ok(written)
    }

    /// Installs the rewritten dataset objects, then writes the directory when it changed.
    async fn write_directory(
        &self,
        written: Vec<(u64, StoredObject)>,
        txg: TxgId,
    ) -> PoolResult<()> {
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
    pub(super) fn plan_directory(
        &self,
        meta: &mut Meta,
        rewritten: &[u64],
        txg: TxgId,
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
    pub(super) fn plan_rewrite(
        &self,
        len_bytes: usize,
        prev: &StoredObject,
        unchanged: impl Fn(usize) -> bool,
        txg: TxgId,
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
    pub(super) fn apply_op(
        &self,
        meta: &mut Meta,
        op: &MetaOp,
        txg: TxgId,
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
                phys.creation_txg = txg.get();
                phys.reservation_bytes = 0;
                phys.flags = 0;
                phys.deadlist = BlockPointer::HOLE;
                phys.name = crate::dataset::name_field(name)?;
                let deadlist = head.deadlist.take();
                head.deadlist_dirty = true;
                head.phys.prev_snap_txg = txg.get();
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
    pub(super) fn destroy_snapshot_in_sync(&self, meta: &mut Meta, snapshot_id: u64, txg: TxgId) {
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
}
