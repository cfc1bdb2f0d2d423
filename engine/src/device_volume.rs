//! A volume stored directly on a block device or file, block for block (no pool services).
//!
//! Serves LUNs before a pool is configured and as the baseline the pool is measured against.
//! Writes go straight to the device; the write cache (WCE) and FUA map to device flushes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::error::IoError;
use drivers::LocalBoxFuture;

use crate::block_volume::{
    check_range, BlockVolume, CompareOutcome, LbaStatus, VolResult, VolumeError, VolumeGeometry,
};
use crate::range_lock::RangeLock;
use crate::units::{BlockCount, Lba};

/// Largest zeroing or unmap request sent to the device at once.
const ZERO_CHUNK_BYTES: u64 = 8 << 20;
/// Longest range one GET LBA STATUS lookup asks the device about.
const STATUS_QUERY_BYTES: u64 = 1 << 30;

/// A volume mapped 1:1 onto a device.
pub struct DeviceVolume {
    device: Arc<dyn BlockDevice>,
    geometry: VolumeGeometry,
    write_cache: AtomicBool,
    locks: RangeLock,
}

impl DeviceVolume {
    /// A volume over the whole device with `logical_block_bytes` blocks (512 or 4096; at least
    /// the device's logical block size) and the given physical block size.
    ///
    /// # Errors
    /// [`VolumeError::BadLength`] when the block size is unusable on this device.
    pub fn new(
        device: Arc<dyn BlockDevice>,
        logical_block_bytes: u32,
        physical_block_bytes: u32,
    ) -> VolResult<DeviceVolume> {
        let info = device.info();
        if !(logical_block_bytes == 512 || logical_block_bytes == 4096)
            || logical_block_bytes < info.logical_block_bytes
            || !physical_block_bytes.is_multiple_of(logical_block_bytes)
        {
            return Err(VolumeError::BadLength);
        }
        let geometry = VolumeGeometry {
            logical_block_bytes,
            physical_block_bytes,
            capacity_blocks: info.size_bytes / u64::from(logical_block_bytes),
            thin_provisioned: info.supports_discard,
            unmapped_reads_zero: info.supports_discard,
        };
        Ok(DeviceVolume {
            device,
            geometry,
            write_cache: AtomicBool::new(true),
            locks: RangeLock::default(),
        })
    }

    fn block_bytes(&self) -> u64 {
        u64::from(self.geometry.logical_block_bytes)
    }

    fn blocks_of(&self, len_bytes: usize) -> VolResult<BlockCount> {
        let len = len_bytes as u64;
        if len == 0 || !len.is_multiple_of(self.block_bytes()) {
            return Err(VolumeError::BadLength);
        }
        Ok(BlockCount::new(len / self.block_bytes()))
    }

    /// The blocks an I/O of `len_bytes` from `lba` covers, when it is whole blocks inside
    /// the volume.
    fn blocks_in_range(&self, lba: Lba, len_bytes: usize) -> VolResult<BlockCount> {
        let blocks = self.blocks_of(len_bytes)?;
        check_range(self.geometry.capacity_blocks, lba, blocks)?;
        Ok(blocks)
    }

    fn map_io(err: IoError, lba: Lba) -> VolumeError {
        match err {
            IoError::Medium(_) | IoError::Corrupt => VolumeError::Medium { lba },
            other => VolumeError::from(other),
        }
    }

    async fn write_locked(&self, lba: Lba, buf: IoBuf, fua: bool) -> (VolResult<()>, IoBuf) {
        let (res, buf) = self.device.write(buf, lba.offset_bytes(self.block_bytes())).await;
        if let Err(e) = res {
            return (Err(Self::map_io(e, lba)), buf);
        }
        if fua || !self.write_cache() {
            if let Err(e) = self.device.flush().await {
                return (Err(Self::map_io(e, lba)), buf);
            }
        }
        (Ok(()), buf)
    }

