//! READ CAPACITY (10)/(16) (SBC-4 5.20, 5.21) and GET LBA STATUS (SBC-4 5.7).

use super::limits::MAX_LBA_STATUS_DESCRIPTORS;
use super::logical_unit::{volume_sense, LogicalUnit};
use super::sense::Sense;
use super::status::{data_in, ScsiResult};
use engine::units::Lba;

impl LogicalUnit {
    /// READ CAPACITY (10): last LBA (0xFFFFFFFF when it does not fit) and block length.
    pub(super) fn read_capacity_10(&self, pmi: bool, lba: u32) -> ScsiResult {
        if !pmi && lba != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None).into());
        }
        let g = self.geometry();
        let last = u32::try_from(g.capacity_blocks.saturating_sub(1)).unwrap_or(u32::MAX);
        let mut d = [0u8; 8];
        d[0..4].copy_from_slice(&last.to_be_bytes());
        d[4..8].copy_from_slice(&g.logical_block_bytes.to_be_bytes());
        Ok(data_in(&d, d.len()))
    }

    /// READ CAPACITY (16): last LBA, block length, physical block exponent, LBPME/LBPRZ.
    pub(super) fn read_capacity_16(&self, allocation_length: u32) -> ScsiResult {
        let g = self.geometry();
        let mut d = [0u8; 32];
        d[0..8].copy_from_slice(&g.capacity_blocks.saturating_sub(1).to_be_bytes());
        d[8..12].copy_from_slice(&g.logical_block_bytes.to_be_bytes());
        let lbppb = g.physical_block_bytes / g.logical_block_bytes;
        d[13] = (lbppb.trailing_zeros() & 0x0F) as u8;
        if g.thin_provisioned {
            d[14] |= 0x80;
            if g.unmapped_reads_zero {
                d[14] |= 0x40;
            }
        }
        Ok(data_in(&d, allocation_length as usize))
    }

    /// GET LBA STATUS: mapped / deallocated runs starting at `lba`.
    pub(super) async fn get_lba_status(&self, lba: u64, allocation_length: u32) -> ScsiResult {
        let capacity = self.geometry().capacity_blocks;
        if lba >= capacity {
            return Err(Sense::lba_out_of_range().into());
        }
        let room = (allocation_length as usize).saturating_sub(8) / 16;
        let max = room.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
        let mut d = vec![0u8; 8];
        let mut cur = lba;
        while cur < capacity && (d.len() - 8) / 16 < max {
            let status = self.volume.lba_status(Lba::new(cur)).await.map_err(volume_sense)?;
            let run = status.run_blocks.clamp(1, capacity - cur).min(u64::from(u32::MAX));
            d.extend_from_slice(&cur.to_be_bytes());
            d.extend_from_slice(&(run as u32).to_be_bytes());
            d.push(if status.mapped { 0 } else { 1 });
            d.extend_from_slice(&[0; 3]);
            cur += run;
        }
        let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
        d[0..4].copy_from_slice(&len.to_be_bytes());
        Ok(data_in(&d, allocation_length as usize))
    }
}
