//! In-memory pool metadata: the datasets and where the pool's metadata objects live. Guarded
//! by one lock in [`crate::pool::Pool`]; it is touched by metadata operations and by the txg
//! sync, never on the data path.

use std::collections::BTreeMap;

use crate::block_pointer::BlockPointer;
use crate::dataset::{DatasetKind, DatasetPhys, PartitionRoot};
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
    pub deadlist: Vec<BlockPointer>,
    /// Where the deadlist object is.
    pub deadlist_object: StoredObject,
    /// The dataset object must be rewritten.
    pub dirty: bool,
    /// The deadlist object must be rewritten.
    pub deadlist_dirty: bool,
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
    /// The space-map table object.
    pub space_map_table: StoredObject,
    /// The pool root object.
    pub root: StoredObject,
    /// Changes waiting for the next sync.
    pub ops: Vec<MetaOp>,
    /// The directory must be rewritten (a dataset was added, removed or rewritten).
    pub dirty: bool,
}

impl Meta {
    /// The dataset named `name`.
    #[must_use]
    pub fn find(&self, name: &str) -> Option<&DatasetMeta> {
        self.datasets.values().find(|d| d.name() == name)
    }

    /// Snapshots of `volume_id`, oldest first.
    #[must_use]
    pub fn snapshots_of(&self, volume_id: u64) -> Vec<&DatasetMeta> {
        let mut snaps: Vec<&DatasetMeta> = self
            .datasets
            .values()
            .filter(|d| d.kind() == DatasetKind::Snapshot && d.phys.parent_id == volume_id)
            .collect();
        snaps.sort_by_key(|d| d.phys.creation_txg);
        snaps
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
