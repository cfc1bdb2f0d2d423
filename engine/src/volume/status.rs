//! GET LBA STATUS: how far a run of mapped or unmapped blocks goes, in bounded work.

use super::PoolVolume;
use crate::block_tree::filled_in_range;
use crate::block_volume::{LbaStatus, VolResult, VolumeError};
use crate::partition::{BlockAddress, RangeChange};
use crate::pool::lock;
use crate::units::{Lba, VolumeBlock};

/// Most blocks one GET LBA STATUS answer covers.
const STATUS_MAX_BLOCKS: u64 = 1 << 22;
/// Most single-block lookups one GET LBA STATUS answer makes in stripes of mixed state.
const STATUS_SINGLE_LOOKUPS: u32 = 1024;

impl PoolVolume {
    pub(super) async fn status(&self, lba: Lba) -> VolResult<LbaStatus> {
        self.check(lba, self.shared.layout.logical_block_bytes as usize)?;
        let layout = self.shared.current_layout();
        let l = u64::from(layout.logical_block_bytes);
        let per_block = layout.lbas_per_block();
        let capacity_lbas = layout.capacity_bytes / l;
        let total_blocks = capacity_lbas.div_ceil(per_block);
        let blocks_per_stripe = layout.blocks_per_stripe();
        let first = layout.block_of(lba);
        let mapped = self.is_mapped(layout.address(first), lba).await?;
        // The scan counts volume blocks as integers; `at` makes one a VolumeBlock again.
        let at = VolumeBlock::new;
        let first_block = first.get();
        let mut block = first_block + 1;
        let mut single_lookups = 0;
        // Bounded work per call: whole stripe runs are decided from the dirty sets and the
        // trees' fill counts; mixed stripes are looked at block by block, at most
        // STATUS_SINGLE_LOOKUPS of them.
        'scan: while block < total_blocks && block - first_block < STATUS_MAX_BLOCKS {
            let stripe_end =
                ((block / blocks_per_stripe + 1) * blocks_per_stripe).min(total_blocks);
            let (addr, from) = (layout.address(at(block)), layout.first_lba(at(block)));
            match self.range_mapped(addr, stripe_end - block, from).await? {
                Some(m) if m == mapped => {
                    block = stripe_end;
                    continue;
                }
                Some(_) => break,
                None => {}
            }
            while block < stripe_end {
                let (addr, from) = (layout.address(at(block)), layout.first_lba(at(block)));
                if single_lookups >= STATUS_SINGLE_LOOKUPS
                    || self.is_mapped(addr, from).await? != mapped
                {
                    break 'scan;
                }
                single_lookups += 1;
                block += 1;
            }
        }
        let end = (block * per_block).min(capacity_lbas);
        Ok(LbaStatus { mapped, run_blocks: (end - lba.get()).max(1) })
    }

    /// Whether the `n` blocks from `addr` (all inside one stripe) are all mapped (`Some(true)`),
    /// all holes (`Some(false)`), or mixed (`None`).
    async fn range_mapped(&self, addr: BlockAddress, n: u64, lba: Lba) -> VolResult<Option<bool>> {
        let (start, end) = (addr.index, addr.index + n);
        let cache = self.pool.cache.for_partition(self.shared.id, addr.partition);
        let (root, height) = {
            let p = lock(self.shared.partition(addr.partition));
            // The open set is newer than the syncing one, which is newer than the tree.
            for set in std::iter::once(&p.open).chain(p.syncing.as_deref()) {
                match set.range_change(start, end) {
                    RangeChange::Untouched => {}
                    RangeChange::AllHoles => return Ok(Some(false)),
                    RangeChange::AllData => return Ok(Some(true)),
                    RangeChange::Mixed => return Ok(None),
                }
            }
            (p.root, p.height)
        };
        let filled = filled_in_range(&self.pool.devs, cache, &root, height, start, end)
            .await
            .map_err(|_| VolumeError::Medium { lba })?;
        Ok(match filled {
            0 => Some(false),
            f if f == n => Some(true),
            _ => None,
        })
    }

    async fn is_mapped(&self, addr: BlockAddress, lba: Lba) -> VolResult<bool> {
        // A single block reads as mixed only when a set punched it and then wrote it: data.
        Ok(self.range_mapped(addr, 1, lba).await? != Some(false))
    }
}
