//! VERIFY and WRITE AND VERIFY (10)/(12)/(16) (SBC-4 5.33-5.35, 5.43-5.45).

use drivers::buffer::IoBuf;
use engine::units::Lba;

use super::cdb::{BlockIo, ByteCheck};
use super::logical_unit::{volume_sense, LogicalUnit};
use super::sense::Sense;
use super::status::ScsiResult;

/// Offset of the first byte where `a` and `b` differ.
pub(super) fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

impl LogicalUnit {
    /// Reads the range and compares it as `check` says.
    async fn verify_range(
        &self,
        io: BlockIo,
        check: ByteCheck,
        data: Option<&[u8]>,
    ) -> Result<(), Sense> {
        let medium = self.read_blocks(io.lba, u64::from(io.blocks)).await?;
        let bs = self.block_bytes() as usize;
        let diff = match (check, data) {
            (ByteCheck::Medium, _) | (_, None) => None,
            (ByteCheck::Compare, Some(d)) => first_difference(&medium, d),
            (ByteCheck::CompareOneBlock, Some(d)) => medium
                .chunks(bs)
                .enumerate()
                .find_map(|(i, blk)| first_difference(blk, d).map(|o| i * bs + o)),
        };
        match diff {
            Some(offset) => Err(Sense::miscompare(offset as u64)),
            None => Ok(()),
        }
    }

    /// VERIFY with BYTCHK 0, 1 or 3.
    pub(super) async fn verify(
        &self,
        io: BlockIo,
        check: ByteCheck,
        data: Option<IoBuf>,
    ) -> ScsiResult {
        self.check_block_io(io)?;
        if io.blocks == 0 {
            return Ok(None);
        }
        self.verify_range(io, check, data.as_deref()).await?;
        Ok(None)
    }

    /// WRITE AND VERIFY: a durable write, then a read-back (compared with BYTCHK 1).
    pub(super) async fn write_and_verify(
        &self,
        io: BlockIo,
        check: ByteCheck,
        data: Option<IoBuf>,
    ) -> ScsiResult {
        self.check_block_io(io)?;
        let Some(buf) = data else { return Ok(None) };
        let (res, buf) = self.volume.write(Lba::new(io.lba), buf, true).await;
        res.map_err(volume_sense)?;
        self.verify_range(io, check, Some(&buf)).await?;
        Ok(None)
    }
}
