//! Snapshots and clones: instant (a snapshot records the partition roots at a txg; nothing is
//! copied), rollback to the newest snapshot, destroy, and space accounting from deadlists
//! (docs/format.md §Datasets).
//!
//! Block ownership follows birth txgs: a block born after a volume's newest snapshot belongs
//! to the volume alone and is freed when the volume kills it; an older one is still held by a
//! snapshot and goes to the volume's deadlist. Taking a snapshot hands the volume's deadlist to
//! the snapshot. Destroying a snapshot frees the blocks on the next dataset's deadlist that were
//! born after the previous snapshot (only the destroyed one held them).

use std::sync::atomic::Ordering;

use crate::block_pointer::BlockPointer;
use crate::dataset::{name_field, DatasetKind};
use crate::ddt::{bp_fingerprint, is_dedup, Fingerprint};
use crate::error::{PoolError, PoolResult};
use crate::meta::{DatasetMeta, Meta, MetaOp};
use crate::pool::{lock, volume_name_field, Pool};
use crate::txg::blocks_born_after;
use crate::units::TxgId;
use crate::volume::PoolVolume;

/// One snapshot in a listing, with its space figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSpace {
    /// Full name `volume@snapshot`.
    pub name: String,
    /// Txg the snapshot was taken in.
    pub creation_txg: u64,
    /// Exactly what destroying this snapshot alone would free (the blocks only it holds).
    pub destroy_frees_bytes: u64,
}

/// Space figures of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpaceFigures {
    /// Data bytes the volume's synced trees reference.
    pub referenced_bytes: u64,
    /// Bytes only the volume's snapshots hold (freed by destroying all of them).
    pub snapshots_used_bytes: u64,
    /// `referenced_bytes + snapshots_used_bytes`.
    pub used_bytes: u64,
    /// Snapshots of the volume.
    pub snapshot_count: u64,
}

/// Deadlist entries or names one slice of [`Pool::snapshot_space_list_in_slices`] goes through
/// under the metadata lock (about a millisecond of work).
pub const LIST_SLICE_UNITS: usize = 8192;

/// Sliced passes a listing makes before it takes the figures in one piece.
const LIST_ATTEMPTS: usize = 4;

fn volume_id(meta: &Meta, name: &str) -> PoolResult<u64> {
    meta.find(name)
        .filter(|d| d.kind() == DatasetKind::Volume)
        .map(|d| d.phys.id)
        .ok_or_else(|| PoolError::NotFound(name.into()))
}

fn snapshot_meta<'a>(meta: &'a Meta, full_name: &str) -> PoolResult<&'a DatasetMeta> {
    meta.find(full_name)
        .filter(|d| d.kind() == DatasetKind::Snapshot)
        .ok_or_else(|| PoolError::NotFound(full_name.into()))
}

impl Pool {
    /// Takes snapshot `volume@snapshot` of everything written to `volume` before the call.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::AlreadyExists`], a txg sync error.
    pub async fn snapshot(&self, volume: &str, snapshot: &str) -> PoolResult<()> {
        self.snapshot_many(volume, &[snapshot]).await
    }

