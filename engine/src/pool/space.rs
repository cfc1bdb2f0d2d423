//! The pool's space figures: what is provisioned, free and reserved, and the overcommit
//! limit that creating and growing volumes must respect.

use std::sync::atomic::Ordering;

use super::{lock, Pool, PoolSpace};
use crate::dataset::DatasetKind;
use crate::error::{PoolError, PoolResult};
use crate::meta::Meta;

impl Pool {
    /// Sum of the sizes of the pool's volumes.
    pub(crate) fn provisioned_bytes(meta: &Meta) -> u64 {
        meta.datasets
            .values()
            .filter(|d| d.kind() == DatasetKind::Volume)
            .map(|d| d.phys.capacity_bytes)
            .sum()
    }

    /// Refuses adding `extra_bytes` of volume size (for volume `name`) when the volumes
    /// together would exceed
    /// [`PoolTunables::thin_overcommit_factor`](super::PoolTunables::thin_overcommit_factor)
    /// × the pool's capacity.
    pub(crate) fn check_overcommit(
        &self,
        meta: &Meta,
        name: &str,
        extra_bytes: u64,
    ) -> PoolResult<()> {
        let factor = self.tunables.thin_overcommit_factor;
        let capacity = self.alloc.capacity_bytes();
        let limit = capacity.saturating_mul(factor);
        let after = Self::provisioned_bytes(meta).saturating_add(extra_bytes);
        if after > limit {
            return Err(PoolError::InvalidConfig(format!(
                "volume {name}: volumes would total {after} bytes, over the overcommit limit of \
                 {factor} x the pool's {capacity} bytes = {limit} bytes (thin_overcommit_factor)"
            )));
        }
        Ok(())
    }

    /// Whole free 128 KiB slabs of the data devices now (see
    /// [`crate::allocator::Allocator::set_metadata_spare_bytes`]).
    #[must_use]
    pub fn free_slabs(&self) -> u64 {
        self.alloc.free_slabs()
    }

    /// Free slabs kept for metadata: data takes none of them while others are free.
    #[must_use]
    pub fn spare_slabs(&self) -> u64 {
        self.alloc.spare_slabs()
    }

    /// Capacity, used and free space with thick reservations counted as used, and the
    /// volumes' total size.
    #[must_use]
    pub fn space_summary(&self) -> PoolSpace {
        let reserved_unused_bytes = self.unused_reservation_bytes();
        let capacity_bytes = self.alloc.capacity_bytes();
        let free_bytes = self.alloc.free_bytes().saturating_sub(reserved_unused_bytes);
        PoolSpace {
            capacity_bytes,
            used_bytes: capacity_bytes - free_bytes.min(capacity_bytes),
            free_bytes,
            reserved_unused_bytes,
            provisioned_bytes: Self::provisioned_bytes(&lock(&self.meta)),
        }
    }

    /// Bytes writers may still dirty: free space minus the reserve, dirty data and unused
    /// reservations of thick volumes.
    pub(crate) fn unreserved_bytes(&self, meta: &Meta) -> u64 {
        let reserve = self.alloc.capacity_bytes() / 100 * u64::from(self.reserve_percent);
        let reservations: u64 = meta
            .datasets
            .values()
            .filter(|d| d.kind() == DatasetKind::Volume && d.phys.reservation_bytes > 0)
            .map(|d| {
                let used = lock(&self.heads).get(&d.phys.id).map_or(0, |h| h.referenced_bytes());
                d.phys.reservation_bytes.saturating_sub(used)
            })
            .sum();
        self.alloc
            .free_bytes()
            .saturating_sub(reserve)
            .saturating_sub(self.txg.dirty_bytes.load(Ordering::Relaxed))
            .saturating_sub(reservations)
    }
}
