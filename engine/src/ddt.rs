//! The dedup table (docs/format.md §Dedup table): fingerprint of a stored block → where it is,
//! how long, and how many block pointers reference it.
//!
//! The fingerprint is BLAKE3 over the block's stored form (with its compression and logical
//! size), cut to 192 bits, so a tenant cannot craft a block that collides with another tenant's;
//! `dedup=verify` also compares the bytes on every hit. A deduplicated block pointer carries
//! the fingerprint as its checksum (checksum type [`CHECKSUM_BLAKE3_192`]) and the
//! [`BP_FLAG_DEDUP`] flag, so a free finds the entry without a second index.
//!
//! The table is split into [`DDT_PARTITIONS`] partitions by the fingerprint's first byte; each
//! has its own lock and its own on-disk object (its checkpoint). A txg that changes the table
//! writes one log object holding only the entries it changed (their new values, refcount 0 for
//! a removal) and a new index listing the checkpoints and the log objects since them, all
//! committed with that txg's uberblock, so the counts after a crash are exactly those of the last
//! durable txg. Once the log holds as many bytes as the checkpoints it would replace (or
//! [`DDT_MAX_LOG_OBJECTS`] objects), the txg checkpoints instead: it rewrites, copy-on-write,
//! the partitions changed since the last checkpoint and drops the log. Import loads the
//! checkpoints and replays the log in txg order. Entries are 40 bytes; the in-memory table keeps
//! them in an open-addressing hash map keyed by the fingerprint.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};

use crate::block_pointer::{BlockPointer, Extent};
use crate::error::{PoolError, PoolResult};
use crate::format::SECTOR_BYTES;
use crate::object::StoredObject;
use crate::record::{read_array, stored_enum};

/// Bytes of a fingerprint.
pub const FINGERPRINT_BYTES: usize = 24;

/// Partitions of the table (by the fingerprint's first byte).
pub const DDT_PARTITIONS: usize = 64;

/// Log objects after which a txg checkpoints the table whatever their size (default of
/// `PoolTunables::dedup_max_log_objects`).
pub const DDT_MAX_LOG_OBJECTS: usize = 128;

/// Log bytes below which a txg never checkpoints, so small tables log rather than rewrite
/// (default of `PoolTunables::dedup_checkpoint_min_log_bytes`).
pub const DDT_MIN_CHECKPOINT_LOG_BYTES: u64 = 256 * 1024;

/// [`BlockPointer::flags`] bit of a deduplicated data block.
pub const BP_FLAG_DEDUP: u16 = 1;

/// [`BlockPointer::checksum_type`] of a deduplicated block: BLAKE3-192 of (compression,
/// logical size, stored bytes) in `checksum` (first 16 bytes) and `checksum_tail` (last 8).
pub const CHECKSUM_BLAKE3_192: u8 = 2;

/// A block's dedup fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; FINGERPRINT_BYTES]);

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly random: eight bytes away from the partition byte make the hash.
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[8..16]);
        state.write_u64(u64::from_le_bytes(w) ^ u64::from(self.0[1]) << 56);
    }
}

/// Passes a fingerprint's own bits through as its hash.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[cfg(test)]
thread_local! {
    /// Test builds only: keep this many leading fingerprint bytes and zero the rest, to force
    /// collisions.
    pub(crate) static SHORT_FINGERPRINT_BYTES: std::cell::Cell<usize> =
        const { std::cell::Cell::new(0) };
}

/// The fingerprint of a stored block.
#[must_use]
pub fn fingerprint(compression: u8, logical_bytes: u32, stored: &[u8]) -> Fingerprint {
    let mut h = blake3::Hasher::new();
    h.update(&[compression]);
    h.update(&logical_bytes.to_le_bytes());
    h.update(stored);
    let mut out = [0u8; FINGERPRINT_BYTES];
    out.copy_from_slice(&h.finalize().as_bytes()[..FINGERPRINT_BYTES]);
    #[cfg(test)]
    SHORT_FINGERPRINT_BYTES.with(|n| {
        if n.get() > 0 {
            out[n.get()..].fill(0);
        }
    });
    Fingerprint(out)
}

