//! The scrub's walk over the pool's metadata and trees (see the module docs for the rules).

use std::collections::HashMap;

use super::record::{Cursor, DatasetKey};
use super::{BadBlock, DatasetRef, Scrub, ScrubState, POOL_METADATA};
use crate::block_pointer::{BlockKind, BlockPointer};
use crate::block_tree::{load_indirect, lookup_at, FANOUT};
use crate::dataset::DatasetKind;
use crate::ddt::is_dedup;
use crate::join::for_each_bounded;
use crate::label::DeviceRole;
use crate::object::{decode_chunk_index, StoredObject};
use crate::pool::{lock, Pool};
use crate::units::PartitionId;
use crate::vdev::{BlockReadError, ScrubOutcome};

/// Where a block was found, to re-check that it is still referenced there.
pub(super) enum Found<'a> {
    /// A metadata object's block.
    Meta { dataset: &'a str, what: &'a str },
    /// A tree block: `index` among the pointers at `level` of partition `partition`, under
    /// the tree at `root` the walk started from.
    Tree { ds: &'a DatasetRef, partition: usize, level: u8, index: u64, root: BlockPointer },
}

/// Data blocks of one indirect block checked at once.
const DATA_DEPTH: usize = 16;

/// Bytes a scrub examines: allocated space less the intent-log regions on data devices.
pub(super) fn to_examine_bytes(pool: &Pool) -> u64 {
    let log_bytes: u64 = pool
        .zil
        .regions()
        .filter(|(device, _)| {
            pool.device_configs
                .get(usize::from(*device))
                .is_some_and(|c| c.role == DeviceRole::Data as u32)
        })
        .map(|(_, bytes)| bytes)
        .sum();
    pool.capacity_bytes().saturating_sub(pool.free_bytes()).saturating_sub(log_bytes)
}

/// Pushes an object's pointers (its index and chunks, or its one block).
fn push_object(
    out: &mut Vec<(String, String, BlockPointer)>,
    ds: &str,
    what: &str,
    o: &StoredObject,
) {
    for bp in std::iter::once(&o.bp).chain(&o.chunks) {
        if !bp.is_hole() {
            out.push((ds.to_string(), what.to_string(), *bp));
        }
    }
}

/// Every metadata block of the pool now: (dataset or `pool`, what, pointer).
pub(super) async fn metadata_pointers(pool: &Pool) -> Vec<(String, String, BlockPointer)> {
    let mut out = Vec::new();
    {
        let meta = lock(&pool.meta);
        push_object(&mut out, POOL_METADATA, "pool root", &meta.root);
        push_object(&mut out, POOL_METADATA, "space map table", &meta.space_map_table);
        push_object(&mut out, POOL_METADATA, "directory", &meta.directory);
        for ds in meta.datasets.values() {
            push_object(&mut out, &ds.name(), "dataset object", &ds.object);
            push_object(&mut out, &ds.name(), "deadlist object", &ds.deadlist_object);
        }
    }
    for o in pool.ddt.stored_objects() {
        push_object(&mut out, POOL_METADATA, "dedup object", &o);
    }
    let maps: Vec<BlockPointer> =
        (0..pool.alloc.group_count()).map(|g| pool.alloc.group(g).space_map).collect();
    for (g, bp) in maps.into_iter().enumerate() {
        if bp.is_hole() {
            continue;
        }
        let what = format!("space map {g}");
        out.push((POOL_METADATA.into(), what.clone(), bp));
        if bp.block_kind() == Some(BlockKind::ChunkIndex) {
            let Ok(buf) = pool.devs.read_block(&bp).await else { continue };
            let logical = (bp.logical_bytes as usize).min(buf.len());
            for c in decode_chunk_index(&buf[..logical]).unwrap_or_default() {
                out.push((POOL_METADATA.into(), what.clone(), c));
            }
        }
    }
    out
}

/// The datasets, in walk order: snapshots by creation txg, then the heads.
fn dataset_plan(pool: &Pool) -> Vec<DatasetRef> {
    let meta = lock(&pool.meta);
    let mut plan: Vec<DatasetRef> = meta
        .datasets
        .values()
        .map(|ds| {
            let snapshot = ds.kind() == DatasetKind::Snapshot;
            let lineage = if snapshot { ds.phys.parent_id } else { ds.phys.id };
            DatasetRef {
                id: ds.phys.id,
                name: ds.name(),
                snapshot,
                lineage,
                // The volume's origin: a clone's snapshots start from it too.
                origin_id: meta.datasets.get(&lineage).map_or(0, |v| v.phys.origin_id),
                creation_txg: ds.phys.creation_txg,
            }
        })
        .collect();
    plan.sort_by_key(|d| (!d.snapshot, d.creation_txg, d.id));
    plan
}