    /// Takes snapshots `volume@s` for every `s` in `snapshots`, all in one txg (they hold
    /// the same data; listings order them by id). Either every name is taken or none is.
    ///
    /// # Errors
    /// As [`Pool::snapshot`], for the first bad name.
    pub async fn snapshot_many(&self, volume: &str, snapshots: &[&str]) -> PoolResult<()> {
        self.check_live()?;
        let fulls: Vec<String> = snapshots.iter().map(|s| format!("{volume}@{s}")).collect();
        for full in &fulls {
            name_field(full)?;
        }
        {
            let mut meta = lock(&self.meta);
            let volume_id = volume_id(&meta, volume)?;
            let mut names: std::collections::HashSet<&str> = meta
                .ops
                .iter()
                .filter_map(|op| match op {
                    MetaOp::Snapshot { name, .. } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            for full in &fulls {
                if meta.find(full).is_some() || !names.insert(full) {
                    return Err(PoolError::AlreadyExists(full.clone()));
                }
            }
            for full in fulls {
                let snapshot_id = meta.next_id;
                meta.next_id += 1;
                meta.ops.push(MetaOp::Snapshot { volume_id, snapshot_id, name: full });
            }
        }
        self.sync_txg().await?;
        Ok(())
    }

    /// Snapshots of `volume`, oldest first (full names).
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn snapshots(&self, volume: &str) -> PoolResult<Vec<String>> {
        let meta = lock(&self.meta);
        let id = volume_id(&meta, volume)?;
        Ok(meta.snapshots_of(id).iter().map(|d| d.name()).collect())
    }

    /// Snapshots of `volume`, oldest first, each with what destroying it alone would free,
    /// computed in one pass over the volume's deadlists: O(snapshots + deadlist entries ×
    /// log snapshots), where asking [`Pool::destroy_would_free`] once per snapshot would be
    /// quadratic.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn snapshot_space_list(&self, volume: &str) -> PoolResult<Vec<SnapshotSpace>> {
        let meta = lock(&self.meta);
        let mut pass = SpaceListPass::new(&meta, volume)?;
        pass.step(&meta, usize::MAX);
        drop(meta);
        pass.resolve_dedup(self, usize::MAX);
        Ok(pass.into_list())
    }

    /// [`Pool::snapshot_space_list`] computed in bounded slices: the metadata lock is taken
    /// for at most [`LIST_SLICE_UNITS`] deadlist entries or names at a time, and the task
    /// yields between slices, so a listing of 65,535 snapshots never holds the shard (or a txg
    /// sync) for more than about a millisecond. A pass that sees a dataset created, destroyed
    /// or rolled back between two of its slices starts again; after [`LIST_ATTEMPTS`] such
    /// passes the listing is taken in one piece.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub async fn snapshot_space_list_in_slices(
        &self,
        volume: &str,
    ) -> PoolResult<Vec<SnapshotSpace>> {
        self.snapshot_space_list_in_slices_of(volume, LIST_SLICE_UNITS).await
    }

    /// [`Pool::snapshot_space_list_in_slices`] with slices of `units` (tests use small ones to
    /// make many slices of a small pool).
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    #[doc(hidden)]
    pub async fn snapshot_space_list_in_slices_of(
        &self,
        volume: &str,
        units: usize,
    ) -> PoolResult<Vec<SnapshotSpace>> {
        for _ in 0..LIST_ATTEMPTS {
            if let Some(list) = self.space_list_pass(volume, units.max(1)).await? {
                return Ok(list);
            }
        }
        self.snapshot_space_list(volume)
    }

    /// One sliced pass of [`Pool::snapshot_space_list_in_slices`]; `None` when the datasets
    /// changed under it.
    async fn space_list_pass(
        &self,
        volume: &str,
        units: usize,
    ) -> PoolResult<Option<Vec<SnapshotSpace>>> {
        let mut pass = SpaceListPass::new(&lock(&self.meta), volume)?;
        loop {
            drivers::executor::yield_now().await;
            let meta = lock(&self.meta);
            match pass.step(&meta, units) {
                None => return Ok(None),
                Some(true) => break,
                Some(false) => {}
            }
        }
        while !pass.resolve_dedup(self, units) {
            drivers::executor::yield_now().await;
        }
        Ok(Some(pass.into_list()))
    }

    /// Creates volume `new_volume` from snapshot `snapshot` (`volume@snap`). Instant: the
    /// clone shares every block with the snapshot.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::AlreadyExists`], a txg sync error.
    pub async fn clone_snapshot(&self, snapshot: &str, new_volume: &str) -> PoolResult<PoolVolume> {
        self.check_live()?;
        let field = volume_name_field(new_volume)?;
        let shared = {
            let mut meta = lock(&self.meta);
            if meta.find(new_volume).is_some() {
                return Err(PoolError::AlreadyExists(new_volume.into()));
            }
            let snap = snapshot_meta(&meta, snapshot)?.clone();
            self.check_overcommit(&meta, new_volume, snap.phys.capacity_bytes)?;
            let id = meta.next_id;
            meta.next_id += 1;
            let open_txg = self.txg.open_txg.load(Ordering::SeqCst);
            let mut phys = snap.phys;
            phys.id = id;
            phys.kind = DatasetKind::Volume as u32;
            phys.parent_id = 0;
            phys.origin_id = snap.phys.id;
            phys.prev_snap_txg = snap.phys.creation_txg;
            phys.creation_txg = open_txg;
            phys.deadlist = BlockPointer::HOLE;
            phys.name = field;
            self.add_head(&mut meta, phys, &snap.roots, TxgId::new(open_txg))
        };
        self.sync_txg().await?;
        Ok(PoolVolume::new(self.arc(), shared))
    }