/// The fingerprint a deduplicated pointer carries.
#[must_use]
pub fn bp_fingerprint(bp: &BlockPointer) -> Fingerprint {
    let mut out = [0u8; FINGERPRINT_BYTES];
    out[..8].copy_from_slice(&bp.checksum[0].to_le_bytes());
    out[8..16].copy_from_slice(&bp.checksum[1].to_le_bytes());
    out[16..].copy_from_slice(&bp.checksum_tail.to_le_bytes());
    Fingerprint(out)
}

/// Makes `bp` a deduplicated pointer carrying `fp`.
pub fn mark_dedup(bp: &mut BlockPointer, fp: &Fingerprint) {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&fp.0[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    bp.checksum = [word(0), word(1)];
    bp.checksum_tail = word(2);
    bp.checksum_type = CHECKSUM_BLAKE3_192;
    bp.flags |= BP_FLAG_DEDUP;
}

/// True for a deduplicated data block pointer.
#[must_use]
pub fn is_dedup(bp: &BlockPointer) -> bool {
    bp.flags & BP_FLAG_DEDUP != 0
}

stored_enum! {
    /// A volume's `dedup` property.
    #[derive(Default)]
    pub enum DedupMode: u8, from_u8 {
        /// No dedup.
        #[default]
        Off = 0,
        /// Dedup on fingerprint match.
        On = 1,
        /// Dedup on fingerprint match and equal bytes.
        Verify = 2,
    }
}

impl DedupMode {
    /// Parses `off`, `on` or `verify`.
    #[must_use]
    pub fn parse(s: &str) -> Option<DedupMode> {
        match s {
            "off" => Some(DedupMode::Off),
            "on" => Some(DedupMode::On),
            "verify" => Some(DedupMode::Verify),
            _ => None,
        }
    }

    /// The property value as a user writes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DedupMode::Off => "off",
            DedupMode::On => "on",
            DedupMode::Verify => "verify",
        }
    }
}

/// [`crate::dataset::DatasetPhys::dedup_stopped`]: the table reached its memory budget.
pub const DEDUP_STOPPED_BUDGET: u8 = 1;

/// [`crate::dataset::DatasetPhys::dedup_stopped`]: the volume's hit rate was too low.
pub const DEDUP_STOPPED_HIT_RATE: u8 = 2;

/// The reason shown for a volume imported with `dedup_stopped` = `code` (`None` for 0).
#[must_use]
pub fn stopped_reason_at_import(code: u8) -> Option<String> {
    let why = match code {
        0 => return None,
        DEDUP_STOPPED_BUDGET => "the dedup table reached its memory budget",
        DEDUP_STOPPED_HIT_RATE => "the hit rate was too low to pay for the table",
        _ => "unknown reason",
    };
    Some(format!("{why} (stopped before this import; set the dedup property to resume)"))
}

/// One table entry on disk, 40 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct DdtEntryPhys {
    /// The fingerprint.
    pub fingerprint: [u8; FINGERPRINT_BYTES],
    /// Device (high 16 bits) and offset in sectors (low 48 bits).
    pub location: u64,
    /// Block pointers referencing the block.
    pub refcount: u32,
    /// Stored size in sectors.
    pub sectors: u16,
    /// Reserved, zero.
    pub reserved: u16,
}

const _: () = assert!(std::mem::size_of::<DdtEntryPhys>() == 40);

/// Encodes entries as a dedup table partition or log object (40 bytes each, no header).
#[must_use]
pub fn encode_entries(entries: &[DdtEntryPhys]) -> Vec<u8> {
    bytemuck::cast_slice(entries).to_vec()
}

/// Decodes the entries of a dedup table partition or log object.
///
/// # Errors
/// [`PoolError::Corrupt`] naming `what` when the length is not a whole number of entries.
pub fn decode_entries(bytes: &[u8], what: &str) -> PoolResult<Vec<DdtEntryPhys>> {
    read_array(bytes).ok_or_else(|| {
        PoolError::Corrupt(format!(
            "{what} length {} is not a whole number of {}-byte entries",
            bytes.len(),
            std::mem::size_of::<DdtEntryPhys>()
        ))
    })
}

