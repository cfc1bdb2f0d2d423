//! READ and WRITE (6)/(10)/(12)/(16) (SBC-4 5.14-5.17, 5.39-5.42).

use drivers::buffer::{IoBuf, SharedBuf};
use engine::units::Lba;

use super::cdb::BlockIo;
use super::limits;
use super::logical_unit::{volume_sense, LogicalUnit};
use super::sense::Sense;
use super::status::{DataIn, ScsiResult};

/// Byte of the TRANSFER LENGTH field in a CDB of `cdb_bytes`.
pub(super) fn length_field(cdb_bytes: u8) -> u16 {
    match cdb_bytes {
        6 => 4,
        10 => 7,
        12 => 6,
        _ => 10,
    }
}

impl LogicalUnit {
    /// Checks range and transfer length of a block command.
    pub(super) fn check_block_io(&self, io: BlockIo) -> Result<(), Sense> {
        if io.blocks > limits::max_transfer_blocks(self.block_bytes()) {
            return Err(Sense::invalid_field_in_cdb(length_field(io.cdb_bytes), None));
        }
        self.check_range(io.lba, u64::from(io.blocks))
    }

    /// Reads `blocks` blocks from `lba` into a new buffer.
    pub(super) async fn read_blocks(&self, lba: u64, blocks: u64) -> Result<IoBuf, Sense> {
        let buf = IoBuf::zeroed(self.bytes_of(blocks)?);
        let (res, buf) = self.volume.read(Lba::new(lba), buf).await;
        res.map_err(volume_sense)?;
        Ok(buf)
    }

    /// READ into one buffer.
    pub(super) async fn read(&self, io: BlockIo) -> ScsiResult {
        self.check_block_io(io)?;
        if io.blocks == 0 {
            return Ok(None);
        }
        Ok(Some(self.read_blocks(io.lba, u64::from(io.blocks)).await?))
    }

    /// READ as the volume's shared segments, sent without assembling them.
    pub(super) async fn read_shared(&self, io: BlockIo) -> ScsiResult<DataIn> {
        self.check_block_io(io)?;
        let len = self.bytes_of(u64::from(io.blocks))?;
        if len == 0 {
            return Ok(DataIn::default());
        }
        let segments =
            self.volume.read_segments(Lba::new(io.lba), len).await.map_err(volume_sense)?;
        Ok(DataIn { segments })
    }

    /// WRITE; FUA makes it durable before completion. The Data-Out buffer is handed to the
    /// volume, which may keep it as the written blocks (no copy).
    pub(super) async fn write(&self, io: BlockIo, data: Option<IoBuf>) -> ScsiResult {
        self.check_block_io(io)?;
        let Some(buf) = data else { return Ok(None) };
        self.volume
            .write_shared(Lba::new(io.lba), SharedBuf::new(buf), io.fua)
            .await
            .map_err(volume_sense)?;
        Ok(None)
    }
}