/// The partition roots of `ds` now ((root, height) each), or `None` once it is gone.
fn roots(pool: &Pool, ds: &DatasetRef) -> Option<Vec<(BlockPointer, u8)>> {
    if ds.snapshot {
        let meta = lock(&pool.meta);
        let d = meta.datasets.get(&ds.id)?;
        return Some(
            d.roots.iter().map(|r| (r.root, u8::try_from(r.height).unwrap_or(u8::MAX))).collect(),
        );
    }
    let shared = lock(&pool.heads).get(&ds.id).cloned()?;
    let roots = shared
        .partitions
        .iter()
        .map(|p| {
            let p = lock(p);
            (p.root, p.height)
        })
        .collect();
    Some(roots)
}

/// The state the walk ends in when it must end now.
fn ended(pool: &Pool, job: &Scrub) -> Option<ScrubState> {
    if pool.is_suspended() {
        Some(ScrubState::Canceled)
    } else if job.stopping() {
        Some(ScrubState::Stopped)
    } else {
        None
    }
}

impl DatasetRef {
    /// Its place in the walk's order.
    fn key(&self) -> DatasetKey {
        DatasetKey { head: !self.snapshot, creation_txg: self.creation_txg, id: self.id }
    }
}

/// Walks the pool: metadata, then the datasets, from the scrub's cursor on (see the module
/// docs). Returns how it ended.
pub(super) async fn run(pool: &Pool, job: &Scrub) -> ScrubState {
    let resume = job.resume_from();
    if resume.dataset.is_none() {
        for (dataset, what, bp) in metadata_pointers(pool).await {
            if let Some(state) = ended(pool, job) {
                return state;
            }
            job.pace(pool).await;
            check(pool, job, &bp, &Found::Meta { dataset: &dataset, what: &what }).await;
        }
    }
    // Per lineage: creation txg of the newest snapshot of it walked whole. Blocks born at
    // or before it were checked there.
    let mut covered: HashMap<u64, u64> = HashMap::new();
    for ds in dataset_plan(pool) {
        let key = ds.key();
        // A resumed walk passes the datasets before its cursor; their lineages count as not
        // covered (the module docs say why).
        let (first_partition, first_block) = match resume.dataset {
            Some(at) if key < at => continue,
            Some(at) if key == at => (resume.partition as usize, resume.block),
            _ => (0, 0),
        };
        let Some(trees) = roots(pool, &ds) else { continue };
        let origin_floor = covered.get(&ds.origin_id).copied();
        let floor = covered.get(&ds.lineage).copied().or(origin_floor).unwrap_or(0);
        for (partition, (root, height)) in trees.into_iter().enumerate().skip(first_partition) {
            let start = if partition == first_partition { first_block } else { 0 };
            job.set_cursor(Cursor {
                dataset: Some(key),
                partition: u32::try_from(partition).unwrap_or(u32::MAX),
                block: start,
            });
            let tree = Tree { pool, job, ds: &ds, partition, root, floor, start };
            if let Err(state) = tree.walk(height).await {
                return state;
            }
        }
        // Counted as covering its blocks only if it still exists: one destroyed during its
        // walk may have lost blocks the next dataset of its lineage holds.
        if ds.snapshot && roots(pool, &ds).is_some() {
            covered.insert(ds.lineage, ds.creation_txg);
            // A clone of this snapshot starts from it.
            covered.insert(ds.id, ds.creation_txg);
        }
    }
    ended(pool, job).unwrap_or(ScrubState::Finished)
}

/// One partition tree of one dataset.
struct Tree<'a> {
    pool: &'a Pool,
    job: &'a Scrub,
    ds: &'a DatasetRef,
    partition: usize,
    root: BlockPointer,
    /// Blocks born at or before this txg were checked in an older dataset.
    floor: u64,
    /// Data blocks below this index were checked before the walk was resumed.
    start: u64,
}

/// Data-block indices below the block at `index` of `level` end (saturating).
fn range_end(level: u8, index: u64) -> u64 {
    let span = (FANOUT as u64).checked_pow(u32::from(level)).unwrap_or(u64::MAX);
    index.saturating_add(1).saturating_mul(span)
}

