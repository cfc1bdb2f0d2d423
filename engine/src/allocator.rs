//! The allocator: the data devices' space cut into allocation groups (AGs), each with its own
//! space map behind its own lock (docs/format.md §Allocation groups).
//!
//! AG `i` is owned by shard `i % shards`: a shard allocates from its own groups first, so in
//! the thread-per-core data path no two shards touch the same group. Frees are *pending*
//! until the txg that freed the block is durable: the block stays allocated in memory (so it
//! is never reused while the previous on-disk state may still reference it) but is written to
//! the space map as free, because the txg that persists that map no longer references it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::block_pointer::{BlockPointer, Extent};
use crate::format::SECTOR_BYTES;
use crate::space_map::{SpaceMap, FREE_RUN_CLASSES, SLAB_UNITS};
use crate::units::{ShardId, TxgId};

/// The txg of a held extent's pending free until [`Allocator::release_after`] names one.
const HELD: TxgId = TxgId::new(u64::MAX);

/// A free waiting for its txg to become durable.
#[derive(Debug, Clone, Copy)]
struct PendingFree {
    txg: TxgId,
    start_unit: u64,
    units: u64,
}

/// One allocation group.
#[derive(Debug)]
pub struct AllocationGroup {
    /// Device index.
    pub device: u16,
    /// First byte of the group on its device.
    pub start_bytes: u64,
    map: SpaceMap,
    cursor: u64,
    /// No free run is longer than this (learnt from a failed search; forgotten when space is
    /// released into the group), so a fragmented group is not rescanned for every request.
    longest_run_bound: u64,
    /// The slab small metadata goes to first while free slabs are short (`u64::MAX`: none).
    metadata_slab: u64,
    pending: Vec<PendingFree>,
    /// The space map image differs from the one persisted last.
    pub dirty: bool,
    /// Where the group's space map lives on disk (hole before the first sync).
    pub space_map: BlockPointer,
    /// Extents of that space map object.
    pub space_map_extents: Vec<Extent>,
}

impl AllocationGroup {
    /// Units (4 KiB) covered.
    #[must_use]
    pub fn units(&self) -> u64 {
        self.map.units()
    }

    /// The image to persist: allocated in memory minus pending frees.
    #[must_use]
    pub fn persist_image(&self) -> Vec<u8> {
        let mut map = self.map.clone();
        for p in &self.pending {
            map.set_range(p.start_unit, p.units, false);
        }
        map.encode()
    }

    /// The in-memory map (allocated including pending frees).
    #[must_use]
    pub fn map(&self) -> &SpaceMap {
        &self.map
    }
}

/// Where an allocation group sits; used to build the allocator at create and import.
#[derive(Debug, Clone, Copy)]
pub struct AgLayout {
    /// Device index.
    pub device: u16,
    /// First byte.
    pub start_bytes: u64,
    /// Length in bytes (a multiple of 4096).
    pub len_bytes: u64,
}

/// Every allocation group of the pool.
#[derive(Debug)]
pub struct Allocator {
    groups: Vec<Mutex<AllocationGroup>>,
    layouts: Vec<AgLayout>,
    free_bytes: AtomicU64,
    capacity_bytes: u64,
    rotor: AtomicU64,
    /// Whole free slabs over every group (pending frees not counted).
    free_slabs: AtomicU64,
    /// Free slabs kept for metadata: once no more are free, data takes none of them.
    spare_slabs: AtomicU64,
}

/// Where an allocation stream looks for space: groups owned by `shard` (of `shards`) first,
/// starting at `group`, then every other group. A shard's txg syncer allocates from its own
/// groups, so two syncers rarely meet on a group's lock; space is never refused while
/// another shard's groups still have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    /// Group tried first; moves to the group that served the last allocation.
    pub group: usize,
    /// The shard allocating.
    pub shard: ShardId,
    /// Shards that own groups (1: every group is the caller's).
    pub shards: usize,
}

