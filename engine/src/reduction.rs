//! Data reduction seen from outside: the per-volume properties (`compression`) and the figures
//! that say what they save (logical and stored bytes, compression ratio), per volume and pool.
//!
//! A property change is recorded in the dataset header and takes effect for blocks written by
//! the next txg sync; blocks already on disk keep the form they were written in.

use std::sync::atomic::Ordering;

use crate::compress::Compression;
use crate::dataset::DatasetKind;
use crate::error::{PoolError, PoolResult};
use crate::pool::{lock, Pool};

/// Data-reduction figures of a volume or of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReductionFigures {
    /// Bytes of referenced data blocks before compression.
    pub logical_bytes: u64,
    /// Bytes those blocks occupy on disk after compression.
    pub physical_bytes: u64,
}

impl ReductionFigures {
    /// `logical / physical` (1.0 when nothing is stored).
    #[must_use]
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.physical_bytes)
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

/// A volume's data-reduction properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeProperties {
    /// `compression`.
    pub compression: Compression,
}

impl Pool {
    /// Sets volume `name`'s `compression` property; blocks written from the next txg on follow
    /// it. The change is committed before the call returns.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], a txg sync error.
    pub async fn set_compression(&self, name: &str, compression: Compression) -> PoolResult<()> {
        self.check_live()?;
        {
            let mut meta = lock(&self.meta);
            let ds = meta
                .datasets
                .values_mut()
                .find(|d| d.name() == name && d.kind() == DatasetKind::Volume)
                .ok_or_else(|| PoolError::NotFound(name.into()))?;
            ds.phys.compression = compression as u8;
            ds.dirty = true;
            let id = ds.phys.id;
            meta.dirty = true;
            if let Some(shared) = lock(&self.heads).get(&id) {
                shared.compression.store(compression as u8, Ordering::Relaxed);
            }
        }
        self.sync_txg().await?;
        Ok(())
    }

    /// Volume `name`'s properties.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn volume_properties(&self, name: &str) -> PoolResult<VolumeProperties> {
        let meta = lock(&self.meta);
        let ds = meta
            .find(name)
            .filter(|d| d.kind() == DatasetKind::Volume)
            .ok_or_else(|| PoolError::NotFound(name.into()))?;
        Ok(VolumeProperties {
            compression: Compression::from_u8(ds.phys.compression).unwrap_or_default(),
        })
    }

    /// Figures of dataset `name` (a volume or `volume@snapshot`) as of the last durable txg.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn reduction_figures(&self, name: &str) -> PoolResult<ReductionFigures> {
        let meta = lock(&self.meta);
        let ds = meta.find(name).ok_or_else(|| PoolError::NotFound(name.into()))?;
        Ok(ReductionFigures {
            logical_bytes: ds.phys.logical_bytes,
            physical_bytes: ds.phys.physical_bytes,
        })
    }

    /// Figures of the pool: the sum over its volumes (snapshots' own blocks aside).
    #[must_use]
    pub fn pool_reduction_figures(&self) -> ReductionFigures {
        let meta = lock(&self.meta);
        meta.datasets.values().filter(|d| d.kind() == DatasetKind::Volume).fold(
            ReductionFigures::default(),
            |acc, d| ReductionFigures {
                logical_bytes: acc.logical_bytes + d.phys.logical_bytes,
                physical_bytes: acc.physical_bytes + d.phys.physical_bytes,
            },
        )
    }
}
