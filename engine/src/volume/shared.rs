//! A volume's in-memory state, shared by every handle: layout, size, partitions and
//! properties.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use crate::block_tree::height_for;
use crate::compress::Compression;
use crate::dataset::{DatasetPhys, PartitionRoot, DATASET_FLAG_THICK};
use crate::ddt::DedupMode;
use crate::partition::{PartitionState, VolumeLayout};
use crate::pool::lock;
use crate::units::{PartitionId, TxgId};

/// In-memory state of a volume (head dataset), shared by every handle.
#[derive(Debug)]
pub struct VolumeShared {
    /// Dataset id.
    pub id: u64,
    /// Shape (its `capacity_bytes` is the size at open; see `capacity_bytes`).
    pub layout: VolumeLayout,
    /// Current size.
    pub capacity_bytes: AtomicU64,
    /// Thick volumes have their size reserved.
    pub thick: bool,
    /// Per-partition state.
    pub partitions: Vec<Mutex<PartitionState>>,
    /// SCSI WCE.
    pub write_cache: AtomicBool,
    /// Set when the volume is destroyed; every operation then fails.
    pub destroyed: AtomicBool,
    /// `compression` property ([`Compression`] as u8), read by each txg sync.
    pub compression: AtomicU8,
    /// `dedup` property ([`DedupMode`] as u8), read by each txg sync.
    pub dedup: AtomicU8,
    /// Dedup lookups and hits of this volume, and why it stopped taking new entries.
    pub dedup_state: DedupState,
}

/// A volume's dedup activity since import.
#[derive(Debug, Default)]
pub struct DedupState {
    /// Blocks looked up in the table.
    pub lookups: AtomicU64,
    /// Lookups that found their block (and, with `verify`, equal bytes).
    pub hits: AtomicU64,
    /// Set when the volume stopped taking new entries: the reason. Existing entries still
    /// serve hits. Cleared when the `dedup` property is set again.
    pub stopped: Mutex<Option<String>>,
}

impl VolumeShared {
    /// The state of partition `partition`.
    #[must_use]
    pub fn partition(&self, partition: PartitionId) -> &Mutex<PartitionState> {
        &self.partitions[partition.get()]
    }

    /// State for dataset `phys` with synced `roots`.
    #[must_use]
    pub fn new(phys: &DatasetPhys, roots: &[PartitionRoot], open_txg: TxgId) -> VolumeShared {
        let layout = phys.layout();
        let target = height_for(layout.blocks_per_partition());
        VolumeShared {
            id: phys.id,
            layout,
            capacity_bytes: AtomicU64::new(layout.capacity_bytes),
            thick: phys.flags & DATASET_FLAG_THICK != 0,
            partitions: roots
                .iter()
                .map(|r| {
                    let height = u8::try_from(r.height).unwrap_or(1);
                    let mut p = PartitionState::new(r.root, height, open_txg);
                    p.target_height = target.max(height);
                    Mutex::new(p)
                })
                .collect(),
            write_cache: AtomicBool::new(true),
            destroyed: AtomicBool::new(false),
            compression: AtomicU8::new(phys.compression),
            dedup: AtomicU8::new(phys.dedup),
            dedup_state: DedupState {
                stopped: Mutex::new(crate::ddt::stopped_reason_at_import(phys.dedup_stopped)),
                ..DedupState::default()
            },
        }
    }

    /// The `dedup` property new writes follow.
    #[must_use]
    pub fn dedup(&self) -> DedupMode {
        DedupMode::from_u8(self.dedup.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// The `compression` property new writes follow.
    #[must_use]
    pub fn compression(&self) -> Compression {
        Compression::from_u8(self.compression.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// Grows the volume to `layout.capacity_bytes`; trees get deeper at the next sync.
    pub fn grow(&self, layout: &VolumeLayout) {
        let target = height_for(layout.blocks_per_partition());
        for p in &self.partitions {
            let mut p = lock(p);
            p.target_height = p.target_height.max(target);
        }
        self.capacity_bytes.store(layout.capacity_bytes, Ordering::SeqCst);
    }

    /// Data bytes referenced by the synced trees.
    #[must_use]
    pub fn referenced_bytes(&self) -> u64 {
        let blocks: u64 = self.partitions.iter().map(|p| lock(p).root.fill_blocks).sum();
        blocks * u64::from(self.layout.volblock_bytes)
    }

    /// The current layout (with the current capacity).
    #[must_use]
    pub fn current_layout(&self) -> VolumeLayout {
        VolumeLayout { capacity_bytes: self.capacity_bytes.load(Ordering::SeqCst), ..self.layout }
    }
}