impl Hint {
    /// Any group, starting at `group`.
    #[must_use]
    pub fn any(group: usize) -> Hint {
        Hint { group, shard: ShardId::new(0), shards: 1 }
    }

    /// Groups of `shard` first, starting at `group` (moved to the shard's next group when it
    /// belongs to another shard).
    #[must_use]
    pub fn owned(group: usize, shard: ShardId, shards: usize) -> Hint {
        let shards = shards.max(1);
        let shard = shard.get() % shards;
        let group = group - group % shards + shard;
        Hint { group, shard: ShardId::new(shard), shards }
    }

    /// True when `group` belongs to this hint's shard.
    #[must_use]
    pub fn owns(&self, group: usize) -> bool {
        group_owner(group, self.shards) == self.shard
    }
}

/// The shard, of `shards`, that owns allocation group `group`.
#[must_use]
pub fn group_owner(group: usize, shards: usize) -> ShardId {
    ShardId::new(group % shards.max(1))
}

/// Groups in the order `hint` tries them: its own from `hint.group` on, then the others.
fn probe_order(hint: Hint, n: usize) -> impl Iterator<Item = usize> {
    let start = if n == 0 { 0 } else { hint.group % n };
    let ring = move || (0..n).map(move |step| (start + step) % n);
    ring().filter(move |g| hint.owns(*g)).chain(ring().filter(move |g| !hint.owns(*g)))
}