    async fn zero_range(&self, lba: Lba, blocks: BlockCount, deallocate: bool) -> VolResult<()> {
        check_range(self.geometry.capacity_blocks, lba, blocks)?;
        let mut offset = lba.offset_bytes(self.block_bytes());
        let end = (lba + blocks).offset_bytes(self.block_bytes());
        let _guard = self.locks.lock(lba.get(), (lba + blocks).get()).await;
        while offset < end {
            let len = (end - offset).min(ZERO_CHUNK_BYTES);
            let res = if deallocate && self.geometry.thin_provisioned {
                self.device.discard(offset, len).await
            } else {
                self.device.write_zeroes(offset, len).await
            };
            res.map_err(|e| Self::map_io(e, Lba::new(offset / self.block_bytes())))?;
            offset += len;
            drivers::executor::yield_now().await;
        }
        if !self.write_cache() {
            self.device.flush().await.map_err(VolumeError::from)?;
        }
        Ok(())
    }
}

impl DeviceVolume {
    /// True when GET LBA STATUS tells deallocated blocks apart (a sparse file that punches
    /// holes, RAM): only then can an erase be seen to have happened. A block device reports
    /// every block mapped.
    #[must_use]
    pub fn tracks_allocation(&self) -> bool {
        self.geometry.thin_provisioned && self.device.reports_allocation()
    }

    /// Allocation of the run starting at `lba`, in whole physical blocks: a physical block
    /// counts as deallocated only when all of it is (SBC-4 GET LBA STATUS reports provisioning
    /// per physical block when LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT is non-zero).
    async fn allocation_status(&self, lba: Lba) -> VolResult<LbaStatus> {
        let block = self.block_bytes();
        let physical = u64::from(self.geometry.physical_block_bytes);
        let end = self.geometry.capacity_blocks * block;
        let at = lba.offset_bytes(block);
        let start = at - at % physical;
        let query = (end - start).min(STATUS_QUERY_BYTES).max(at + block - start);
        let a = self.device.allocation(start, query).await.map_err(|e| Self::map_io(e, lba))?;
        let run_end = start + a.run_bytes;
        let (mapped, to) = if a.mapped {
            (true, run_end.next_multiple_of(physical).min(end))
        } else if run_end - run_end % physical > at {
            (false, run_end - run_end % physical)
        } else {
            // The hole ends inside this LBA's physical block: part of it is mapped.
            (true, (start + physical).min(end))
        };
        Ok(LbaStatus { mapped, run_blocks: (to.max(at + block) - at) / block })
    }
}

impl BlockVolume for DeviceVolume {
    fn geometry(&self) -> VolumeGeometry {
        self.geometry
    }

