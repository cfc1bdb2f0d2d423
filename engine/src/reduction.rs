//! Data reduction seen from outside: the per-volume properties (`compression`, `dedup`) and
//! the figures that say what they save (logical and stored bytes, compression ratio, dedup
//! table size, hit rate and ratio), per volume and pool.
//!
//! A property change is recorded in the dataset header and takes effect for blocks written by
//! the next txg sync; blocks already on disk keep the form they were written in.

use std::sync::atomic::Ordering;

use crate::compress::Compression;
use crate::dataset::{DatasetKind, DatasetPhys};
use crate::ddt::{DdtFigures, DedupMode};
use crate::error::{PoolError, PoolResult};
use crate::pool::{lock, Pool};
use crate::volume::VolumeShared;

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

/// `num / den`, 1.0 when `den` is 0.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn ratio(num: u64, den: u64) -> f64 {
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
    /// `dedup`.
    pub dedup: DedupMode,
}

/// A volume's dedup activity since import.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DedupActivity {
    /// Blocks looked up in the table.
    pub lookups: u64,
    /// Lookups that found their block.
    pub hits: u64,
    /// Why the volume stopped taking new entries, if it did.
    pub stopped: Option<String>,
}

impl DedupActivity {
    /// `hits / lookups` (0 before any lookup).
    #[must_use]
    pub fn hit_rate(&self) -> f64 {
        if self.lookups == 0 {
            0.0
        } else {
            ratio(self.hits, self.lookups)
        }
    }
}

impl Pool {
    /// Changes a property of volume `name` in its header and in memory, and commits it.
    async fn set_property(
        &self,
        name: &str,
        change: impl Fn(&mut DatasetPhys, &VolumeShared),
    ) -> PoolResult<()> {
        self.check_live()?;
        {
            let mut meta = lock(&self.meta);
            let ds = meta
                .datasets
                .values_mut()
                .find(|d| d.name() == name && d.kind() == DatasetKind::Volume)
                .ok_or_else(|| PoolError::NotFound(name.into()))?;
            let id = ds.phys.id;
            let heads = lock(&self.heads);
            let shared = heads.get(&id).ok_or_else(|| PoolError::NotFound(name.into()))?;
            change(&mut ds.phys, shared);
            ds.dirty = true;
            drop(heads);
            meta.dirty = true;
        }
        self.sync_txg().await?;
        Ok(())
    }

    /// Sets volume `name`'s `compression` property; blocks written from the next txg on follow
    /// it. The change is committed before the call returns.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], a txg sync error.
    pub async fn set_compression(&self, name: &str, compression: Compression) -> PoolResult<()> {
        self.set_property(name, |phys, shared| {
            phys.compression = compression as u8;
            shared.compression.store(compression as u8, Ordering::Relaxed);
        })
        .await
    }

    /// Sets volume `name`'s `dedup` property; blocks written from the next txg on follow it.
    /// Setting it also lets a volume that stopped taking new entries take them again.
    ///
    /// # Errors
    /// [`PoolError::NotFound`], a txg sync error.
    pub async fn set_dedup(&self, name: &str, dedup: DedupMode) -> PoolResult<()> {
        self.set_property(name, |phys, shared| {
            phys.dedup = dedup as u8;
            phys.dedup_stopped = 0;
            shared.dedup.store(dedup as u8, Ordering::Relaxed);
            *lock(&shared.dedup_state.stopped) = None;
        })
        .await
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
            dedup: DedupMode::from_u8(ds.phys.dedup).unwrap_or_default(),
        })
    }

    /// Volume `name`'s dedup activity since import.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn dedup_activity(&self, name: &str) -> PoolResult<DedupActivity> {
        let shared = self.open_volume(name)?.shared().clone();
        let state = &shared.dedup_state;
        let stopped = lock(&state.stopped).clone();
        Ok(DedupActivity {
            lookups: state.lookups.load(Ordering::Relaxed),
            hits: state.hits.load(Ordering::Relaxed),
            stopped,
        })
    }

    /// Figures of the pool's dedup table.
    #[must_use]
    pub fn dedup_table_figures(&self) -> DdtFigures {
        self.ddt.figures()
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

#[cfg(test)]
mod tests {
    use crate::units::Lba;
    use std::sync::Arc;

    use drivers::blockdev::memory::MemoryDevice;
    use drivers::buffer::IoBuf;
    use drivers::executor::{Reactor, ReactorConfig};

    use crate::block_volume::BlockVolume;
    use crate::ddt::{fingerprint, DedupMode, SHORT_FINGERPRINT_BYTES};
    use crate::pool::{CreateOptions, Pool, VolumeOptions};

    /// Two different blocks whose (test-shortened) fingerprints are equal.
    fn colliding_blocks() -> (Vec<u8>, Vec<u8>) {
        let block = |i: u32| -> Vec<u8> { (0..4096u32).map(|j| (i * 7 + j * 13) as u8).collect() };
        let first = block(0);
        let fp = fingerprint(0, 4096, &first);
        let second = (1..10_000)
            .map(block)
            .find(|b| *b != first && fingerprint(0, 4096, b) == fp)
            .expect("a collision of the short fingerprint");
        (first, second)
    }

    #[test]
    fn blocks_forced_to_one_fingerprint_are_kept_apart_with_verify() {
        SHORT_FINGERPRINT_BYTES.with(|n| n.set(1));
        let (first, second) = colliding_blocks();
        let reactor = Reactor::new(&ReactorConfig::default()).expect("reactor");
        reactor.block_on(async {
            let dev: Arc<dyn drivers::blockdev::BlockDevice> =
                Arc::new(MemoryDevice::new(64 << 20, 512));
            let options = CreateOptions {
                guid: Some(3),
                log_chain_bytes: 1 << 20,
                ..CreateOptions::default()
            };
            let pool = Pool::create(vec![dev], None, options).await.expect("create");
            let vol_options = VolumeOptions {
                capacity_bytes: 16 << 20,
                partition_count: 4,
                dedup: DedupMode::Verify,
                ..VolumeOptions::default()
            };
            let vol = pool.create_volume("v", &vol_options).await.expect("volume");
            let (res, _) = vol.write(Lba::new(0), IoBuf::from_slice(&first), false).await;
            res.expect("write");
            pool.sync_txg().await.expect("sync");
            // Same txg as a fresh entry, then a later txg: both kept apart.
            let (res, _) = vol.write(Lba::new(8), IoBuf::from_slice(&second), false).await;
            res.expect("write");
            let (res, _) = vol.write(Lba::new(16), IoBuf::from_slice(&first), false).await;
            res.expect("write");
            pool.sync_txg().await.expect("sync");
            let (res, _) = vol.write(Lba::new(24), IoBuf::from_slice(&second), false).await;
            res.expect("write");
            pool.sync_txg().await.expect("sync");
            for (lba, want) in [(0, &first), (8, &second), (16, &first), (24, &second)] {
                let (res, buf) = vol.read(Lba::new(lba), IoBuf::zeroed(4096)).await;
                res.expect("read");
                assert_eq!(&buf[..], &want[..], "LBA {lba}");
            }
            let activity = pool.dedup_activity("v").expect("activity");
            assert_eq!((activity.lookups, activity.hits), (4, 1), "only the true duplicate hit");
            assert_eq!(pool.dedup_table_figures().entries, 1);
        });
        SHORT_FINGERPRINT_BYTES.with(|n| n.set(0));
    }
}
