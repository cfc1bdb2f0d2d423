//! In-memory pool metadata: the datasets and where the pool's metadata objects live. Guarded
//! by one lock in [`crate::pool::Pool`]; it is touched by metadata operations and by the txg
//! sync, never on the data path.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::block_pointer::BlockPointer;
use crate::dataset::{DatasetKind, DatasetPhys, DirectoryEntry, PartitionRoot, NAME_BYTES};
use crate::object::StoredObject;

/// One dataset in memory.
#[derive(Debug, Clone)]
pub struct DatasetMeta {
    /// The header as it will be written (roots aside).
    pub phys: DatasetPhys,
    /// Partition roots of a snapshot (a head's live in its partitions).
    pub roots: Vec<PartitionRoot>,
    /// Where the dataset object is.
    pub object: StoredObject,
    /// Blocks killed in this dataset's epoch that an older snapshot (or the origin) holds.
    pub deadlist: DeadList,
    /// Where the deadlist object is.
    pub deadlist_object: StoredObject,
    /// The dataset object must be rewritten.
    pub dirty: bool,
    /// The deadlist object must be rewritten.
    pub deadlist_dirty: bool,
}

/// A dataset's deadlist in memory, and how much of it its stored object already holds, so
/// that rewriting the object after appends writes only the chunks past that (a head's
/// deadlist grows by appends every txg that overwrites blocks a snapshot holds). Every change
/// other than an append forgets what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadList {
    entries: Vec<BlockPointer>,
    /// (entries at the front equal to the stored object's, that object's pointer).
    stored: Option<(usize, BlockPointer)>,
}

impl DeadList {
    /// A deadlist read from the object `object` points to.
    #[must_use]
    pub fn loaded(entries: Vec<BlockPointer>, object: BlockPointer) -> DeadList {
        let n = entries.len();
        DeadList { entries, stored: Some((n, object)) }
    }

    /// Appends one entry (what is stored stays stored).
    pub fn push(&mut self, bp: BlockPointer) {
        self.entries.push(bp);
    }

    /// Takes every entry out, leaving this deadlist empty; the taken one is stored nowhere.
    pub fn take(&mut self) -> DeadList {
        self.stored = None;
        DeadList { entries: std::mem::take(&mut self.entries), stored: None }
    }

    /// Empties the deadlist.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.stored = None;
    }

    /// The entries.
    #[must_use]
    pub fn entries(&self) -> &[BlockPointer] {
        &self.entries
    }

    /// Bytes at the front of the deadlist's encoding that the object `object` points to
    /// already holds (0 when it is not the object last written or read for this deadlist).
    #[must_use]
    pub fn stored_prefix_bytes(&self, object: &BlockPointer) -> usize {
        match self.stored {
            Some((n, bp)) if bp == *object && !bp.is_hole() => {
                n.min(self.entries.len()) * std::mem::size_of::<BlockPointer>()
            }
            _ => 0,
        }
    }

    /// Records that the object `object` now holds the first `n` entries.
    pub fn mark_stored(&mut self, n: usize, object: BlockPointer) {
        self.stored = Some((n, object));
    }
}

impl From<Vec<BlockPointer>> for DeadList {
    fn from(entries: Vec<BlockPointer>) -> DeadList {
        DeadList { entries, stored: None }
    }
}

impl std::ops::Deref for DeadList {
    type Target = [BlockPointer];
    fn deref(&self) -> &[BlockPointer] {
        &self.entries
    }
}

impl<'a> IntoIterator for &'a DeadList {
    type Item = &'a BlockPointer;
    type IntoIter = std::slice::Iter<'a, BlockPointer>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl DatasetMeta {
    /// Kind of the dataset.
    #[must_use]
    pub fn kind(&self) -> DatasetKind {
        DatasetKind::from_u32(self.phys.kind).unwrap_or(DatasetKind::Volume)
    }

    /// Name of the dataset.
    #[must_use]
    pub fn name(&self) -> String {
        self.phys.name()
    }
}

/// A metadata change applied by the next txg sync at its quiesce point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaOp {
    /// Take snapshot `snapshot_id` of `volume_id`.
    Snapshot {
        /// The volume.
        volume_id: u64,
        /// Id reserved for the snapshot.
        snapshot_id: u64,
        /// Full name `volume@snapshot`.
        name: String,
    },
    /// Roll `volume_id` back to its newest snapshot `snapshot_id`.
    Rollback {
        /// The volume.
        volume_id: u64,
        /// The snapshot.
        snapshot_id: u64,
    },
    /// Destroy volume `volume_id` (it has no snapshots).
    DestroyVolume {
        /// The volume.
        volume_id: u64,
    },
    /// Destroy snapshot `snapshot_id` (no clone depends on it).
    DestroySnapshot {
        /// The snapshot.
        snapshot_id: u64,
    },
}