    fn read(&self, lba: Lba, buf: IoBuf) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            if let Err(e) = self.blocks_in_range(lba, buf.len()) {
                return (Err(e), buf);
            }
            let (res, buf) = self.device.read(buf, lba.offset_bytes(self.block_bytes())).await;
            (res.map_err(|e| Self::map_io(e, lba)), buf)
        })
    }

    fn write(&self, lba: Lba, buf: IoBuf, fua: bool) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            let blocks = match self.blocks_in_range(lba, buf.len()) {
                Ok(b) => b,
                Err(e) => return (Err(e), buf),
            };
            let _guard = self.locks.lock(lba.get(), (lba + blocks).get()).await;
            self.write_locked(lba, buf, fua).await
        })
    }

    fn unmap(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(self.zero_range(lba, blocks, true))
    }

    fn write_zeroes(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(self.zero_range(lba, blocks, false))
    }

    fn flush(&self) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.device.flush().await.map_err(VolumeError::from) })
    }

    fn compare_and_write(
        &self,
        lba: Lba,
        compare: IoBuf,
        write: IoBuf,
        fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<CompareOutcome>> {
        Box::pin(async move {
            if compare.len() != write.len() {
                return Err(VolumeError::BadLength);
            }
            let blocks = self.blocks_in_range(lba, compare.len())?;
            let _guard = self.locks.lock(lba.get(), (lba + blocks).get()).await;
            let current = IoBuf::zeroed(compare.len());
            let (res, current) =
                self.device.read(current, lba.offset_bytes(self.block_bytes())).await;
            res.map_err(|e| Self::map_io(e, lba))?;
            if let Some(pos) = current.iter().zip(compare.iter()).position(|(a, b)| a != b) {
                return Ok(CompareOutcome::Miscompare { offset_bytes: pos as u64 });
            }
            let (res, _) = self.write_locked(lba, write, fua).await;
            res.map(|()| CompareOutcome::Written)
        })
    }

    fn lba_status(&self, lba: Lba) -> LocalBoxFuture<'_, VolResult<LbaStatus>> {
        Box::pin(async move {
            check_range(self.geometry.capacity_blocks, lba, BlockCount::new(1))?;
            self.allocation_status(lba).await
        })
    }

    fn set_write_cache(&self, enabled: bool) {
        self.write_cache.store(enabled, Ordering::Relaxed);
    }

    fn write_cache(&self) -> bool {
        self.write_cache.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use crate::units::{BlockCount, Lba};
    use std::sync::Arc;

    use drivers::blockdev::memory::MemoryDevice;
    use drivers::buffer::IoBuf;
    use drivers::executor::{Reactor, ReactorConfig};

    use super::DeviceVolume;
    use crate::block_volume::{BlockVolume, LbaStatus};

    fn reactor() -> Reactor {
        Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
            .expect("reactor")
    }

    /// 1 MiB of 512-byte logical blocks over 4 KiB allocation chunks.
    fn volume(physical_block_bytes: u32) -> DeviceVolume {
        let device = MemoryDevice::with_geometry(1 << 20, 512, 4096, 4096);
        DeviceVolume::new(Arc::new(device), 512, physical_block_bytes).expect("volume")
    }

    /// The provisioning state at `lba`.
    async fn status_at(vol: &DeviceVolume, lba: u64) -> LbaStatus {
        vol.lba_status(Lba::new(lba)).await.expect("status")
    }

    /// Writes one 4 KiB chunk of 7s at `lba`.
    async fn write_chunk(vol: &DeviceVolume, lba: u64) {
        let (res, _) = vol.write(Lba::new(lba), IoBuf::from_slice(&[7u8; 4096]), false).await;
        res.expect("write");
    }

    /// A run of `run_blocks` blocks, mapped or not.
    const fn run(mapped: bool, run_blocks: u64) -> LbaStatus {
        LbaStatus { mapped, run_blocks }
    }

    #[test]
    fn lba_status_reports_holes_and_written_runs() {
        let vol = volume(512);
        assert!(vol.tracks_allocation());
        reactor().block_on(async {
            let all = LbaStatus { mapped: false, run_blocks: 2048 };
            assert_eq!(status_at(&vol, 0).await, all, "fresh volume");
            write_chunk(&vol, 16).await;
            assert_eq!(status_at(&vol, 0).await, run(false, 16));
            assert_eq!(status_at(&vol, 18).await, run(true, 6));
            assert_eq!(status_at(&vol, 24).await, run(false, 2024));
            vol.unmap(Lba::new(16), BlockCount::new(8)).await.expect("unmap");
            assert_eq!(status_at(&vol, 0).await, all, "unmapped again");
            assert!(vol.lba_status(Lba::new(2048)).await.is_err(), "past the end");
        });
    }

    #[test]
    fn lba_status_rounds_to_physical_blocks() {
        // 8 KiB physical blocks over 4 KiB chunks: a physical block half written is mapped
        // as a whole, and a hole counts only in whole physical blocks.
        let vol = volume(8192);
        reactor().block_on(async {
            write_chunk(&vol, 24).await;
            assert_eq!(status_at(&vol, 0).await, run(false, 16));
            assert_eq!(status_at(&vol, 17).await, run(true, 15));
            assert_eq!(status_at(&vol, 32).await, run(false, 2016));
        });
    }
}