/// An entry's value in memory (the key is the fingerprint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Value {
    location: u64,
    refcount: u32,
    sectors: u16,
}

impl Value {
    /// The entry as stored for `fp`.
    fn phys(&self, fp: &Fingerprint) -> DdtEntryPhys {
        DdtEntryPhys {
            fingerprint: fp.0,
            location: self.location,
            refcount: self.refcount,
            sectors: self.sectors,
            reserved: 0,
        }
    }

    /// A stored entry's value.
    fn of(e: &DdtEntryPhys) -> Value {
        Value { location: e.location, refcount: e.refcount, sectors: e.sectors }
    }

    /// Stored bytes of the block.
    fn stored_bytes(&self) -> u64 {
        u64::from(self.sectors) * SECTOR_BYTES
    }
}

fn pack(extent: &Extent) -> (u64, u16) {
    let sectors = u16::try_from(extent.len_bytes / SECTOR_BYTES).expect("block fits u16 sectors");
    (u64::from(extent.device) << 48 | (extent.offset_bytes / SECTOR_BYTES), sectors)
}

fn unpack(v: &Value) -> Extent {
    let device = u16::try_from(v.location >> 48).expect("16 bits");
    let offset = (v.location & ((1 << 48) - 1)) * SECTOR_BYTES;
    Extent::new(device, offset, v.stored_bytes())
}

type Map = HashMap<Fingerprint, Value, BuildHasherDefault<PassThrough>>;

#[derive(Default)]
struct Part {
    map: Map,
    /// Changed since its checkpoint was written.
    dirty: bool,
    /// Fingerprints changed in the running txg (repeats allowed), for its log object.
    changed: Vec<Fingerprint>,
    object: StoredObject,
}

impl Part {
    fn touch(&mut self, fp: Fingerprint) {
        self.dirty = true;
        self.changed.push(fp);
    }
}

/// Figures of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DdtFigures {
    /// Entries.
    pub entries: u64,
    /// Bytes the in-memory table occupies (entries, empty slots and control bytes).
    pub memory_bytes: u64,
    /// Bytes of the table's objects on disk (checkpoints, log and index).
    pub disk_bytes: u64,
    /// Of `disk_bytes`, the log objects written since the last checkpoint.
    pub log_bytes: u64,
    /// Log objects since the last checkpoint.
    pub log_objects: u64,
    /// Stored bytes of the deduplicated blocks (each once).
    pub stored_bytes: u64,
    /// Stored bytes times reference counts (what they would take without dedup).
    pub referenced_bytes: u64,
}

impl DdtFigures {
    /// `referenced / stored` (1.0 for an empty table).
    #[must_use]
    pub fn dedup_ratio(&self) -> f64 {
        crate::reduction::ratio(self.referenced_bytes, self.stored_bytes)
    }

    /// In-memory bytes per entry (0 for an empty table).
    #[must_use]
    pub fn memory_bytes_per_entry(&self) -> u64 {
        self.memory_bytes.checked_div(self.entries).unwrap_or(0)
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdtHit {
    /// Where the block is.
    pub extent: Extent,
    /// Its reference count before this lookup.
    pub refcount: u32,
}

/// The pool's dedup table.
pub struct Ddt {
    parts: Vec<Mutex<Part>>,
    stored_bytes: AtomicU64,
    referenced_bytes: AtomicU64,
    index: Mutex<StoredObject>,
    /// Log objects since the last checkpoint, oldest first.
    log: Mutex<Vec<StoredObject>>,
    /// Blocks entered in the running txg, for `verify` hits before their write completes.
    fresh: Mutex<HashMap<Fingerprint, FreshBlock, BuildHasherDefault<PassThrough>>>,
}

/// The stored bytes of a block entered in the running txg.
pub(crate) type FreshBlock = drivers::buffer::SharedBuf;

impl std::fmt::Debug for Ddt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ddt").field("figures", &self.figures()).finish()
    }
}

