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

/// Largest zeroing or unmap request sent to the device at once.
const ZERO_CHUNK_BYTES: u64 = 8 << 20;

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

    fn blocks_of(&self, len_bytes: usize) -> VolResult<u64> {
        let len = len_bytes as u64;
        if len == 0 || !len.is_multiple_of(self.block_bytes()) {
            return Err(VolumeError::BadLength);
        }
        Ok(len / self.block_bytes())
    }

    fn map_io(err: IoError, lba: u64) -> VolumeError {
        match err {
            IoError::Medium(_) | IoError::Corrupt => VolumeError::Medium { lba },
            other => VolumeError::from(other),
        }
    }

    async fn write_locked(&self, lba: u64, buf: IoBuf, fua: bool) -> (VolResult<()>, IoBuf) {
        let (res, buf) = self.device.write(buf, lba * self.block_bytes()).await;
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

    async fn zero_range(&self, lba: u64, blocks: u64, deallocate: bool) -> VolResult<()> {
        check_range(self.geometry.capacity_blocks, lba, blocks)?;
        let mut offset = lba * self.block_bytes();
        let end = (lba + blocks) * self.block_bytes();
        let _guard = self.locks.lock(lba, lba + blocks).await;
        while offset < end {
            let len = (end - offset).min(ZERO_CHUNK_BYTES);
            let res = if deallocate && self.geometry.thin_provisioned {
                self.device.discard(offset, len).await
            } else {
                self.device.write_zeroes(offset, len).await
            };
            res.map_err(|e| Self::map_io(e, offset / self.block_bytes()))?;
            offset += len;
            drivers::executor::yield_now().await;
        }
        if !self.write_cache() {
            self.device.flush().await.map_err(VolumeError::from)?;
        }
        Ok(())
    }
}

impl BlockVolume for DeviceVolume {
    fn geometry(&self) -> VolumeGeometry {
        self.geometry
    }

    fn read(&self, lba: u64, buf: IoBuf) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            let blocks = match self.blocks_of(buf.len()) {
                Ok(b) => b,
                Err(e) => return (Err(e), buf),
            };
            if let Err(e) = check_range(self.geometry.capacity_blocks, lba, blocks) {
                return (Err(e), buf);
            }
            let (res, buf) = self.device.read(buf, lba * self.block_bytes()).await;
            (res.map_err(|e| Self::map_io(e, lba)), buf)
        })
    }

    fn write(&self, lba: u64, buf: IoBuf, fua: bool) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            let blocks = match self.blocks_of(buf.len()) {
                Ok(b) => b,
                Err(e) => return (Err(e), buf),
            };
            if let Err(e) = check_range(self.geometry.capacity_blocks, lba, blocks) {
                return (Err(e), buf);
            }
            let _guard = self.locks.lock(lba, lba + blocks).await;
            self.write_locked(lba, buf, fua).await
        })
    }

    fn unmap(&self, lba: u64, blocks: u64) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(self.zero_range(lba, blocks, true))
    }

    fn write_zeroes(&self, lba: u64, blocks: u64) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(self.zero_range(lba, blocks, false))
    }

    fn flush(&self) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.device.flush().await.map_err(VolumeError::from) })
    }

    fn compare_and_write(
        &self,
        lba: u64,
        compare: IoBuf,
        write: IoBuf,
        fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<CompareOutcome>> {
        Box::pin(async move {
            if compare.len() != write.len() {
                return Err(VolumeError::BadLength);
            }
            let blocks = self.blocks_of(compare.len())?;
            check_range(self.geometry.capacity_blocks, lba, blocks)?;
            let _guard = self.locks.lock(lba, lba + blocks).await;
            let current = IoBuf::zeroed(compare.len());
            let (res, current) = self.device.read(current, lba * self.block_bytes()).await;
            res.map_err(|e| Self::map_io(e, lba))?;
            if let Some(pos) = current.iter().zip(compare.iter()).position(|(a, b)| a != b) {
                return Ok(CompareOutcome::Miscompare { offset_bytes: pos as u64 });
            }
            let (res, _) = self.write_locked(lba, write, fua).await;
            res.map(|()| CompareOutcome::Written)
        })
    }

    fn lba_status(&self, lba: u64) -> LocalBoxFuture<'_, VolResult<LbaStatus>> {
        Box::pin(async move {
            check_range(self.geometry.capacity_blocks, lba, 1)?;
            // A raw device does not track allocation: report everything as mapped.
            Ok(LbaStatus { mapped: true, run_blocks: self.geometry.capacity_blocks - lba })
        })
    }

    fn set_write_cache(&self, enabled: bool) {
        self.write_cache.store(enabled, Ordering::Relaxed);
    }

    fn write_cache(&self) -> bool {
        self.write_cache.load(Ordering::Relaxed)
    }
}
