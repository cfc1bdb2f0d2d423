//! Volumes of the pool: create, open, list and grow.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytemuck::Zeroable;

use super::{lock, Pool, VolumeOptions};
use crate::block_tree::height_for;
use crate::dataset::{
    name_field, DatasetKind, DatasetPhys, PartitionRoot, DATASET_FLAG_THICK, DATASET_MAGIC,
    NAME_BYTES,
};
use crate::error::{PoolError, PoolResult};
use crate::meta::{DatasetMeta, DeadList, Meta};
use crate::object::StoredObject;
use crate::partition::VolumeLayout;
use crate::units::TxgId;
use crate::volume::{PoolVolume, VolumeShared};

/// The stored name of a new volume: a valid dataset name without a snapshot part.
pub(crate) fn volume_name_field(name: &str) -> PoolResult<[u8; NAME_BYTES]> {
    let field = name_field(name)?;
    if name.contains('@') {
        return Err(PoolError::InvalidConfig("volume names cannot contain '@'".into()));
    }
    Ok(field)
}

impl Pool {
    /// Creates a volume and commits it.
    ///
    /// # Errors
    /// [`PoolError::AlreadyExists`], [`PoolError::InvalidConfig`] for a bad layout,
    /// [`PoolError::NoSpace`] when a thick volume's reservation does not fit.
    pub async fn create_volume(
        &self,
        name: &str,
        options: &VolumeOptions,
    ) -> PoolResult<PoolVolume> {
        self.check_live()?;
        let layout = VolumeLayout {
            logical_block_bytes: options.logical_block_bytes,
            volblock_bytes: options.volblock_bytes,
            stripe_bytes: options.stripe_bytes,
            partition_count: options.partition_count,
            capacity_bytes: options.capacity_bytes,
        };
        layout.check().map_err(PoolError::InvalidConfig)?;
        let field = volume_name_field(name)?;
        let shared = {
            let mut meta = lock(&self.meta);
            if meta.find(name).is_some() {
                return Err(PoolError::AlreadyExists(name.into()));
            }
            if options.thick && self.unreserved_bytes(&meta) < options.capacity_bytes {
                return Err(PoolError::NoSpace);
            }
            self.check_overcommit(&meta, name, options.capacity_bytes)?;
            let id = meta.next_id;
            meta.next_id += 1;
            let height = height_for(layout.blocks_per_partition());
            let phys = DatasetPhys {
                magic: DATASET_MAGIC,
                id,
                kind: DatasetKind::Volume as u32,
                partition_count: layout.partition_count,
                volblock_bytes: layout.volblock_bytes,
                logical_block_bytes: layout.logical_block_bytes,
                stripe_bytes: u64::from(layout.stripe_bytes),
                capacity_bytes: layout.capacity_bytes,
                creation_txg: self.txg.open_txg.load(Ordering::SeqCst),
                reservation_bytes: if options.thick { options.capacity_bytes } else { 0 },
                flags: if options.thick { DATASET_FLAG_THICK } else { 0 },
                compression: options.compression as u8,
                dedup: options.dedup as u8,
                name: field,
                ..Zeroable::zeroed()
            };
            let roots = vec![
                PartitionRoot { height: u64::from(height), ..Zeroable::zeroed() };
                layout.partition_count as usize
            ];
            self.add_head(&mut meta, phys, &roots, self.open_txg())
        };
        self.sync_txg().await?;
        Ok(PoolVolume::new(self.arc(), shared))
    }

    /// Enters a new volume (a created volume or a clone) into `meta` and the pool's open
    /// heads: its dataset, to be written by the next sync, and its in-memory state over
    /// `roots`, taking writes from `open_txg` on.
    pub(crate) fn add_head(
        &self,
        meta: &mut Meta,
        phys: DatasetPhys,
        roots: &[PartitionRoot],
        open_txg: TxgId,
    ) -> Arc<VolumeShared> {
        let id = phys.id;
        let shared = Arc::new(VolumeShared::new(&phys, roots, open_txg));
        meta.insert(DatasetMeta {
            phys,
            roots: Vec::new(),
            object: StoredObject::none(),
            deadlist: DeadList::default(),
            deadlist_object: StoredObject::none(),
            dirty: true,
            deadlist_dirty: false,
        });
        meta.dirty = true;
        lock(&self.heads).insert(id, Arc::clone(&shared));
        shared
    }

    /// Opens volume `name`.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn open_volume(&self, name: &str) -> PoolResult<PoolVolume> {
        self.check_live()?;
        let meta = lock(&self.meta);
        let ds = meta.find(name).ok_or_else(|| PoolError::NotFound(name.into()))?;
        if ds.kind() != DatasetKind::Volume {
            return Err(PoolError::NotFound(name.into()));
        }
        let shared = lock(&self.heads)
            .get(&ds.phys.id)
            .cloned()
            .ok_or_else(|| PoolError::NotFound(name.into()))?;
        Ok(PoolVolume::new(self.arc(), shared))
    }

    /// Names of every dataset (volumes, and snapshots as `volume@snapshot`).
    #[must_use]
    pub fn list(&self) -> Vec<String> {
        lock(&self.meta).datasets.values().map(DatasetMeta::name).collect()
    }

    /// Grows volume `name` to `capacity_bytes`.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], [`PoolError::InvalidConfig`] when shrinking.
    pub async fn grow_volume(&self, name: &str, capacity_bytes: u64) -> PoolResult<()> {
        self.check_live()?;
        {
            let mut meta = lock(&self.meta);
            let unreserved = self.unreserved_bytes(&meta);
            if let Some(current) = meta.find(name).filter(|d| d.kind() == DatasetKind::Volume) {
                let extra = capacity_bytes.saturating_sub(current.phys.capacity_bytes);
                self.check_overcommit(&meta, name, extra)?;
            }
            let ds = meta
                .datasets
                .values_mut()
                .find(|d| d.name() == name && d.kind() == DatasetKind::Volume)
                .ok_or_else(|| PoolError::NotFound(name.into()))?;
            let mut layout = ds.phys.layout();
            if capacity_bytes < layout.capacity_bytes
                || !capacity_bytes.is_multiple_of(u64::from(layout.logical_block_bytes))
            {
                return Err(PoolError::InvalidConfig("volumes only grow, by whole blocks".into()));
            }
            let extra = capacity_bytes - layout.capacity_bytes;
            if ds.phys.flags & DATASET_FLAG_THICK != 0 {
                if unreserved < extra {
                    return Err(PoolError::NoSpace);
                }
                ds.phys.reservation_bytes = capacity_bytes;
            }
            layout.capacity_bytes = capacity_bytes;
            ds.phys.capacity_bytes = capacity_bytes;
            ds.dirty = true;
            let id = ds.phys.id;
            meta.dirty = true;
            if let Some(shared) = lock(&self.heads).get(&id) {
                shared.grow(&layout);
            }
        }
        self.sync_txg().await?;
        Ok(())
    }
}