impl Tree<'_> {
    fn skip(&self, bp: &BlockPointer) -> bool {
        bp.is_hole() || (bp.birth_txg <= self.floor && !is_dedup(bp))
    }

    /// True when every data block under the block at `index` of `level` is below the
    /// resumed walk's start.
    fn before_start(&self, level: u8, index: u64) -> bool {
        range_end(level, index) <= self.start
    }

    fn found(&self, level: u8, index: u64) -> Found<'_> {
        Found::Tree { ds: self.ds, partition: self.partition, level, index, root: self.root }
    }

    /// Checks the tree depth first; memory is one indirect block's children per level.
    async fn walk(&self, height: u8) -> Result<(), ScrubState> {
        let (pool, job) = (self.pool, self.job);
        let cache = pool.cache.for_partition(self.ds.id, PartitionId::new(self.partition));
        let mut stack = vec![(self.root, height, 0u64)];
        while let Some((bp, level, index)) = stack.pop() {
            if let Some(state) = ended(pool, job) {
                return Err(state);
            }
            if self.skip(&bp) || self.before_start(level, index) {
                continue;
            }
            job.pace(pool).await;
            if !check(pool, job, &bp, &self.found(level, index)).await || level == 0 {
                continue;
            }
            let Ok(children) = load_indirect(&pool.devs, cache, &bp).await else { continue };
            let base = index * FANOUT as u64;
            if level == 1 {
                self.data_blocks(&children, base).await;
                job.advance(base + children.len() as u64);
            } else {
                for (i, c) in children.iter().enumerate().rev() {
                    stack.push((*c, level - 1, base + i as u64));
                }
            }
        }
        Ok(())
    }

    /// Checks the data blocks of one indirect block, [`DATA_DEPTH`] at a time.
    async fn data_blocks(&self, children: &[BlockPointer], base: u64) {
        let todo: Vec<usize> = (0..children.len())
            .filter(|&i| !self.skip(&children[i]) && base + i as u64 >= self.start)
            .collect();
        let found: Vec<Found<'_>> = todo.iter().map(|&i| self.found(0, base + i as u64)).collect();
        for_each_bounded(
            todo.len(),
            DATA_DEPTH,
            |k| check(self.pool, self.job, &children[todo[k]], &found[k]),
            |_, _| {},
        )
        .await;
    }
}

/// Scrubs one block and records what it found; false when no good copy was found.
pub(super) async fn check(pool: &Pool, job: &Scrub, bp: &BlockPointer, found: &Found<'_>) -> bool {
    let res = pool.devs.scrub_block(bp).await;
    let repaired = res.as_ref().map_or(0, |o| o.repaired_bytes);
    job.examined(u64::from(bp.physical_bytes), repaired);
    let reason = match res {
        Ok(ScrubOutcome { unrepairable: false, .. }) => return true,
        Ok(_) | Err(BlockReadError::Checksum) => "checksum".to_string(),
        Err(BlockReadError::Io(e)) => format!("device error {e}"),
    };
    if still_referenced(pool, bp, found).await {
        job.bad(bad_block(bp, found, reason));
    }
    false
}

fn bad_block(bp: &BlockPointer, found: &Found<'_>, reason: String) -> BadBlock {
    let (dataset, place) = match found {
        Found::Meta { dataset, what } => ((*dataset).to_string(), (*what).to_string()),
        Found::Tree { ds, partition, level, index, .. } => {
            (ds.name.clone(), format!("partition {partition} level {level} block {index}"))
        }
    };
    BadBlock {
        dataset,
        location: format!("{place}, device {} offset {}", bp.device, bp.offset_bytes),
        device: bp.device,
        offset_bytes: bp.offset_bytes,
        reason,
    }
}

/// True when `bp` is still referenced where it was found (see the module docs).
async fn still_referenced(pool: &Pool, bp: &BlockPointer, found: &Found<'_>) -> bool {
    let Found::Tree { ds, partition, level, index, root } = found else {
        return metadata_pointers(pool).await.iter().any(|(_, _, p)| p.same_block(bp));
    };
    if ds.snapshot {
        // Immutable: referenced as long as it exists.
        return lock(&pool.meta).datasets.contains_key(&ds.id);
    }
    let Some(shared) = lock(&pool.heads).get(&ds.id).cloned() else { return false };
    if shared.destroyed.load(std::sync::atomic::Ordering::SeqCst) {
        return false;
    }
    let (current, height) = {
        let p = lock(shared.partition(PartitionId::new(*partition)));
        if *level == 0 && p.dirty(*index).is_some() {
            // Overwritten: the next sync replaces it.
            return false;
        }
        (p.root, p.height)
    };
    if current.same_block(root) {
        return true;
    }
    if *level > height {
        return false;
    }
    let cache = pool.cache.for_partition(ds.id, PartitionId::new(*partition));
    match lookup_at(&pool.devs, cache, &current, height, (*level, *index)).await {
        Ok(now) => now.same_block(bp),
        // The path to it is unreadable: the damage is real either way.
        Err(_) => true,
    }
}
