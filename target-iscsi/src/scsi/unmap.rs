//! UNMAP (SBC-4 5.32): parameter list validation, then bounded deallocation.

use super::limits;
use super::logical_unit::LogicalUnit;
use super::sense::Sense;
use super::status::ScsiResult;
use engine::units::{BlockCount, Lba};

/// One UNMAP block descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmapDescriptor {
    /// First block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u32,
}

/// Decodes and validates an UNMAP parameter list against `capacity_blocks`.
pub fn parse_unmap_list(list: &[u8], capacity_blocks: u64) -> Result<Vec<UnmapDescriptor>, Sense> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    if list.len() < 8 {
        return Err(Sense::parameter_list_length_error());
    }
    let data_len = usize::from(u16::from_be_bytes([list[0], list[1]]));
    let bd_len = usize::from(u16::from_be_bytes([list[2], list[3]]));
    if data_len != 0 && data_len + 2 > list.len() {
        return Err(Sense::parameter_list_length_error());
    }
    let count = bd_len.min(list.len() - 8) / 16;
    if count > limits::MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_field_in_parameter_list(2, None));
    }
    let mut out = Vec::with_capacity(count);
    let mut total: u64 = 0;
    for i in 0..count {
        let d = &list[8 + 16 * i..8 + 16 * (i + 1)];
        let mut lba = [0u8; 8];
        lba.copy_from_slice(&d[0..8]);
        let lba = u64::from_be_bytes(lba);
        let blocks = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        engine::block_volume::check_range(
            capacity_blocks,
            Lba::new(lba),
            BlockCount::new(u64::from(blocks)),
        )
        .map_err(|_| Sense::lba_out_of_range())?;
        total += u64::from(blocks);
        if total > u64::from(limits::MAX_UNMAP_LBA_COUNT) {
            return Err(Sense::invalid_field_in_parameter_list(
                u16::try_from(8 + 16 * i + 8).unwrap_or(u16::MAX),
                None,
            ));
        }
        out.push(UnmapDescriptor { lba, blocks });
    }
    Ok(out)
}

impl LogicalUnit {
    /// UNMAP every range of the parameter list (all validated before any is applied).
    pub(super) async fn unmap(&self, anchor: bool, list: &[u8]) -> ScsiResult {
        let g = self.geometry();
        if !g.thin_provisioned {
            return Err(Sense::invalid_opcode().into());
        }
        if anchor {
            return Err(Sense::invalid_field_in_cdb(1, Some(0)).into());
        }
        let ranges = parse_unmap_list(list, g.capacity_blocks)?;
        for r in ranges {
            if r.blocks > 0 {
                self.zero_range(r.lba, u64::from(r.blocks), g.unmapped_reads_zero).await?;
            }
        }
        Ok(None)
    }
}
