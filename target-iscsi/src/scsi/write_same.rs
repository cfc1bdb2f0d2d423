//! WRITE SAME (10)/(16) (SBC-4 5.46, 5.47), executed as bounded pieces with a yield between
//! them.

use drivers::buffer::IoBuf;
use engine::units::{BlockCount, Lba};

use super::cdb::WriteSameCdb;
use super::limits;
use super::logical_unit::{volume_sense, LogicalUnit};
use super::read_write::length_field;
use super::sense::Sense;
use super::status::ScsiResult;
use super::yield_now::yield_now;

impl LogicalUnit {
    /// WRITE SAME: one block (or zeros with NDOB) repeated over the range; with UNMAP and a
    /// zero block, the range is deallocated.
    pub(super) async fn write_same(&self, ws: WriteSameCdb, data: Option<IoBuf>) -> ScsiResult {
        let g = self.geometry();
        if ws.anchor {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)).into());
        }
        if ws.unmap && !g.thin_provisioned {
            return Err(Sense::invalid_field_in_cdb(1, Some(3)).into());
        }
        let blocks = self.write_same_blocks(ws)?;
        let zero = data.as_ref().is_none_or(|d| d.iter().all(|b| *b == 0));
        if zero {
            let deallocate = ws.unmap && g.unmapped_reads_zero;
            return self.zero_range(ws.lba, blocks, deallocate).await;
        }
        let Some(block) = data else { return Ok(None) };
        self.repeat_block(ws.lba, blocks, block).await
    }

    /// The range WRITE SAME covers, checked against the MAXIMUM WRITE SAME LENGTH and the
    /// capacity. NUMBER OF LOGICAL BLOCKS 0 is refused: the Block Limits page sets WSNZ (a
    /// zero-length WRITE SAME running through the last LBA is not offered).
    fn write_same_blocks(&self, ws: WriteSameCdb) -> Result<u64, Sense> {
        let blocks = u64::from(ws.blocks);
        if blocks == 0 || blocks > limits::max_write_same_blocks(self.block_bytes()) {
            return Err(Sense::invalid_field_in_cdb(length_field(ws.cdb_bytes), None));
        }
        self.check_range(ws.lba, blocks)?;
        Ok(blocks)
    }

    /// Zeroes (or, with `deallocate`, unmaps) `blocks` blocks from `lba` in pieces.
    pub(super) async fn zero_range(&self, lba: u64, blocks: u64, deallocate: bool) -> ScsiResult {
        let piece = limits::piece_blocks(self.block_bytes());
        let mut done = 0;
        while done < blocks {
            let n = piece.min(blocks - done);
            let res = if deallocate {
                self.volume.unmap(Lba::new(lba + done), BlockCount::new(n)).await
            } else {
                self.volume.write_zeroes(Lba::new(lba + done), BlockCount::new(n)).await
            };
            res.map_err(volume_sense)?;
            done += n;
            if done < blocks {
                yield_now().await;
            }
        }
        Ok(None)
    }

    /// Writes `block` over the range in bounded pieces; the volume stores (and logs) each
    /// piece as the block and its range where it can.
    async fn repeat_block(&self, lba: u64, blocks: u64, block: IoBuf) -> ScsiResult {
        let piece = limits::piece_blocks(self.block_bytes()).min(blocks);
        let mut block = block;
        let mut done = 0;
        while done < blocks {
            let n = piece.min(blocks - done);
            let (res, back) =
                self.volume.write_same(Lba::new(lba + done), BlockCount::new(n), block).await;
            res.map_err(volume_sense)?;
            block = back;
            done += n;
            if done < blocks {
                yield_now().await;
            }
        }
        Ok(None)
    }
}