fn lock(m: &Mutex<AllocationGroup>) -> MutexGuard<'_, AllocationGroup> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Allocator {
    /// An allocator with every group free.
    #[must_use]
    pub fn new(layouts: Vec<AgLayout>) -> Allocator {
        let groups: Vec<_> = layouts
            .iter()
            .map(|l| {
                Mutex::new(AllocationGroup {
                    device: l.device,
                    start_bytes: l.start_bytes,
                    map: SpaceMap::new(l.len_bytes / SECTOR_BYTES),
                    cursor: 0,
                    longest_run_bound: u64::MAX,
                    metadata_slab: u64::MAX,
                    pending: Vec::new(),
                    dirty: true,
                    space_map: BlockPointer::HOLE,
                    space_map_extents: Vec::new(),
                })
            })
            .collect();
        let capacity_bytes =
            layouts.iter().map(|l| l.len_bytes / SECTOR_BYTES * SECTOR_BYTES).sum();
        let free_slabs = layouts.iter().map(|l| l.len_bytes / SECTOR_BYTES / SLAB_UNITS).sum();
        Allocator {
            groups,
            layouts,
            free_bytes: AtomicU64::new(capacity_bytes),
            capacity_bytes,
            rotor: AtomicU64::new(0),
            free_slabs: AtomicU64::new(free_slabs),
            spare_slabs: AtomicU64::new(0),
        }
    }

    /// Keeps `bytes` of whole free slabs for metadata: once no more than that many slabs are
    /// free, data goes only where it breaks none, so a txg's metadata chunks find contiguous
    /// space however finely data has fragmented the rest.
    pub fn set_metadata_spare_bytes(&self, bytes: u64) {
        self.spare_slabs.store(bytes / (SLAB_UNITS * SECTOR_BYTES), Ordering::Relaxed);
    }

    /// Free slabs kept for metadata.
    #[must_use]
    pub fn spare_slabs(&self) -> u64 {
        self.spare_slabs.load(Ordering::Relaxed)
    }

    /// Whole free slabs now.
    #[must_use]
    pub fn free_slabs(&self) -> u64 {
        self.free_slabs.load(Ordering::Relaxed)
    }

    /// True when taking `slabs` more free slabs would leave no more than the spare ones.
    fn sparing(&self, slabs: u64) -> bool {
        self.free_slabs() <= self.spare_slabs.load(Ordering::Relaxed).saturating_add(slabs)
    }

    /// Records the change of a group's free slabs from `before` to `after`.
    fn note_slabs(&self, before: u64, after: u64) {
        match after.cmp(&before) {
            std::cmp::Ordering::Greater => {
                self.free_slabs.fetch_add(after - before, Ordering::Relaxed);
            }
            std::cmp::Ordering::Less => {
                self.free_slabs.fetch_sub(before - after, Ordering::Relaxed);
            }
            std::cmp::Ordering::Equal => {}
        }
    }

    /// Marks `[start, start + units)` of group `g` allocated (`set`) or free, keeping the
    /// free-slab count; returns how many units changed.
    fn set_units(&self, g: &mut AllocationGroup, start: u64, units: u64, set: bool) -> u64 {
        let slabs_before = g.map.free_slabs();
        let changed = g.map.set_range(start, units, set);
        self.note_slabs(slabs_before, g.map.free_slabs());
        changed
    }

    /// Installs a group's map as loaded at import.
    ///
    /// # Panics
    /// When the map does not match the group's size (a programmer error: the caller decodes
    /// with the group's unit count).
    pub fn load_group(
        &self,
        index: usize,
        map: SpaceMap,
        space_map: BlockPointer,
        extents: Vec<Extent>,
    ) {
        let mut g = lock(&self.groups[index]);
        assert_eq!(map.units(), g.map.units());
        let before = g.map.allocated_units();
        let after = map.allocated_units();
        let slabs = (g.map.free_slabs(), map.free_slabs());
        g.map = map;
        g.longest_run_bound = u64::MAX;
        g.space_map = space_map;
        g.space_map_extents = extents;
        g.dirty = false;
        drop(g);
        self.note_slabs(slabs.0, slabs.1);
        self.free_bytes.fetch_add(before * SECTOR_BYTES, Ordering::Relaxed);
        self.free_bytes.fetch_sub(after * SECTOR_BYTES, Ordering::Relaxed);
    }

    /// Number of groups.
    #[must_use]
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Layout of group `index`.
    #[must_use]
    pub fn layout(&self, index: usize) -> AgLayout {
        self.layouts[index]
    }

    /// Locks group `index`.
    pub fn group(&self, index: usize) -> MutexGuard<'_, AllocationGroup> {
        lock(&self.groups[index])
    }

    /// Bytes of the data devices.
    #[must_use]
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Bytes free now (pending frees not counted).
    #[must_use]
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes.load(Ordering::Relaxed)
    }

    /// A starting group for a new stream of allocations (round robin over devices and groups).
    #[must_use]
    pub fn next_hint(&self) -> Hint {
        let n = self.groups.len().max(1) as u64;
        Hint::any(usize::try_from(self.rotor.fetch_add(1, Ordering::Relaxed) % n).unwrap_or(0))
    }

    /// Allocates `len_bytes` (rounded up to 4 KiB) contiguous bytes, trying the groups in
    /// `hint`'s order and moving `hint.group` to the group that served it. `None` when no
    /// group has a run that long.
    pub fn allocate(&self, hint: &mut Hint, len_bytes: u64) -> Option<Extent> {
        let units = len_bytes.div_ceil(SECTOR_BYTES);
        if self.sparing(units.div_ceil(SLAB_UNITS) + 1) {
            // Short of slabs: whole chunks take whole slabs (and give them back whole when
            // freed); anything smaller goes where it breaks no slab, else into the slab small
            // metadata uses, else into a new one marked for metadata.
            let found = if units.is_multiple_of(SLAB_UNITS) {
                self.take_first(hint, units, |g| {
                    g.map.find_free_slabs(g.cursor, units / SLAB_UNITS).map(|at| (at, false))
                })
            } else {
                self.take_first(hint, units, |g| {
                    g.map.find_free_run_sparing_slabs(g.cursor, units).map(|at| (at, false))
                })
                .or_else(|| {
                    self.take_first(hint, units, |g| {
                        let lo = g.metadata_slab.checked_mul(SLAB_UNITS)?;
                        g.map
                            .find_free_run_between(lo, lo + SLAB_UNITS, units)
                            .map(|at| (at, false))
                    })
                })
                .or_else(|| {
                    self.take_first(hint, units, |g| {
                        g.map.find_free_slabs(g.cursor, 1).map(|at| (at, true))
                    })
                })
            };
            if found.is_some() {
                return found;
            }
        }
        for index in probe_order(*hint, self.groups.len()) {
            let mut g = lock(&self.groups[index]);
            if units > g.longest_run_bound {
                continue;
            }
            let found = g.map.find_free_run(g.cursor, units);
            if found.is_none() {
                g.longest_run_bound = units - 1;
            }
            if let Some(start) = found {
                return Some(self.take(hint, index, &mut g, start, units));
            }
        }
        None
    }

    /// Takes `units` at the first place `find(group)` names, trying the groups in `hint`'s
    /// order; when it also says so, the slab there becomes the group's metadata slab.
    fn take_first(
        &self,
        hint: &mut Hint,
        units: u64,
        find: impl Fn(&AllocationGroup) -> Option<(u64, bool)>,
    ) -> Option<Extent> {
        for index in probe_order(*hint, self.groups.len()) {
            let mut g = lock(&self.groups[index]);
            if let Some((start, for_metadata)) = find(&g) {
                if for_metadata {
                    g.map.mark_metadata_slab(start);
                    g.metadata_slab = start / SLAB_UNITS;
                }
                let cursor = g.cursor;
                let extent = self.take(hint, index, &mut g, start, units);
                if g.metadata_slab == start / SLAB_UNITS {
                    // Metadata placed in its slab leaves the data cursor where it was.
                    g.cursor = cursor;
                }
                return Some(extent);
            }
        }
        None
    }

    /// Marks `[start, start + units)` of group `index` allocated and returns it as an extent.
    fn take(
        &self,
        hint: &mut Hint,
        index: usize,
        g: &mut AllocationGroup,
        start: u64,
        units: u64,
    ) -> Extent {
        self.set_units(g, start, units, true);
        g.cursor = start + units;
        g.dirty = true;
        self.free_bytes.fetch_sub(units * SECTOR_BYTES, Ordering::Relaxed);
        hint.group = index;
        Extent::new(g.device, g.start_bytes + start * SECTOR_BYTES, units * SECTOR_BYTES)
    }

    /// Allocates one contiguous run of at least `min_bytes` and at most `want_bytes`, both
    /// rounded to multiples of `step_bytes` (the run is cut into blocks of that size), trying
    /// group `*hint` first. The run is extended past `min_bytes` while the space after it is
    /// free, so a txg's data lands in long runs that the sync writes with few, large device
    /// writes. `None` when no group has a free run of `min_bytes`.
    pub fn allocate_run(
        &self,
        hint: &mut Hint,
        min_bytes: u64,
        want_bytes: u64,
        step_bytes: u64,
    ) -> Option<Extent> {
        self.data_passes(want_bytes)
            .iter()
            .find_map(|&spare| self.allocate_run_in(hint, min_bytes, want_bytes, step_bytes, spare))
    }

    /// The passes a data allocation of up to `want_bytes` makes: one sparing the metadata
    /// slabs (see [`Allocator::set_metadata_spare_bytes`]) while they are short, then one
    /// that may take them (only when nothing else is free).
    #[must_use]
    pub fn data_passes(&self, want_bytes: u64) -> &'static [bool] {
        let slabs = want_bytes.div_ceil(SLAB_UNITS * SECTOR_BYTES) + 1;
        if self.sparing(slabs) {
            &[true, false]
        } else {
            &[false]
        }
    }

    /// [`Allocator::allocate_run`] in one pass: with `spare`, the run takes no unit of a
    /// free or metadata slab.
    pub fn allocate_run_in(
        &self,
        hint: &mut Hint,
        min_bytes: u64,
        want_bytes: u64,
        step_bytes: u64,
        spare: bool,
    ) -> Option<Extent> {
        let step = step_bytes.div_ceil(SECTOR_BYTES).max(1);
        let want = want_bytes.div_ceil(SECTOR_BYTES).next_multiple_of(step).max(step);
        let min = min_bytes.div_ceil(SECTOR_BYTES).next_multiple_of(step).clamp(step, want);
        for index in probe_order(*hint, self.groups.len()) {
            let mut g = lock(&self.groups[index]);
            if min > g.longest_run_bound {
                continue;
            }
            let cursor = g.cursor;
            let found = if spare {
                g.map.find_free_run_sparing_slabs(cursor, min)
            } else {
                g.map.find_free_run(cursor, min)
            };
            let Some(start) = found else {
                if !spare {
                    g.longest_run_bound = min - 1;
                }
                continue;
            };
            let mut len = min;
            while len + step <= want
                && start + len + step <= g.map.units()
                && g.map.range_is_free(start + len, step, spare)
            {
                len += step;
            }
            return Some(self.take(hint, index, &mut g, start, len));
        }
        None
    }

    /// The group holding `extent` and the unit range inside it.
    fn locate(&self, extent: &Extent) -> Option<(usize, u64, u64)> {
        let index = self.layouts.iter().position(|l| {
            l.device == extent.device
                && extent.offset_bytes >= l.start_bytes
                && extent.offset_bytes + extent.len_bytes <= l.start_bytes + l.len_bytes
        })?;
        let l = self.layouts[index];
        Some((
            index,
            (extent.offset_bytes - l.start_bytes) / SECTOR_BYTES,
            extent.len_bytes.div_ceil(SECTOR_BYTES),
        ))
    }

    /// Frees `extent` as of `txg`: it stays allocated in memory until [`Allocator::txg_durable`]
    /// for that txg, and is persisted as free from the next space-map write on.
    ///
    /// # Panics
    /// When the extent lies outside every group (a programmer error: only extents this
    /// allocator handed out or verified metadata are freed).
    pub fn free(&self, extent: Extent, txg: TxgId) {
        let (index, start_unit, units) =
            self.locate(&extent).expect("freed extent lies in an allocation group");
        let mut g = lock(&self.groups[index]);
        debug_assert!((start_unit..start_unit + units).all(|u| g.map.is_set(u)), "double free");
        g.pending.push(PendingFree { txg, start_unit, units });
        g.dirty = true;
    }

    /// Allocates like [`Allocator::allocate`], for a block written ahead of its txg and
    /// referenced by an intent-log record. It is held as a pending free without a txg: the
    /// persisted space maps show it free (a crash leaves it to the log's replay), and it is
    /// not reused until [`Allocator::release_after`] names a txg and that txg is durable, or a
    /// sync takes it into a tree ([`Allocator::reclaim`]).
    pub fn allocate_held(&self, hint: &mut Hint, len_bytes: u64) -> Option<Extent> {
        // Data: placed as a run, so that it spares the metadata slabs.
        let extent = self.allocate_run(hint, len_bytes, len_bytes, SECTOR_BYTES)?;
        let (index, start_unit, units) = self.locate(&extent)?;
        let mut g = lock(&self.groups[index]);
        g.pending.push(PendingFree { txg: HELD, start_unit, units });
        g.dirty = true;
        Some(extent)
    }

    /// A held extent ([`Allocator::allocate_held`]) becomes reusable once `txg` is durable.
    pub fn release_after(&self, extent: &Extent, txg: TxgId) {
        if let Some((index, start_unit, units)) = self.locate(extent) {
            let mut g = lock(&self.groups[index]);
            if let Some(p) = g
                .pending
                .iter_mut()
                .find(|p| p.txg == HELD && p.start_unit == start_unit && p.units == units)
            {
                p.txg = txg;
            }
        }
    }

    /// Takes a held extent released after `txg` back into use (a sync of `txg` references
    /// it). False when no such hold exists; the caller then must not reference it.
    pub fn reclaim(&self, extent: &Extent, txg: TxgId) -> bool {
        let Some((index, start_unit, units)) = self.locate(extent) else { return false };
        let mut g = lock(&self.groups[index]);
        let found = g
            .pending
            .iter()
            .position(|p| p.txg == txg && p.start_unit == start_unit && p.units == units);
        if let Some(i) = found {
            g.pending.swap_remove(i);
            g.dirty = true;
            return true;
        }
        false
    }

    /// Marks `extent` allocated (import: intent-log blocks and fixed regions). Returns false
    /// when it lies outside every group.
    pub fn claim(&self, extent: Extent) -> bool {
        let Some((index, start_unit, units)) = self.locate(&extent) else { return false };
        let mut g = lock(&self.groups[index]);
        let changed = self.set_units(&mut g, start_unit, units, true);
        if changed > 0 {
            g.dirty = true;
        }
        drop(g);
        self.free_bytes.fetch_sub(changed * SECTOR_BYTES, Ordering::Relaxed);
        true
    }

    /// True when `extent` is allocated in memory (used by the checker and inspect).
    #[must_use]
    pub fn is_allocated(&self, extent: &Extent) -> bool {
        let Some((index, start_unit, units)) = self.locate(extent) else { return false };
        let g = lock(&self.groups[index]);
        (start_unit..start_unit + units).all(|u| g.map.is_set(u))
    }

    /// Txg `txg` is durable: its frees (and older ones) become reusable.
    pub fn txg_durable(&self, txg: TxgId) {
        let mut released = 0;
        for m in &self.groups {
            let mut g = lock(m);
            let mut keep = Vec::new();
            for p in std::mem::take(&mut g.pending) {
                if p.txg <= txg {
                    self.set_units(&mut g, p.start_unit, p.units, false);
                    g.longest_run_bound = u64::MAX;
                    released += p.units;
                } else {
                    keep.push(p);
                }
            }
            g.pending = keep;
        }
        self.free_bytes.fetch_add(released * SECTOR_BYTES, Ordering::Relaxed);
    }

    /// Bytes freed but waiting for their txg to become durable.
    #[must_use]
    pub fn pending_free_bytes(&self) -> u64 {
        self.groups
            .iter()
            .map(|m| lock(m).pending.iter().map(|p| p.units * SECTOR_BYTES).sum::<u64>())
            .sum()
    }

    /// Free units of every group by the length of the free run they lie in (see
    /// [`SpaceMap::free_run_histogram`]; pending frees count as allocated).
    #[must_use]
    pub fn free_run_histogram(&self) -> [u64; FREE_RUN_CLASSES] {
        let mut sum = [0u64; FREE_RUN_CLASSES];
        for m in &self.groups {
            for (total, units) in sum.iter_mut().zip(lock(m).map.free_run_histogram()) {
                *total += units;
            }
        }
        sum
    }

    /// Indices of groups whose space map must be rewritten.
    #[must_use]
    pub fn dirty_groups(&self) -> Vec<usize> {
        (0..self.groups.len()).filter(|&i| lock(&self.groups[i]).dirty).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> Allocator {
        Allocator::new(vec![
            AgLayout { device: 0, start_bytes: 1 << 20, len_bytes: 64 * 4096 },
            AgLayout { device: 1, start_bytes: 1 << 20, len_bytes: 64 * 4096 },
        ])
    }

    #[test]
    fn allocations_are_disjoint_and_stay_in_the_hinted_group() {
        let a = alloc();
        let mut hint = Hint::any(0);
        let x = a.allocate(&mut hint, 8192).expect("space");
        let y = a.allocate(&mut hint, 4096).expect("space");
        assert_eq!(x.device, 0);
        assert_eq!(y.offset_bytes, x.offset_bytes + 8192);
        assert_eq!(a.free_bytes(), 128 * 4096 - 3 * 4096);
    }

    #[test]
    fn runs_are_long_and_respect_their_bounds() {
        let a = alloc();
        let mut hint = Hint::any(0);
        let run = a.allocate_run(&mut hint, 16 * 4096, 40 * 4096, 8192).expect("space");
        assert_eq!(run.len_bytes, 40 * 4096);
        // 24 units left in group 0: a 32-unit minimum moves to group 1.
        let next = a.allocate_run(&mut hint, 32 * 4096, 64 * 4096, 4096).expect("space");
        assert_eq!((next.device, next.len_bytes), (1, 64 * 4096));
        assert!(a.allocate_run(&mut hint, 32 * 4096, 64 * 4096, 4096).is_none());
        let tail = a.allocate_run(&mut hint, 4096, 64 * 4096, 4096).expect("space");
        assert_eq!(tail.len_bytes, 24 * 4096);
        assert_eq!(a.free_bytes(), 0);
    }

    #[test]
    fn a_shard_allocates_from_its_own_groups_first_then_from_the_others() {
        let layouts = (0..4)
            .map(|i| AgLayout {
                device: 0,
                start_bytes: (1 << 20) + i * 64 * 4096,
                len_bytes: 64 * 4096,
            })
            .collect();
        let a = Allocator::new(layouts);
        let group_of = |e: &Extent| ((e.offset_bytes - (1 << 20)) / (64 * 4096)) as usize;
        // Shard 0 fills its two groups, shard 1 half of its own.
        for (shard, blocks) in [(0, 128), (1, 64)] {
            let mut hint = Hint::owned(3, ShardId::new(shard), 2);
            for _ in 0..blocks {
                let e = a.allocate(&mut hint, 4096).expect("space");
                assert_eq!(group_owner(group_of(&e), 2), ShardId::new(shard), "{e:?}");
            }
        }
        // Shard 0's groups are full: it takes space from shard 1's, never fails early.
        let mut hint = Hint::owned(0, ShardId::new(0), 2);
        let e = a.allocate(&mut hint, 4096).expect("space in shard 1's groups");
        assert_eq!(group_owner(group_of(&e), 2), ShardId::new(1));
        // Shard 1 still prefers its own remaining space.
        let mut hint = Hint::owned(0, ShardId::new(1), 2);
        let e = a.allocate_run(&mut hint, 4096, 4096, 4096).expect("space");
        assert_eq!(group_owner(group_of(&e), 2), ShardId::new(1));
    }

    #[test]
    fn frees_are_reusable_only_after_their_txg_is_durable() {
        let a = alloc();
        let mut hint = Hint::any(0);
        let mut got = Vec::new();
        while let Some(e) = a.allocate(&mut hint, 4096) {
            got.push(e);
        }
        assert_eq!(got.len(), 128);
        a.free(got[5], TxgId::new(7));
        assert!(a.allocate(&mut hint, 4096).is_none(), "pending free must not be reused");
        a.txg_durable(TxgId::new(6));
        assert!(a.allocate(&mut hint, 4096).is_none());
        a.txg_durable(TxgId::new(7));
        assert_eq!(a.allocate(&mut hint, 4096), Some(got[5]));
    }

    #[test]
    fn persisted_image_shows_pending_frees_as_free() {
        let a = alloc();
        let mut hint = Hint::any(0);
        let e = a.allocate(&mut hint, 4096).expect("space");
        a.free(e, TxgId::new(3));
        let image = a.group(0).persist_image();
        let map = SpaceMap::decode(64, &image).expect("image");
        assert_eq!(map.allocated_units(), 0);
        assert!(a.is_allocated(&e));
    }
}