impl Default for Ddt {
    fn default() -> Self {
        Ddt {
            parts: (0..DDT_PARTITIONS).map(|_| Mutex::new(Part::default())).collect(),
            stored_bytes: AtomicU64::new(0),
            referenced_bytes: AtomicU64::new(0),
            index: Mutex::new(StoredObject::none()),
            log: Mutex::new(Vec::new()),
            fresh: Mutex::new(HashMap::default()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn part_of(fp: &Fingerprint) -> usize {
    usize::from(fp.0[0]) % DDT_PARTITIONS
}

/// Bytes a hash map of `capacity` items of `entry_bytes` occupies (buckets of the entry plus
/// one control byte, 7/8 load, a group of trailing control bytes).
fn map_bytes(capacity: usize, entry_bytes: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        capacity.next_power_of_two() * 2
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    (buckets * (entry_bytes + 1) + 16) as u64
}

impl Ddt {
    /// Adds (`loaded`) or removes a loaded entry's share of the stored and referenced bytes.
    fn count(&self, v: &Value, loaded: bool) {
        let (stored, referenced) = (v.stored_bytes(), v.stored_bytes() * u64::from(v.refcount));
        if loaded {
            self.stored_bytes.fetch_add(stored, Ordering::Relaxed);
            self.referenced_bytes.fetch_add(referenced, Ordering::Relaxed);
        } else {
            self.stored_bytes.fetch_sub(stored, Ordering::Relaxed);
            self.referenced_bytes.fetch_sub(referenced, Ordering::Relaxed);
        }
    }

    /// The entry for `fp`.
    #[must_use]
    pub fn lookup(&self, fp: &Fingerprint) -> Option<DdtHit> {
        let part = lock(&self.parts[part_of(fp)]);
        part.map.get(fp).map(|v| DdtHit { extent: unpack(v), refcount: v.refcount })
    }

    /// Adds a reference to `fp`'s block. False when there is no entry or its count is full.
    pub fn add_ref(&self, fp: &Fingerprint) -> bool {
        let mut part = lock(&self.parts[part_of(fp)]);
        let Some(v) = part.map.get_mut(fp) else { return false };
        if v.refcount == u32::MAX {
            return false;
        }
        v.refcount += 1;
        let bytes = v.stored_bytes();
        part.touch(*fp);
        self.referenced_bytes.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    /// Enters the newly written block at `extent` with one reference.
    pub fn insert(&self, fp: Fingerprint, extent: &Extent) {
        let (location, sectors) = pack(extent);
        let mut part = lock(&self.parts[part_of(&fp)]);
        let old = part.map.insert(fp, Value { location, refcount: 1, sectors });
        assert!(old.is_none(), "dedup entry inserted twice");
        part.touch(fp);
        self.stored_bytes.fetch_add(extent.len_bytes, Ordering::Relaxed);
        self.referenced_bytes.fetch_add(extent.len_bytes, Ordering::Relaxed);
    }

    /// Drops one reference to `fp`'s block; returns the block's extent when that was the last
    /// (the caller frees it).
    ///
    /// # Errors
    /// [`PoolError::Corrupt`] when the table has no entry for `fp`.
    pub fn release(&self, fp: &Fingerprint) -> PoolResult<Option<Extent>> {
        let mut part = lock(&self.parts[part_of(fp)]);
        let Some(v) = part.map.get_mut(fp) else {
            return Err(PoolError::Corrupt("dedup table has no entry for a freed block".into()));
        };
        v.refcount -= 1;
        let bytes = v.stored_bytes();
        let last = v.refcount == 0;
        let value = *v;
        part.touch(*fp);
        self.referenced_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if last {
            part.map.remove(fp);
            self.stored_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return Ok(Some(unpack(&value)));
        }
        Ok(None)
    }

    /// Bytes of the in-memory table.
    #[must_use]
    pub fn memory_bytes(&self) -> u64 {
        let entry = std::mem::size_of::<(Fingerprint, Value)>();
        self.parts.iter().map(|p| map_bytes(lock(p).map.capacity(), entry)).sum::<u64>()
            + (DDT_PARTITIONS * std::mem::size_of::<Mutex<Part>>()) as u64
    }

    /// Figures of the table.
    #[must_use]
    pub fn figures(&self) -> DdtFigures {
        let mut f = DdtFigures {
            memory_bytes: self.memory_bytes(),
            stored_bytes: self.stored_bytes.load(Ordering::Relaxed),
            referenced_bytes: self.referenced_bytes.load(Ordering::Relaxed),
            ..DdtFigures::default()
        };
        for p in &self.parts {
            let p = lock(p);
            f.entries += p.map.len() as u64;
            f.disk_bytes += p.object.disk_bytes();
        }
        f.disk_bytes += lock(&self.index).disk_bytes();
        let log = lock(&self.log);
        f.log_objects = log.len() as u64;
        f.log_bytes = log.iter().map(StoredObject::disk_bytes).sum::<u64>();
        f.disk_bytes += f.log_bytes;
        f
    }

    /// Every entry as (fingerprint, extent, refcount), for checks.
    #[must_use]
    pub fn entries(&self) -> Vec<(Fingerprint, Extent, u32)> {
        let mut out = Vec::new();
        for p in &self.parts {
            for (fp, v) in &lock(p).map {
                out.push((*fp, unpack(v), v.refcount));
            }
        }
        out
    }

    /// Extents of the table's stored objects (partitions and index), with their birth txgs.
    pub(crate) fn object_extents(&self) -> Vec<(Extent, u64)> {
        let mut out = Vec::new();
        for o in self.stored_objects() {
            out.extend(o.extents.iter().map(|e| (*e, o.bp.birth_txg)));
        }
        out
    }

    /// The table's stored objects: its partitions, its index and its log objects.
    pub(crate) fn stored_objects(&self) -> Vec<StoredObject> {
        let mut out: Vec<StoredObject> =
            self.parts.iter().map(|p| lock(p).object.clone()).collect();
        out.push(lock(&self.index).clone());
        out.extend(lock(&self.log).iter().cloned());
        out
    }

    /// The entries changed in the running txg, encoded for its log object (refcount 0 for a
    /// removed entry); empty when nothing changed. Starts the next txg's set.
    pub(crate) fn take_changes(&self) -> Vec<u8> {
        let mut entries: Vec<DdtEntryPhys> = Vec::new();
        for p in &self.parts {
            let mut p = lock(p);
            let mut changed = std::mem::take(&mut p.changed);
            changed.sort_unstable_by_key(|fp| fp.0);
            changed.dedup();
            entries.extend(changed.iter().map(|fp| match p.map.get(fp) {
                Some(v) => v.phys(fp),
                None => DdtEntryPhys { fingerprint: fp.0, ..DdtEntryPhys::zeroed() },
            }));
        }
        encode_entries(&entries)
    }

    /// True when a txg adding `adding` log bytes should checkpoint instead: the log would hold
    /// as many bytes as the checkpoints of the partitions changed since the last one (what a
    /// checkpoint writes) and at least `min_bytes`, or more than `max_objects` objects.
    pub(crate) fn checkpoint_due(&self, adding: u64, min_bytes: u64, max_objects: usize) -> bool {
        let log = lock(&self.log);
        if log.len() + 1 > max_objects {
            return true;
        }
        let logged = adding + log.iter().map(StoredObject::disk_bytes).sum::<u64>();
        drop(log);
        let entry = std::mem::size_of::<DdtEntryPhys>() as u64;
        let rewrite: u64 = self
            .parts
            .iter()
            .map(|p| lock(p))
            .filter(|p| p.dirty)
            .map(|p| p.map.len() as u64 * entry)
            .sum();
        logged >= rewrite.max(min_bytes)
    }

    /// Appends a txg's log object.
    pub(crate) fn push_log(&self, object: StoredObject) {
        lock(&self.log).push(object);
    }

    /// Drops the log (a checkpoint replaced it); returns its objects for freeing.
    pub(crate) fn take_log(&self) -> Vec<StoredObject> {
        std::mem::take(&mut lock(&self.log))
    }

    /// Applies one loaded log object, in txg order after the checkpoints and earlier logs.
    ///
    /// # Errors
    /// [`PoolError::Corrupt`] for a malformed object or entry.
    pub(crate) fn replay_log(&self, bytes: &[u8], object: StoredObject) -> PoolResult<()> {
        for e in decode_entries(bytes, "dedup log")? {
            let fp = Fingerprint(e.fingerprint);
            if e.refcount != 0 && e.sectors == 0 {
                return Err(PoolError::Corrupt("dedup log entry".into()));
            }
            let mut part = lock(&self.parts[part_of(&fp)]);
            part.dirty = true;
            let old = if e.refcount == 0 {
                part.map.remove(&fp)
            } else {
                let v = Value::of(&e);
                self.count(&v, true);
                part.map.insert(fp, v)
            };
            if let Some(old) = old {
                self.count(&old, false);
            }
        }
        self.push_log(object);
        Ok(())
    }

    /// Partitions changed since their checkpoint: (index, encoded entries, old object).
    pub(crate) fn take_dirty(&self) -> Vec<(usize, Vec<u8>, StoredObject)> {
        let mut out = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            let mut p = lock(p);
            if !p.dirty {
                continue;
            }
            p.dirty = false;
            let entries: Vec<DdtEntryPhys> = p.map.iter().map(|(fp, v)| v.phys(fp)).collect();
            let old = std::mem::take(&mut p.object);
            out.push((i, bytemuck::cast_slice(&entries).to_vec(), old));
        }
        out
    }

    /// Records where partition `i` is now stored.
    pub(crate) fn set_object(&self, i: usize, object: StoredObject) {
        lock(&self.parts[i]).object = object;
    }

    /// The index: every partition's checkpoint (holes for empty ones), then the log objects
    /// oldest first.
    pub(crate) fn index_pointers(&self) -> Vec<BlockPointer> {
        let mut out: Vec<BlockPointer> = self.parts.iter().map(|p| lock(p).object.bp).collect();
        out.extend(lock(&self.log).iter().map(|o| o.bp));
        out
    }

    /// Replaces the index object; returns the old one.
    pub(crate) fn replace_index(&self, object: StoredObject) -> StoredObject {
        std::mem::replace(&mut lock(&self.index), object)
    }

    /// Loads partition `i` from its stored entries.
    ///
    /// # Errors
    /// [`PoolError::Corrupt`] for a malformed object or an entry in the wrong partition.
    pub(crate) fn load_part(&self, i: usize, bytes: &[u8], object: StoredObject) -> PoolResult<()> {
        let entries = decode_entries(bytes, "dedup table")?;
        let mut part = lock(&self.parts[i]);
        for e in entries {
            let fp = Fingerprint(e.fingerprint);
            if part_of(&fp) != i || e.refcount == 0 || e.sectors == 0 {
                return Err(PoolError::Corrupt("dedup table entry".into()));
            }
            let v = Value::of(&e);
            self.count(&v, true);
            part.map.insert(fp, v);
        }
        part.object = object;
        Ok(())
    }

    /// Keeps the bytes of a block entered in the running txg.
    pub(crate) fn remember_fresh(&self, fp: Fingerprint, data: FreshBlock) {
        lock(&self.fresh).insert(fp, data);
    }

    /// The bytes of `fp`'s block when it was entered in the running txg.
    pub(crate) fn fresh(&self, fp: &Fingerprint) -> Option<FreshBlock> {
        lock(&self.fresh).get(fp).cloned()
    }

    /// Forgets the running txg's blocks (their writes are complete).
    pub(crate) fn clear_fresh(&self) {
        lock(&self.fresh).clear();
    }

    /// The index object's pointer (hole before the table was first stored).
    pub(crate) fn index_bp(&self) -> BlockPointer {
        lock(&self.index).bp
    }

    /// Records the loaded index object.
    pub(crate) fn set_index(&self, object: StoredObject) {
        *lock(&self.index) = object;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_covers_form_and_bytes() {
        let a = fingerprint(0, 8192, &[1u8; 8192]);
        assert_eq!(a, fingerprint(0, 8192, &[1u8; 8192]));
        assert_ne!(a, fingerprint(1, 8192, &[1u8; 8192]));
        assert_ne!(a, fingerprint(0, 16384, &[1u8; 8192]));
        let mut other = vec![1u8; 8192];
        other[5000] = 2;
        assert_ne!(a, fingerprint(0, 8192, &other));
    }

    #[test]
    fn pointer_carries_the_fingerprint() {
        let fp = fingerprint(0, 4096, b"abc");
        let mut bp = BlockPointer::HOLE;
        mark_dedup(&mut bp, &fp);
        assert!(is_dedup(&bp));
        assert_eq!(bp_fingerprint(&bp), fp);
    }

    #[test]
    fn references_count_up_and_down_and_free_at_zero() {
        let ddt = Ddt::default();
        let fp = fingerprint(0, 4096, b"x");
        let extent = Extent::new(1, 1 << 30, 8192);
        ddt.insert(fp, &extent);
        assert!(ddt.add_ref(&fp));
        assert_eq!(ddt.lookup(&fp).map(|h| (h.extent, h.refcount)), Some((extent, 2)));
        let f = ddt.figures();
        assert_eq!((f.entries, f.stored_bytes, f.referenced_bytes), (1, 8192, 16384));
        assert_eq!(ddt.release(&fp).expect("entry"), None);
        assert_eq!(ddt.release(&fp).expect("entry"), Some(extent));
        assert!(ddt.lookup(&fp).is_none());
        assert!(ddt.release(&fp).is_err());
        assert_eq!(ddt.figures().stored_bytes, 0);
    }

    /// A table of `count` entries, one per 4 KiB block from offset 0 of device 0.
    fn table_of(count: u32) -> Ddt {
        let ddt = Ddt::default();
        for i in 0..count {
            let fp = fingerprint(0, 4096, &i.to_le_bytes());
            ddt.insert(fp, &Extent::new(0, u64::from(i) * 4096, 4096));
        }
        ddt
    }

    #[test]
    fn stored_partitions_load_back() {
        let ddt = table_of(200);
        let loaded = Ddt::default();
        for (i, bytes, _) in ddt.take_dirty() {
            loaded.load_part(i, &bytes, StoredObject::none()).expect("load");
        }
        let mut a = ddt.entries();
        let mut b = loaded.entries();
        a.sort_by_key(|e| e.0 .0);
        b.sort_by_key(|e| e.0 .0);
        assert_eq!(a, b);
        assert_eq!(ddt.figures().referenced_bytes, loaded.figures().referenced_bytes);
    }

    #[test]
    fn log_objects_round_trip_and_a_partial_entry_is_corrupt() {
        let ddt = Ddt::default();
        for i in 0..3u32 {
            ddt.insert(fingerprint(0, 4096, &i.to_le_bytes()), &Extent::new(0, 4096, 4096));
        }
        let log = ddt.take_changes();
        let entries = decode_entries(&log, "dedup log").expect("whole entries");
        assert_eq!(entries.len(), 3);
        assert_eq!(encode_entries(&entries), log);
        let replayed = Ddt::default();
        replayed.replay_log(&log, StoredObject::none()).expect("replay");
        assert_eq!(replayed.figures().entries, 3);
        for cut in [1, 39, 41, log.len() - 1] {
            let err = Ddt::default().replay_log(&log[..cut], StoredObject::none());
            assert!(matches!(err, Err(PoolError::Corrupt(_))), "{cut} bytes: {err:?}");
        }
    }

    #[test]
    fn memory_per_entry_is_compact() {
        let per_entry = table_of(100_000).figures().memory_bytes_per_entry();
        assert!(per_entry <= 96, "{per_entry} bytes per entry");
    }
}
