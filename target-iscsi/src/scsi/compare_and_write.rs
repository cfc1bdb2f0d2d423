//! COMPARE AND WRITE (SBC-4 5.3) and ORWRITE (16) (SBC-4 5.12).
//!
//! Both are atomic against every other write: COMPARE AND WRITE through the volume's atomic
//! `compare_and_write`; ORWRITE as read, OR, then compare-and-write of the result against
//! what was read, retried when another write got in between.

use drivers::buffer::IoBuf;
use engine::block_volume::CompareOutcome;
use engine::copy_stats::{self, CopyPath};
use engine::units::Lba;

use super::cdb::BlockIo;
use super::limits;
use super::logical_unit::{volume_sense, LogicalUnit};
use super::sense::Sense;
use super::status::{ScsiError, ScsiResult};

impl LogicalUnit {
    /// COMPARE AND WRITE: Data-Out is the compare blocks followed by the write blocks.
    pub(super) async fn compare_and_write(&self, io: BlockIo, data: Option<IoBuf>) -> ScsiResult {
        if io.blocks > u32::from(limits::MAX_COMPARE_AND_WRITE_BLOCKS) {
            return Err(Sense::invalid_field_in_cdb(13, None).into());
        }
        self.check_range(io.lba, u64::from(io.blocks))?;
        let Some(mut compare) = data else { return Ok(None) };
        let half = self.bytes_of(u64::from(io.blocks))?;
        let write = IoBuf::from_slice(
            compare.get(half..2 * half).ok_or_else(Sense::internal_target_failure)?,
        );
        copy_stats::record(CopyPath::IscsiReceive, half);
        compare.set_len(half);
        match self
            .volume
            .compare_and_write(Lba::new(io.lba), compare, write, io.fua)
            .await
            .map_err(volume_sense)?
        {
            CompareOutcome::Written => Ok(None),
            CompareOutcome::Miscompare { offset_bytes } => {
                Err(Sense::miscompare(offset_bytes).into())
            }
        }
    }

    /// ORWRITE: ORs the Data-Out into the blocks.
    pub(super) async fn orwrite(&self, io: BlockIo, data: Option<IoBuf>) -> ScsiResult {
        self.check_block_io(io)?;
        let Some(data) = data else { return Ok(None) };
        for _ in 0..limits::ORWRITE_ATTEMPTS {
            let old = self.read_blocks(io.lba, u64::from(io.blocks)).await?;
            let mut new = IoBuf::from_slice(&old);
            copy_stats::record(CopyPath::IscsiReceive, new.len());
            for (n, d) in new.iter_mut().zip(data.iter()) {
                *n |= *d;
            }
            match self
                .volume
                .compare_and_write(Lba::new(io.lba), old, new, io.fua)
                .await
                .map_err(volume_sense)?
            {
                CompareOutcome::Written => return Ok(None),
                CompareOutcome::Miscompare { .. } => {}
            }
        }
        Err(ScsiError::Busy)
    }
}
