//! PRE-FETCH and SYNCHRONIZE CACHE (10)/(16) (SBC-4 5.13, 5.24).

use super::cdb::BlockRange;
use super::logical_unit::{volume_sense, LogicalUnit};
use super::sense::Sense;
use super::status::ScsiResult;

impl LogicalUnit {
    fn check_cache_range(&self, r: BlockRange) -> Result<(), Sense> {
        let capacity = self.geometry().capacity_blocks;
        if r.blocks == 0 {
            // Zero blocks: from LBA to the end of the medium.
            if r.lba > capacity {
                return Err(Sense::lba_out_of_range());
            }
            return Ok(());
        }
        self.check_range(r.lba, u64::from(r.blocks))
    }

    /// PRE-FETCH: a hint with nothing to do (no read cache to fill); GOOD.
    pub(super) fn pre_fetch(&self, r: BlockRange) -> ScsiResult {
        self.check_cache_range(r)?;
        Ok(None)
    }

    /// SYNCHRONIZE CACHE: makes every completed write durable.
    pub(super) async fn synchronize_cache(&self, r: BlockRange) -> ScsiResult {
        self.check_cache_range(r)?;
        self.volume.flush().await.map_err(volume_sense)?;
        Ok(None)
    }
}