    /// Rolls `volume` back to its newest snapshot `snapshot` (`volume@snap`): changes made
    /// since are discarded.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::Busy`] when newer snapshots exist.
    pub async fn rollback(&self, snapshot: &str) -> PoolResult<()> {
        self.check_live()?;
        {
            let mut meta = lock(&self.meta);
            let snap = snapshot_meta(&meta, snapshot)?;
            let (snapshot_id, volume_id) = (snap.phys.id, snap.phys.parent_id);
            let newest = meta.snapshots_of(volume_id).last().map(|d| d.phys.id);
            if newest != Some(snapshot_id) {
                return Err(PoolError::Busy(format!("{snapshot} is not the newest snapshot")));
            }
            meta.ops.push(MetaOp::Rollback { volume_id, snapshot_id });
        }
        self.sync_txg().await?;
        Ok(())
    }

    /// Destroys snapshot `snapshot` (`volume@snap`).
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::Busy`] when a clone depends on it.
    pub async fn destroy_snapshot(&self, snapshot: &str) -> PoolResult<()> {
        self.destroy_snapshots(&[snapshot]).await
    }

    /// Destroys every snapshot in `snapshots` in one txg. Either all are destroyed or, when
    /// one is unknown or has clones, none is.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::Busy`] when a clone depends on one.
    pub async fn destroy_snapshots(&self, snapshots: &[&str]) -> PoolResult<()> {
        self.check_live()?;
        {
            let mut meta = lock(&self.meta);
            // One scan for the clones' origins, not one per snapshot.
            let origins: std::collections::HashSet<u64> = meta
                .datasets
                .values()
                .filter(|d| d.kind() == DatasetKind::Volume && d.phys.origin_id != 0)
                .map(|d| d.phys.origin_id)
                .collect();
            let mut ids = Vec::with_capacity(snapshots.len());
            for snapshot in snapshots {
                let id = snapshot_meta(&meta, snapshot)?.phys.id;
                if origins.contains(&id) {
                    return Err(PoolError::Busy(format!("{snapshot} has clones")));
                }
                ids.push(id);
            }
            meta.ops
                .extend(ids.into_iter().map(|snapshot_id| MetaOp::DestroySnapshot { snapshot_id }));
        }
        self.sync_txg().await?;
        Ok(())
    }

    /// Destroys volume `volume` (it must have no snapshots).
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::Busy`] when it has snapshots.
    pub async fn destroy_volume(&self, volume: &str) -> PoolResult<()> {
        self.check_live()?;
        {
            let mut meta = lock(&self.meta);
            let id = volume_id(&meta, volume)?;
            if !meta.snapshots_of(id).is_empty() {
                return Err(PoolError::Busy(format!("{volume} has snapshots")));
            }
            if let Some(shared) = lock(&self.heads).get(&id) {
                shared.destroyed.store(true, Ordering::SeqCst);
            }
            meta.ops.push(MetaOp::DestroyVolume { volume_id: id });
        }
        self.sync_txg().await?;
        Ok(())
    }

    /// Exactly how many bytes destroying every snapshot in `snapshots` (full names) would free.
    ///
    /// # Errors
    /// [`PoolError::NotFound`] for an unknown snapshot.
    pub fn destroy_would_free(&self, snapshots: &[&str]) -> PoolResult<u64> {
        let meta = lock(&self.meta);
        let mut chosen = std::collections::HashSet::new();
        let mut volumes = std::collections::BTreeSet::new();
        for name in snapshots {
            let s = snapshot_meta(&meta, name)?;
            chosen.insert(s.phys.id);
            volumes.insert(s.phys.parent_id);
        }
        Ok(self.bytes_freed(&meta, volumes, &chosen))
    }

    /// Bytes destroying the snapshots `chosen` of `volumes` would free. A deduplicated block
    /// is freed only with its last reference: the references the destroy drops are counted
    /// block by block against the table.
    fn bytes_freed(
        &self,
        meta: &Meta,
        volumes: impl IntoIterator<Item = u64>,
        chosen: &std::collections::HashSet<u64>,
    ) -> u64 {
        let mut total = 0;
        let mut dedup: std::collections::HashMap<Fingerprint, u64> =
            std::collections::HashMap::new();
        for volume in volumes {
            freed_in_timeline(meta, volume, chosen, |bp| {
                if is_dedup(bp) {
                    *dedup.entry(bp_fingerprint(bp)).or_default() += 1;
                } else {
                    total += u64::from(bp.physical_bytes);
                }
            });
        }
        for (fp, dropped) in dedup {
            if let Some(hit) = self.ddt.lookup(&fp) {
                if dropped >= u64::from(hit.refcount) {
                    total += hit.extent.len_bytes;
                }
            }
        }
        total
    }

    /// Space figures of `volume`.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn space(&self, volume: &str) -> PoolResult<SpaceFigures> {
        let meta = lock(&self.meta);
        let id = volume_id(&meta, volume)?;
        let referenced_bytes = lock(&self.heads).get(&id).map_or(0, |h| h.referenced_bytes());
        let snaps: std::collections::HashSet<u64> =
            meta.snapshots_of(id).iter().map(|d| d.phys.id).collect();
        let snapshots_used_bytes = self.bytes_freed(&meta, [id], &snaps);
        Ok(SpaceFigures {
            referenced_bytes,
            snapshots_used_bytes,
            used_bytes: referenced_bytes + snapshots_used_bytes,
            snapshot_count: snaps.len() as u64,
        })
    }

    /// Data bytes `volume` has written (and synced) since snapshot `snapshot` (`volume@snap`).
    ///
    /// # Errors
    /// [`PoolError::NotFound`], or a read error while walking the trees.
    pub async fn written_since(&self, snapshot: &str) -> PoolResult<u64> {
        let (volume_id, since, volblock) = {
            let meta = lock(&self.meta);
            let s = snapshot_meta(&meta, snapshot)?;
            (s.phys.parent_id, s.phys.creation_txg, u64::from(s.phys.volblock_bytes))
        };
        let head = lock(&self.heads)
            .get(&volume_id)
            .cloned()
            .ok_or_else(|| PoolError::NotFound(snapshot.into()))?;
        let roots: Vec<BlockPointer> = head.partitions.iter().map(|p| lock(p).root).collect();
        let mut blocks = 0;
        for root in roots {
            blocks += blocks_born_after(self, root, TxgId::new(since))
                .await?
                .iter()
                .filter(|b| b.level == 0)
                .count() as u64;
        }
        Ok(blocks * volblock)
    }

    /// Snapshot dataset headers of the pool (for inspect).
    #[must_use]
    pub fn dataset_headers(&self) -> Vec<crate::dataset::DatasetPhys> {
        lock(&self.meta).datasets.values().map(|d| d.phys).collect()
    }
}

/// One pass over `volume`'s timeline that finds, for every snapshot, the deadlist entries it
/// alone holds (destroying it alone frees them): the single-snapshot case of
/// [`freed_in_timeline`], for every snapshot at once, O(entries × log snapshots). It runs in
/// steps of bounded work, each under the metadata lock, and notices when the datasets
/// changed between two steps.
struct SpaceListPass {
    generation: u64,
    head: u64,
    /// (creation txg, id) of the volume's snapshots, oldest first.
    snaps: Vec<(u64, u64)>,
    origin_txg: u64,
    frees: Vec<u64>,
    dedup: std::collections::HashMap<(usize, Fingerprint), u64>,
    out: Vec<SnapshotSpace>,
    /// Cursor: timeline position (1..=snaps.len(), the last one the head) and the offset in
    /// its deadlist. Position 0, the oldest snapshot, kills nothing a snapshot holds.
    k: usize,
    at: usize,
}

impl SpaceListPass {
    fn new(meta: &Meta, volume: &str) -> PoolResult<SpaceListPass> {
        let head = volume_id(meta, volume)?;
        let snaps: Vec<(u64, u64)> = meta
            .snapshots_by_volume
            .range((head, 0, 0)..=(head, u64::MAX, u64::MAX))
            .map(|&(_, txg, id)| (txg, id))
            .collect();
        let origin_txg = meta
            .datasets
            .get(&head)
            .and_then(|v| meta.datasets.get(&v.phys.origin_id))
            .map_or(0, |o| o.phys.creation_txg);
        Ok(SpaceListPass {
            generation: meta.generation,
            head,
            frees: vec![0; snaps.len()],
            out: Vec::with_capacity(snaps.len()),
            snaps,
            origin_txg,
            dedup: std::collections::HashMap::new(),
            k: 1,
            at: 0,
        })
    }

    /// Goes through at most `budget` names and deadlist entries. `Some(true)` when the pass
    /// is complete, `None` when the datasets changed since it began.
    fn step(&mut self, meta: &Meta, mut budget: usize) -> Option<bool> {
        if meta.generation != self.generation {
            return None;
        }
        while self.out.len() < self.snaps.len() && budget > 0 {
            let (txg, id) = self.snaps[self.out.len()];
            let ds = meta.datasets.get(&id)?;
            self.out.push(SnapshotSpace {
                name: ds.name(),
                creation_txg: txg,
                destroy_frees_bytes: 0,
            });
            budget -= 1;
        }
        while self.k <= self.snaps.len() && budget > 0 {
            let id = self.snaps.get(self.k).map_or(self.head, |s| s.1);
            let rest = meta.datasets.get(&id)?.deadlist.get(self.at..)?;
            let take = rest.len().min(budget);
            for bp in &rest[..take] {
                if bp.birth_txg <= self.origin_txg {
                    continue;
                }
                // The holders are snaps[first..k]; exactly one when first == k - 1.
                let first = self.snaps[..self.k].partition_point(|s| s.0 < bp.birth_txg);
                if first + 1 != self.k {
                    continue;
                }
                if is_dedup(bp) {
                    *self.dedup.entry((first, bp_fingerprint(bp))).or_default() += 1;
                } else {
                    self.frees[first] += u64::from(bp.physical_bytes);
                }
            }
            budget -= take;
            if take == rest.len() {
                (self.k, self.at) = (self.k + 1, 0);
                budget = budget.saturating_sub(1);
            } else {
                self.at += take;
            }
        }
        Some(self.out.len() == self.snaps.len() && self.k > self.snaps.len())
    }

    /// Settles at most `budget` of the dedup blocks found by [`SpaceListPass::step`]: a
    /// holder frees one only when its drops reach the table's reference count. True when
    /// none is left.
    fn resolve_dedup(&mut self, pool: &Pool, budget: usize) -> bool {
        let keys: Vec<(usize, Fingerprint)> = self.dedup.keys().take(budget).copied().collect();
        for key in keys {
            let dropped = self.dedup.remove(&key).unwrap_or(0);
            if let Some(hit) = pool.ddt.lookup(&key.1) {
                if dropped >= u64::from(hit.refcount) {
                    self.frees[key.0] += hit.extent.len_bytes;
                }
            }
        }
        self.dedup.is_empty()
    }

    /// The listing, once the steps and the dedup blocks are done.
    fn into_list(mut self) -> Vec<SnapshotSpace> {
        for (s, destroy_frees_bytes) in self.out.iter_mut().zip(self.frees) {
            s.destroy_frees_bytes = destroy_frees_bytes;
        }
        self.out
    }
}

/// Calls `freed` for every block pointer destroying the snapshots `chosen` of `volume` lets
/// go: every deadlist entry whose holders (the snapshots from the first one at or after its
/// birth up to the one before the dataset that killed it) are all chosen, and which no clone
/// origin holds.
fn freed_in_timeline(
    meta: &Meta,
    volume: u64,
    chosen: &std::collections::HashSet<u64>,
    mut freed: impl FnMut(&BlockPointer),
) {
    let snaps = meta.snapshots_of(volume);
    let origin_txg = meta
        .datasets
        .get(&volume)
        .and_then(|v| meta.datasets.get(&v.phys.origin_id))
        .map_or(0, |o| o.phys.creation_txg);
    // prefix[k] = chosen snapshots among snaps[..k].
    let mut prefix = vec![0usize; snaps.len() + 1];
    for (k, s) in snaps.iter().enumerate() {
        prefix[k + 1] = prefix[k] + usize::from(chosen.contains(&s.phys.id));
    }
    let head = meta.datasets.get(&volume);
    let timeline = snaps.iter().copied().chain(head);
    for (k, ds) in timeline.enumerate() {
        for bp in &ds.deadlist {
            if bp.birth_txg <= origin_txg {
                continue;
            }
            let first = snaps[..k].partition_point(|s| s.phys.creation_txg < bp.birth_txg);
            if first < k && prefix[k] - prefix[first] == k - first {
                freed(bp);
            }
        }
    }
}