/// All pool metadata.
#[derive(Debug, Default)]
pub struct Meta {
    /// Datasets by id.
    pub datasets: BTreeMap<u64, DatasetMeta>,
    /// Next dataset id.
    pub next_id: u64,
    /// The directory object.
    pub directory: StoredObject,
    /// The bytes the directory object holds (the next rewrite keeps the chunks that did not
    /// change).
    pub directory_bytes: Vec<u8>,
    /// Each dataset's entry index in `directory_bytes`, while no dataset has come or gone
    /// since they were laid out (a txg then patches the entries of the objects it moved).
    pub(crate) directory_slots: Option<HashMap<u64, usize>>,
    /// The space-map table object.
    pub space_map_table: StoredObject,
    /// The pool root object.
    pub root: StoredObject,
    /// Changes waiting for the next sync.
    pub ops: Vec<MetaOp>,
    /// The directory must be rewritten (a dataset was added, removed or rewritten).
    pub dirty: bool,
    /// Dataset ids by name field; kept by [`Meta::insert`] and [`Meta::remove`].
    pub(crate) by_name: HashMap<[u8; NAME_BYTES], u64>,
    /// Snapshots by (volume id, creation txg, snapshot id), so a volume's snapshots come in
    /// order without a scan of every dataset (snapshots taken in one txg keep id order).
    pub(crate) snapshots_by_volume: std::collections::BTreeSet<(u64, u64, u64)>,
    /// Counts changes to the set of datasets and to deadlists other than a head's appends:
    /// a reader that works in slices compares it to know its view still holds.
    pub(crate) generation: u64,
}

impl Meta {
    /// Adds dataset `ds` (every insertion goes through here, so the name and snapshot
    /// indexes stay whole). Names and snapshot creation txgs never change afterwards.
    pub fn insert(&mut self, ds: DatasetMeta) {
        self.generation += 1;
        self.directory_slots = None;
        let id = ds.phys.id;
        if let Some(old) = self.datasets.remove(&id) {
            self.unindex(&old);
        }
        self.by_name.insert(ds.phys.name, id);
        if ds.kind() == DatasetKind::Snapshot {
            self.snapshots_by_volume.insert((ds.phys.parent_id, ds.phys.creation_txg, id));
        }
        self.datasets.insert(id, ds);
    }

    /// Records that `directory_bytes` holds `entries`, in order (each dataset's slot).
    pub(crate) fn set_directory_slots(&mut self, entries: &[DirectoryEntry]) {
        self.directory_slots =
            Some(entries.iter().enumerate().map(|(slot, e)| (e.id, slot)).collect());
    }

    /// Removes dataset `id`.
    pub fn remove(&mut self, id: u64) -> Option<DatasetMeta> {
        self.generation += 1;
        self.directory_slots = None;
        let ds = self.datasets.remove(&id)?;
        self.unindex(&ds);
        Some(ds)
    }

    fn unindex(&mut self, ds: &DatasetMeta) {
        if self.by_name.get(&ds.phys.name) == Some(&ds.phys.id) {
            self.by_name.remove(&ds.phys.name);
        }
        if ds.kind() == DatasetKind::Snapshot {
            self.snapshots_by_volume.remove(&(ds.phys.parent_id, ds.phys.creation_txg, ds.phys.id));
        }
    }

    /// The dataset named `name`.
    #[must_use]
    pub fn find(&self, name: &str) -> Option<&DatasetMeta> {
        let field = crate::format::encode_name(name)?;
        self.by_name.get(&field).and_then(|id| self.datasets.get(id))
    }

    /// Snapshots of `volume_id`, oldest first.
    #[must_use]
    pub fn snapshots_of(&self, volume_id: u64) -> Vec<&DatasetMeta> {
        self.snapshots_by_volume
            .range((volume_id, 0, 0)..=(volume_id, u64::MAX, u64::MAX))
            .filter_map(|(_, _, id)| self.datasets.get(id))
            .collect()
    }

    /// The snapshots of `snapshot`'s volume just before and just after it (by creation txg).
    #[must_use]
    pub fn snapshot_neighbours(&self, snapshot: &DatasetMeta) -> (Option<u64>, Option<u64>) {
        let volume = snapshot.phys.parent_id;
        let key = (volume, snapshot.phys.creation_txg, snapshot.phys.id);
        let before = self.snapshots_by_volume.range((volume, 0, 0)..key).next_back().map(|k| k.2);
        let after = self
            .snapshots_by_volume
            .range((Bound::Excluded(key), Bound::Included((volume, u64::MAX, u64::MAX))))
            .next()
            .map(|k| k.2);
        (before, after)
    }

    /// Volumes cloned from `snapshot_id`.
    #[must_use]
    pub fn clones_of(&self, snapshot_id: u64) -> Vec<&DatasetMeta> {
        self.datasets
            .values()
            .filter(|d| d.kind() == DatasetKind::Volume && d.phys.origin_id == snapshot_id)
            .collect()
    }
}
