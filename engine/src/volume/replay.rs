//! Replay of intent-log records into the open dirty sets at import.

use drivers::buffer::{IoBuf, SharedBuf};

use super::{io_to_volume, PoolVolume};
use crate::block_volume::{VolResult, VolumeError};
use crate::units::{BlockCount, Lba};
use crate::vdev::{BlockCheck, Reconstruction};
use crate::zil::LogOp;

impl PoolVolume {
    /// Applies an intent-log record during replay (no logging, no throttling).
    pub(crate) async fn replay(&self, op: &LogOp) -> VolResult<()> {
        let l = u64::from(self.shared.layout.logical_block_bytes);
        match op {
            LogOp::Write { offset_bytes, data } => {
                let lba = Lba::new(offset_bytes / l);
                self.check(lba, data.len())?;
                // Replay runs once at import, off the I/O path: the record's bytes get a buffer.
                let data = SharedBuf::new(IoBuf::from_slice(data));
                self.replay_write(lba, &data).await
            }
            LogOp::WriteBlock { offset_bytes, extent, checksum } => {
                let len = usize::try_from(extent.len_bytes).map_err(|_| VolumeError::BadLength)?;
                let lba = Lba::new(offset_bytes / l);
                self.check(lba, len)?;
                let devs = &self.pool.devs;
                let mut buf = devs
                    .read(extent.device, extent.offset_bytes, len)
                    .await
                    .map_err(|e| io_to_volume(e, lba))?;
                let verify = |b: &[u8]| crate::format::checksum(b) == *checksum;
                if !verify(&buf) {
                    // The node counts each copy that fails on its device.
                    let block = BlockCheck {
                        offset_bytes: extent.offset_bytes,
                        len_bytes: len,
                        verify: &verify,
                    };
                    match devs.reconstruct(extent.device, block).await {
                        Reconstruction::Healed(good) => buf = good,
                        Reconstruction::NoOtherCopy => return Err(VolumeError::Medium { lba }),
                    }
                }
                self.replay_write(lba, &SharedBuf::new(buf)).await
            }
            LogOp::Zero { offset_bytes, len_bytes } => {
                self.fill_range(
                    Lba::new(offset_bytes / l),
                    BlockCount::new(len_bytes / l),
                    None,
                    false,
                )
                .await
            }
            LogOp::WriteSame { offset_bytes, len_bytes, pattern } => {
                let (lba, blocks) = (Lba::new(offset_bytes / l), BlockCount::new(len_bytes / l));
                self.fill_range(lba, blocks, Some(pattern), false).await
            }
        }
    }

    /// Applies replayed `data` at `lba` into the open dirty sets (no log, no throttle).
    async fn replay_write(&self, lba: Lba, data: &SharedBuf) -> VolResult<()> {
        for piece in self.pieces(lba, data.len()) {
            let d = data.slice(piece.request_offset..piece.request_offset + piece.len);
            self.write_piece(piece, &d).await?;
        }
        Ok(())
    }
}
